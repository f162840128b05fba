/**
 * Header fields of a parsed head, kept as offsets into the head's bytes: nothing
 * is decoded into a string until something asks for it. The fields the balancer
 * acts on (framing, hop-by-hop, forwarding) are recognised by an id at parse time.
 *
 * @module
 */

/** Id of a field the balancer does not act on. */
export const OTHER = 0;
/** Id of `Host`. */
export const HOST = 1;
/** Id of `Content-Length`. */
export const CONTENT_LENGTH = 2;
/** Id of `Transfer-Encoding`. */
export const TRANSFER_ENCODING = 3;
/** Id of `Connection`. */
export const CONNECTION = 4;
/** Id of `Keep-Alive`. */
export const KEEP_ALIVE = 5;
/** Id of `Proxy-Connection`. */
export const PROXY_CONNECTION = 6;
/** Id of `TE`. */
export const TE = 7;
/** Id of `Upgrade`. */
export const UPGRADE = 8;
/** Id of `Via`. */
export const VIA = 9;
/** Id of `X-Forwarded-For`. */
export const X_FORWARDED_FOR = 10;
/** Id of `X-Forwarded-Proto`. */
export const X_FORWARDED_PROTO = 11;
/** Id of `X-Forwarded-Host`. */
export const X_FORWARDED_HOST = 12;
/** Id of `Expect`. */
export const EXPECT = 13;

/** Lower-case names by id. */
const KNOWN = [
  "",
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "upgrade",
  "via",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "expect",
];
// ids of the known names, by name length
const BY_LENGTH: number[][] = [];
KNOWN.forEach((name, id) => {
  if (id !== OTHER) (BY_LENGTH[name.length] ??= []).push(id);
});
const KNOWN_BYTES = KNOWN.map(octets);

const STRIDE = 5; // line start, colon, value start, value end, line end (at its CR)
const NO_TOKENS: string[] = [];
const KEEP_ALIVE_TOKENS = ["keep-alive"];
const CLOSE_TOKENS = ["close"];
const KEEP_ALIVE_BYTES = octets("keep-alive");
const CLOSE_BYTES = octets("close");
const DECODER = new TextDecoder();
const EMPTY = new Uint8Array(0);

/**
 * The id of the field name `buf[start..end)`, matched case-insensitively, or
 * {@linkcode OTHER}.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { CONTENT_LENGTH, fieldId, OTHER } from "./fields.ts";
 * const name = new TextEncoder().encode("Content-LENGTH");
 * assert(fieldId(name, 0, name.length) === CONTENT_LENGTH);
 * assert(fieldId(name, 0, 7) === OTHER);
 * ```
 */
export function fieldId(buf: Uint8Array, start: number, end: number): number {
  const ids = BY_LENGTH[end - start];
  if (ids === undefined) return OTHER;
  for (const id of ids) if (caselessIs(buf, start, end, KNOWN_BYTES[id]!)) return id;
  return OTHER;
}

// Whether buf[start..end) is `lower` (lower-case letters and "-") in any case. The bytes
// that OR 0x20 onto a lower-case letter or "-" are that letter in either case, "-" or CR,
// and a parsed name or value holds no CR.
function caselessIs(buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if ((buf[start + i]! | 0x20) !== lower[i]) return false;
  return true;
}

/**
 * The lower-case name of a known field id.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { knownName, TE } from "./fields.ts";
 * assert(knownName(TE) === "te");
 * ```
 */
export function knownName(id: number): string {
  return KNOWN[id]!;
}

/**
 * Encodes `text` as Latin-1: one byte per code unit (its low 8 bits).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { octets } from "./fields.ts";
 * assert(octets("A\xe9").join() === "65,233");
 * ```
 */
export function octets(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i); // & 0xff by the store
  return out;
}

// Short strings decoded lately, in slots chosen by a hash of their bytes: the same
// names and values (server, content type, host, user agent) come on request after
// request, and are handed out again instead of being built anew (no garbage).
const INTERN_MAX = 64;
const INTERN_SLOTS = 1024; // a power of two
const INTERNED: string[] = new Array<string>(INTERN_SLOTS).fill("");
const INTERNED_LOWER: string[] = new Array<string>(INTERN_SLOTS).fill("");

