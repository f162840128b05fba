/**
 * IP address ranges (CIDR blocks, v4 and v6) and the test of an address
 * against a list of them: what `allow`/`deny` are made of.
 *
 * @module
 */

/** One parsed block: its address bytes (4 or 16) and prefix length. */
export interface Cidr {
  /** The block as written in the config (for messages and `explain`). */
  readonly text: string;
  /** Network address bytes: 4 for IPv4, 16 for IPv6. */
  readonly bytes: Uint8Array;
  /** Prefix length in bits. */
  readonly bits: number;
}

const V4_PART = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEX_PART = /^[0-9A-Fa-f]{1,4}$/;

/**
 * The bytes of an IP literal: 4 for IPv4, 16 for IPv6; an IPv4-mapped IPv6
 * address (`::ffff:10.0.0.1`) gives its 4 IPv4 bytes, so that a dual-stack
 * listener's peers match IPv4 blocks. Undefined when `text` is no IP literal.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ipBytes } from "./cidr.ts";
 * assertEquals(ipBytes("10.1.2.3"), new Uint8Array([10, 1, 2, 3]));
 * assertEquals(ipBytes("::ffff:10.1.2.3"), new Uint8Array([10, 1, 2, 3]));
 * assertEquals(ipBytes("2001:db8::1")?.length, 16);
 * assertEquals(ipBytes("example.com"), undefined);
 * ```
 */
export function ipBytes(text: string): Uint8Array | undefined {
  let s = text;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone !== -1) s = s.slice(0, zone);
  if (!s.includes(":")) return v4(s);
  let tail: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(":");
  if (s.indexOf(".", lastColon) !== -1) { // embedded IPv4 in the last 32 bits
    tail = v4(s.slice(lastColon + 1));
    if (tail === undefined) return undefined;
    s = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0]!.split(":");
  const rest = halves.length === 2 ? (halves[1] === "" ? [] : halves[1]!.split(":")) : [];
  const total = head.length + rest.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const groups = [...head, ...new Array<string>(8 - total).fill("0"), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!HEX_PART.test(g)) return undefined;
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail !== undefined) out.set(tail, 12);
  const mapped = out.subarray(0, 10).every((b) => b === 0) && out[10] === 0xff && out[11] === 0xff;
  return mapped ? out.slice(12) : out;
}

function v4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => V4_PART.test(p))) return undefined;
  return new Uint8Array(parts.map(Number));
}

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a block of one).
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { parseCidr } from "./cidr.ts";
 * assertEquals(parseCidr("10.0.0.0/8").bits, 8);
 * assertEquals(parseCidr("::1").bits, 128);
 * assertThrows(() => parseCidr("10.0.0.0/33"));
 * ```
 * @throws {Error} saying what is wrong.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const addr = slash === -1 ? text : text.slice(0, slash);
  const bytes = ipBytes(addr);
  if (bytes === undefined) throw new Error(`not an IP address or CIDR block: "${text}"`);
  const max = bytes.length * 8;
  let bits = max;
  if (slash !== -1) {
    const b = text.slice(slash + 1);
    bits = /^\d{1,3}$/.test(b) ? Number(b) : -1;
    if (bits < 0 || bits > max) {
      throw new Error(`prefix length of "${text}" must be 0..${max}`);
    }
  }
  return { text, bytes, bits };
}

/**
 * True when `ip` (the bytes of {@linkcode ipBytes}) lies in one of `blocks`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { inAny, ipBytes, parseCidr } from "./cidr.ts";
 * const blocks = [parseCidr("10.0.0.0/8"), parseCidr("2001:db8::/32")];
 * assert(inAny(ipBytes("10.9.8.7")!, blocks));
 * assert(inAny(ipBytes("2001:db8:1::5")!, blocks));
 * assert(!inAny(ipBytes("192.168.1.1")!, blocks));
 * ```
 */
export function inAny(ip: Uint8Array, blocks: readonly Cidr[]): boolean {
  for (const b of blocks) if (contains(b, ip)) return true;
  return false;
}

function contains(block: Cidr, ip: Uint8Array): boolean {
  if (block.bytes.length !== ip.length) return false;
  const full = block.bits >> 3;
  for (let i = 0; i < full; i++) if (block.bytes[i] !== ip[i]) return false;
  const rest = block.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (block.bytes[full]! & mask) === (ip[full]! & mask);
}

/**
 * An IP address's text the way Deno writes a peer's hostname: dotted IPv4, or
 * RFC 5952 IPv6 (lowercase, the longest run of zero groups as `::`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { formatIp, ipBytes } from "./cidr.ts";
 * assertEquals(formatIp(ipBytes("2001:DB8:0:0:0:0:0:1")!), "2001:db8::1");
 * assertEquals(formatIp(new Uint8Array([10, 0, 0, 7])), "10.0.0.7");
 * ```
 *
 * @param bytes 4 or 16 bytes.
 * @returns The address as text.
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best === -1) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
