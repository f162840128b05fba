/**
 * SHA-256 (FIPS 180-4) of a short byte string, synchronously and without an
 * allocation per block: what keys `auth.basic`'s cache of verified
 * credentials. `node:crypto`'s `createHash` costs several microseconds per
 * call in Deno (an object, three ops); Web Crypto's digest is asynchronous.
 *
 * @module
 */

// The round constants and initial state: the first 32 bits of the fractional parts of the cube
// (K) and square (H) roots of the first primes, computed here rather than copied.
const PRIMES: number[] = [];
for (let n = 2; PRIMES.length < 64; n++) {
  if (PRIMES.every((p) => n % p !== 0)) PRIMES.push(n);
}
const frac32 = (x: number) => ((x - Math.floor(x)) * 0x100000000) >>> 0;
const K = Uint32Array.from(PRIMES, (p) => frac32(Math.cbrt(p)));
const H0 = Uint32Array.from(PRIMES.slice(0, 8), (p) => frac32(Math.sqrt(p)));
const W = new Uint32Array(64);

/**
 * The SHA-256 digest of `data`, as 64 hex digits.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createHash } from "node:crypto";
 * import { sha256Hex } from "./_sha256.ts";
 * const abc = new TextEncoder().encode("abc");
 * assertEquals(sha256Hex(abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
 * for (const n of [0, 55, 56, 63, 64, 65, 200]) {
 *   const bytes = new Uint8Array(n).map((_, i) => i * 7);
 *   assertEquals(sha256Hex(bytes), createHash("sha256").update(bytes).digest("hex"));
 * }
 * ```
 */
export function sha256Hex(data: Uint8Array): string {
  const n = data.length;
  const blocks = ((n + 8) >>> 6) + 1; // the data, 0x80, zeros, and the 64-bit bit length
  const h = H0.slice();
  for (let b = 0; b < blocks; b++) {
    for (let i = 0; i < 16; i++) {
      let word = 0;
      for (let j = 0; j < 4; j++) {
        const at = b * 64 + i * 4 + j;
        const byte = at < n ? data[at]! : at === n ? 0x80 : 0;
        word = (word << 8) | byte;
      }
      W[i] = word;
    }
    if (b === blocks - 1) { // the length in bits, in the last two words
      W[14] = Math.floor(n / 0x20000000);
      W[15] = (n << 3) >>> 0;
    }
    for (let i = 16; i < 64; i++) {
      const w15 = W[i - 15]!;
      const w2 = W[i - 2]!;
      const s0 = ror(w15, 7) ^ ror(w15, 18) ^ (w15 >>> 3);
      const s1 = ror(w2, 17) ^ ror(w2, 19) ^ (w2 >>> 10);
      W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) >>> 0;
    }
    let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i]! +
        W[i]!) >>> 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] = h[0]! + a;
    h[1] = h[1]! + bb;
    h[2] = h[2]! + c;
    h[3] = h[3]! + d;
    h[4] = h[4]! + e;
    h[5] = h[5]! + f;
    h[6] = h[6]! + g;
    h[7] = h[7]! + hh;
  }
  let hex = "";
  for (let i = 0; i < 8; i++) hex += h[i]!.toString(16).padStart(8, "0");
  return hex;
}

function ror(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}
