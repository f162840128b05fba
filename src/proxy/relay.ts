/**
 * Moving bodies from a {@linkcode BufReader} to a {@linkcode BufWriter} chunk by
 * chunk, in the read buffer itself: backpressure comes from awaiting each write,
 * and a body is never held whole in memory.
 *
 * @module
 */
import { BODY_READ_BUFFER, type BufReader, type BufWriter } from "../http1/io.ts";
import { ChunkedParser, CHUNKS_DONE, type Framing } from "../http1/body.ts";
import { HttpError } from "../http1/head.ts";

const SMALL_BODY = 1024;

/** Thrown when the sending peer closes before the end of a framed body. */
export class ClosedEarlyError extends Error {
  /** Names the side that closed. */
  constructor(side: string) {
    super(`${side} closed the connection before the end of the body`);
    this.name = "ClosedEarlyError";
  }
}

/** Options for {@linkcode relayBody}. */
export interface RelayOptions {
  /** Status for framing errors: 400 for requests, 502 for responses. */
  errorStatus: number;
  /** Which side is read, for messages (`client` or `backend`). */
  side: string;
  /** Write only the data of a chunked body (for an HTTP/1.0 client). @default {false} */
  dechunk?: boolean;
  /** Largest body in bytes; 0 = unlimited. Larger → HttpError 413. @default {0} */
  maxBody?: number;
  /** Where a chunked body's trailer fields go (`name, value, ...`), when they are wanted. */
  trailers?: string[];
}

/**
 * Relays one body framed by `framing` from `src` to `dst` (staged bytes are
 * flushed whenever a read has to wait). A chunked body is validated and passed on
 * byte for byte.
 *
 * @returns the number of body bytes moved (data bytes for a chunked body); a plain
 * number when the body was already buffered whole and nothing had to wait.
 * @throws {ClosedEarlyError} when `src` ends before the body does.
 * @throws {HttpError} on malformed chunked framing, or a body over `maxBody`.
 *
 * @example
 * ```ts ignore
 * await relayBody(client.reader, backend.writer, { kind: "length", length: 5 }, {
 *   errorStatus: 400, side: "client",
 * });
 * ```
 */
export function relayBody(
  src: BufReader,
  dst: BufWriter,
  framing: Framing,
  options: RelayOptions,
): number | Promise<number> {
  if (framing.kind === "none") return 0;
  if (framing.kind === "length" && framing.length <= src.buffered) {
    // all of it is here already (a small response): no loop, no promise unless it must wait
    const n = framing.length;
    if (n <= SMALL_BODY) { // copied into the write stage: no view, no promise
      dst.writeBytes(src.buf, src.start, src.start + n);
      src.consume(n);
      return n;
    }
    const w = dst.write(src.buf.subarray(src.start, src.start + n));
    if (w === undefined) {
      src.consume(n);
      return n;
    }
    return w.then(() => {
      src.consume(n);
      return n;
    });
  }
  if (src.buf.length < BODY_READ_BUFFER) {
    src.resize(BODY_READ_BUFFER); // more than what is buffered is coming: read it in larger pieces
  }
  switch (framing.kind) {
    case "length":
      return relayLength(src, dst, framing.length, options.side);
    case "chunked":
      return relayChunked(src, dst, options);
    case "close":
      return relayUntilClose(src, dst);
  }
}

async function more(src: BufReader, dst: BufWriter, side: string): Promise<void> {
  await dst.flush();
  if (!(await src.fill())) throw new ClosedEarlyError(side);
}

async function relayLength(
  src: BufReader,
  dst: BufWriter,
  length: number,
  side: string,
): Promise<number> {
  let left = length;
  while (left > 0) {
    if (src.buffered === 0) await more(src, dst, side);
    const n = Math.min(left, src.buffered);
    const w = dst.write(src.buf.subarray(src.start, src.start + n));
    if (w !== undefined) await w;
    src.consume(n);
    left -= n;
  }
  return length;
}

async function relayChunked(
  src: BufReader,
  dst: BufWriter,
  options: RelayOptions,
): Promise<number> {
  const parser = new ChunkedParser(options.errorStatus, options.trailers);
  const max = options.maxBody ?? 0;
  const dechunk = options.dechunk ?? false;
  let moved = 0;
  for (;;) {
    if (parser.inData) {
      if (src.buffered === 0) await more(src, dst, options.side);
      const n = Math.min(parser.remaining, src.buffered);
      await dst.write(src.buf.subarray(src.start, src.start + n));
      src.consume(n);
      moved += n;
      parser.remaining -= n;
      if (parser.remaining === 0) parser.dataDone();
      continue;
    }
    const pos = parser.framing(src.buf, src.start, src.end);
    if (max > 0 && parser.total > max) {
      throw new HttpError(413, "Request body over limits.max_body");
    }
    if (!dechunk && pos > src.start) await dst.write(src.buf.subarray(src.start, pos));
    src.consume(pos - src.start);
    if (parser.state === CHUNKS_DONE) return moved;
    if (!parser.inData) await more(src, dst, options.side);
  }
}

/**
 * Relays everything until `src` closes (a close-delimited response, or one
 * direction of an upgraded connection).
 *
 * @returns the number of bytes moved.
 */
export async function relayUntilClose(src: BufReader, dst: BufWriter): Promise<number> {
  let moved = 0;
  for (;;) {
    if (src.buffered > 0) {
      const n = src.buffered;
      await dst.write(src.buf.subarray(src.start, src.end));
      src.consume(n);
      moved += n;
    }
    await dst.flush();
    if (!(await src.fill())) return moved;
  }
}
