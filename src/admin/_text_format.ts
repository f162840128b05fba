/**
 * A small writer for the Prometheus text exposition format (version 0.0.4).
 *
 * @module
 */

/** The content type of the text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Metric types of the text format. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Label names and values of one sample. */
export type Labels = Readonly<Record<string, string>>;

const ESCAPE_REGEXP = /[\\"\n]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n" };

/**
 * Builds an exposition: metric families, each with HELP and TYPE, then samples.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { TextFormat } from "./_text_format.ts";
 * const out = new TextFormat();
 * out.family("demo_up", "gauge", "Whether it is up.");
 * out.sample("demo_up", { job: "a\"b" }, 1);
 * assert(out.toString().endsWith('demo_up{job="a\\"b"} 1\n'));
 * ```
 */
export class TextFormat {
  readonly #lines: string[] = [];

  /** Starts a family: its `# HELP` and `# TYPE` lines. */
  family(name: string, type: MetricType, help: string): void {
    this.#lines.push(`# HELP ${name} ${help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
  }

  /** One sample of the current family (`name` may carry a `_bucket`/`_sum`/`_count` suffix). */
  sample(name: string, labels: Labels, value: number): void {
    this.#lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }

  /** The exposition text, newline-terminated. */
  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function formatLabels(labels: Labels): string {
  let s = "";
  for (const k in labels) {
    s += `${s === "" ? "" : ","}${k}="${labels[k]!.replace(ESCAPE_REGEXP, (c) => ESCAPES[c]!)}"`;
  }
  return s === "" ? "" : `{${s}}`;
}

/**
 * Formats a sample value: integers as is, `+Inf`/`-Inf`/`NaN` spelled the Prometheus way.
 *
 * @param value Any number.
 * @returns Its text form.
 */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