// The string of buf[start..end) (≤ INTERN_MAX bytes), lower-cased ASCII when `lower`,
// from the table when it is there.
function interned(buf: Uint8Array, start: number, end: number, lower: boolean): string {
  const table = lower ? INTERNED_LOWER : INTERNED;
  const n = end - start;
  let h = n;
  for (let i = start; i < end; i++) {
    let c = buf[i]!;
    if (lower && c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, 0x01000193); // FNV-1a
  }
  const slot = (h >>> 16) & (INTERN_SLOTS - 1);
  const s = table[slot]!;
  if (s.length === n) {
    let i = 0;
    for (; i < n; i++) {
      let c = buf[start + i]!;
      if (lower && c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (s.charCodeAt(i) !== c) break;
    }
    if (i === n) return s;
  }
  let made = String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  if (lower) made = made.toLowerCase();
  table[slot] = made;
  return made;
}

/**
 * Decodes `buf[start..end)` as Latin-1 (one code unit per byte). Short strings
 * seen lately are handed out again rather than built anew.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { latin1 } from "./fields.ts";
 * assert(latin1(new Uint8Array([0x41, 0xe9]), 0, 2) === "A\xe9");
 * const server = new TextEncoder().encode("Server: nginx");
 * assert(latin1(server, 8, 13) === "nginx" && latin1(server, 8, 13) === "nginx");
 * ```
 */
export function latin1(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= INTERN_MAX) return end === start ? "" : interned(buf, start, end, false);
  for (let i = start; i < end; i++) {
    if (buf[i]! >= 0x80) {
      let s = "";
      for (let j = start; j < end; j += 4096) {
        s += String.fromCharCode(...buf.subarray(j, Math.min(end, j + 4096)));
      }
      return s;
    }
  }
  return DECODER.decode(buf.subarray(start, end));
}

/**
 * Header fields in arrival order, as offsets into `buf`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseRequestHead } from "./parse.ts";
 * import { HOST } from "./fields.ts";
 * const h = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n");
 * assert(h.count === 2 && h.valueOf(HOST) === "a" && h.rawName(1) === "X-A");
 * ```
 */
export class Fields {
  /** The bytes the head was parsed from. */
  buf: Uint8Array = EMPTY;
  /** Where the head starts in `buf`. */
  start = 0;
  /** Just past the head's empty line in `buf`. */
  end = 0;
  /** Number of fields. */
  count = 0;
  #at = new Int32Array(16 * STRIDE);
  #ids = new Uint8Array(16);
  #seen = 0;
  #connection: string[] | undefined;

  /** Forgets the fields of a previous head: the object is reused. */
  reset(buf: Uint8Array, start: number, end: number): void {
    this.buf = buf;
    this.start = start;
    this.end = end;
    this.count = 0;
    this.#seen = 0;
    this.#connection = undefined;
  }

  /** Lets go of the bytes (a head kept for reuse must not hold a connection's buffer). */
  clear(): void {
    this.reset(EMPTY, 0, 0);
  }

