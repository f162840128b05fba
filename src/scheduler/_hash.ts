/**
 * A stable 32-bit string hash for the `hash` scheduler: the same number for the
 * same string on every instance, every run and every platform (integer math
 * only, no BigInt, no per-process seed).
 *
 * @module
 */

/**
 * MurmurHash3 (x86, 32-bit) run over the string's UTF-16 code units, two per
 * 32-bit block, with the usual final avalanche. Different seeds give
 * independent hashes of one string (Maglev needs two per backend).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { hash32 } from "./_hash.ts";
 * assert(hash32("10.0.0.1:80", 1) === hash32("10.0.0.1:80", 1));
 * assert(hash32("10.0.0.1:80", 1) !== hash32("10.0.0.1:80", 2));
 * assert(hash32("", 0) >= 0 && hash32("alice", 0) < 2 ** 32);
 * ```
 *
 * @param text The string to hash.
 * @param seed Any 32-bit integer.
 * @returns An unsigned 32-bit integer.
 */
export function hash32(text: string, seed: number): number {
  let h = seed | 0;
  const n = text.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    h = mixBlock(h, text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16));
  }
  if (i < n) h = mixBlock(h, text.charCodeAt(i));
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}
