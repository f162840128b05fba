/**
 * Strict parsing of HTTP/1.x message heads (RFC 9112 §2–§5) straight from bytes:
 * start line and field lines are checked byte by byte, fields are recorded as
 * offsets ({@linkcode Fields}), and only the method and target become strings.
 *
 * @module
 */
import { Fields, latin1, octets } from "./fields.ts";
import { HttpError } from "./head.ts";

const LF = 10;
const CR = 13;
const SP = 0x20;
const HTAB = 9;
const COLON = 0x3a;
const HASH = 0x23; // "#": a fragment is never part of a request target (RFC 9112 §3.2)
// RFC 9110 §5.6.2 tchar, for every byte value
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c < 58; c++) TCHAR[c] = 1;
for (let c = 65; c < 91; c++) TCHAR[c] = 1;
for (let c = 97; c < 123; c++) TCHAR[c] = 1;
// Bytes a request target may hold: visible ASCII but "#" (a fragment is never part of one)
const TARGET = new Uint8Array(256);
for (let c = 0x21; c < 0x7f; c++) TARGET[c] = 1;
TARGET[HASH] = 0;
const EMPTY = new Uint8Array(0);
const OWN_MIN = 1024;
const OWN_MAX = 8 * 1024; // a larger buffer (from a large head) is not kept for the next one
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

/** A parsed request head; its fields stay offsets into {@linkcode Fields.buf}. */
export class RequestHead extends Fields {
  /** Request method, as sent (case-sensitive). */
  method = "";
  /** Request target, as sent (origin, absolute, authority or asterisk form). */
  target = "";
  /** HTTP/1.`minor`. */
  minor: 0 | 1 = 1;
  /** Where the version starts in `buf`: `buf[start..versionAt)` is "method SP target SP". */
  versionAt = 0;
  /** Bytes owned by this head, filled by {@linkcode RequestHead.own}. */
  storage: Uint8Array = EMPTY;
  /** Bytes written by {@linkcode RequestHead.text} since {@linkcode RequestHead.beginText}. */
  textLength = 0;

  /**
   * Copies `buf[start..end)` into {@linkcode RequestHead.storage}, to be parsed
   * there: the head then outlives its reader's buffer (reused for the body).
   */
  own(buf: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (this.storage.length < n || this.storage.length > OWN_MAX) {
      this.storage = new Uint8Array(Math.max(n, OWN_MIN));
    }
    const into = this.storage;
    if (n > 128) into.set(buf.subarray(start, end));
    else for (let i = 0; i < n; i++) into[i] = buf[start + i]!;
  }

  /**
   * Starts writing the Latin-1 text of a head into {@linkcode RequestHead.storage}
   * (an HTTP/2 request rendered as HTTP/1.1), piece by piece with
   * {@linkcode RequestHead.text}, to be parsed there.
   */
  beginText(): void {
    this.textLength = 0;
    if (this.storage.length > OWN_MAX) this.storage = new Uint8Array(OWN_MIN);
  }

  /** Appends `s` (Latin-1) to the text begun by {@linkcode RequestHead.beginText}. */
  text(s: string): void {
    const at = this.textLength;
    const need = at + s.length;
    if (need > this.storage.length) {
      const next = new Uint8Array(Math.max(need, this.storage.length * 2, OWN_MIN));
      next.set(this.storage.subarray(0, at));
      this.storage = next;
    }
    const into = this.storage;
    for (let i = 0, j = at; i < s.length; i++) into[j++] = s.charCodeAt(i);
    this.textLength = need;
  }
}

/** A parsed response head; its fields stay offsets into {@linkcode Fields.buf}. */
export class ResponseHead extends Fields {
  /** HTTP/1.`minor`. */
  minor: 0 | 1 = 1;
  /** Three-digit status code. */
  status = 0;
  /** End of the status line in `buf` (at its CR). */
  statusEnd = 0;

  /** Reason phrase (may be empty). */
  get reason(): string {
    return latin1(this.buf, Math.min(this.start + 13, this.statusEnd), this.statusEnd);
  }
}

