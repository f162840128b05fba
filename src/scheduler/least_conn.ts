/**
 * The `least_conn` scheduler.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { Scheduler } from "./scheduler.ts";
import { createLoadEntry, type LoadEntry, LoadHeap } from "./_load_heap.ts";
import { ParkedList } from "./_parked.ts";
import { skipped } from "./_skip.ts";
import { uniqueBackends } from "./_validate.ts";

/**
 * The healthy backend with the fewest requests in flight (`backend.inflight`,
 * which the proxy maintains), ignoring weight and priority. Ties go to the
 * backend picked least recently, so equal loads take turns (in list order at
 * first; a newcomer from `update()` counts as picked just before it joined).
 *
 * Cost: a pick is O(log n) and allocates nothing. The backends sit in a binary
 * min-heap by (load, last pick) (`_load_heap.ts`);
 * {@linkcode LeastConnScheduler.loadChanged}, which the proxy calls after each
 * change of `inflight`, moves one backend in O(log n). `update()` is O(n).
 *
 * Unhealthy backends are noticed when they come to the top and are then
 * "parked" outside the heap. Each pick re-checks one parked backend, in
 * rotation, so a backend that is healthy again rejoins within as many picks as
 * there are parked backends (counting any parked meanwhile), at its current load
 * and with its old place in the tie order; when the heap runs empty every parked
 * backend is re-checked (O(n), only while nearly everything is down), and
 * `update()` re-checks them all.
 *
 * Loads changed without {@linkcode LeastConnScheduler.loadChanged} (a backend
 * object shared with another route's scheduler after a reload, or `inflight`
 * set directly) leave the heap with stale keys, which are repaired three ways: the top is re-read
 * before it is served (re-placed if its key was stale, then the new top is
 * looked at, at most once per backend per pick); each pick re-reads one more
 * backend, in rotation, so every key is re-read at least once every n picks;
 * `update()` re-reads them all. The guarantee: the backend returned is healthy,
 * its current `inflight` is at most the recorded load of every other backend
 * in the heap, and among equals it was picked least recently. When every load
 * change is reported (a route whose backends no other route uses), recorded
 * loads are current loads and the pick is exactly the least loaded healthy
 * backend in the heap. Otherwise a backend whose load rose unreported is never
 * preferred on its stale key, and one whose load fell unreported can be passed
 * over until its key is re-read: for at most n picks.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { LeastConnScheduler } from "./least_conn.ts";
 *
 * const b1 = createBackend({ hostname: "b1", port: 80 });
 * const b2 = createBackend({ hostname: "b2", port: 80 });
 * const s = new LeastConnScheduler([b1, b2]);
 * const b = s.next()!; // b1: equal loads, neither picked yet, b1 listed first
 * b.inflight++; // as the proxy does when the request starts
 * s.loadChanged(b);
 * assertEquals([s.next(), s.next()], [b2, b2]);
 * ```
 */
export class LeastConnScheduler implements Scheduler {
  /** Always `"least_conn"`. */
  readonly mode = "least_conn" as const;
  #heap = new LoadHeap();
  /** Every entry, in `backends` order: survivors of an update first, then newcomers. */
  #entries: LoadEntry[] = [];
  #byId = new Map<string, LoadEntry>();
  #backends: readonly Backend[] = [];
  readonly #parked = new ParkedList<LoadEntry>((e) => {
    e.key = e.backend.inflight;
    this.#heap.push(e);
  });
  #refreshCursor = 0;
  #seq = 0;
  /** Entries the pick in progress skipped, put back when it returns. */
  readonly #aside: LoadEntry[] = [];

  /**
   * Creates a scheduler over `backends`.
   *
   * @param backends The initial set.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  constructor(backends: readonly Backend[]) {
    this.update(backends);
  }

  /** Backends currently scheduled: survivors of each update in their order, then newcomers. */
  get backends(): readonly Backend[] {
    return this.#backends;
  }

  /**
   * Picks the healthy backend with the fewest requests in flight, the least recently picked on ties.
   *
   * @param skip Backends to pass over for this pick; each keeps its place in the order.
   * @returns The least loaded healthy backend, or `undefined` when none is healthy.
   */
  next(skip?: readonly Backend[]): Backend | undefined {
    this.#parked.reviveOne();
    this.#refreshOne();
    if (skip === undefined) return this.#pick(undefined);
    const b = this.#pick(skip);
    for (const e of this.#aside) this.#heap.push(e);
    this.#aside.length = 0;
    return b;
  }

  #pick(skip: readonly Backend[] | undefined): Backend | undefined {
    const heap = this.#heap;
    let refreshes = this.#entries.length; // each entry needs at most one: bounds the loop
    let revived = false;
    for (;;) {
      const top = heap.peek();
      if (top === undefined) {
        if (revived || !this.#parked.reviveAll()) return undefined;
        revived = true;
        continue;
      }
      const b = top.backend;
      if (!b.healthy) {
        this.#parked.push(heap.popTop()!);
        continue;
      }
      if (skipped(b, skip)) {
        this.#aside.push(heap.popTop()!);
        continue;
      }
      if (b.inflight !== top.key && refreshes-- > 0) {
        top.key = b.inflight;
        heap.fix(top);
        continue;
      }
      top.seq = ++this.#seq;
      heap.fix(top);
      return b;
    }
  }

  /**
   * Re-reads a backend's `inflight` and moves it in the order, O(log n). Does
   * nothing for a backend that is not scheduled or is parked (its load is read
   * again when it rejoins).
   *
   * @param backend A backend whose `inflight` just changed.
   */
  loadChanged(backend: Backend): void {
    const e = this.#byId.get(backend.id);
    if (e !== undefined) this.#reread(e);
  }

  /**
   * Replaces the set. Backends whose id remains keep their place in the tie
   * order (and their order in `backends`); newcomers join after them. Every
   * load and health is read again.
   *
   * @param backends The new set; later duplicates of an id are ignored.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  update(backends: readonly Backend[]): void {
    const given = new Map<string, Backend>();
    for (const b of uniqueBackends(backends)) given.set(b.id, b);
    const entries: LoadEntry[] = [];
    for (const e of this.#entries) {
      const b = given.get(e.backend.id);
      if (b === undefined) continue;
      given.delete(b.id);
      e.backend = b;
      entries.push(e);
    }
    for (const b of given.values()) entries.push(createLoadEntry(b, ++this.#seq));

    const live: LoadEntry[] = [];
    const parked: LoadEntry[] = [];
    for (const e of entries) {
      e.key = e.backend.inflight;
      e.pos = -1;
      if (e.backend.healthy) live.push(e);
      else parked.push(e);
    }
    this.#heap.reset(live);
    this.#parked.reset(parked);
    this.#refreshCursor = 0;
    this.#entries = entries;
    this.#byId = new Map(entries.map((e) => [e.backend.id, e]));
    this.#backends = entries.map((e) => e.backend);
  }

  /** Re-reads the load of one entry, in rotation, and re-places it if it was stale. */
  #refreshOne(): void {
    const entries = this.#entries;
    if (entries.length === 0) return;
    if (this.#refreshCursor >= entries.length) this.#refreshCursor = 0;
    this.#reread(entries[this.#refreshCursor++]!);
  }

  // Re-reads the load of a heaped entry and re-places it when it changed (a parked
  // entry's load is read again when it rejoins).
  #reread(e: LoadEntry): void {
    if (e.pos < 0 || e.backend.inflight === e.key) return;
    e.key = e.backend.inflight;
    this.#heap.fix(e);
  }
}
