/**
 * Builds the scheduler of a mode, and tells what share of picks each backend
 * should get in it. Kept apart from the interface (`scheduler.ts`) so that the
 * implementations can import the interface without a cycle.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import { type Scheduler, SCHEDULER_MODES, type SchedulerMode } from "./scheduler.ts";
import { HashScheduler } from "./hash.ts";
import { LeastConnScheduler } from "./least_conn.ts";
import { Rfc2782Scheduler } from "./rfc2782.ts";
import { RoundRobinScheduler } from "./round_robin.ts";
import { SrvScheduler } from "./srv.ts";

/**
 * Creates the scheduler for a mode.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { createScheduler } from "./create.ts";
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
    case "hash":
      return new HashScheduler(backends);
    default:
      throw new RangeError(
        `Scheduler mode must be one of ${SCHEDULER_MODES.join(", ")}: received "${mode}"`,
      );
  }
}

/**
 * The share of picks each backend should get in `mode`, as the schedulers spread
 * them: by weight within a priority group (`srv`: every group; `rfc2782` and
 * `hash`, over evenly spread keys: only the lowest priority), a group whose weights are all 0 counting each member as 1;
 * evenly for `round_robin` and `least_conn`.
 *
 * @param mode The route's scheduler mode.
 * @param backends The route's backends.
 * @returns One share (0..1) per backend, in order.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { expectedShares } from "./create.ts";
 * import { createBackend } from "../upstream/backend.ts";
 * const bs = [30, 20, 40].map((weight, i) =>
 *   createBackend({ hostname: "127.0.0.1", port: 9001 + i, weight, priority: i === 2 ? 10 : 0 })
 * );
 * assert(expectedShares("srv", bs).join() === [3 / 9, 2 / 9, 4 / 9].join());
 * assert(expectedShares("rfc2782", bs).join() === "0.6,0.4,0");
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
    if ((mode === "rfc2782" || mode === "hash") && b.priority !== lowest) return 0;
    return allZero.get(b.priority) ? 1 : b.weight;
  });
  const total = weights.reduce((a, w) => a + w, 0);
  return weights.map((w) => (total === 0 ? 0 : w / total));
}
