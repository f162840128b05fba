/**
 * HTTP/1.x message heads (RFC 9112 §2–§5): read from a {@linkcode BufReader} and
 * parsed strictly from bytes. Anything ambiguous is an {@linkcode HttpError}.
 *
 * @module
 */
import type { BufReader } from "./io.ts";

/** A protocol error with the status code to answer it with. */
export class HttpError extends Error {
  /** HTTP status to send (400, 413, 414, 431, 501, 502, 505 ...). */
  readonly status: number;
  /** Builds an error answered with `status`. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** Header fields in arrival order; `names` are lower-cased. */
export interface Fields {
  /** Field names, lower-cased. */
  names: string[];
  /** Field names as spelled on the wire. */
  rawNames: string[];
  /** Field values with surrounding whitespace trimmed. */
  values: string[];
  /** The head's text, and where each field line starts and ends (before its CRLF) in it. */
  text?: string;
  /** Start and end offsets in `text` of each field line, two entries per field. */
  lines?: number[];
  /** Memo of {@linkcode connectionTokens}. */
  connection?: string[];
}

/** A parsed request head. */
export interface RequestHead extends Fields {
  /** Request method, as sent (case-sensitive). */
  method: string;
  /** Request target, as sent (origin, absolute, authority or asterisk form). */
  target: string;
  /** HTTP/1.`minor`. */
  minor: 0 | 1;
}

/** A parsed response head. */
export interface ResponseHead extends Fields {
  /** HTTP/1.`minor`. */
  minor: 0 | 1;
  /** Three-digit status code. */
  status: number;
  /** Reason phrase (may be empty). */
  reason: string;
}

/** Limits applied while reading a head. */
export interface HeadLimits {
  /** Longest request line; longer → 414. @default {8192} */
  maxLine?: number;
  /** Largest head in bytes; larger → 431 (or 502 for a response). */
  maxHead: number;
}

const LF = 10;
const CR = 13;
const DECODER = new TextDecoder();
// RFC 9110 §5.6.2 tchar
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c < 58; c++) TCHAR[c] = 1;
for (let c = 65; c < 91; c++) TCHAR[c] = 1;
for (let c = 97; c < 123; c++) TCHAR[c] = 1;

/**
 * Waits until a whole head (ending in an empty line) is buffered.
 *
 * @returns the index just past the head's final CRLF in `reader.buf`, or -1 when
 * the peer closed before sending any byte of a head; a plain number (no promise)
 * when the whole head is already buffered.
 * @throws {HttpError} 414/431 when over the limits, 400 on a head cut short.
 */
export function readHead(
  reader: BufReader,
  limits: HeadLimits,
  isResponse = false,
): number | Promise<number> {
  let end: number;
  try {
    end = scanHead(reader, limits, isResponse, 0);
  } catch (e) {
    return Promise.reject(e); // one way to fail, whether or not it had to wait
  }
  return end >= 0 ? end : readHeadMore(reader, limits, isResponse);
}

async function readHeadMore(
  reader: BufReader,
  limits: HeadLimits,
  isResponse: boolean,
): Promise<number> {
  for (;;) {
    const scanned = Math.max(0, reader.buffered - 2); // already searched
    if (reader.end === reader.buf.length && reader.buf.length < limits.maxHead) {
      growBuffer(reader, limits.maxHead);
    }
    if (!(await reader.fill())) {
      if (reader.buffered === 0) return -1;
      if (!reader.eof) throw headTooLarge(reader, limits, isResponse);
      throw new HttpError(400, "Connection closed in the middle of a message head");
    }
    const end = scanHead(reader, limits, isResponse, scanned);
    if (end >= 0) return end;
  }
}

// The end of a head already buffered, or -2 when more bytes are needed.
function scanHead(
  reader: BufReader,
  limits: HeadLimits,
  isResponse: boolean,
  scanned: number,
): number {
  // RFC 9112 §2.2: ignore empty lines before a request line.
  while (!isResponse && reader.buffered >= 2 && reader.buf[reader.start] === CR) {
    if (reader.buf[reader.start + 1] !== LF) break;
    reader.consume(2);
    scanned = 0;
  }
  const buf = reader.buf;
  let i = buf.indexOf(LF, reader.start + scanned);
  while (i !== -1 && i < reader.end) {
    let end = -1;
    if (i + 1 < reader.end && buf[i + 1] === LF) end = i + 2;
    else if (i + 2 < reader.end && buf[i + 1] === CR && buf[i + 2] === LF) end = i + 3;
    if (end !== -1) {
      // a whole head can arrive in one read larger than maxHead
      if (end - reader.start > limits.maxHead) throw headTooLarge(reader, limits, isResponse);
      return end;
    }
    if (i + 2 >= reader.end) break;
    i = buf.indexOf(LF, i + 1);
  }
  if (reader.buffered >= limits.maxHead) throw headTooLarge(reader, limits, isResponse);
  return -2;
}

