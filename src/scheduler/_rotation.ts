/**
 * A rotating cursor over backends in a stable order, shared by the
 * `round_robin` scheduler and by the weight-0 fallbacks of the weighted modes.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import { skipped } from "./_skip.ts";

/**
 * Backends in rotation order plus the index of the next one to try.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { Rotation } from "./_rotation.ts";
 *
 * const a = createBackend({ hostname: "a", port: 1 });
 * const b = createBackend({ hostname: "b", port: 1 });
 * const r = new Rotation();
 * r.update([a, b]);
 * assertEquals([r.take(), r.take(), r.take()], [a, b, a]);
 * ```
 */
export class Rotation {
  /** Backends in rotation order: survivors of an update keep their order, newcomers follow. */
  items: Backend[] = [];
  /** Index in {@linkcode Rotation.items} of the next backend to try. */
  cursor = 0;

  /**
   * Returns the next healthy backend at or after the cursor and moves the cursor past it.
   *
   * @param skip Backends to pass over like unhealthy ones.
   * @returns The backend, or `undefined` when none is healthy.
   */
  take(skip?: readonly Backend[]): Backend | undefined {
    const items = this.items;
    const n = items.length;
    let c = this.cursor;
    for (let i = 0; i < n; i++) {
      if (c >= n) c = 0;
      const b = items[c]!;
      if (b.healthy && !skipped(b, skip)) {
        this.cursor = c + 1 === n ? 0 : c + 1;
        return b;
      }
      c++;
    }
    return undefined;
  }

  /**
   * Replaces the set. Backends whose id remains keep their relative order and
   * the cursor keeps pointing at the same survivor; new ids join at the end.
   * The objects passed in replace the old ones with the same id.
   *
   * @param backends The new set; later duplicates of an id are ignored.
   */
  update(backends: readonly Backend[]): void {
    const byId = new Map<string, Backend>();
    for (const b of backends) if (!byId.has(b.id)) byId.set(b.id, b);
    const items: Backend[] = [];
    let cursor = 0;
    for (let i = 0; i < this.items.length; i++) {
      const id = this.items[i]!.id;
      const b = byId.get(id);
      if (b === undefined) continue;
      if (i < this.cursor) cursor++;
      items.push(b);
      byId.delete(id);
    }
    for (const b of byId.values()) items.push(b);
    this.items = items;
    this.cursor = cursor >= items.length ? 0 : cursor;
  }
}
