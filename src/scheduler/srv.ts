/**
 * The `srv` scheduler (the default): every priority group gets its weighted
 * share, round by round.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { Scheduler } from "./scheduler.ts";
import type { EdfGroup } from "./_edf.ts";
import { WeightedScheduler } from "./_weighted.ts";

/**
 * Weights are reduced by their gcd and each round gives every backend
 * `weight / gcd` picks. Within a round the priority groups are served in
 * ascending priority order; inside a group the picks are interleaved smoothly
 * (earliest deadline first, see `_edf.ts`; identical to nginx's smooth weighted
 * round-robin for two backends, equally smooth but not always identical for more).
 *
 * - Unhealthy backends' slots are skipped; the others keep their proportions.
 * - A weight-0 backend gets picks only when its whole group has weight 0 (each
 *   then counts as weight 1). As a last resort, when no weighted backend is
 *   healthy, healthy weight-0 backends are used round-robin.
 * - A pick is O(log n) and allocates nothing (O(n) only on the all-down path).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { SrvScheduler } from "./srv.ts";
 *
 * const s = new SrvScheduler([
 *   createBackend({ hostname: "b1", port: 80, priority: 0, weight: 30 }),
 *   createBackend({ hostname: "b2", port: 80, priority: 0, weight: 20 }),
 *   createBackend({ hostname: "b3", port: 80, priority: 10, weight: 40 }),
 * ]);
 * const order = Array.from({ length: 9 }, () => s.next()?.hostname);
 * assertEquals(order.join(" "), "b1 b2 b1 b2 b1 b3 b3 b3 b3");
 * ```
 */
export class SrvScheduler extends WeightedScheduler implements Scheduler {
  /** Always `"srv"`. */
  readonly mode = "srv" as const;
  #round = 0;
  /** Position of the group being served in round `#round`. */
  #gi = 0;

  /**
   * Creates a scheduler over `backends`.
   *
   * @param backends The initial set.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  constructor(backends: readonly Backend[]) {
    super();
    this.update(backends);
  }

  /**
   * Re-checks one parked backend, then serves the next slot due. A pick that
   * skips backends takes the next slot due to another one, from a later round
   * or group if need be, and leaves the round and group being served as they
   * were, so the skipped backends' slots still come first.
   *
   * @param skip Backends to pass over for this pick; each keeps the slot it was due.
   * @returns The next backend, or `undefined` when none is healthy.
   */
  override next(skip?: readonly Backend[]): Backend | undefined {
    if (skip === undefined) return super.next();
    const round = this.#round;
    const gi = this.#gi;
    const b = super.next(skip);
    this.#round = round;
    this.#gi = gi;
    return b;
  }

  /**
   * Serves the current round's slots group by group, in ascending priority.
   *
   * @returns The backend whose slot is due next in the current round, groups in order.
   */
  protected override pick(): Backend | undefined {
    const groups = this.groups;
    let wraps = 0;
    for (;;) {
      const gi = this.liveFrom(this.#gi);
      if (gi >= groups.length) {
        if (this.liveFrom(0) >= groups.length) return this.#lastResort();
        this.#round++;
        this.#gi = 0;
        if (++wraps > 2) this.#resync();
        continue;
      }
      this.#gi = gi;
      const group = groups[gi]!;
      if (group.peek()!.round > this.#round) {
        this.#gi = gi + 1;
        continue;
      }
      const b = this.serveTop(group);
      if (b !== undefined) return b;
    }
  }

  /** A group already served in the current round is next served in the next round. */
  protected override floorRound(index: number): number {
    return index < this.#gi ? this.#round + 1 : this.#round;
  }

  /** Moves the group cursor to the first group whose priority is not below the one being served. */
  protected override regrouped(previous: readonly EdfGroup[]): void {
    const priority = previous[this.#gi]?.priority ?? Infinity;
    const groups = this.groups;
    let gi = 0;
    while (gi < groups.length && groups[gi]!.priority < priority) gi++;
    this.#gi = gi;
  }

  #lastResort(): Backend | undefined {
    if (this.reviveAll()) return this.pick();
    return this.zeros.take(this.skip);
  }

  /** Defensive: jump to the earliest round any heap is in. */
  #resync(): void {
    let round = Infinity;
    for (const g of this.groups) round = Math.min(round, g.peek()?.round ?? Infinity);
    if (round !== Infinity) this.#round = round;
  }
}
