/**
 * The PROXY protocol header (HAProxy's spec, versions 1 and 2) an L4 balancer
 * puts at the start of a connection to name the client it came from. Both
 * versions are told apart by their first bytes, so one port takes both:
 * v1 is one text line (`PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n`, at most
 * 107 bytes), v2 a 16-byte binary prefix, the addresses, then TLVs (skipped).
 *
 * @module
 */
import { formatIp, ipBytes } from "../config/cidr.ts";
import type { BufReader } from "../http1/io.ts";

/**
 * What a header said: the client's address and port and the address and port it
 * connected to (the balancer's), or `local` (serve as the peer).
 */
export type ProxyHeader =
  | {
    readonly kind: "proxy";
    readonly client: string;
    readonly length: number;
    readonly port: number;
    readonly dest: string;
    readonly destPort: number;
  }
  | { readonly kind: "local"; readonly length: number };

/** A connection that does not begin with a valid PROXY header. */
export class ProxyHeaderError extends Error {
  /** `missing` (other bytes came first), `malformed`, `too_large` or `closed`. */
  readonly reason: "missing" | "malformed" | "too_large" | "closed";
  /** Builds the error with its reason and a sentence saying what was wrong. */
  constructor(reason: ProxyHeaderError["reason"], message: string) {
    super(message);
    this.name = "ProxyHeaderError";
    this.reason = reason;
  }
}

/** Why a connection may be closed for its PROXY header (the metric's `reason` label). */
export const PROXY_REFUSALS = [
  "untrusted",
  "missing",
  "malformed",
  "too_large",
  "closed",
  "timeout",
] as const;

/** The most bytes a v1 header may take, CRLF included. */
export const V1_MAX = 107;
const V2_SIGNATURE = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
const V1_PREFIX = new Uint8Array([0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]); // "PROXY "
const PORT_REGEXP = /^(?:0|[1-9]\d{0,4})$/;

/**
 * Parses a PROXY header at `buf[start..end)`.
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { parseProxyHeader } from "./proxy_header.ts";
 * const line = new TextEncoder().encode("PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET /");
 * assertEquals(parseProxyHeader(line, 0, line.length, 4096), {
 *   kind: "proxy", client: "203.0.113.7", length: 42, port: 51234, dest: "10.0.0.1", destPort: 80,
 * });
 * assertEquals(parseProxyHeader(line, 0, 20, 4096), undefined); // not all there yet
 * const http = new TextEncoder().encode("GET / HTTP/1.1\r\n");
 * assertThrows(() => parseProxyHeader(http, 0, http.length, 4096));
 * ```
 *
 * @param buf The bytes read so far.
 * @param start Where the connection's first byte is.
 * @param end After the last byte read.
 * @param maxV2 The most bytes a v2 header (TLVs included) may take.
 * @returns The header and its length in bytes, or undefined when more bytes are needed.
 * @throws {ProxyHeaderError} when the bytes are no PROXY header, a malformed one or one over the limit.
 */
export function parseProxyHeader(
  buf: Uint8Array,
  start: number,
  end: number,
  maxV2: number,
): ProxyHeader | undefined {
  const n = end - start;
  if (n === 0) return undefined;
  if (buf[start] === V2_SIGNATURE[0]) {
    if (!prefixMatches(buf, start, end, V2_SIGNATURE)) {
      throw new ProxyHeaderError("missing", "no PROXY header (bytes other than its signature)");
    }
    return n < 16 ? undefined : parseV2(buf, start, end, maxV2);
  }
  if (!prefixMatches(buf, start, end, V1_PREFIX)) {
    throw new ProxyHeaderError(
      "missing",
      "no PROXY header (the connection began with other bytes)",
    );
  }
  const limit = Math.min(end, start + V1_MAX);
  for (let i = start + V1_PREFIX.length; i < limit; i++) {
    if (buf[i] === 0x0a) {
      if (buf[i - 1] !== 0x0d) {
        throw new ProxyHeaderError("malformed", "PROXY v1 line ends without CR");
      }
      return parseV1(buf, start, i + 1);
    }
  }
  if (n >= V1_MAX) {
    throw new ProxyHeaderError("too_large", `PROXY v1 line longer than ${V1_MAX} bytes`);
  }
  return undefined;
}

function prefixMatches(buf: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  const n = Math.min(end - start, prefix.length);
  for (let i = 0; i < n; i++) if (buf[start + i] !== prefix[i]) return false;
  return true;
}

