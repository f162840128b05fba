/**
 * The `hash` scheduler: consistent hashing on a request key (client IP, a
 * header, a cookie) with a Maglev lookup table, so that every instance with
 * the same backend set sends a key to the same backend.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { Scheduler } from "./scheduler.ts";
import { hash32 } from "./_hash.ts";
import { skipped } from "./_skip.ts";
import { Rfc2782Scheduler } from "./rfc2782.ts";

/** Slots in every Maglev table: a prime, the same on every instance. */
export const HASH_TABLE_SIZE = 65537;

const OFFSET_SEED = 0x2545f491;
const STEP_SEED = 0x6c8e9cf5;
const KEY_SEED = 0x1b56c4e9;

/** One priority group: its Maglev table, and a second one for its weight-0 members. */
interface Group {
  readonly priority: number;
  /** Weighted members (every member when all have weight 0), sorted by id. */
  readonly members: readonly Backend[];
  /** Slot → index in `members`. */
  table: Uint16Array | Uint32Array;
  /** Weight-0 members next to weighted ones (used when no weighted one can serve). */
  readonly zeros: readonly Backend[];
  zeroTable: Uint16Array | Uint32Array | undefined;
}

/**
 * The Maglev slot (0..{@linkcode HASH_TABLE_SIZE} − 1) a request key lands on;
 * the same on every instance.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { HASH_TABLE_SIZE, keySlot } from "./hash.ts";
 * const slot = keySlot("alice");
 * assert(slot === keySlot("alice") && slot >= 0 && slot < HASH_TABLE_SIZE);
 * ```
 *
 * @param key The request's key.
 * @returns The slot the lookup starts at.
 */
export function keySlot(key: string): number {
  return hash32(key, KEY_SEED) % HASH_TABLE_SIZE;
}

/**
 * Consistent hashing with Maglev (Eisenbud et al., NSDI 2016): each priority
 * group has a lookup table of {@linkcode HASH_TABLE_SIZE} slots, filled by its
 * members (sorted by id, so the order the set arrives in does not matter) each
 * walking its own permutation of the slots, derived from two hashes of its id.
 * Members claim slots in proportion to their weight, so a key lands on a member
 * with probability weight / group weight. A weight-0 member gets no slot unless
 * its whole group has weight 0 (each then counts as 1); such members have a
 * table of their own, used while none of the group's weighted members can serve.
 *
 * `next(skip, key)` looks the key's slot up in the lowest priority group that
 * has a healthy backend not in `skip` (as `rfc2782` does), and walks forward
 * from that slot to the first slot whose backend is healthy and not skipped:
 * tables are not rebuilt when health changes, so every instance sends a key
 * whose backend is down to the same next backend, and the key comes back when
 * its backend does. `update()` rebuilds the tables only when an id, weight or
 * priority changed; a member that leaves moves its own keys and, Maglev being
 * near-minimal, a small fraction of the others'.
 *
 * Without a key (`next(skip)`), picks follow the `rfc2782` mode's weighted
 * order over the same set.
 *
 * A keyed pick hashes the key (O(key length)), checks groups until one has a
 * member that can serve (usually the first member of the first group), and walks
 * one slot per unusable backend met. Building a table is O(M log n) for M
 * slots and n members, plus Maglev's O(M log M) probing; it takes 128 KiB
 * (256 KiB past 65535 members) per group.
 *
 * @example
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { markDown, markUp } from "../upstream/backend_state.ts";
 * import { HashScheduler } from "./hash.ts";
 *
 * const list = ["b1", "b2", "b3"].map((hostname) => createBackend({ hostname, port: 80 }));
 * const a = new HashScheduler(list);
 * const b = new HashScheduler([list[2]!, list[0]!, list[1]!]);
 * const alice = a.next(undefined, "alice")!;
 * assertEquals(b.next(undefined, "alice"), alice); // the same everywhere
 * markDown(alice);
 * const moved = a.next(undefined, "alice");
 * assert(moved !== undefined && moved !== alice);
 * assertEquals(b.next(undefined, "alice"), moved); // and the same next one
 * markUp(alice);
 * assertEquals(a.next(undefined, "alice"), alice);
 * ```
 */
export class HashScheduler implements Scheduler {
  /** Always `"hash"`. */
  readonly mode = "hash" as const;
  readonly #fallback: Rfc2782Scheduler;
  #groups: Group[] = [];
  #signature = "";

  /**
   * Creates a scheduler over `backends`.
   *
   * @param backends The initial set.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  constructor(backends: readonly Backend[]) {
    this.#fallback = new Rfc2782Scheduler(backends);
    this.#build();
  }

  /** Backends currently scheduled, in the keyless order's tie-break order. */
  get backends(): readonly Backend[] {
    return this.#fallback.backends;
  }

  /**
   * Replaces the set. The tables are rebuilt only when an id, a weight or a
   * priority changed; otherwise the new objects just take the old ones' slots.
   *
   * @param backends The new set; later duplicates of an id are ignored.
   * @throws {RangeError} If a weight or priority is not an integer 0..65535.
   */
  update(backends: readonly Backend[]): void {
    this.#fallback.update(backends);
    this.#build();
  }

