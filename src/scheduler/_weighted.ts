/**
 * State shared by the weighted schedulers (`srv`, `rfc2782`): priority groups
 * of {@linkcode Entry}s, the parked (unhealthy) entries, the weight-0 fallback,
 * and the bookkeeping that lets a re-lookup keep everyone's place.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import { createEntry, EdfGroup, type Entry, gcd, reweigh } from "./_edf.ts";
import { ParkedList } from "./_parked.ts";
import { Rotation } from "./_rotation.ts";
import { skipped } from "./_skip.ts";
import { uniqueBackends } from "./_validate.ts";

/**
 * Base class of the weighted schedulers. Subclasses call
 * {@linkcode WeightedScheduler.update} from their constructor and implement
 * {@linkcode WeightedScheduler.pick}.
 *
 * Unhealthy backends are noticed when their slot comes up and are then
 * "parked" (taken out of the heap, so their slots cost nothing). Each pick
 * re-checks one parked backend, in rotation, so a backend that is healthy again
 * rejoins within as many picks as there are parked backends, at its first slot
 * after the group's clock; `update()` re-checks all of them. Backends a pick
 * is told to skip are set aside for that pick only and then put back at the
 * slot they were due.
 */
export abstract class WeightedScheduler {
  /** Priority groups, ascending priority. */
  protected groups: EdfGroup[] = [];
  /** Every weight-0 backend that is not in a heap: the last-resort rotation. */
  protected readonly zeros: Rotation = new Rotation();
  #entries = new Map<string, Entry>();
  #backends: readonly Backend[] = [];
  readonly #parked = new ParkedList<Entry>((e) => {
    const group = e.group!;
    group.join(e, this.floorRound(group.index));
    if (group.size === 1) this.#liveDirty = true;
  });
  #nextRank = 0;
  #nextLive = new Int32Array(1);
  #liveDirty = true;
  /** What the pick in progress passes over (see {@linkcode WeightedScheduler.next}). */
  #skip: readonly Backend[] | undefined;
  /** Entries the pick in progress set aside, put back when it returns. */
  readonly #aside: Entry[] = [];

  /** Backends currently scheduled, in tie-break order (survivors first, then newcomers). */
  get backends(): readonly Backend[] {
    return this.#backends;
  }

  /**
   * Re-checks one parked backend, then picks as the mode does.
   *
   * @param skip Backends to pass over for this pick; each keeps the slot it was due.
   * @returns The next backend, or `undefined` when none is healthy.
   */
  next(skip?: readonly Backend[]): Backend | undefined {
    this.#parked.reviveOne();
    if (skip === undefined) return this.pick();
    this.#skip = skip;
    const b = this.pick();
    this.#skip = undefined;
    const aside = this.#aside;
    for (const e of aside) e.group!.putBack(e);
    if (aside.length > 0) this.#liveDirty = true;
    aside.length = 0;
    return b;
  }

  /** The backends the pick in progress passes over, for the weight-0 rotations. */
  protected get skip(): readonly Backend[] | undefined {
    return this.#skip;
  }

  /**
   * The mode's choice among the groups, once `next()` has re-checked a parked backend.
   *
   * @returns The next backend, or `undefined` when none is healthy.
   */
  protected abstract pick(): Backend | undefined;

  /**
   * The earliest round a backend joining group `index` may be served in.
   *
   * @param index The group's position in {@linkcode WeightedScheduler.groups}.
   */
  protected abstract floorRound(index: number): number;

  /**
   * Called by `update()` after {@linkcode WeightedScheduler.groups} changed and
   * before newcomers are placed, so a subclass can re-map its cursor.
   *
   * @param _previous The groups before the update.
   */
  protected regrouped(_previous: readonly EdfGroup[]): void {}

  /**
   * Replaces the set, keeping the place of every backend whose id remains.
   *
   * @param backends The new set; later duplicates of an id are ignored.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  update(backends: readonly Backend[]): void {
    const list = uniqueBackends(backends);
    const old = this.#entries;
    const entries = new Map<string, Entry>();
    const ordered: Entry[] = [];
    for (const b of list) {
      const entry = old.get(b.id) ?? createEntry(b, this.#nextRank++);
      entry.backend = b;
      entries.set(b.id, entry);
      ordered.push(entry);
    }
    ordered.sort((a, b) => a.rank - b.rank);

    const members = new Map<number, Entry[]>();
    for (const e of ordered) {
      const m = members.get(e.backend.priority);
      if (m === undefined) members.set(e.backend.priority, [e]);
      else m.push(e);
    }
    // Raw weights: a group whose members all have weight 0 counts each as 1.
    const raw = new Map<Entry, number>();
    let divisor = 0;
    for (const m of members.values()) {
      const allZero = m.every((e) => e.backend.weight === 0);
      for (const e of m) {
        const w = allZero ? 1 : e.backend.weight;
        raw.set(e, w);
        divisor = gcd(divisor, w);
      }
    }

    const previous = this.groups;
    const oldGroups = new Map(previous.map((g) => [g.priority, g]));
    const priorities = [...members.keys()].sort((a, b) => a - b);
    this.groups = priorities.map((p, index) => {
      const g = oldGroups.get(p) ?? new EdfGroup(p);
      g.index = index;
      return g;
    });
    this.regrouped(previous);

    const parked: Entry[] = [];
    const zeros: Backend[] = [];
    for (const group of this.groups) {
      const heap: Entry[] = [];
      const joining: Entry[] = [];
      const groupZeros: Backend[] = [];
      for (const e of members.get(group.priority)!) {
        const weight = raw.get(e)! / divisor;
        if (weight === 0) {
          e.state = "zero";
          e.group = group;
          e.weight = 0;
          groupZeros.push(e.backend);
          continue;
        }
        if (e.group !== group || e.state === "zero") {
          e.weight = weight;
          joining.push(e);
          continue;
        }
        reweigh(e, weight);
        if (e.state === "heap") heap.push(e);
        else if (e.backend.healthy) joining.push(e);
        else parked.push(e);
      }
      group.reset(heap);
      for (const e of joining) group.join(e, this.floorRound(group.index));
      group.zeros.update(groupZeros);
      zeros.push(...groupZeros);
    }
    this.zeros.update(zeros);
    this.#parked.reset(parked);
    this.#entries = entries;
    this.#backends = ordered.map((e) => e.backend);
    this.#liveDirty = true;
  }

  /**
   * Finds the next group that has a backend in its heap.
   *
   * @param index A group position.
   * @returns The first position at or after `index` whose heap is not empty, or `groups.length`.
   */
  protected liveFrom(index: number): number {
    if (this.#liveDirty) this.#rebuildLive();
    return this.#nextLive[index] ?? this.groups.length;
  }

  /** Moves the unhealthy top entry of `group` to the parked list. */
  protected park(group: EdfGroup): void {
    const e = group.popTop();
    if (e === undefined) return;
    e.state = "parked";
    this.#parked.push(e);
    if (group.size === 0) this.#liveDirty = true;
  }

  /**
   * Serves the top entry of `group` when its backend is healthy (advancing it
   * to its next slot), parks it when it is not, and sets it aside when the pick
   * in progress skips it.
   *
   * @param group A group whose heap is not empty.
   * @returns The backend served, or `undefined` when the top entry was parked or set aside.
   */
  protected serveTop(group: EdfGroup): Backend | undefined {
    const top = group.peek()!;
    if (!top.backend.healthy) {
      this.park(group);
      return undefined;
    }
    if (skipped(top.backend, this.#skip)) {
      this.#aside.push(group.popTop()!);
      if (group.size === 0) this.#liveDirty = true;
      return undefined;
    }
    group.advanceTop();
    return top.backend;
  }

  /**
   * Re-checks every parked entry (O(n); used only when nothing else can serve).
   *
   * @returns Whether any entry was put back.
   */
  protected reviveAll(): boolean {
    return this.#parked.reviveAll();
  }

  #rebuildLive(): void {
    const groups = this.groups;
    const n = groups.length;
    if (this.#nextLive.length !== n + 1) this.#nextLive = new Int32Array(n + 1);
    const live = this.#nextLive;
    live[n] = n;
    for (let i = n - 1; i >= 0; i--) live[i] = groups[i]!.size > 0 ? i : live[i + 1]!;
    this.#liveDirty = false;
  }
}
