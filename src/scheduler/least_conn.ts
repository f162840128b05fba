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
import { unwatchBackend, watchBackend } from "../upstream/backend_state.ts";

/**
 * The healthy backend with the fewest requests in flight (`backend.inflight`),
 * ignoring weight and priority. Ties go to the backend picked least recently,
 * so equal loads take turns (in list order at first; a newcomer from `update()`
 * counts as picked just before it joined).
 *
 * Cost: a pick is O(log n) and allocates nothing. The backends sit in a binary
 * min-heap by (load, last pick) (`_load_heap.ts`). The scheduler watches its
 * backends (`upstream/backend_state.ts`): every change of a load, from any
 * route sharing the backend record, reaches
 * {@linkcode LeastConnScheduler.loadChanged}, which moves that backend in
 * O(log n), so the heap's keys are always the current loads. `update()` is O(n).
 *
 * Unhealthy backends are noticed when they come to the top and are then
 * "parked" outside the heap. Each pick re-checks one parked backend, in
 * rotation, so a backend that is healthy again rejoins within as many picks as
 * there are parked backends (counting any parked meanwhile), at its current load
 * and with its old place in the tie order; when the heap runs empty every parked
 * backend is re-checked (O(n), only while nearly everything is down), and
 * `update()` re-checks them all.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { beginRequest } from "../upstream/backend_state.ts";
 * import { LeastConnScheduler } from "./least_conn.ts";
 *
 * const b1 = createBackend({ hostname: "b1", port: 80 });
 * const b2 = createBackend({ hostname: "b2", port: 80 });
 * const s = new LeastConnScheduler([b1, b2]);
 * const b = s.next()!; // b1: equal loads, neither picked yet, b1 listed first
 * beginRequest(b); // as the proxy does when the request starts: the scheduler is told
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
    if (skip === undefined) return this.#pick(undefined);
    const b = this.#pick(skip);
    for (const e of this.#aside) this.#heap.push(e);
    this.#aside.length = 0;
    return b;
  }

  #pick(skip: readonly Backend[] | undefined): Backend | undefined {
    const heap = this.#heap;
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
      top.seq = ++this.#seq;
      heap.fix(top);
      return b;
    }
  }

  /**
   * Moves a backend to its new place in the order, O(log n); called by
   * `backend_state.ts` for every change of the load of a backend it watches.
   * Does nothing for a parked backend (its load is read again when it rejoins).
   *
   * @param backend A backend whose `inflight` just changed.
   */
  loadChanged(backend: Backend): void {
    const e = this.#byId.get(backend.id);
    if (e === undefined || e.backend !== backend || e.pos < 0 || e.key === backend.inflight) return;
    e.key = backend.inflight;
    this.#heap.fix(e);
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
      if (b !== e.backend) unwatchBackend(e.backend, this); // gone, or another record now
      if (b === undefined) continue;
      given.delete(b.id);
      e.backend = b;
      entries.push(e);
    }
    for (const b of given.values()) entries.push(createLoadEntry(b, ++this.#seq));
    for (const e of entries) watchBackend(e.backend, this);

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
    this.#entries = entries;
    this.#byId = new Map(entries.map((e) => [e.backend.id, e]));
    this.#backends = entries.map((e) => e.backend);
  }
}