  /**
   * The backend for `key`, or the next in weighted order when there is no key.
   *
   * @param skip Backends to pass over for this pick (a retry): the walk goes on
   * past their slots as past unhealthy ones.
   * @param key The request's hash key; `undefined` when the request has none.
   * @returns The backend, or `undefined` when none is healthy (and not skipped).
   */
  next(skip?: readonly Backend[], key?: string): Backend | undefined {
    if (key === undefined) return this.#fallback.next(skip);
    const slot = keySlot(key);
    for (const g of this.#groups) {
      if (canServe(g.members, skip)) return walk(g.table, g.members, slot, skip);
      if (g.zeroTable !== undefined && canServe(g.zeros, skip)) {
        return walk(g.zeroTable, g.zeros, slot, skip);
      }
    }
    return undefined;
  }

  #build(): void {
    const list = [...this.#fallback.backends].sort((
      a,
      b,
    ) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const signature = list.map((b) => `${b.id} ${b.priority} ${b.weight}`).join("\n");
    const byPriority = new Map<number, Backend[]>();
    for (const b of list) {
      const group = byPriority.get(b.priority);
      if (group === undefined) byPriority.set(b.priority, [b]);
      else group.push(b);
    }
    const same = signature === this.#signature;
    const old = this.#groups;
    this.#groups = [...byPriority.keys()].sort((a, b) => a - b).map((priority, i): Group => {
      const all = byPriority.get(priority)!;
      const weighted = all.filter((b) => b.weight > 0);
      const members = weighted.length === 0 ? all : weighted;
      const zeros = weighted.length === 0 ? [] : all.filter((b) => b.weight === 0);
      const kept = same ? old[i] : undefined;
      return {
        priority,
        members,
        zeros,
        table: kept?.table ?? maglevTable(members, { weighted: weighted.length > 0 }),
        zeroTable: kept?.zeroTable ??
          (zeros.length > 0 ? maglevTable(zeros, { weighted: false }) : undefined),
      };
    });
    this.#signature = signature;
  }
}

/** Options for {@linkcode maglevTable}. */
interface TableOptions {
  /** Claim slots by weight (false: every member counts as 1). */
  weighted: boolean;
}

/**
 * Fills a Maglev lookup table: each member has a permutation of the slots
 * (start and step from two hashes of its id; the size being prime, any step
 * visits every slot), and members take turns claiming their next free slot.
 * Turns go by weight: member i claims its k-th slot at "time" k / weight(i),
 * earliest first, ties to the lower index, so claims are interleaved smoothly
 * and shares follow the weights (the paper's round-robin for equal weights).
 */
function maglevTable(
  members: readonly Backend[],
  options: TableOptions,
): Uint16Array | Uint32Array {
  const m = HASH_TABLE_SIZE;
  const n = members.length;
  const slots = new Int32Array(m).fill(-1);
  const pos = new Int32Array(n);
  const step = new Int32Array(n);
  const weight = new Int32Array(n);
  const claims = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const b = members[i]!;
    pos[i] = hash32(b.id, OFFSET_SEED) % m;
    step[i] = (hash32(b.id, STEP_SEED) % (m - 1)) + 1;
    weight[i] = options.weighted ? b.weight : 1;
  }
  // a binary min-heap of member indices, ordered by the time of their next claim
  const heap = new Int32Array(n);
  for (let i = 0; i < n; i++) heap[i] = i;
  // (claims[a] + 1) / weight[a] < (claims[b] + 1) / weight[b], exactly (products < 2^53)
  const before = (a: number, b: number) => {
    const x = (claims[a]! + 1) * weight[b]!;
    const y = (claims[b]! + 1) * weight[a]!;
    return x < y || (x === y && a < b);
  };
  const siftDown = (at: number) => {
    const item = heap[at]!;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap[child + 1]!, heap[child]!)) child++;
      if (!before(heap[child]!, item)) break;
      heap[at] = heap[child]!;
      at = child;
    }
    heap[at] = item;
  };
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let filled = 0; filled < m && n > 0; filled++) {
    const i = heap[0]!;
    let c = pos[i]!;
    const s = step[i]!;
    while (slots[c] !== -1) {
      c += s;
      if (c >= m) c -= m;
    }
    slots[c] = i;
    c += s;
    pos[i] = c >= m ? c - m : c;
    claims[i]!++;
    siftDown(0);
  }
  return n <= 0xffff ? new Uint16Array(slots) : new Uint32Array(slots);
}

function canServe(members: readonly Backend[], skip: readonly Backend[] | undefined): boolean {
  for (const b of members) if (b.healthy && !skipped(b, skip)) return true;
  return false;
}

// The first backend from `slot` on that is healthy and not skipped (the caller
// checked that there is one).
function walk(
  table: Uint16Array | Uint32Array,
  members: readonly Backend[],
  slot: number,
  skip: readonly Backend[] | undefined,
): Backend | undefined {
  const m = table.length;
  for (let s = slot, left = m; left > 0; left--) {
    const b = members[table[s]!]!;
    if (b.healthy && !skipped(b, skip)) return b;
    if (++s === m) s = 0;
  }
  return undefined;
}