function growBuffer(reader: BufReader, max: number): void {
  const next = new Uint8Array(Math.min(max, reader.buf.length * 2));
  next.set(reader.buf.subarray(reader.start, reader.end));
  reader.end -= reader.start;
  reader.start = 0;
  reader.buf = next;
}

function headTooLarge(reader: BufReader, limits: HeadLimits, isResponse: boolean): HttpError {
  if (isResponse) return new HttpError(502, "Response head larger than limits.max_head");
  const lineEnd = reader.buf.subarray(reader.start, reader.end).indexOf(LF);
  if (lineEnd === -1 || lineEnd > (limits.maxLine ?? 8192)) {
    return new HttpError(414, "Request line longer than limits.max_request_line");
  }
  return new HttpError(431, "Request head larger than limits.max_head");
}

/** Decodes head bytes as Latin-1 octets (ASCII fast path). */
export function decodeHead(buf: Uint8Array, start: number, end: number): string {
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
 * Parses a request head (the text up to and including the empty line).
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./head.ts";
 * const h = parseRequestHead("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
 * console.assert(h.method === "GET" && h.values[0] === "x");
 * ```
 * @throws {HttpError} 400 on malformed syntax, 505 on an unsupported version.
 */
export function parseRequestHead(text: string, maxLine = 8192): RequestHead {
  const eol = lineEnd(text, 0);
  if (eol > maxLine) throw new HttpError(414, "Request line too long");
  const line = text.slice(0, eol);
  const sp1 = line.indexOf(" ");
  const sp2 = line.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 <= sp1 + 1 || line.indexOf(" ", sp2 + 1) !== -1) {
    throw new HttpError(400, "Malformed request line");
  }
  const method = line.slice(0, sp1);
  for (let i = 0; i < method.length; i++) {
    if (!isTchar(method.charCodeAt(i))) throw new HttpError(400, "Invalid method");
  }
  const target = line.slice(sp1 + 1, sp2);
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) throw new HttpError(400, "Invalid byte in request target");
  }
  const minor = parseVersion(line.slice(sp2 + 1), false);
  const head: RequestHead = {
    method,
    target,
    minor,
    names: [],
    rawNames: [],
    values: [],
    text,
    lines: [],
  };
  parseFields(text, eol + 2, head, false);
  return head;
}

/**
 * Parses a response head.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./head.ts";
 * const h = parseResponseHead("HTTP/1.1 204 No Content\r\n\r\n");
 * console.assert(h.status === 204);
 * ```
 * @throws {HttpError} 502 on anything malformed.
 */
export function parseResponseHead(text: string): ResponseHead {
  const eol = lineEnd(text, 0, 502);
  const line = text.slice(0, eol);
  const sp1 = line.indexOf(" ");
  if (sp1 !== 8) throw new HttpError(502, "Malformed status line from backend");
  const minor = parseVersion(line.slice(0, 8), true);
  const status = statusCode(line);
  if (status === -1 || (line.length > 12 && line.charCodeAt(12) !== 0x20)) {
    throw new HttpError(502, "Malformed status code from backend");
  }
  const head: ResponseHead = {
    minor,
    status,
    reason: line.slice(13),
    names: [],
    rawNames: [],
    values: [],
    text,
    lines: [],
  };
  parseFields(text, eol + 2, head, true);
  return head;
}

// The three digits after "HTTP/1.x ", 100..999, or -1.
function statusCode(line: string): number {
  if (line.length < 12) return -1;
  const a = line.charCodeAt(9) - 48;
  const b = line.charCodeAt(10) - 48;
  const c = line.charCodeAt(11) - 48;
  if (a < 1 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  return a * 100 + b * 10 + c;
}

function lineEnd(text: string, from: number, status = 400): number {
  const lf = text.indexOf("\n", from);
  if (lf <= from || text.charCodeAt(lf - 1) !== CR) {
    throw new HttpError(status, "Line not terminated by CRLF");
  }
  return lf - 1;
}

function parseVersion(v: string, isResponse: boolean): 0 | 1 {
  if (v === "HTTP/1.1") return 1;
  if (v === "HTTP/1.0") return 0;
  const status = isResponse ? 502 : /^HTTP\/\d\.\d$/.test(v) ? 505 : 400;
  throw new HttpError(status, `Unsupported protocol version: ${v.slice(0, 16)}`);
}

function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

function parseFields(text: string, pos: number, out: Fields, isResponse: boolean): void {
  const bad = isResponse ? 502 : 400;
  for (;;) {
    const eol = text.indexOf("\n", pos);
    if (eol === -1 || text.charCodeAt(eol - 1) !== CR || eol - 1 < pos) {
      throw new HttpError(bad, "Header line not terminated by CRLF");
    }
    const end = eol - 1;
    if (end === pos) return; // the empty line
    const first = text.charCodeAt(pos);
    if (first === 0x20 || first === 0x09) throw new HttpError(bad, "Obsolete line folding");
    const colon = text.indexOf(":", pos);
    if (colon === -1 || colon > end || colon === pos) {
      throw new HttpError(bad, "Header line without a field name");
    }
    for (let i = pos; i < colon; i++) {
      if (!isTchar(text.charCodeAt(i))) throw new HttpError(bad, "Invalid byte in field name");
    }
    let vs = colon + 1;
    let ve = end;
    while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
    while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
    for (let i = vs; i < ve; i++) {
      const c = text.charCodeAt(i);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
        throw new HttpError(bad, "Invalid byte in field value");
      }
    }
    const known = knownName(text, pos, colon);
    if (known !== undefined) { // the usual spellings of common fields: no new strings
      out.rawNames.push(known[0]);
      out.names.push(known[1]);
    } else {
      const raw = text.slice(pos, colon);
      out.rawNames.push(raw);
      out.names.push(raw.toLowerCase());
    }
    out.values.push(text.slice(vs, ve));
    out.lines?.push(pos, end);
    pos = eol + 1;
  }
}

// Common field names as they are usually spelled ([as sent, lower-case]), by length.
const KNOWN_NAMES = new Map<number, Array<readonly [string, string]>>();
for (
  const name of [
    "Host",
    "Date",
    "Server",
    "Connection",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "Keep-Alive",
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Cache-Control",
    "Last-Modified",
    "ETag",
    "Vary",
    "Via",
    "Cookie",
    "Set-Cookie",
    "Location",
    "Upgrade",
    "Expect",
    "Referer",
    "Origin",
    "Authorization",
    "X-Forwarded-For",
    "Content-Encoding",
  ]
) {
  const list = KNOWN_NAMES.get(name.length) ?? [];
  list.push([name, name.toLowerCase()], [name.toLowerCase(), name.toLowerCase()]);
  KNOWN_NAMES.set(name.length, list);
}

// The interned [raw, lower-case] pair when text[start..end) is a known name spelled
// exactly as in the table (canonical or all lower-case), else undefined.
function knownName(
  text: string,
  start: number,
  end: number,
): readonly [string, string] | undefined {
  const list = KNOWN_NAMES.get(end - start);
  if (list === undefined) return undefined;
  next: for (const pair of list) {
    const raw = pair[0];
    for (let i = 0; i < raw.length; i++) {
      if (text.charCodeAt(start + i) !== raw.charCodeAt(i)) continue next;
    }
    return pair;
  }
  return undefined;
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/**
 * Returns the lower-cased comma-separated tokens of every `name` field.
 *
 * @example
 * ```ts
 * import { fieldTokens } from "./head.ts";
 * const f = { names: ["connection"], rawNames: ["Connection"], values: ["Keep-Alive, X-A"] };
 * console.assert(fieldTokens(f, "connection").join() === "keep-alive,x-a");
 * ```
 */
export function fieldTokens(fields: Fields, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < fields.names.length; i++) {
    if (fields.names[i] !== name) continue;
    for (const t of fields.values[i]!.split(",")) {
      const v = t.trim().toLowerCase();
      if (v) out.push(v);
    }
  }
  return out;
}

const NO_TOKENS: string[] = [];

/**
 * The lower-cased tokens of the `Connection` field(s), computed once per head.
 *
 * @example
 * ```ts
 * import { connectionTokens, parseRequestHead } from "./head.ts";
 * const h = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n");
 * console.assert(connectionTokens(h)[0] === "close");
 * ```
 */
export function connectionTokens(fields: Fields): string[] {
  return fields.connection ??= fields.names.includes("connection")
    ? fieldTokens(fields, "connection")
    : NO_TOKENS;
}

/**
 * Whether the connection stays open after this message (RFC 9112 §9.3): HTTP/1.1
 * unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
 *
 * @example
 * ```ts
 * import { keepsAlive, parseRequestHead } from "./head.ts";
 * console.assert(keepsAlive(parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n")));
 * console.assert(!keepsAlive(parseRequestHead("GET / HTTP/1.0\r\n\r\n")));
 * ```
 */
export function keepsAlive(head: Fields & { minor: 0 | 1 }): boolean {
  const tokens = connectionTokens(head);
  return head.minor === 1 ? !tokens.includes("close") : tokens.includes("keep-alive");
}

/** Returns the first value of field `name` (lower-case), or undefined. */
export function fieldValue(fields: Fields, name: string): string | undefined {
  const i = fields.names.indexOf(name);
  return i === -1 ? undefined : fields.values[i];
}
