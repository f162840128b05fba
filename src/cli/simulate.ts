/**
 * The logic behind `main.ts simulate`: run a scheduler on a backend set
 * without any network and report the pick order and each backend's share.
 *
 * @module
 */
import { type Backend, createBackend } from "../upstream/backend.ts";
import { type SchedulerMode } from "../scheduler/scheduler.ts";
import { createScheduler, expectedShares } from "../scheduler/create.ts";

/** `hash` mode is simulated with the keys `key-0`, `key-1`, … (one per pick). */
export const KEY_PREFIX = "key-";
const INTEGER_REGEXP = /^\d+$/;
const TARGET_REGEXP = /^[A-Za-z0-9_.-]+$/;

/**
 * Parses the `--srv` option: comma-separated `target:priority:weight` entries,
 * as in an SRV answer (`b1:0:30,b2:0:20,b3:10:40`). The SRV port is not part of
 * the spec: backends get port 0 and are named after their target.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseSrvSpec } from "./simulate.ts";
 *
 * const [b1, b2] = parseSrvSpec("b1:0:30, b2:10:20");
 * assertEquals([b1?.name, b1?.priority, b1?.weight], ["b1", 0, 30]);
 * assertEquals([b2?.name, b2?.priority, b2?.weight], ["b2", 10, 20]);
 * ```
 *
 * @param spec The option's value; blanks around entries are ignored.
 * @returns One healthy backend per entry, in the given order.
 * @throws {TypeError} If the spec is empty, an entry is not `target:priority:weight`,
 * or a target is empty, not a host name, or repeated.
 * @throws {RangeError} If a priority or weight is not an integer 0..65535.
 */
export function parseSrvSpec(spec: string): Backend[] {
  if (spec.trim() === "") {
    throw new TypeError(
      'Invalid --srv: expected "target:priority:weight" entries separated by ","',
    );
  }
  const backends: Backend[] = [];
  const seen = new Set<string>();
  for (const raw of spec.split(",")) {
    const entry = raw.trim();
    const parts = entry.split(":");
    if (parts.length !== 3) {
      throw new TypeError(`Invalid --srv entry "${entry}": expected target:priority:weight`);
    }
    const [target = "", priority = "", weight = ""] = parts;
    if (!TARGET_REGEXP.test(target)) {
      throw new TypeError(
        `Invalid --srv entry "${entry}": target must be a host name: received "${target}"`,
      );
    }
    if (seen.has(target)) {
      throw new TypeError(`Invalid --srv entry "${entry}": duplicate target "${target}"`);
    }
    seen.add(target);
    backends.push(createBackend({
      hostname: target,
      port: 0,
      priority: parseField(entry, "priority", priority),
      weight: parseField(entry, "weight", weight),
      name: target,
    }));
  }
  return backends;
}

function parseField(entry: string, field: string, text: string): number {
  const value = INTEGER_REGEXP.test(text) ? Number(text) : NaN;
  if (!(value <= 65535)) {
    throw new RangeError(`Invalid --srv entry "${entry}": ${field} must be an integer 0..65535`);
  }
  return value;
}

/** Options for {@linkcode simulate}. */
export interface SimulateOptions {
  /**
   * Scheduler mode to run.
   *
   * @default {"srv"}
   */
  mode?: SchedulerMode | undefined;
  /**
   * Number of picks.
   *
   * @default {18}
   */
  n?: number | undefined;
}

/** How much of the traffic one backend got in a simulation. */
export interface BackendShare {
  /** The backend's `name`. */
  name: string;
  /** Its priority. */
  priority: number;
  /** Its weight. */
  weight: number;
  /** Picks it got. */
  picks: number;
  /** `picks / n` (0 when `n` is 0). */
  share: number;
  /** The share the mode promises it when every backend is healthy. */
  expected: number;
}

/** What {@linkcode simulate} returns. */
export interface SimulationResult {
  /** The mode simulated. */
  mode: SchedulerMode;
  /** Name of each pick in order; `-` where no backend was healthy. */
  order: string[];
  /** One row per distinct backend, in scheduling order. */
  shares: BackendShare[];
}

