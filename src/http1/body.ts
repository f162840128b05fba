/**
 * Message body framing (RFC 9112 §6): how long a body is, and a strict,
 * incremental parser for the chunked coding.
 *
 * @module
 */
import { CONTENT_LENGTH, type Fields, latin1, TRANSFER_ENCODING } from "./fields.ts";
import { HttpError } from "./head.ts";
import type { RequestHead, ResponseHead } from "./parse.ts";

/** How a message body is delimited. */
export type BodyKind = "none" | "length" | "chunked" | "close";

/** The framing of one message body. */
export interface Framing {
  /** How the body is delimited: none, `Content-Length`, chunked, or connection close. */
  kind: BodyKind;
  /** Byte count when `kind` is `"length"`, else 0. */
  length: number;
}

const NONE: Framing = { kind: "none", length: 0 };
const CHUNKED: Framing = { kind: "chunked", length: 0 };
const CLOSE: Framing = { kind: "close", length: 0 };
const KNOWN_CODINGS = new Set(["chunked", "gzip", "x-gzip", "deflate", "compress", "x-compress"]);
const DIGITS_REGEXP = /^[0-9]{1,15}$/;

/**
 * Framing of a request body; rejects every ambiguous combination.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseRequestHead } from "./parse.ts";
 * import { requestFraming } from "./body.ts";
 * const h = parseRequestHead("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
 * assert(requestFraming(h).length === 5);
 * ```
 * @throws {HttpError} 400 for ambiguous or malformed framing, 501 for an unknown coding.
 */
export function requestFraming(head: RequestHead): Framing {
  const hasCl = head.has(CONTENT_LENGTH);
  if (head.has(TRANSFER_ENCODING)) {
    const te = head.tokens(TRANSFER_ENCODING);
    if (hasCl) throw new HttpError(400, "Both Transfer-Encoding and Content-Length");
    if (head.minor === 0) throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
    checkCodings(te, 400);
    if (te[te.length - 1] !== "chunked" || te.indexOf("chunked") !== te.length - 1) {
      throw new HttpError(400, "Transfer-Encoding must end with a single chunked");
    }
    return CHUNKED;
  }
  if (hasCl) return lengthFraming(head, 400);
  return NONE;
}

/**
 * Framing of a response body, given the request method it answers.
 *
 * @throws {HttpError} 502 for ambiguous or malformed framing.
 */
export function responseFraming(head: ResponseHead, method: string): Framing {
  const s = head.status;
  if (method === "HEAD" || s < 200 || s === 204 || s === 304) return NONE;
  const hasCl = head.has(CONTENT_LENGTH);
  if (head.has(TRANSFER_ENCODING)) {
    if (hasCl) throw new HttpError(502, "Backend sent both Transfer-Encoding and Content-Length");
    const te = head.tokens(TRANSFER_ENCODING);
    checkCodings(te, 502);
    if (te[te.length - 1] === "chunked" && head.minor === 1) {
      if (te.indexOf("chunked") !== te.length - 1) {
        throw new HttpError(502, "Backend sent chunked twice");
      }
      return CHUNKED;
    }
    return CLOSE;
  }
  if (hasCl) return lengthFraming(head, 502);
  return CLOSE;
}

function checkCodings(codings: string[], status: number): void {
  if (codings.length === 0) throw new HttpError(status, "Empty Transfer-Encoding");
  for (const c of codings) {
    if (!KNOWN_CODINGS.has(c)) {
      throw new HttpError(status === 400 ? 501 : status, `Unknown transfer coding: ${c}`);
    }
  }
}

function lengthFraming(head: Fields, status: number): Framing {
  let length = -1;
  for (let i = 0; i < head.count; i++) {
    if (head.id(i) !== CONTENT_LENGTH) continue;
    const n = digits(head.buf, head.valueStart(i), head.valueEnd(i));
    if (n !== -1) { // the usual single number
      if (length !== -1 && n !== length) throw new HttpError(status, "Differing Content-Length");
      length = n;
      continue;
    }
    for (const part of head.value(i).split(",")) {
      const v = part.trim();
      if (!DIGITS_REGEXP.test(v)) throw new HttpError(status, "Malformed Content-Length");
      const n = Number(v);
      if (length !== -1 && n !== length) throw new HttpError(status, "Differing Content-Length");
      length = n;
    }
  }
  return length === 0 ? NONE : { kind: "length", length };
}

// The value of 1 to 15 ASCII digits in buf[start..end), or -1.
function digits(buf: Uint8Array, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

const ST_SIZE = 0;
const ST_DATA = 1;
const ST_DATA_END = 2;
const ST_TRAILER = 3;
/** Parser state: the body is complete. */
export const CHUNKS_DONE = 4;
const MAX_LINE = 4096;
const HEX = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) HEX[65 + c] = HEX[97 + c] = 10 + c;

