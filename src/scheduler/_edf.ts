/**
 * Earliest-deadline-first interleaving of weighted backends: the engine under
 * the `srv` and `rfc2782` schedulers.
 *
 * A backend of (reduced) weight `w` owns `w` slots per round; its k-th slot
 * (0-based) is due at `(2k + 1) / (2w)` of the round, the midpoint of its k-th
 * stretch. A binary heap ordered by (round, deadline, rank) serves slots in
 * deadline order, ties to the lower rank, so a pick is O(log n) and allocates
 * nothing, and a round never has to be laid out in memory.
 *
 * For two backends this is exactly nginx's smooth weighted round-robin
 * (30:20 → `b1 b2 b1 b2 b1`, 5:1 → `b1 b1 b1 b2 b1 b1`). With three or more
 * it sometimes places a pick differently: a:b:c = 5:2:6 gives
 * `c a b c a c a c a b c a c` where nginx gives `c a b c a c a c a c b a c`.
 * Per-round counts are the same and both are smooth: on random sets of up to 7
 * backends no prefix of a round strays 2 or more picks from a backend's ideal
 * share (1.5 is the worst seen; nginx's is about 1.05).
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import { Rotation } from "./_rotation.ts";

/** Where an {@linkcode Entry} currently lives. */
export type EntryState = "heap" | "parked" | "zero";

/** One backend's place in a weighted rotation. */
export interface Entry {
  /** The backend object last passed in for this id. */
  backend: Backend;
  /** Tie-break order, lower first; kept for life so a re-lookup cannot reorder. */
  readonly rank: number;
  /** Weight reduced by the set's gcd; 0 while in a group's weight-0 fallback. */
  weight: number;
  /** Round of the next slot. */
  round: number;
  /** Slots already served in `round`. */
  k: number;
  /** `(2k + 1) / (2 * weight)`: when the next slot is due within `round`. */
  deadline: number;
  /** In a group's heap, parked while unhealthy, or weight 0 (not scheduled by the heap). */
  state: EntryState;
  /** The priority group; `undefined` until first placed. */
  group: EdfGroup | undefined;
}

/**
 * Creates an unplaced entry.
 *
 * @param backend The backend.
 * @param rank Its tie-break order.
 * @returns The entry, to be placed with {@linkcode EdfGroup.join} or {@linkcode EdfGroup.reset}.
 */
export function createEntry(backend: Backend, rank: number): Entry {
  return { backend, rank, weight: 0, round: 0, k: 0, deadline: 0, state: "heap", group: undefined };
}

/**
 * Changes an entry's weight keeping the fraction of its round already served.
 *
 * @param e The entry.
 * @param weight The new reduced weight, at least 1.
 */
export function reweigh(e: Entry, weight: number): void {
  if (e.weight === weight) return;
  let k = e.weight > 0 ? Math.floor((e.k * weight) / e.weight) : 0;
  if (k >= weight) {
    k = 0;
    e.round++;
  }
  e.k = k;
  e.weight = weight;
  e.deadline = (2 * k + 1) / (2 * weight);
}

/** Greatest common divisor of two non-negative integers. */
export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function before(a: Entry, b: Entry): boolean {
  if (a.round !== b.round) return a.round < b.round;
  if (a.deadline !== b.deadline) return a.deadline < b.deadline;
  return a.rank < b.rank;
}

/**
 * The backends of one priority: a heap of weighted entries by next deadline,
 * plus the weight-0 members that only serve as a fallback.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { createEntry, EdfGroup } from "./_edf.ts";
 *
 * const g = new EdfGroup(0);
 * const b1 = createEntry(createBackend({ hostname: "b1", port: 1 }), 0);
 * const b2 = createEntry(createBackend({ hostname: "b2", port: 1 }), 1);
 * b1.weight = 3;
 * b2.weight = 2;
 * g.join(b1, 0);
 * g.join(b2, 0);
 * const order = [];
 * for (let i = 0; i < 5; i++) {
 *   order.push(g.peek()!.backend.hostname);
 *   g.advanceTop();
 * }
 * assertEquals(order.join(" "), "b1 b2 b1 b2 b1");
 * ```
 */
export class EdfGroup {
  /** SRV priority shared by the members. */
  readonly priority: number;
  /** Position among the scheduler's groups (ascending priority). */
  index = 0;
  /** Round of the slot served last: the group's clock. */
  round = 0;
  /** Deadline of the slot served last (0 before the first). */
  deadline = 0;
  /** Weight-0 members of a group that also has weighted ones. */
  readonly zeros: Rotation = new Rotation();
  #heap: Entry[] = [];

  /**
   * Creates an empty group.
   *
   * @param priority The SRV priority of the members.
   */
  constructor(priority: number) {
    this.priority = priority;
  }

  /** Number of entries in the heap. */
  get size(): number {
    return this.#heap.length;
  }

  /**
   * Looks at the entry served next without changing anything.
   *
   * @returns The entry whose slot is due first, or `undefined` when the heap is empty.
   */
  peek(): Entry | undefined {
    return this.#heap[0];
  }

  /** Serves the top entry's slot (advancing the clock) and moves it to its next slot. */
  advanceTop(): void {
    const e = this.#heap[0];
    if (e === undefined) return;
    this.round = e.round;
    this.deadline = e.deadline;
    if (++e.k >= e.weight) {
      e.k = 0;
      e.round++;
    }
    e.deadline = (2 * e.k + 1) / (2 * e.weight);
    this.#down(0);
  }

  /**
   * Removes the top entry from the heap without serving its slot.
   *
   * @returns The top entry, removed from the heap (its position is kept).
   */
  popTop(): Entry | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top !== undefined && last !== undefined && top !== last) {
      heap[0] = last;
      this.#down(0);
    }
    return top;
  }

  /**
   * Returns an entry taken out with {@linkcode EdfGroup.popTop} to the heap,
   * due at the same slot as before.
   *
   * @param e The entry.
   */
  putBack(e: Entry): void {
    const heap = this.#heap;
    heap.push(e);
    this.#up(heap.length - 1);
  }

  /**
   * Adds an entry at its first slot after the group's clock, and no earlier than
   * the start of round `floorRound`: the slots it missed are skipped.
   *
   * @param e The entry; its `weight` must be at least 1.
   * @param floorRound The earliest round it may be served in.
   */
  join(e: Entry, floorRound: number): void {
    let round = this.round;
    let time = this.deadline;
    if (round < floorRound) {
      round = floorRound;
      time = 0;
    }
    let k = Math.floor(time * e.weight + 0.5);
    if (k >= e.weight) {
      k = 0;
      round++;
    }
    e.round = round;
    e.k = k;
    e.deadline = (2 * k + 1) / (2 * e.weight);
    e.state = "heap";
    e.group = this;
    this.putBack(e);
  }

  /**
   * Replaces the heap with already-placed entries (heapify, O(n)).
   *
   * @param entries The entries; the array is taken over.
   */
  reset(entries: Entry[]): void {
    this.#heap = entries;
    for (let i = (entries.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const e = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (!before(e, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = e;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const e = heap[i]!;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      let c = heap[child]!;
      const right = child + 1;
      if (right < n && before(heap[right]!, c)) {
        child = right;
        c = heap[right]!;
      }
      if (!before(c, e)) break;
      heap[i] = c;
      i = child;
    }
    heap[i] = e;
  }
}