function parseV1(buf: Uint8Array, start: number, end: number): ProxyHeader {
  const length = end - start;
  let line = "";
  for (let i = start; i < end - 2; i++) {
    const c = buf[i]!;
    if (c < 0x20 || c > 0x7e) {
      throw new ProxyHeaderError("malformed", "PROXY v1 line has a control byte");
    }
    line += String.fromCharCode(c);
  }
  const parts = line.split(" ");
  if (parts[1] === "UNKNOWN") return { kind: "local", length };
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) {
    throw new ProxyHeaderError(
      "malformed",
      `PROXY v1 line is not "PROXY TCP4|TCP6 src dst sport dport"`,
    );
  }
  const src = ipBytes(parts[2]!);
  const dst = ipBytes(parts[3]!);
  const size = parts[1] === "TCP4" ? 4 : 16;
  // the brackets, zones and IPv4-mapped forms ipBytes accepts are no part of v1
  const plain = (s: string) => /^[0-9A-Fa-f:.]+$/.test(s) && s.includes(size === 4 ? "." : ":");
  if (
    src === undefined || dst === undefined || !plain(parts[2]!) || !plain(parts[3]!) ||
    (size === 4 && (src.length !== 4 || dst.length !== 4)) ||
    !PORT_REGEXP.test(parts[4]!) || !PORT_REGEXP.test(parts[5]!) ||
    Number(parts[4]) > 65535 || Number(parts[5]) > 65535
  ) {
    throw new ProxyHeaderError("malformed", `PROXY v1 line has a bad address or port: "${line}"`);
  }
  return {
    kind: "proxy",
    client: formatIp(src),
    length,
    port: Number(parts[4]),
    dest: formatIp(dst),
    destPort: Number(parts[5]),
  };
}

function parseV2(
  buf: Uint8Array,
  start: number,
  end: number,
  maxV2: number,
): ProxyHeader | undefined {
  const verCmd = buf[start + 12]!;
  const family = buf[start + 13]!;
  const len = (buf[start + 14]! << 8) | buf[start + 15]!;
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError("malformed", `PROXY v2 version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw new ProxyHeaderError("malformed", `PROXY v2 command ${cmd}`);
  const length = 16 + len;
  if (length > maxV2) {
    throw new ProxyHeaderError("too_large", `PROXY v2 header of ${length} bytes, over ${maxV2}`);
  }
  if (end - start < length) return undefined;
  if (cmd === 0) return { kind: "local", length }; // LOCAL: the balancer's own (health checks)
  const fam = family >> 4;
  const transport = family & 0x0f;
  if (fam > 3 || transport > 2) {
    throw new ProxyHeaderError(
      "malformed",
      `PROXY v2 address family byte 0x${family.toString(16)}`,
    );
  }
  if (fam === 0 || fam === 3) return { kind: "local", length }; // UNSPEC or UNIX: use the peer
  const size = fam === 1 ? 4 : 16;
  if (len < size * 2 + 4) {
    throw new ProxyHeaderError("malformed", `PROXY v2 address block of ${len} bytes is too short`);
  }
  const at = start + 16;
  const src = buf.slice(at, at + size);
  const dst = buf.slice(at + size, at + 2 * size);
  const ports = at + 2 * size;
  return {
    kind: "proxy",
    client: formatIp(ipBytes(formatRaw(src)) ?? src),
    length,
    port: (buf[ports]! << 8) | buf[ports + 1]!,
    dest: formatIp(ipBytes(formatRaw(dst)) ?? dst),
    destPort: (buf[ports + 2]! << 8) | buf[ports + 3]!,
  };
}

// The bytes as text, before IPv4-mapped IPv6 is folded to IPv4 by ipBytes.
function formatRaw(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

/**
 * Reads a PROXY header from the start of a connection, however the bytes are
 * split across reads, and consumes it from `reader`: what follows stays buffered.
 *
 * @example
 * ```ts ignore
 * const reader = new BufReader(conn, SMALL_READ_BUFFER);
 * const header = await readProxyHeader(reader, 4096);
 * ```
 *
 * @param reader A reader on a fresh connection.
 * @param maxV2 The most bytes a v2 header may take.
 * @returns What the header said.
 * @throws {ProxyHeaderError} when there is no valid header (`closed`: the peer left first).
 */
export async function readProxyHeader(reader: BufReader, maxV2: number): Promise<ProxyHeader> {
  for (;;) {
    const h = parseProxyHeader(reader.buf, reader.start, reader.end, maxV2);
    if (h !== undefined) {
      reader.consume(h.length);
      return h;
    }
    if (reader.buffered === reader.buf.length) {
      reader.resize(Math.min(maxV2, reader.buf.length * 4));
    }
    if (!(await reader.fill())) {
      throw new ProxyHeaderError(
        "closed",
        `the connection ended after ${reader.buffered} bytes, before a whole PROXY header`,
      );
    }
  }
}
