/**
 * The PROXY protocol header (HAProxy's spec, versions 1 and 2) the balancer
 * writes at the start of a backend connection (`routes[].proxy_protocol`) to
 * name the client it carries: v1 is one text line, v2 a binary block of the
 * same addresses. A probe's connection gets the header that names nobody
 * (v1 `PROXY UNKNOWN`, v2 `LOCAL`), as HAProxy's `check-send-proxy` sends.
 *
 * @module
 */
import { formatIp, ipBytes } from "../config/cidr.ts";

/** The header versions a route may send. */
export const PROXY_VERSIONS = ["v1", "v2"] as const;
/** One of {@linkcode PROXY_VERSIONS}. */
export type ProxyVersion = typeof PROXY_VERSIONS[number];

/** The two ends of the client's connection, as the header names them. */
export interface ProxyEnds {
  /** The client's IP address. */
  readonly client: string;
  /** The client's port (0 when unknown, e.g. a client named by X-Forwarded-For). */
  readonly clientPort: number;
  /** The address the client connected to. */
  readonly dest: string;
  /** The port the client connected to. */
  readonly destPort: number;
}

const V2_PREFIX = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const ENCODER = new TextEncoder();

/**
 * The header naming `ends` in `version`; the LOCAL / UNKNOWN header when `ends`
 * is undefined or either address is no IP address. An IPv4 address beside an
 * IPv6 one is written IPv4-mapped (`::ffff:a.b.c.d`): both ends share a family.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeProxyHeader } from "./proxy_out.ts";
 * const ends = { client: "203.0.113.7", clientPort: 51234, dest: "10.0.0.1", destPort: 80 };
 * const text = (b: Uint8Array) => new TextDecoder().decode(b);
 * assertEquals(text(encodeProxyHeader("v1", ends)), "PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n");
 * assertEquals(text(encodeProxyHeader("v1")), "PROXY UNKNOWN\r\n");
 * const v2 = encodeProxyHeader("v2", ends);
 * assertEquals([v2.length, v2[12], v2[13]], [16 + 12, 0x21, 0x11]); // PROXY, TCP over IPv4
 * assertEquals([...v2.subarray(16, 20)], [203, 0, 113, 7]);
 * assertEquals(encodeProxyHeader("v2")[12], 0x20); // LOCAL
 * const six = encodeProxyHeader("v2", { ...ends, dest: "2001:db8::1" });
 * assertEquals([six.length, six[13]], [16 + 36, 0x21]); // TCP over IPv6, the client mapped
 * ```
 *
 * @param version `v1` (text) or `v2` (binary).
 * @param ends The client's connection, or undefined for a header that names nobody.
 * @returns The header's bytes.
 */
export function encodeProxyHeader(version: ProxyVersion, ends?: ProxyEnds): Uint8Array {
  let src = ends && ipBytes(ends.client);
  let dst = ends && ipBytes(ends.dest);
  if (ends === undefined || src === undefined || dst === undefined) {
    return version === "v1" ? ENCODER.encode("PROXY UNKNOWN\r\n") : v2Header(0x20, 0x00, 0);
  }
  if (src.length !== dst.length) {
    src = mapped(src);
    dst = mapped(dst);
  }
  const v4 = src.length === 4;
  if (version === "v1") {
    const family = v4 ? "TCP4" : "TCP6";
    return ENCODER.encode(
      `PROXY ${family} ${formatIp(src)} ${formatIp(dst)} ${ends.clientPort} ${ends.destPort}\r\n`,
    );
  }
  const out = v2Header(0x21, v4 ? 0x11 : 0x21, src.length * 2 + 4);
  out.set(src, 16);
  out.set(dst, 16 + src.length);
  const at = 16 + src.length * 2;
  out[at] = ends.clientPort >> 8;
  out[at + 1] = ends.clientPort & 0xff;
  out[at + 2] = ends.destPort >> 8;
  out[at + 3] = ends.destPort & 0xff;
  return out;
}

// The 16-byte v2 prefix (version and command, family and transport, length) and room for the rest.
function v2Header(verCmd: number, family: number, length: number): Uint8Array {
  const out = new Uint8Array(16 + length);
  out.set(V2_PREFIX, 0);
  out[12] = verCmd;
  out[13] = family;
  out[14] = length >> 8;
  out[15] = length & 0xff;
  return out;
}

// An IPv4 address as IPv4-mapped IPv6; IPv6 as it is.
function mapped(ip: Uint8Array): Uint8Array {
  if (ip.length === 16) return ip;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(ip, 12);
  return out;
}