/**
 * Parses the request head in `buf[start..end)` into `into` (reused between requests).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseRequest, RequestHead } from "./parse.ts";
 * const bytes = new TextEncoder().encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
 * const head = parseRequest(new RequestHead(), bytes, 0, bytes.length);
 * assert(head.target === "/x" && head.count === 1);
 * ```
 * A higher minor version (`HTTP/1.2`) is read as HTTP/1.1 (RFC 9110 §6.2); a
 * method is a case-sensitive token kept as sent (`get` is an extension method).
 *
 * @throws {HttpError} 400 on malformed syntax or a `#fragment` in the target,
 * 414 on a request line over `maxLine`, 505 on an unsupported major version.
 */
export function parseRequest(
  into: RequestHead,
  buf: Uint8Array,
  start: number,
  end: number,
  maxLine = 8192,
): RequestHead {
  into.reset(buf, start, end);
  const eol = lineEnd(buf, start, end, 400);
  if (eol - start > maxLine) throw new HttpError(414, "Request line too long");
  let i = start;
  while (i < eol && TCHAR[buf[i]!] === 1) i++;
  const sp1 = i;
  if (sp1 === start || buf[sp1] !== SP) {
    throw new HttpError(
      400,
      sp1 < eol && buf[sp1] !== SP ? "Invalid method" : "Malformed request line",
    );
  }
  i++;
  while (i < eol && TARGET[buf[i]!] === 1) i++;
  const sp2 = i;
  if (sp2 === sp1 + 1 || buf[sp2] !== SP) {
    if (buf[sp2] === HASH) throw new HttpError(400, "Fragment in request target");
    const bad = sp2 < eol && buf[sp2] !== SP;
    throw new HttpError(400, bad ? "Invalid byte in request target" : "Malformed request line");
  }
  into.method = method(buf, start, sp1);
  into.target = latin1(buf, sp1 + 1, sp2);
  into.minor = version(buf, sp2 + 1, eol, false);
  into.versionAt = sp2 + 1;
  parseFields(into, eol + 2, 400);
  return into;
}

/**
 * Parses the response head in `buf[start..end)` into `into`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseResponse, ResponseHead } from "./parse.ts";
 * const bytes = new TextEncoder().encode("HTTP/1.1 404 Not Found\r\nX: 1\r\n\r\n");
 * const head = parseResponse(new ResponseHead(), bytes, 0, bytes.length);
 * assert(head.status === 404 && head.reason === "Not Found");
 * ```
 * @throws {HttpError} 502 on anything malformed.
 */
export function parseResponse(
  into: ResponseHead,
  buf: Uint8Array,
  start: number,
  end: number,
): ResponseHead {
  into.reset(buf, start, end);
  const eol = lineEnd(buf, start, end, 502);
  if (eol - start < 8 || buf[start + 8] !== SP) {
    throw new HttpError(502, "Malformed status line from backend");
  }
  into.minor = version(buf, start, start + 8, true);
  const status = statusCode(buf, start, eol);
  if (status === -1 || (eol - start > 12 && buf[start + 12] !== SP)) {
    throw new HttpError(502, "Malformed status code from backend");
  }
  into.status = status;
  into.statusEnd = eol;
  parseFields(into, eol + 2, 502);
  return into;
}

/**
 * Parses a request head given as text (one byte per code unit); for tests and tools.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseRequestHead } from "./parse.ts";
 * const h = parseRequestHead("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
 * assert(h.method === "GET" && h.values[0] === "x");
 * ```
 * @throws {HttpError} as {@linkcode parseRequest}.
 */
export function parseRequestHead(text: string, maxLine = 8192): RequestHead {
  const bytes = octets(text);
  return parseRequest(new RequestHead(), bytes, 0, bytes.length, maxLine);
}

