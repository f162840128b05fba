/**
 * The `round_robin` scheduler.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { Scheduler } from "./scheduler.ts";
import { Rotation } from "./_rotation.ts";
import { uniqueBackends } from "./_validate.ts";

/**
 * Healthy backends one after another, ignoring weight and priority. A
 * re-lookup keeps the order of the backends that remain (newcomers join at the
 * end) and the rotation's position. A pick is O(1) plus one step per
 * unhealthy backend skipped.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { RoundRobinScheduler } from "./round_robin.ts";
 *
 * const s = new RoundRobinScheduler([
 *   createBackend({ hostname: "b1", port: 80, weight: 30 }),
 *   createBackend({ hostname: "b2", port: 80, priority: 10 }),
 * ]);
 * assertEquals(Array.from({ length: 4 }, () => s.next()?.hostname).join(" "), "b1 b2 b1 b2");
 * ```
 */
export class RoundRobinScheduler implements Scheduler {
  /** Always `"round_robin"`. */
  readonly mode = "round_robin" as const;
  readonly #rotation = new Rotation();

  /**
   * Creates a scheduler over `backends`.
   *
   * @param backends The initial set.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  constructor(backends: readonly Backend[]) {
    this.update(backends);
  }

  /** Backends currently scheduled, in rotation order. */
  get backends(): readonly Backend[] {
    return this.#rotation.items;
  }

  /**
   * Replaces the set: remaining backends keep their order and the rotation's
   * position, newcomers join at the end.
   *
   * @param backends The new set.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  update(backends: readonly Backend[]): void {
    this.#rotation.update(uniqueBackends(backends));
  }

  /**
   * Picks the next healthy backend in rotation order.
   *
   * @param skip Backends to pass over for this pick (see {@linkcode Scheduler.next}).
   * @returns The next healthy backend, or `undefined` when none is healthy.
   */
  next(skip?: readonly Backend[]): Backend | undefined {
    return this.#rotation.take(skip);
  }
}
