/**
 * Parsing of `host:port` addresses, shared by config parsing and discovery.
 *
 * @module
 */

/** A host name or IP literal (IPv6 without brackets) and a port. */
export interface HostPort {
  /** Host name or IP literal; IPv6 is held without brackets. */
  hostname: string;
  /** TCP port, 0..65535. */
  port: number;
}

const IPV4_REGEXP =
  /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_REGEXP = /^[0-9A-Fa-f:.]+(?:%[\w.-]+)?$/;
const HOSTNAME_REGEXP = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;
const PORT_REGEXP = /^\d{1,5}$/;

/**
 * Tells whether `s` is an IPv4 or IPv6 literal (IPv6 without brackets).
 *
 * @param s The string to test.
 * @returns True for `127.0.0.1`, `::1`, `fe80::1%eth0`; false for host names.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { isIpLiteral } from "./address.ts";
 * assert(isIpLiteral("127.0.0.1") && isIpLiteral("::1") && !isIpLiteral("b1.test"));
 * ```
 */
export function isIpLiteral(s: string): boolean {
  return IPV4_REGEXP.test(s) || (s.includes(":") && IPV6_REGEXP.test(s));
}

/**
 * Parses `host:port`, `1.2.3.4:port` or `[ipv6]:port`. Ports may be 0..65535 (0 lets a
 * listener pick a free port; callers that connect should reject it).
 *
 * @param s The address, e.g. `127.0.0.1:9001` or `[::1]:9001`.
 * @returns The host name (IPv6 without brackets) and the port.
 * @throws {RangeError} When `s` is not a valid address; the message names it.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseHostPort } from "./address.ts";
 * const { hostname, port } = parseHostPort("[::1]:9001");
 * assert(hostname === "::1" && port === 9001);
 * ```
 */
export function parseHostPort(s: string): HostPort {
  const bad = (why: string) =>
    new RangeError(`Address must be host:port or [ipv6]:port (${why}): received "${s}"`);
  let hostname: string;
  let portText: string;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) throw bad("missing ]");
    hostname = s.slice(1, close);
    if (s[close + 1] !== ":") throw bad("missing port");
    portText = s.slice(close + 2);
    if (!hostname.includes(":") || !IPV6_REGEXP.test(hostname)) throw bad("bad IPv6 literal");
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) throw bad("missing port");
    hostname = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (hostname.includes(":")) throw bad("IPv6 literals need brackets");
    if (!HOSTNAME_REGEXP.test(hostname)) throw bad("bad host");
  }
  if (!PORT_REGEXP.test(portText)) throw bad("bad port");
  const port = Number(portText);
  if (port > 65535) throw bad("port out of range");
  return { hostname, port };
}

/**
 * `host:port` of an address, as the log and metrics name it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { addrKey } from "./address.ts";
 * assertEquals(addrKey({ hostname: "127.0.0.1", port: 8080 }), "127.0.0.1:8080");
 * ```
 *
 * @param a The address.
 * @returns `hostname:port` (an IPv6 literal without brackets, as the listeners report it).
 */
export function addrKey(a: HostPort): string {
  return `${a.hostname}:${a.port}`;
}
