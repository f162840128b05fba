/**
 * The Huffman code of HPACK (RFC 7541 Appendix B) and its fast coders: a 4-bit
 * state machine for decoding, built once at module load, and a bit packer for
 * encoding. Internal to `hpack.ts`.
 *
 * @module
 */

/**
 * Code and bit length of symbols 0..256 (256 is EOS), as pairs, from RFC 7541
 * Appendix B: the code is right-aligned, most significant bit first on the wire.
 */
// deno-fmt-ignore
const CODE_TABLE: readonly number[] = [
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28, // 0..3
  0xfffffe4, 28, 0xfffffe5, 28, 0xfffffe6, 28, 0xfffffe7, 28, // 4..7
  0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28, // 8..11
  0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28, // 12..15
  0xfffffed, 28, 0xfffffee, 28, 0xfffffef, 28, 0xffffff0, 28, // 16..19
  0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28, // 20..23
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28, // 24..27
  0xffffff8, 28, 0xffffff9, 28, 0xffffffa, 28, 0xffffffb, 28, // 28..31
  0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12, // 32..35
  0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11, // 36..39
  0x3fa, 10, 0x3fb, 10, 0xf9, 8, 0x7fb, 11, // 40..43
  0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6, // 44..47
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6, // 48..51
  0x1a, 6, 0x1b, 6, 0x1c, 6, 0x1d, 6, // 52..55
  0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8, // 56..59
  0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10, // 60..63
  0x1ffa, 13, 0x21, 6, 0x5d, 7, 0x5e, 7, // 64..67
  0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7, // 68..71
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7, // 72..75
  0x67, 7, 0x68, 7, 0x69, 7, 0x6a, 7, // 76..79
  0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7, // 80..83
  0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7, // 84..87
  0xfc, 8, 0x73, 7, 0xfd, 8, 0x1ffb, 13, // 88..91
  0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6, // 92..95
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5, // 96..99
  0x24, 6, 0x5, 5, 0x25, 6, 0x26, 6, // 100..103
  0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7, // 104..107
  0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5, // 108..111
  0x2b, 6, 0x76, 7, 0x2c, 6, 0x8, 5, // 112..115
  0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7, // 116..119
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15, // 120..123
  0x7fc, 11, 0x3ffd, 14, 0x1ffd, 13, 0xffffffc, 28, // 124..127
  0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20, // 128..131
  0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23, // 132..135
  0x3fffd6, 22, 0x7fffda, 23, 0x7fffdb, 23, 0x7fffdc, 23, // 136..139
  0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23, // 140..143
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23, // 144..147
  0xffffee, 24, 0x7fffe1, 23, 0x7fffe2, 23, 0x7fffe3, 23, // 148..151
  0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23, // 152..155
  0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24, // 156..159
  0x3fffda, 22, 0x1fffdd, 21, 0xfffe9, 20, 0x3fffdb, 22, // 160..163
  0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21, // 164..167
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24, // 168..171
  0x1fffdf, 21, 0x3fffdf, 22, 0x7fffeb, 23, 0x7fffec, 23, // 172..175
  0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21, // 176..179
  0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23, // 180..183
  0xfffea, 20, 0x3fffe2, 22, 0x3fffe3, 22, 0x3fffe4, 22, // 184..187
  0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23, // 188..191
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19, // 192..195
  0x3fffe7, 22, 0x7ffff2, 23, 0x3fffe8, 22, 0x1ffffec, 25, // 196..199
  0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27, // 200..203
  0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25, // 204..207
  0x7fff2, 19, 0x1fffe3, 21, 0x3ffffe6, 26, 0x7ffffe0, 27, // 208..211
  0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24, // 212..215
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26, // 216..219
  0xffffffd, 28, 0x7ffffe3, 27, 0x7ffffe4, 27, 0x7ffffe5, 27, // 220..223
  0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21, // 224..227
  0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23, // 228..231
  0x3fffea, 22, 0x3fffeb, 22, 0x1ffffee, 25, 0x1ffffef, 25, // 232..235
  0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23, // 236..239
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26, // 240..243
  0x7ffffe7, 27, 0x7ffffe8, 27, 0x7ffffe9, 27, 0x7ffffea, 27, // 244..247
  0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27, // 248..251
  0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26, // 252..255
  0x3fffffff, 30, // 256..256
];

/** Code of each byte value, right-aligned. */
const CODES = new Uint32Array(256);
/** Bit length of each byte value's code (5..30). */
const LENGTHS = new Uint8Array(256);

/** Transition flag: the nibble completes a symbol, held in bits 8..15. */
const EMIT = 0x10000;
/** Transition flag: the nibble completes EOS, which a string must not contain. */
const FAIL = 0x20000;

/**
 * `TRANSITIONS[state << 4 | nibble]`: next state in bits 0..7, the symbol in
 * bits 8..15 when {@linkcode EMIT} is set, and {@linkcode FAIL}. A state is an
 * internal node of the code tree (256 of them; 0 is the root).
 */
const TRANSITIONS = new Uint32Array(256 * 16);
/**
 * Whether a string may end in this state: the bits read since the last symbol
 * are a prefix of EOS (all ones) no longer than 7 bits (RFC 7541 §5.2).
 */
const ACCEPTS = new Uint8Array(256);

