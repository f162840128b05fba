/**
 * Picks the backend for each request of a route. One interface, one
 * implementation per mode under `./scheduler/`.
 *
 * | mode          | traffic goes to                                              |
 * | ------------- | ------------------------------------------------------------ |
 * | `srv`         | every priority group, by weight, groups in order each round  |
 * | `rfc2782`     | only the lowest priority with a healthy backend, by weight   |
 * | `round_robin` | every healthy backend in turn                                |
 * | `least_conn`  | the healthy backend with the fewest requests in flight       |
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { LeastConnScheduler } from "./scheduler/least_conn.ts";
import { Rfc2782Scheduler } from "./scheduler/rfc2782.ts";
import { RoundRobinScheduler } from "./scheduler/round_robin.ts";
import { SrvScheduler } from "./scheduler/srv.ts";

/** How a scheduler spreads requests; see the module documentation. */
export type SchedulerMode = "srv" | "rfc2782" | "round_robin" | "least_conn";

/**
 * Every {@linkcode SchedulerMode}, the default (`srv`) first.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { SCHEDULER_MODES } from "./scheduler.ts";
 * assert(SCHEDULER_MODES.includes("least_conn"));
 * ```
 */
export const SCHEDULER_MODES: readonly SchedulerMode[] = Object.freeze([
  "srv",
  "rfc2782",
  "round_robin",
  "least_conn",
]);

/** Chooses backends for one route. */
export interface Scheduler {
  /** The mode it implements. */
  readonly mode: SchedulerMode;
  /**
   * Next backend, or undefined when no backend is healthy (caller answers 503).
   * Backends with `healthy === false` are skipped in every mode.
   *
   * @param skip Backends (compared by id) to pass over for this pick only, as
   * a retry passes over the ones that failed it. Unlike unhealthy backends they
   * are not taken out of the order: in the weighted modes the slot they were
   * due is still theirs at the next pick, in `least_conn` their place among
   * equal loads (`round_robin` passes over them as over unhealthy ones).
   */
  next(skip?: readonly Backend[]): Backend | undefined;
  /**
   * Replace the set (after a DNS re-lookup). Backends that remain (same id)
   * keep their position/state in the rotation; objects passed in are the ones
   * returned by next(). New ids join; removed ones stop being picked. Later
   * duplicates of an id are ignored.
   *
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  update(backends: readonly Backend[]): void;
  /** Backends currently scheduled. */
  readonly backends: readonly Backend[];
  /**
   * Called by the proxy right after it raised `backend.inflight` (a request
   * started) and right after it lowered it (a request ended), so modes that order
   * by load can keep their order up to date.
   */
  loadChanged?(backend: Backend): void;
}

/**
 * Tells whether a string names a scheduler mode (for config and CLI parsing).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { isSchedulerMode } from "./scheduler.ts";
 * assert(isSchedulerMode("rfc2782") && !isSchedulerMode("random"));
 * ```
 *
 * @param value The string to test.
 * @returns Whether it is one of {@linkcode SCHEDULER_MODES}.
 */
export function isSchedulerMode(value: string): value is SchedulerMode {
  return (SCHEDULER_MODES as readonly string[]).includes(value);
}

/**
 * Creates the scheduler for a mode.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { createScheduler } from "./scheduler.ts";
 *
 * const s = createScheduler("srv", [
 *   createBackend({ hostname: "b1", port: 80, priority: 0, weight: 30 }),
 *   createBackend({ hostname: "b2", port: 80, priority: 0, weight: 20 }),
 *   createBackend({ hostname: "b3", port: 80, priority: 10, weight: 40 }),
 * ]);
 * const order = Array.from({ length: 9 }, () => s.next()?.name);
 * assertEquals(order.join(" "), "b1:80 b2:80 b1:80 b2:80 b1:80 b3:80 b3:80 b3:80 b3:80");
 * ```
 *
 * @param mode The mode.
 * @param backends The initial set (may be empty; fill it later with `update()`).
 * @returns The scheduler.
 * @throws {RangeError} If the mode is unknown, or a weight or priority is not an integer 0..65535.
 */
export function createScheduler(mode: SchedulerMode, backends: readonly Backend[]): Scheduler {
  switch (mode) {
    case "srv":
      return new SrvScheduler(backends);
    case "rfc2782":
      return new Rfc2782Scheduler(backends);
    case "round_robin":
      return new RoundRobinScheduler(backends);
    case "least_conn":
      return new LeastConnScheduler(backends);
    default:
      throw new RangeError(
        `Scheduler mode must be one of ${SCHEDULER_MODES.join(", ")}: received "${mode}"`,
      );
  }
}

/**
 * The share of picks each backend should get in `mode`, as the schedulers spread
 * them: by weight within a priority group (`srv`: every group; `rfc2782`: only the
 * lowest priority), a group whose weights are all 0 counting each member as 1;
 * evenly for `round_robin` and `least_conn`.
 *
 * @param mode The route's scheduler mode.
 * @param backends The route's backends.
 * @returns One share (0..1) per backend, in order.
 *
 * @example
 * ```ts
 * import { expectedShares } from "./scheduler.ts";
 * import { createBackend } from "./backend.ts";
 * const bs = [30, 20, 40].map((weight, i) =>
 *   createBackend({ hostname: "127.0.0.1", port: 9001 + i, weight, priority: i === 2 ? 10 : 0 })
 * );
 * console.assert(expectedShares("srv", bs).join() === [3 / 9, 2 / 9, 4 / 9].join());
 * console.assert(expectedShares("rfc2782", bs).join() === "0.6,0.4,0");
 * ```
 */
export function expectedShares(mode: SchedulerMode, backends: readonly Backend[]): number[] {
  if (mode === "round_robin" || mode === "least_conn") {
    return backends.map(() => 1 / backends.length);
  }
  const lowest = Math.min(...backends.map((b) => b.priority));
  const allZero = new Map<number, boolean>();
  for (const b of backends) {
    allZero.set(b.priority, (allZero.get(b.priority) ?? true) && b.weight === 0);
  }
  const weights = backends.map((b) => {
    if (mode === "rfc2782" && b.priority !== lowest) return 0;
    return allZero.get(b.priority) ? 1 : b.weight;
  });
  const total = weights.reduce((a, w) => a + w, 0);
  return weights.map((w) => (total === 0 ? 0 : w / total));
}
