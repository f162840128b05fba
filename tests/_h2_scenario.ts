/**
 * Test helper: runs a scenario of the frame-level HTTP/2 client `_h2_client.py`
 * (with /usr/bin/python3, hyperframe and hpack) against a port of 127.0.0.1 and
 * reads its JSON summary.
 *
 * @module
 */

const dec = new TextDecoder();

/** The client script's path, for tests that spawn it themselves. */
export const H2_CLIENT_SCRIPT: string = new URL("./_h2_client.py", import.meta.url).pathname;

/** What `_h2_client.py` prints once a scenario is over (stream ids as strings). */
export interface H2Outcome {
  /** The GOAWAY received: [error code, last stream id], or null. */
  goaway: [number, number] | null;
  /** RST_STREAM error codes by stream. */
  rst: Record<string, number>;
  /** Response `:status` by stream. */
  status: Record<string, number>;
  /** PING acknowledgements received. */
  ping_acks: number;
  /** DATA payload bytes by stream. */
  data: Record<string, number>;
  /** Response body text by stream (its first 4096 bytes, latin-1). */
  body: Record<string, string>;
  /** Streams that got END_STREAM. */
  ended: number[];
  /** Bytes the client sent. */
  sent: number;
  /** Whether a send failed (the server had closed). */
  send_error: boolean;
  /** Whether the server closed the connection. */
  closed: boolean;
  /** Values a scenario noted on the way (e.g. bytes received at a step). */
  marks?: Record<string, number>;
}

/** Options for {@linkcode h2ScenarioArgs} and {@linkcode runH2Scenario}. */
export interface H2ScenarioOptions {
  /** The scenario's count (streams, frames…). @default {0} */
  count?: number;
  /** The request path, for the scenarios that take one. @default {"/"} */
  path?: string;
}

/** The command line (after `python3`) that runs scenario `name` against `port`. */
export function h2ScenarioArgs(
  port: number,
  name: string,
  options: H2ScenarioOptions = {},
): string[] {
  return [H2_CLIENT_SCRIPT, String(port), name, String(options.count ?? 0), options.path ?? "/"];
}

/**
 * Runs scenario `name` against `port` to its end.
 *
 * @throws {Error} When the client script fails (its stderr in the message).
 */
export async function runH2Scenario(
  port: number,
  name: string,
  options: H2ScenarioOptions = {},
): Promise<H2Outcome> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: h2ScenarioArgs(port, name, options),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`${name} failed: ${dec.decode(out.stderr)}`);
  return JSON.parse(dec.decode(out.stdout)) as H2Outcome;
}
