/**
 * The `least_conn` scheduler.
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import type { Scheduler } from "../scheduler.ts";
import { RotationScheduler } from "./_rotation.ts";

/**
 * The healthy backend with the fewest requests in flight (`backend.inflight`,
 * which the proxy maintains), ignoring weight and priority. Ties go to the
 * first one at or after a rotating cursor, so equal loads spread evenly.
 *
 * Cost: the proxy changes `inflight` without telling the scheduler, so a pick
 * scans the backends, O(n); the scan stops at the first idle (`inflight` 0)
 * one, which makes it O(1) on a lightly loaded pool.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../backend.ts";
 * import { LeastConnScheduler } from "./least_conn.ts";
 *
 * const b1 = createBackend({ hostname: "b1", port: 80 });
 * const b2 = createBackend({ hostname: "b2", port: 80 });
 * const s = new LeastConnScheduler([b1, b2]);
 * b1.inflight = 3;
 * assertEquals(s.next(), b2);
 * ```
 */
export class LeastConnScheduler extends RotationScheduler implements Scheduler {
  /** Always `"least_conn"`. */
  readonly mode = "least_conn" as const;

  /** @returns The least loaded healthy backend, or `undefined` when none is healthy. */
  next(): Backend | undefined {
    const r = this.rotation;
    const items = r.items;
    const n = items.length;
    let best = -1;
    let load = Infinity;
    let c = r.cursor;
    for (let i = 0; i < n; i++) {
      if (c >= n) c = 0;
      const b = items[c]!;
      if (b.healthy && b.inflight < load) {
        best = c;
        load = b.inflight;
        if (load <= 0) break;
      }
      c++;
    }
    if (best < 0) return undefined;
    r.cursor = best + 1 === n ? 0 : best + 1;
    return items[best];
  }
}