  /** Records a field (called by the parser). */
  add(lineStart: number, colon: number, valueStart: number, valueEnd: number, lineEnd: number) {
    const i = this.count++;
    if (i === this.#ids.length) this.#grow();
    const at = this.#at;
    const o = i * STRIDE;
    at[o] = lineStart;
    at[o + 1] = colon;
    at[o + 2] = valueStart;
    at[o + 3] = valueEnd;
    at[o + 4] = lineEnd;
    const id = fieldId(this.buf, lineStart, colon);
    this.#ids[i] = id;
    this.#seen |= 1 << id;
  }

  /** The id of field `i` ({@linkcode OTHER} for the rest). */
  id(i: number): number {
    return this.#ids[i]!;
  }

  /** Whether a field with this id is present. */
  has(id: number): boolean {
    return (this.#seen & (1 << id)) !== 0;
  }

  /** Index of the first field with this id, or -1. */
  indexOf(id: number): number {
    if (!this.has(id)) return -1;
    for (let i = 0; i < this.count; i++) if (this.#ids[i] === id) return i;
    return -1;
  }

  /** Number of fields with this id. */
  countOf(id: number): number {
    let n = 0;
    if (this.has(id)) { for (let i = 0; i < this.count; i++) if (this.#ids[i] === id) n++; }
    return n;
  }

  /** The first value of the field with this id, or undefined. */
  valueOf(id: number): string | undefined {
    const i = this.indexOf(id);
    return i === -1 ? undefined : this.value(i);
  }

  /** Where field line `i` starts in `buf`. */
  lineStart(i: number): number {
    return this.#at[i * STRIDE]!;
  }

  /** Where field line `i` ends in `buf` (at its CRLF). */
  lineEnd(i: number): number {
    return this.#at[i * STRIDE + 4]!;
  }

  /** Where the value of field `i` starts in `buf` (after leading whitespace). */
  valueStart(i: number): number {
    return this.#at[i * STRIDE + 2]!;
  }

  /** Where the value of field `i` ends in `buf` (before trailing whitespace). */
  valueEnd(i: number): number {
    return this.#at[i * STRIDE + 3]!;
  }

  /** Value of field `i`, surrounding whitespace trimmed. */
  value(i: number): string {
    return latin1(this.buf, this.valueStart(i), this.valueEnd(i));
  }

  /** Whether the value of field `i` is exactly `s`. */
  valueIs(i: number, s: string): boolean {
    const start = this.valueStart(i);
    if (this.valueEnd(i) - start !== s.length) return false;
    for (let j = 0; j < s.length; j++) if (this.buf[start + j] !== s.charCodeAt(j)) return false;
    return true;
  }

  /** Name of field `i` as spelled on the wire. */
  rawName(i: number): string {
    return latin1(this.buf, this.lineStart(i), this.#at[i * STRIDE + 1]!);
  }

  /** Name of field `i`, lower-cased. */
  name(i: number): string {
    const id = this.#ids[i]!;
    if (id !== OTHER) return KNOWN[id]!;
    const start = this.lineStart(i);
    const end = this.#at[i * STRIDE + 1]!;
    if (end - start <= INTERN_MAX) return interned(this.buf, start, end, true);
    return this.rawName(i).toLowerCase();
  }

  /** Every field name, lower-cased (made on each call: not for the hot path). */
  get names(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.name(i));
  }

  /** Every field name as spelled on the wire (made on each call). */
  get rawNames(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.rawName(i));
  }

  /** Every field value (made on each call). */
  get values(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.value(i));
  }

  /** The lower-cased comma-separated tokens of every field with this id. */
  tokens(id: number): string[] {
    if (!this.has(id)) return NO_TOKENS;
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) {
      if (this.#ids[i] !== id) continue;
      for (const t of this.value(i).split(",")) {
        const v = t.trim().toLowerCase();
        if (v) out.push(v);
      }
    }
    return out;
  }

  /** The tokens of `Connection`, computed once per head (no string for the usual values). */
  get connection(): string[] {
    if (this.#connection !== undefined) return this.#connection;
    let tokens = NO_TOKENS;
    if (this.has(CONNECTION)) {
      const i = this.indexOf(CONNECTION);
      if (this.countOf(CONNECTION) > 1) tokens = this.tokens(CONNECTION);
      else if (this.#valueIsToken(i, KEEP_ALIVE_BYTES)) tokens = KEEP_ALIVE_TOKENS;
      else if (this.#valueIsToken(i, CLOSE_BYTES)) tokens = CLOSE_TOKENS;
      else tokens = this.tokens(CONNECTION);
    }
    return this.#connection = tokens;
  }

  // The value of field i is `token` (lower-case) in any case.
  #valueIsToken(i: number, token: Uint8Array): boolean {
    return caselessIs(this.buf, this.valueStart(i), this.valueEnd(i), token);
  }

  #grow(): void {
    const at = new Int32Array(this.#at.length * 2);
    at.set(this.#at);
    this.#at = at;
    const ids = new Uint8Array(this.#ids.length * 2);
    ids.set(this.#ids);
    this.#ids = ids;
  }
}

/**
 * Whether the connection stays open after this message (RFC 9112 §9.3): HTTP/1.1
 * unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { keepsAlive } from "./fields.ts";
 * import { parseRequestHead } from "./parse.ts";
 * assert(keepsAlive(parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n")));
 * assert(!keepsAlive(parseRequestHead("GET / HTTP/1.0\r\n\r\n")));
 * ```
 */
export function keepsAlive(head: Fields & { minor: 0 | 1 }): boolean {
  const tokens = head.connection;
  return head.minor === 1 ? !tokens.includes("close") : tokens.includes("keep-alive");
}
