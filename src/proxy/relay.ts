/**
 * Moving bodies from a {@linkcode BufReader} to a {@linkcode BufWriter} chunk by
 * chunk, in the read buffer itself: backpressure comes from awaiting each write,
 * and a body is never held whole in memory. While a body moves, the reader reads
 * with a buffer lent by the shared pool (`body_buffers.ts`), one size larger after
 * each read that fills it, and given back when the body ends: one buffer per
 * direction, held only while a body moves (a pooled backend connection keeps its
 * lent buffer until it closes, so that a whole response fits its first read).
 *
 * @module
 */
import type { BufReader, BufWriter } from "../http1/io.ts";
import { BODY_BUFFER_SIZES, BODY_BUFFERS } from "../http1/body_buffers.ts";
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
  /** Given a copy of the body's data bytes as they move (a request being mirrored). */
  tee?: BodyTee | undefined;
}

/** Takes a copy of a body's data bytes (without chunked framing) as they move. */
export interface BodyTee {
  /** `buf[start..end)` is moving now (copy it: the buffer is reused). */
  push(buf: Uint8Array, start: number, end: number): void;
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
    options.tee?.push(src.buf, src.start, src.start + n);
    if (n <= SMALL_BODY) { // copied into the write stage: no view, no promise
      dst.writeBytes(src.buf, src.start, src.start + n);
      src.consume(n);
      return n;
    }
    const w = dst.writeFrom(src.buf, src.start, src.start + n); // with the head, in one write
    if (w === undefined) {
      src.consume(n);
      return n;
    }
    return w.then(() => {
      src.consume(n);
      return n;
    });
  }
  return relayLent(src, dst, framing, options);
}

// More than what is buffered is coming: read it with lent buffers, given back at the end
// (kept by a backend connection's reader while under half the budget is lent: see
// BufReader.keepLent).
async function relayLent(
  src: BufReader,
  dst: BufWriter,
  framing: Framing,
  options: RelayOptions,
): Promise<number> {
  // a buffer smaller than the first lent size, or a head read that filled it: more is waiting
  if (src.buf.length < FIRST_SIZE || src.end === src.buf.length) src.lendLarger();
  try {
    switch (framing.kind) {
      case "length":
        return await relayLength(src, dst, framing.length, options);
      case "chunked":
        return await relayChunked(src, dst, options);
      default:
        return await untilClose(src, dst, true);
    }
  } finally {
    // every read has settled: the buffer is free (a backend connection keeps it while
    // large buffers are plentiful, so that idle connections never hold most of the budget)
    if (!src.keepLent || BODY_BUFFERS.largeBytes > BODY_BUFFERS.budget / 2) src.restore();
  }
}

const FIRST_SIZE = BODY_BUFFER_SIZES[0]!;

async function more(src: BufReader, dst: BufWriter, side: string): Promise<void> {
  await dst.flush();
  if (!(await src.fill())) throw new ClosedEarlyError(side);
  if (src.end === src.buf.length) src.lendLarger(); // a full read: one size up
}

async function relayLength(
  src: BufReader,
  dst: BufWriter,
  length: number,
  options: RelayOptions,
): Promise<number> {
  const tee = options.tee;
  let left = length;
  while (left > 0) {
    if (src.buffered === 0) await more(src, dst, options.side);
    const n = Math.min(left, src.buffered);
    tee?.push(src.buf, src.start, src.start + n);
    const w = dst.writeFrom(src.buf, src.start, src.start + n);
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
      options.tee?.push(src.buf, src.start, src.start + n);
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
 * Relays everything until `src` closes (one direction of an upgraded connection),
 * reading with `src`'s own buffer: a tunnel may stay open and quiet for hours.
 *
 * @returns the number of bytes moved.
 */
export function relayUntilClose(src: BufReader, dst: BufWriter): Promise<number> {
  return untilClose(src, dst, false);
}

async function untilClose(
  src: BufReader,
  dst: BufWriter,
  grow: boolean,
): Promise<number> {
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
    if (grow && src.end === src.buf.length) src.lendLarger();
  }
}
