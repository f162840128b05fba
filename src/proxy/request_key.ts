/**
 * The hash key of a request, for routes with `scheduler: hash`: the client's
 * IP address, a header's value or a cookie's value.
 *
 * @module
 */
import type { HashKey } from "../config/hash_key.ts";
import { latin1 } from "../http1/fields.ts";
import type { RequestHead } from "../http1/parse.ts";

/** Longest part of a header or cookie value that is hashed (longer values are cut). */
export const MAX_KEY_LENGTH = 1024;

const COLON = 0x3a;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const SP = 0x20;
const HTAB = 0x09;
const COOKIE = "cookie";

/**
 * Finds a request's hash key. A header key is the first field of that name
 * (its value trimmed); a cookie key is the first cookie of that name (exact
 * case) in the `Cookie` fields. Values longer than {@linkcode MAX_KEY_LENGTH}
 * are cut to that length, never refused.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { parseHashKey } from "../config/hash_key.ts";
 * import { requestKey } from "./request_key.ts";
 *
 * const head = parseRequestHead(
 *   "GET / HTTP/1.1\r\nHost: a\r\nX-User: alice\r\nCookie: a=1; sid=xyz\r\n\r\n",
 * );
 * assertEquals(requestKey(parseHashKey("header:x-user"), { head, clientIp: "10.0.0.9" }), "alice");
 * assertEquals(requestKey(parseHashKey("cookie:sid"), { head, clientIp: "10.0.0.9" }), "xyz");
 * assertEquals(requestKey(parseHashKey("client_ip"), { head, clientIp: "10.0.0.9" }), "10.0.0.9");
 * assertEquals(requestKey(parseHashKey("header:x-team"), { head, clientIp: "10.0.0.9" }), undefined);
 * ```
 *
 * @param key What the route hashes on.
 * @param from The request head and the client connection's IP address.
 * @returns The key, or `undefined` when the request has none (no such header or
 * cookie, or an empty value): the scheduler then picks in weighted order.
 */
export function requestKey(
  key: HashKey,
  from: { head: RequestHead; clientIp: string },
): string | undefined {
  if (key.kind === "client_ip") return from.clientIp === "" ? undefined : from.clientIp;
  const head = from.head;
  if (key.kind === "header") {
    const i = fieldIndex(head, key.name, 0);
    if (i === -1) return undefined;
    return cut(head.buf, head.valueStart(i), head.valueEnd(i));
  }
  for (let i = fieldIndex(head, COOKIE, 0); i !== -1; i = fieldIndex(head, COOKIE, i + 1)) {
    const value = cookieValue(head, i, key.name);
    if (value !== undefined) return value;
  }
  return undefined;
}

// The first field from `from` on whose name is `lower` (a lower-case token), or -1.
// A field name ends right at its colon (RFC 9112 §5.1: no whitespace before it).
function fieldIndex(head: RequestHead, lower: string, from: number): number {
  const buf = head.buf;
  const n = lower.length;
  next: for (let i = from; i < head.count; i++) {
    const start = head.lineStart(i);
    if (buf[start + n] !== COLON) continue;
    for (let j = 0; j < n; j++) {
      let c = buf[start + j]!;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      if (c !== lower.charCodeAt(j)) continue next;
    }
    return i;
  }
  return -1;
}

// The value of cookie `name` in Cookie field `i` (`a=1; b=2`), or undefined.
function cookieValue(head: RequestHead, i: number, name: string): string | undefined {
  const buf = head.buf;
  const end = head.valueEnd(i);
  let p = head.valueStart(i);
  while (p < end) {
    while (p < end && (buf[p] === SP || buf[p] === HTAB || buf[p] === SEMICOLON)) p++;
    let pairEnd = p;
    while (pairEnd < end && buf[pairEnd] !== SEMICOLON) pairEnd++;
    if (nameIs(buf, p, pairEnd, name)) {
      let v = p + name.length + 1;
      let e = pairEnd;
      while (e > v && (buf[e - 1] === SP || buf[e - 1] === HTAB)) e--;
      if (e - v >= 2 && buf[v] === 0x22 && buf[e - 1] === 0x22) { // a quoted value
        v++;
        e--;
      }
      return cut(buf, v, e);
    }
    p = pairEnd + 1;
  }
  return undefined;
}

// Whether the pair at start..end is `name=...`.
function nameIs(buf: Uint8Array, start: number, end: number, name: string): boolean {
  const n = name.length;
  if (end - start <= n || buf[start + n] !== EQUALS) return false;
  for (let j = 0; j < n; j++) if (buf[start + j] !== name.charCodeAt(j)) return false;
  return true;
}

function cut(buf: Uint8Array, start: number, end: number): string | undefined {
  if (end <= start) return undefined;
  return latin1(buf, start, Math.min(end, start + MAX_KEY_LENGTH));
}
