/**
 * Picks the backend for each request of a route: the interface alone. Each mode
 * is implemented in a file beside this one, and `create.ts` chooses between them.
 *
 * | mode          | traffic goes to                                              |
 * | ------------- | ------------------------------------------------------------ |
 * | `srv`         | every priority group, by weight, groups in order each round  |
 * | `rfc2782`     | only the lowest priority with a healthy backend, by weight   |
 * | `round_robin` | every healthy backend in turn                                |
 * | `least_conn`  | the healthy backend with the fewest requests in flight       |
 * | `hash`        | the backend a request's key hashes to (Maglev), by weight     |
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { BackendWatcher } from "../upstream/backend_state.ts";

/** How a scheduler spreads requests; see the module documentation. */
export type SchedulerMode = "srv" | "rfc2782" | "round_robin" | "least_conn" | "hash";

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
  "hash",
]);

/**
 * Chooses backends for one route.
 *
 * A mode that orders by load or reacts to health at once implements the
 * {@linkcode BackendWatcher} hooks (`loadChanged`, `healthChanged`) and
 * registers for the backends of its set with `watchBackend` (and
 * `unwatchBackend` for those an update removes), both from
 * `upstream/backend_state.ts`. The hooks are then called for every change of
 * those backends, whichever route, request or health check made it; nothing
 * else calls them, and nothing else writes `inflight` or `healthy`.
 */
export interface Scheduler extends BackendWatcher {
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
   * @param key The request's hash key, for `hash` mode (the other modes ignore
   * it); `hash` without a key picks in `rfc2782` order.
   */
  next(skip?: readonly Backend[], key?: string): Backend | undefined;
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
