/**
 * The `rfc2782` scheduler: only the most preferred priority that can serve
 * gets traffic, as an RFC 2782 client would pick targets.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { Scheduler } from "./scheduler.ts";
import { WeightedScheduler } from "./_weighted.ts";

/**
 * The lowest priority group with a healthy member gets all the traffic, split
 * by weight with the same deterministic smooth interleave as `srv` (so 9000
 * picks over b1(p0,w30) b2(p0,w20) b3(p10,w40) are exactly 5400/3600/0),
 * instead of RFC 2782's random draw. Higher priorities take over only while
 * every backend of the lower ones is unhealthy.
 *
 * Weight 0: a weight-0 member gets traffic only when its whole group has
 * weight 0 (each then counts as 1) or when none of its group's weighted
 * members is healthy (it is then "alone"); healthy weight-0 members are used
 * round-robin before failing over to the next priority.
 *
 * A pick is O(log n) and allocates nothing; while lower groups are entirely
 * down it also looks at their weight-0 members, and with everything down it
 * re-checks every backend (O(n)).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { markDown } from "../upstream/backend_state.ts";
 * import { Rfc2782Scheduler } from "./rfc2782.ts";
 *
 * const b1 = createBackend({ hostname: "b1", port: 80, priority: 0, weight: 30 });
 * const b2 = createBackend({ hostname: "b2", port: 80, priority: 0, weight: 20 });
 * const b3 = createBackend({ hostname: "b3", port: 80, priority: 10, weight: 40 });
 * const s = new Rfc2782Scheduler([b1, b2, b3]);
 * assertEquals(Array.from({ length: 5 }, () => s.next()?.hostname).join(" "), "b1 b2 b1 b2 b1");
 * markDown(b1);
 * markDown(b2);
 * assertEquals(s.next(), b3);
 * ```
 */
export class Rfc2782Scheduler extends WeightedScheduler implements Scheduler {
  /** Always `"rfc2782"`. */
  readonly mode = "rfc2782" as const;

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
   * Serves the lowest priority group that can, trying weight-0 members of lower groups first.
   *
   * @returns The backend to serve from the lowest priority group with a healthy member.
   */
  protected override pick(): Backend | undefined {
    const groups = this.groups;
    for (;;) {
      const gi = this.liveFrom(0);
      // Groups before `gi` have no weighted member in rotation: their weight-0 ones may serve.
      for (let i = 0; i < gi; i++) {
        const zeros = groups[i]!.zeros;
        if (zeros.items.length === 0) continue;
        const b = zeros.take(this.skip);
        if (b !== undefined) return b;
      }
      if (gi >= groups.length) {
        if (this.reviveAll()) continue;
        return undefined;
      }
      const b = this.serveTop(groups[gi]!);
      if (b !== undefined) return b;
    }
  }

  /** No floor: groups keep their own clocks, so a newcomer joins at its group's next slot. */
  protected override floorRound(_index: number): number {
    return 0;
  }
}