/**
 * Parses a response head given as text; for tests and tools.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseResponseHead } from "./parse.ts";
 * const h = parseResponseHead("HTTP/1.1 204 No Content\r\n\r\n");
 * assert(h.status === 204 && h.reason === "No Content");
 * ```
 * @throws {HttpError} 502 on anything malformed.
 */
export function parseResponseHead(text: string): ResponseHead {
  const bytes = octets(text);
  return parseResponse(new ResponseHead(), bytes, 0, bytes.length);
}

// The index of the CR ending the line at `from`.
function lineEnd(buf: Uint8Array, from: number, end: number, status: number): number {
  const lf = buf.indexOf(LF, from);
  if (lf <= from || lf >= end || buf[lf - 1] !== CR) {
    throw new HttpError(status, "Line not terminated by CRLF");
  }
  return lf - 1;
}

// A common method as an interned string, any other decoded.
function method(buf: Uint8Array, start: number, end: number): string {
  next: for (const m of METHODS) {
    if (m.length !== end - start) continue;
    for (let i = 0; i < m.length; i++) if (buf[start + i] !== m.charCodeAt(i)) continue next;
    return m;
  }
  return latin1(buf, start, end);
}

// "HTTP/1.0" → 0, "HTTP/1.1" → 1, and a higher minor version "HTTP/1.2".."HTTP/1.9" → 1:
// RFC 9110 §6.2, a message of a higher minor version is processed as the highest one implemented.
function version(buf: Uint8Array, start: number, end: number, isResponse: boolean): 0 | 1 {
  if (end - start === 8 && isHttp1(buf, start)) {
    const minor = buf[start + 7]!;
    if (minor === 0x31) return 1;
    if (minor === 0x30) return 0;
    if (minor > 0x31 && minor <= 0x39) return 1;
  }
  const v = latin1(buf, start, Math.min(end, start + 16));
  const status = isResponse ? 502 : /^HTTP\/\d\.\d$/.test(v) ? 505 : 400;
  throw new HttpError(status, `Unsupported protocol version: ${v}`);
}

function isHttp1(buf: Uint8Array, at: number): boolean {
  return buf[at] === 0x48 && buf[at + 1] === 0x54 && buf[at + 2] === 0x54 &&
    buf[at + 3] === 0x50 && buf[at + 4] === 0x2f && buf[at + 5] === 0x31 && buf[at + 6] === 0x2e;
}

// The three digits after "HTTP/1.x ", 100..999, or -1.
function statusCode(buf: Uint8Array, start: number, eol: number): number {
  if (eol - start < 12) return -1;
  const a = buf[start + 9]! - 48;
  const b = buf[start + 10]! - 48;
  const c = buf[start + 11]! - 48;
  if (a < 1 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  return a * 100 + b * 10 + c;
}

function parseFields(out: Fields, pos: number, bad: number): void {
  const buf = out.buf;
  const end = out.end;
  for (;;) {
    const lf = buf.indexOf(LF, pos);
    if (lf === -1 || lf >= end || lf - 1 < pos || buf[lf - 1] !== CR) {
      throw new HttpError(bad, "Header line not terminated by CRLF");
    }
    const eol = lf - 1;
    if (eol === pos) return; // the empty line
    const first = buf[pos];
    if (first === SP || first === HTAB) throw new HttpError(bad, "Obsolete line folding");
    let colon = pos;
    while (colon < eol && TCHAR[buf[colon]!] === 1) colon++;
    if (colon === eol || buf[colon] !== COLON || colon === pos) {
      const c = buf.indexOf(COLON, pos);
      const nameless = c === -1 || c >= eol || c === pos;
      throw new HttpError(
        bad,
        nameless ? "Header line without a field name" : "Invalid byte in field name",
      );
    }
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    for (let i = vs; i < ve; i++) {
      const c = buf[i]!;
      if ((c < SP && c !== HTAB) || c === 0x7f) {
        throw new HttpError(bad, "Invalid byte in field value");
      }
    }
    out.add(pos, colon, vs, ve, eol);
    pos = lf + 1;
  }
}
