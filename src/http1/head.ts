/**
 * Reading HTTP/1.x message heads (RFC 9112 §2–§5) from a {@linkcode BufReader}:
 * waiting until a whole head is buffered, within limits. Anything ambiguous is an
 * {@linkcode HttpError}; parsing is in `parse.ts`.
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

/** Limits applied while reading a head. */
export interface HeadLimits {
  /** Longest request line; longer → 414. @default {8192} */
  maxLine?: number;
  /** Largest head in bytes; larger → 431 (or 502 for a response). */
  maxHead: number;
}

const LF = 10;
const CR = 13;

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
      reader.resize(Math.min(limits.maxHead, reader.buf.length * 2));
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

function headTooLarge(reader: BufReader, limits: HeadLimits, isResponse: boolean): HttpError {
  if (isResponse) return new HttpError(502, "Response head larger than limits.max_head");
  const lineEnd = reader.buf.subarray(reader.start, reader.end).indexOf(LF);
  if (lineEnd === -1 || lineEnd > (limits.maxLine ?? 8192)) {
    return new HttpError(414, "Request line longer than limits.max_request_line");
  }
  return new HttpError(431, "Request head larger than limits.max_head");
}