/**
 * Incremental, strict parser of the chunked coding. Feed it buffered bytes with
 * {@linkcode ChunkedParser.framing}; while {@linkcode ChunkedParser.state} is
 * data, the caller moves `remaining` data bytes itself.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { ChunkedParser, CHUNKS_DONE } from "./body.ts";
 * const p = new ChunkedParser(400);
 * const b = new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n");
 * let pos = p.framing(b, 0, b.length); // reads "3\r\n"
 * pos += p.remaining; p.dataDone(); // skips "abc"
 * pos = p.framing(b, pos, b.length);
 * assert(p.state === CHUNKS_DONE && pos === b.length);
 * ```
 */
export class ChunkedParser {
  /** Current state; 1 means data bytes are next. */
  state: number = ST_SIZE;
  /** Data bytes left in the current chunk. */
  remaining = 0;
  /** Total data bytes announced so far. */
  total = 0;
  readonly #errorStatus: number;
  readonly #trailers: string[] | undefined;

  /**
   * `errorStatus` is what a framing error is answered with (400 for requests, 502
   * for responses); the trailer fields are appended to `trailers` (name
   * lowercased, value trimmed: `name, value, ...`) when it is given.
   */
  constructor(errorStatus: number, trailers?: string[]) {
    this.#errorStatus = errorStatus;
    this.#trailers = trailers;
  }

  /** True while data bytes are next. */
  get inData(): boolean {
    return this.state === ST_DATA;
  }

  /** Call after moving all `remaining` data bytes. */
  dataDone(): void {
    this.remaining = 0;
    this.state = ST_DATA_END;
  }

  /**
   * Consumes framing bytes from `buf[pos..end)` until data, the end of the body, or
   * the end of the available bytes.
   *
   * @returns the position after what was consumed.
   * @throws {HttpError} on malformed framing, or a line longer than 4 KiB.
   */
  framing(buf: Uint8Array, pos: number, end: number): number {
    while (pos < end) {
      const st = this.state;
      if (st === ST_DATA || st === CHUNKS_DONE) return pos;
      if (st === ST_DATA_END) {
        if (end - pos < 2) return pos;
        if (buf[pos] !== 13 || buf[pos + 1] !== 10) this.#fail("Chunk data not followed by CRLF");
        pos += 2;
        this.state = ST_SIZE;
        continue;
      }
      const lf = buf.indexOf(10, pos);
      if (lf === -1 || lf >= end) {
        if (end - pos > MAX_LINE) this.#fail("Chunk line too long");
        return pos;
      }
      if (lf === pos || buf[lf - 1] !== 13) this.#fail("Chunk line not terminated by CRLF");
      if (st === ST_SIZE) this.#sizeLine(buf, pos, lf - 1);
      else if (lf - 1 === pos) this.state = CHUNKS_DONE;
      else this.#trailerLine(buf, pos, lf - 1);
      pos = lf + 1;
    }
    return pos;
  }

  #sizeLine(buf: Uint8Array, pos: number, end: number): void {
    let size = 0;
    let i = pos;
    for (; i < end; i++) {
      const c = buf[i]!;
      const d = c < 128 ? HEX[c]! : -1;
      if (d === -1) break;
      if (i - pos >= 13) this.#fail("Chunk size too large");
      size = size * 16 + d;
    }
    if (i === pos) this.#fail("Malformed chunk size");
    if (i < end) { // BWS ";" chunk-ext: visible characters, SP and HTAB only
      while (i < end && (buf[i] === 0x20 || buf[i] === 9)) i++;
      if (i === end || buf[i] !== 0x3b) this.#fail("Malformed chunk extension");
      for (; i < end; i++) {
        const c = buf[i]!;
        if ((c < 0x20 && c !== 9) || c === 0x7f) this.#fail("Malformed chunk extension");
      }
    }
    this.total += size;
    if (size === 0) this.state = ST_TRAILER;
    else {
      this.remaining = size;
      this.state = ST_DATA;
    }
  }

  #trailerLine(buf: Uint8Array, pos: number, end: number): void {
    const colon = buf.indexOf(0x3a, pos);
    if (colon <= pos || colon >= end || buf[pos] === 0x20 || buf[pos] === 9) {
      this.#fail("Malformed trailer field");
    }
    for (let i = pos; i < end; i++) {
      const c = buf[i]!;
      if ((c < 0x20 && c !== 9) || c === 0x7f || (i < colon && (c === 0x20 || c === 9))) {
        this.#fail("Malformed trailer field");
      }
    }
    if (this.#trailers !== undefined) {
      this.#trailers.push(
        latin1(buf, pos, colon).toLowerCase(),
        latin1(buf, colon + 1, end).trim(),
      );
    }
  }

  #fail(message: string): never {
    throw new HttpError(this.#errorStatus, message);
  }
}
