/**
 * Unhealthy entries taken out of a scheduler's heap ("parked"), re-checked one
 * per pick in rotation, so a backend that is healthy again rejoins within as many
 * picks as there are parked entries. Shared by the weighted modes and least_conn.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";

/**
 * The parked entries of one scheduler.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { ParkedList } from "./_parked.ts";
 * import { createBackend } from "../upstream/backend.ts";
 * import { markDown, markUp } from "../upstream/backend_state.ts";
 * const back: string[] = [];
 * const parked = new ParkedList<{ backend: ReturnType<typeof createBackend> }>((e) =>
 *   back.push(e.backend.id)
 * );
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * markDown(b);
 * parked.push({ backend: b });
 * parked.reviveOne(); // still unhealthy: stays
 * markUp(b);
 * parked.reviveOne();
 * assert(back[0] === "127.0.0.1:9001" && parked.length === 0);
 * ```
 */
export class ParkedList<E extends { backend: Backend }> {
  #items: E[] = [];
  #cursor = 0;
  readonly #rejoin: (e: E) => void;

  /** `rejoin` puts an entry whose backend is healthy again back into the heap. */
  constructor(rejoin: (e: E) => void) {
    this.#rejoin = rejoin;
  }

  /** Entries parked now. */
  get length(): number {
    return this.#items.length;
  }

  /** Parks `e`. */
  push(e: E): void {
    this.#items.push(e);
  }

  /** Replaces the whole list (after an update). */
  reset(items: E[]): void {
    this.#items = items;
    this.#cursor = 0;
  }

  /**
   * Re-checks one entry, in rotation, and puts it back if it is healthy. The
   * cursor stays on a revived entry's slot, which the last entry moved into, so
   * every entry is checked within one pass of the list.
   */
  reviveOne(): void {
    const items = this.#items;
    if (items.length === 0) return;
    if (this.#cursor >= items.length) this.#cursor = 0;
    const i = this.#cursor;
    if (items[i]!.backend.healthy) this.#revive(i);
    else this.#cursor = i + 1;
  }

  /**
   * Re-checks every entry (O(n); for when nothing else can serve).
   *
   * @returns Whether any entry was put back.
   */
  reviveAll(): boolean {
    const items = this.#items;
    let revived = false;
    for (let i = items.length - 1; i >= 0; i--) {
      if (items[i]!.backend.healthy) {
        this.#revive(i);
        revived = true;
      }
    }
    return revived;
  }

  #revive(i: number): void {
    const items = this.#items;
    const e = items[i]!;
    const last = items.pop()!;
    if (last !== e) items[i] = last;
    this.#rejoin(e);
  }
}