/**
 * Runs a fresh scheduler `n` times over `backends` (which it does not modify).
 *
 * Expected shares: `srv`, weight over the total weight; `rfc2782`, weight over
 * the total weight of the lowest priority (0 for the others); `round_robin`
 * and `least_conn` (nothing is in flight in a simulation), `1 / count`. A
 * weight-0 backend counts as weight 1 when its whole group has weight 0 and as
 * 0 otherwise, as the schedulers do.
 *
 * `hash` mode hashes `n` generated keys, `key-0` to `key-<n-1>` (see
 * {@linkcode KEY_PREFIX}), one per pick: `order` is the backend of each key and
 * the shares are the shares of keys, expected as in `rfc2782`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseSrvSpec, simulate } from "./simulate.ts";
 *
 * const result = simulate(parseSrvSpec("b1:0:30,b2:0:20,b3:10:40"), { mode: "srv", n: 9 });
 * assertEquals(result.order.join(" "), "b1 b2 b1 b2 b1 b3 b3 b3 b3");
 * assertEquals(result.shares.map((s) => s.picks), [3, 2, 4]);
 * ```
 *
 * @param backends The backends.
 * @param options Mode and number of picks (of keys, for `hash`).
 * @returns The pick order and each backend's share.
 * @throws {RangeError} If `n` is not a non-negative integer, the mode is unknown,
 * or a weight or priority is out of range.
 */
export function simulate(
  backends: readonly Backend[],
  options: SimulateOptions = {},
): SimulationResult {
  const { mode = "srv", n = 18 } = options;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Simulation pick count must be a non-negative integer: received ${n}`);
  }
  const scheduler = createScheduler(mode, backends);
  const list = scheduler.backends;
  const picks = new Map<Backend, number>();
  const order: string[] = [];
  const keyed = mode === "hash";
  for (let i = 0; i < n; i++) {
    const b = scheduler.next(undefined, keyed ? `${KEY_PREFIX}${i}` : undefined);
    if (b !== undefined) picks.set(b, (picks.get(b) ?? 0) + 1);
    order.push(b?.name ?? "-");
  }
  const expected = expectedShares(mode, list);
  const shares = list.map((b, i) => {
    const count = picks.get(b) ?? 0;
    return {
      name: b.name,
      priority: b.priority,
      weight: b.weight,
      picks: count,
      share: n === 0 ? 0 : count / n,
      expected: expected[i] ?? 0,
    };
  });
  return { mode, order, shares };
}

/** Options for {@linkcode formatSimulation}. */
export interface FormatSimulationOptions {
  /**
   * Most picks to print on the order line; the rest are counted, not listed.
   *
   * @default {200}
   */
  maxOrder?: number | undefined;
}

/**
 * Renders a simulation for the terminal: a title, the pick order on one line,
 * and a table of each backend's picks and share against the expected share.
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { formatSimulation, parseSrvSpec, simulate } from "./simulate.ts";
 *
 * const text = formatSimulation(simulate(parseSrvSpec("b1:0:30,b2:0:20,b3:10:40"), { n: 9 }));
 * assertStringIncludes(text, "\nb1 b2 b1 b2 b1 b3 b3 b3 b3\n");
 * assertStringIncludes(text, "b3             10      40      4  44.4%     44.4%");
 * ```
 *
 * @param result What {@linkcode simulate} returned.
 * @param options Output limits.
 * @returns The text, lines separated by `\n`, without a final newline.
 */
export function formatSimulation(
  result: SimulationResult,
  options: FormatSimulationOptions = {},
): string {
  const { maxOrder = 200 } = options;
  const { order, shares } = result;
  let line = order.slice(0, maxOrder).join(" ");
  if (order.length > maxOrder) line += ` … (${order.length - maxOrder} more)`;
  if (order.length === 0) line = "(no picks)";

  const header = ["backend", "priority", "weight", "picks", "share", "expected"];
  const rows = shares.map((s) => [
    s.name,
    String(s.priority),
    String(s.weight),
    String(s.picks),
    percent(s.share),
    percent(s.expected),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const render = (cells: string[]) =>
    cells.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))
      .join("  ").trimEnd();
  const s = order.length === 1 ? "" : "s";
  const last = `${KEY_PREFIX}${order.length - 1}`;
  const what = result.mode !== "hash"
    ? `${order.length} pick${s}`
    : order.length === 0
    ? "0 keys"
    : `${order.length} key${s} (${KEY_PREFIX}0${order.length > 1 ? ` to ${last}` : ""}), in order`;
  return [
    `${result.mode} scheduler, ${what}:`,
    line,
    "",
    render(header),
    ...rows.map(render),
  ].join("\n");
}

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
