/**
 * The shared pool of body buffers: a body relay reads with a buffer that starts at
 * 16 KiB and grows (64 KiB, then 256 KiB) while reads come back full, and gives it
 * back when the body ends. Buffers above the first size are lent only within a
 * byte budget shared by every relay of the process: past it, relays keep reading
 * with the buffer they have.
 *
 * Measured on `Deno.Conn` (bench/write_ops.ts): each read and write op has a fixed
 * cost, and a plain TCP write of 256 KiB completes in one op, so fewer, larger ops
 * move bulk bodies faster. A TLS read returns one 16 KiB record, so a relay reading
 * from TLS never finds its buffer full and stays at 16 KiB.
 *
 * @module
 */

/** Buffer sizes a relay reads with, smallest first; it moves one step up per full read. */
export const BODY_BUFFER_SIZES: readonly number[] = [16 * 1024, 64 * 1024, 256 * 1024];
/** Default byte budget of buffers above the first size lent out at once. */
export const DEFAULT_BODY_BUFFER_BUDGET = 32 * 1024 * 1024;
// Free buffers kept per size, for reuse without a fresh allocation (the rest go to GC).
const MAX_FREE = [256, 64, 32];

/** Options for {@linkcode BodyBufferPool}. */
export interface BodyBufferPoolOptions {
  /**
   * Bytes of buffers above the first size that may be lent out at once.
   * @default {DEFAULT_BODY_BUFFER_BUDGET}
   */
  budget?: number;
}

/**
 * Lends body buffers by size step and takes them back; counts the large ones.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BodyBufferPool } from "./body_buffers.ts";
 * const pool = new BodyBufferPool({ budget: 64 * 1024 });
 * const a = pool.take(1)!; // 64 KiB: within the budget
 * assertEquals([a.length, pool.largeInUse], [64 * 1024, 1]);
 * assertEquals(pool.take(1), undefined); // the budget is spent
 * pool.give(a);
 * assertEquals(pool.largeInUse, 0);
 * assertEquals(pool.take(1), a); // reused
 * ```
 * ```
 */
export class BodyBufferPool {
  /** Bytes of buffers above the first size that may be lent out at once. */
  budget: number;
  /** Buffers above the first size lent out now. */
  largeInUse = 0;
  /** Bytes of buffers above the first size lent out now. */
  largeBytes = 0;
  /** Most buffers above the first size lent out at once since the start. */
  largePeak = 0;
  /** Buffers of any size lent out now. */
  inUse = 0;
  readonly #free: Uint8Array[][] = BODY_BUFFER_SIZES.map(() => []);

  /** A pool with `options.budget` bytes for large buffers. */
  constructor(options: BodyBufferPoolOptions = {}) {
    this.budget = options.budget ?? DEFAULT_BODY_BUFFER_BUDGET;
  }

  /**
   * Lends a buffer of size step `step` (an index into {@linkcode BODY_BUFFER_SIZES}).
   *
   * @returns the buffer, or undefined when it is a large one and the budget is spent.
   */
  take(step: number): Uint8Array | undefined {
    const size = BODY_BUFFER_SIZES[step]!;
    if (step > 0) {
      if (this.largeBytes + size > this.budget) return undefined;
      this.largeBytes += size;
      if (++this.largeInUse > this.largePeak) this.largePeak = this.largeInUse;
    }
    this.inUse++;
    return this.#free[step]!.pop() ?? new Uint8Array(size);
  }

  /** Takes back a buffer lent by {@linkcode BodyBufferPool.take}. */
  give(buf: Uint8Array): void {
    const step = BODY_BUFFER_SIZES.indexOf(buf.length);
    if (step === -1) return;
    if (step > 0) {
      this.largeBytes -= buf.length;
      this.largeInUse--;
    }
    this.inUse--;
    const free = this.#free[step]!;
    if (free.length < MAX_FREE[step]!) free.push(buf);
  }
}

/** The process's pool, shared by every body relay. */
export const BODY_BUFFERS: BodyBufferPool = new BodyBufferPool();