function build(): void {
  // child[node * 2 + bit]: an internal node id, or -1 - symbol for a leaf.
  const child: number[] = [0, 0];
  const depth: number[] = [0];
  const ones: boolean[] = [true];
  for (let sym = 0; sym <= 256; sym++) {
    const code = CODE_TABLE[sym * 2]!;
    const len = CODE_TABLE[sym * 2 + 1]!;
    if (sym < 256) {
      CODES[sym] = code;
      LENGTHS[sym] = len;
    }
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      if (i === 0) {
        child[node * 2 + bit] = -1 - sym;
        break;
      }
      let next = child[node * 2 + bit]!;
      if (next === 0) {
        next = depth.length;
        depth.push(depth[node]! + 1);
        ones.push(ones[node]! && bit === 1);
        child.push(0, 0);
        child[node * 2 + bit] = next;
      }
      node = next;
    }
  }
  if (depth.length !== 256) throw new Error(`Huffman tree is malformed: ${depth.length} nodes`);
  for (let state = 0; state < 256; state++) {
    ACCEPTS[state] = ones[state]! && depth[state]! <= 7 ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[node * 2 + ((nibble >>> i) & 1)]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -1 - next;
        if (sym === 256) {
          entry |= FAIL;
          break;
        }
        entry |= EMIT | (sym << 8);
        node = 0;
      }
      TRANSITIONS[(state << 4) | nibble] = entry | node;
    }
  }
}
build();

/**
 * Decodes the Huffman-coded octets `src[start..end)` into `dst` from index 0.
 * `dst` must hold at least `huffmanDecodedMax(end - start)` bytes.
 *
 * @returns the number of bytes written, or -1 when the input is not a valid
 * HPACK Huffman string (EOS inside, padding over 7 bits or not all ones).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { huffmanDecode } from "./_huffman.ts";
 *
 * // RFC 7541 C.4.1: "www.example.com"
 * const src = new Uint8Array([0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]);
 * const dst = new Uint8Array(19);
 * const n = huffmanDecode(src, 0, src.length, dst);
 * assertEquals(new TextDecoder().decode(dst.subarray(0, n)), "www.example.com");
 * // A whole byte of padding is one bit too many.
 * assertEquals(huffmanDecode(new Uint8Array([0xff]), 0, 1, dst), -1);
 * ```
 */
export function huffmanDecode(
  src: Uint8Array,
  start: number,
  end: number,
  dst: Uint8Array,
): number {
  let state = 0;
  let o = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let e = TRANSITIONS[(state << 4) | (b >>> 4)]!;
    if (e & FAIL) return -1;
    if (e & EMIT) dst[o++] = e >>> 8;
    state = e & 0xff;
    e = TRANSITIONS[(state << 4) | (b & 0xf)]!;
    if (e & FAIL) return -1;
    if (e & EMIT) dst[o++] = e >>> 8;
    state = e & 0xff;
  }
  return ACCEPTS[state] ? o : -1;
}

/**
 * The most bytes `n` Huffman-coded octets decode to (the shortest code has 5 bits).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { huffmanDecodedMax } from "./_huffman.ts";
 *
 * assertEquals(huffmanDecodedMax(5), 8);
 * ```
 */
export function huffmanDecodedMax(n: number): number {
  return Math.floor((n * 8) / 5);
}

/**
 * Length in octets of the Huffman coding of latin1 string `s`, or -1 when `s`
 * has a char above 255.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { huffmanEncodedLength } from "./_huffman.ts";
 *
 * assertEquals(huffmanEncodedLength("no-cache"), 6);
 * assertEquals(huffmanEncodedLength("\u20ac"), -1);
 * ```
 */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return -1;
    bits += LENGTHS[c]!;
  }
  return (bits + 7) >>> 3;
}

/**
 * Writes the Huffman coding of latin1 string `s` into `dst` at `pos`, padded
 * with ones (the EOS prefix). `dst` must have `huffmanEncodedLength(s)` bytes free.
 *
 * @returns the index after the last byte written.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { huffmanEncode } from "./_huffman.ts";
 *
 * // RFC 7541 C.4.2: "no-cache"
 * const dst = new Uint8Array(8);
 * assertEquals(huffmanEncode("no-cache", dst, 1), 7);
 * assertEquals([...dst.subarray(1, 7)], [0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
 * ```
 */
export function huffmanEncode(s: string, dst: Uint8Array, pos: number): number {
  // Fewer than 8 bits are pending in `acc` between symbols, so adding a code of
  // up to 24 bits stays within 31 bits; longer codes go in two parts.
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const code = CODES[c]!;
    const len = LENGTHS[c]!;
    if (len > 24) {
      acc = (acc << (len - 16)) | (code >>> 16);
      bits += len - 16;
      while (bits >= 8) {
        bits -= 8;
        dst[pos++] = acc >>> bits;
      }
      acc &= (1 << bits) - 1;
      acc = (acc << 16) | (code & 0xffff);
      bits += 16;
    } else {
      acc = (acc << len) | code;
      bits += len;
    }
    while (bits >= 8) {
      bits -= 8;
      dst[pos++] = acc >>> bits;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) dst[pos++] = (acc << (8 - bits)) | (0xff >>> bits);
  return pos;
}
