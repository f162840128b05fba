/**
 * The `round_robin` scheduler.
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import type { Scheduler } from "../scheduler.ts";
import { RotationScheduler } from "./_rotation.ts";

/**
 * Healthy backends one after another, ignoring weight and priority. A
 * re-lookup keeps the order of the backends that remain (newcomers join at the
 * end) and the rotation's position. A pick is O(1) plus one step per
 * unhealthy backend skipped.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../backend.ts";
 * import { RoundRobinScheduler } from "./round_robin.ts";
 *
 * const s = new RoundRobinScheduler([
 *   createBackend({ hostname: "b1", port: 80, weight: 30 }),
 *   createBackend({ hostname: "b2", port: 80, priority: 10 }),
 * ]);
 * assertEquals(Array.from({ length: 4 }, () => s.next()?.hostname).join(" "), "b1 b2 b1 b2");
 * ```
 */
export class RoundRobinScheduler extends RotationScheduler implements Scheduler {
  /** Always `"round_robin"`. */
  readonly mode = "round_robin" as const;

  /**
   * Picks the next healthy backend in rotation order.
   *
   * @returns The next healthy backend, or `undefined` when none is healthy.
   */
  next(): Backend | undefined {
    return this.rotation.take();
  }
}
