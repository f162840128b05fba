/**
 * An indexed binary min-heap of backends by load: the engine under the
 * `least_conn` scheduler.
 *
 * Entries are ordered by (`key`, `seq`): the load recorded for the backend, then
 * the sequence number of its last pick (least recently picked first). Every
 * entry knows its own slot (`pos`), so one whose key or sequence changed is
 * moved in O(log n) without a search. Nothing is allocated after the heap has
 * grown to its size.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";

/** One backend's place in a {@linkcode LoadHeap}. */
export interface LoadEntry {
  /** The backend object last passed in for this id. */
  backend: Backend;
  /** `backend.inflight` as last read: the heap's order, which the caller keeps current. */
  key: number;
  /** When it was last picked (higher is later); unique, so the order is total. */
  seq: number;
  /** Its index in the heap, or -1 while it is not in the heap. */
  pos: number;
}

/**
 * Creates an entry that is not in a heap yet.
 *
 * @param backend The backend.
 * @param seq Its tie-break sequence number.
 * @returns The entry, keyed by the backend's current `inflight`.
 */
export function createLoadEntry(backend: Backend, seq: number): LoadEntry {
  return { backend, key: backend.inflight, seq, pos: -1 };
}

function before(a: LoadEntry, b: LoadEntry): boolean {
  return a.key < b.key || (a.key === b.key && a.seq < b.seq);
}

/**
 * A min-heap of {@linkcode LoadEntry} by (key, seq).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { createLoadEntry, LoadHeap } from "./_load_heap.ts";
 *
 * const a = createLoadEntry(createBackend({ hostname: "a", port: 1 }), 0);
 * const b = createLoadEntry(createBackend({ hostname: "b", port: 1 }), 1);
 * const heap = new LoadHeap();
 * heap.reset([a, b]);
 * assertEquals(heap.peek(), a);
 * a.key = 2;
 * heap.fix(a);
 * assertEquals(heap.peek(), b);
 * ```
 */
export class LoadHeap {
  #heap: LoadEntry[] = [];

  /**
   * Looks at the least loaded entry without removing it.
   *
   * @returns The entry with the lowest (key, seq), or `undefined` when the heap is empty.
   */
  peek(): LoadEntry | undefined {
    return this.#heap[0];
  }

  /**
   * Replaces the content (heapify, O(n)).
   *
   * @param entries The entries; the array is taken over.
   */
  reset(entries: LoadEntry[]): void {
    this.#heap = entries;
    for (let i = 0; i < entries.length; i++) entries[i]!.pos = i;
    for (let i = (entries.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  /**
   * Adds an entry that is not in the heap.
   *
   * @param e The entry.
   */
  push(e: LoadEntry): void {
    const heap = this.#heap;
    e.pos = heap.length;
    heap.push(e);
    this.#up(e.pos);
  }

  /**
   * Removes the least loaded entry.
   *
   * @returns The top entry, removed from the heap (its `pos` set to -1).
   */
  popTop(): LoadEntry | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined) return undefined;
    top.pos = -1;
    if (top !== last) {
      heap[0] = last;
      last.pos = 0;
      this.#down(0);
    }
    return top;
  }

  /**
   * Restores the order after an entry's key or seq changed, O(log n).
   *
   * @param e An entry in the heap.
   */
  fix(e: LoadEntry): void {
    const i = e.pos;
    if (i > 0 && before(e, this.#heap[(i - 1) >> 1]!)) this.#up(i);
    else this.#down(i);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const e = heap[i]!;
    const key = e.key;
    const seq = e.seq;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.key < key || (p.key === key && p.seq < seq)) break;
      heap[i] = p;
      p.pos = i;
      i = parent;
    }
    heap[i] = e;
    e.pos = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const e = heap[i]!;
    const key = e.key;
    const seq = e.seq;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      let c = heap[child]!;
      const right = child + 1;
      if (right < n) {
        const r = heap[right]!;
        if (r.key < c.key || (r.key === c.key && r.seq < c.seq)) {
          child = right;
          c = r;
        }
      }
      if (c.key > key || (c.key === key && c.seq > seq)) break;
      heap[i] = c;
      c.pos = i;
      i = child;
    }
    heap[i] = e;
    e.pos = i;
  }
}
