/**
 * Buffered reading and writing on a raw `Deno.Conn`, with buffers reused for the
 * whole life of a connection (no WHATWG streams on the hot path).
 *
 * @module
 */

/** The byte-stream side of a connection that the reader and writer use. */
export interface ByteConn {
  /** Reads into `p`; resolves to the byte count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; resolves to the number of bytes written. */
  write(p: Uint8Array): Promise<number>;
}

/** Default size of a connection's read buffer (grown for large heads and bodies). */
export const DEFAULT_READ_BUFFER = 16 * 1024;
/** Read buffer of a client connection between requests: idle connections stay cheap. */
export const SMALL_READ_BUFFER = 1024;
/**
 * Size of the read buffers a {@linkcode BufReader} borrows from the shared pool: a
 * 16 KiB HTTP/2 frame and its 9-byte header fit.
 */
export const LENT_READ_BUFFER = 16 * 1024 + 9;
const STAGE_SIZE = 8 * 1024;
// Room a body buffer keeps before the bytes read into it, where a staged head can join the
// first piece of the body for one write (BufWriter.writeFrom).
const HEADROOM = 1024;
const EMPTY = new Uint8Array(0);
const NO_BYTES = new Uint8Array(0); // the buffer of a reader made with size 0 (never written)
const RESOLVED = Promise.resolve();
const FALSE = Promise.resolve(false);
// Write stages not in use. A writer takes one for a response and gives it back once
// flushed, so 10,000 idle keep-alive connections hold no stage at all.
const FREE_STAGES: Uint8Array[] = [];
const MAX_FREE_STAGES = 1024;
const takeStage = (): Uint8Array => FREE_STAGES.pop() ?? new Uint8Array(STAGE_SIZE);
// Read buffers lent to readers while they have much to read, as HAProxy's on-demand
// buffers: an idle HTTP/2 connection reads into its own small buffer and holds none.
const FREE_READ_BUFFERS: Uint8Array[] = [];
const MAX_FREE_READ_BUFFERS = 256;

import { BODY_BUFFER_SIZES, BODY_BUFFERS } from "./body_buffers.ts";

/**
 * A read buffer over a connection: heads are parsed in place, bodies are relayed
 * straight out of it.
 *
 * @example
 * ```ts ignore
 * const reader = new BufReader(conn);
 * if (await reader.fill()) console.log(reader.buffered, "bytes ready");
 * ```
 */
export class BufReader {
  /** The connection read from. */
  readonly conn: ByteConn;
  /** The buffer; valid bytes are `buf[start..end)`. */
  buf: Uint8Array;
  /** Index of the first unread byte. */
  start = 0;
  /** Index after the last read byte. */
  end = 0;
  /** Set once the peer has closed its sending side. */
  eof = false;
  /** True when the last read filled all the room it had: more is probably waiting. */
  filled = false;
  #room = 0;
  #pending: Promise<boolean> | undefined;
  /** The reader's own buffer while a lent one is in use. */
  #own: Uint8Array | undefined;
  #bodyLent = false; // the lent buffer is a body buffer (body_buffers.ts): reads keep HEADROOM
  /**
   * Keep a body buffer after the body ends, until {@linkcode BufReader.restore} (a
   * backend connection: the first read of its next response can take a whole body).
   */
  keepLent = false;

  /** Wraps `conn` with a buffer of `size` bytes. */
  constructor(conn: ByteConn, size: number = DEFAULT_READ_BUFFER) {
    this.conn = conn;
    this.buf = size === 0 ? NO_BYTES : new Uint8Array(size); // 0: resized before the first read
  }

  /** Number of bytes read but not yet consumed. */
  get buffered(): number {
    return this.end - this.start;
  }

  /**
   * Makes the buffer at least `size` bytes, keeping unread bytes (no effect while a
   * prefetched read is pending).
   */
  resize(size: number): void {
    if (this.#pending !== undefined || size < this.buffered) return;
    if (this.#own !== undefined) {
      release(this.buf, this.#bodyLent);
      this.#own = undefined;
      this.#bodyLent = false;
    }
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    this.buf = next;
  }

  /**
   * Reads into `next` from now on, moving the unread bytes to `next[at..]` (its
   * front by default); `next` must hold them, and no prefetched read may be pending
   * (a body relay lends and takes back its buffers this way: see `body_buffers.ts`).
   *
   * @returns the buffer given up.
   */
  swap(next: Uint8Array, at = 0): Uint8Array {
    const old = this.buf;
    const n = this.end - this.start;
    if (n > 0) next.set(old.subarray(this.start, this.end), at);
    this.start = at;
    this.end = at + n;
    this.buf = next;
    return old;
  }

  /**
   * Reads with a body buffer of the next size up lent by the shared pool
   * (`body_buffers.ts`), unread bytes moved into it (after 1 KiB of room for a head to
   * be written with them: see {@linkcode BufWriter.writeFrom}); nothing changes at the
   * largest size, over the pool's budget, or while a prefetched read is pending.
   */
  lendLarger(): void {
    if (this.#pending !== undefined) return;
    const size = this.buf.length;
    let step = 0;
    while (step < BODY_BUFFER_SIZES.length && BODY_BUFFER_SIZES[step]! <= size) step++;
    if (step === BODY_BUFFER_SIZES.length) return;
    const next = BODY_BUFFERS.take(step);
    if (next === undefined) return;
    const old = this.swap(next, HEADROOM);
    if (this.#own === undefined) this.#own = old;
    else release(old, this.#bodyLent);
    this.#bodyLent = true;
  }

  /**
   * Goes back to the reader's own buffer now (unread bytes kept; a larger one when they
   * do not fit) and gives a lent one back. With a prefetched read pending (an idle
   * connection being closed), the lent buffer goes back once that read has settled.
   */
  restore(): void {
    const own = this.#own;
    if (own === undefined) return;
    this.#own = undefined;
    const body = this.#bodyLent;
    this.#bodyLent = false;
    const lent = this.buf;
    const pending = this.#pending;
    if (pending === undefined) {
      this.swap(this.buffered <= own.length ? own : new Uint8Array(this.buffered));
      release(lent, body);
      return;
    }
    const done = () => { // the connection is closing: nothing more is read
      this.buf = own;
      this.start = this.end = 0;
      this.eof = true;
      release(lent, body);
    };
    pending.then(done, done);
  }

  /** True while the buffer is one lent by {@linkcode BufReader.borrow}. */
  get lent(): boolean {
    return this.#own !== undefined;
  }

  /**
   * Reads into a buffer of at least `size` bytes lent from a shared pool (unread
   * bytes move with them) until {@linkcode BufReader.giveBack}; no effect while a
   * prefetched read is pending or when the buffer is that large already.
   *
   * @example
   * ```ts
   * import { assertEquals } from "@std/assert";
   * import { BufReader, LENT_READ_BUFFER } from "./io.ts";
   * const conn = { read: () => Promise.resolve(null), write: () => Promise.resolve(0) };
   * const r = new BufReader(conn, 1024);
   * r.borrow(16393);
   * assertEquals([r.lent, r.buf.length], [true, LENT_READ_BUFFER]);
   * assertEquals(r.giveBack(), true); // nothing buffered: the pool has it again
   * assertEquals([r.lent, r.buf.length], [false, 1024]);
   * ```
   */
  borrow(size: number): void {
    if (this.#pending !== undefined || this.buf.length >= size) return;
    const next = size <= LENT_READ_BUFFER
      ? FREE_READ_BUFFERS.pop() ?? new Uint8Array(LENT_READ_BUFFER)
      : new Uint8Array(size);
    if (this.end > this.start) next.set(this.buf.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    if (this.#own === undefined) this.#own = this.buf;
    else release(this.buf, this.#bodyLent);
    this.#bodyLent = false;
    this.buf = next;
  }

  /**
   * Gives a lent buffer back to the pool when nothing is buffered (and no read is
   * pending): reads go to the reader's own buffer again.
   *
   * @returns true when a buffer was given back.
   */
  giveBack(): boolean {
    const own = this.#own;
    if (own === undefined || this.#pending !== undefined || this.end !== this.start) return false;
    release(this.buf, this.#bodyLent);
    this.buf = own;
    this.#own = undefined;
    this.#bodyLent = false;
    this.start = this.end = 0;
    return true;
  }

  /** Marks `n` buffered bytes as consumed. */
  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) this.start = this.end = 0;
  }

  /**
   * Reads more bytes from the connection into the buffer, moving unread bytes to
   * the front first when the tail is full.
   *
   * @returns false at end of stream, or when the buffer is full of unread bytes.
   */
  fill(): Promise<boolean> {
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      return pending;
    }
    return this.#fill();
  }

  /**
   * Starts a read now, without waiting for it; the next {@linkcode BufReader.fill}
   * takes its result. Used on idle pooled connections to notice a peer's close.
   *
   * @returns the read in progress (it may reject: the caller handles both outcomes).
   */
  prefetch(): Promise<boolean> {
    const p = this.#fill();
    this.#pending = p;
    return p;
  }

  // Not an async function: one read, with handlers made once per reader, so a fill
  // allocates no generator (two fills happen on every proxied request).
  #fill(): Promise<boolean> {
    if (this.eof) return FALSE;
    if (this.end === this.buf.length) {
      if (this.start === 0) return FALSE;
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    if (this.end === 0 && this.#bodyLent) this.start = this.end = HEADROOM;
    const into = this.end === 0 ? this.buf : this.buf.subarray(this.end); // no view when empty
    this.#room = into.length;
    return this.conn.read(into).then(this.#onRead, this.#onReadError);
  }

  readonly #onRead = (n: number | null): boolean => {
    if (n === null) {
      this.eof = true;
      return false;
    }
    this.end += n;
    this.filled = n === this.#room;
    return true;
  };

  readonly #onReadError = (e: unknown): never => {
    this.eof = true; // reset or closed under us: nothing more will come
    throw e;
  };
}

// Gives a lent buffer back to its pool: a body buffer to body_buffers.ts (which counts them).
function release(buf: Uint8Array, body: boolean): void {
  if (body) BODY_BUFFERS.give(buf);
  else if (buf.length === LENT_READ_BUFFER && FREE_READ_BUFFERS.length < MAX_FREE_READ_BUFFERS) {
    FREE_READ_BUFFERS.push(buf);
  }
}

/**
 * A write buffer over a connection: small pieces (a head, a short body) are staged
 * and leave in one `write`; large pieces go straight through.
 *
 * @example
 * ```ts ignore
 * const w = new BufWriter(conn);
 * w.writeString("HTTP/1.1 204 No Content\r\n\r\n");
 * await w.flush();
 * ```
 */
export class BufWriter {
  /** The connection written to. */
  readonly conn: ByteConn;
  #buf: Uint8Array = EMPTY;
  #len = 0;
  #flushing = 0;
  /** Total bytes handed to the connection. */
  written = 0;
  /** Whether {@linkcode BufWriter.writeFrom} may send a staged head and a body in one write. */
  readonly joinHead: boolean;

  /**
   * Wraps `conn`; a stage is taken from a shared free list on first use.
   * `joinHead: false` keeps a staged head out of a large body's write (for TLS client
   * connections: see README, "Bulk bodies").
   */
  constructor(conn: ByteConn, options: { joinHead?: boolean } = {}) {
    this.conn = conn;
    this.joinHead = options.joinHead ?? true;
  }

  /** Stages a Latin-1 string (HTTP heads are octets); grows the stage if needed. */
  writeString(s: string): void {
    const buf = this.#reserve(this.#len + s.length);
    let j = this.#len;
    for (let i = 0; i < s.length; i++) buf[j++] = s.charCodeAt(i);
    this.#len = j;
  }

  /** Stages the bytes `src[start..end)` (a head's lines, copied as received). */
  writeBytes(src: Uint8Array, start: number, end: number): void {
    const need = this.#len + end - start;
    const buf = this.#reserve(need);
    if (end - start <= 32) { // a few bytes are copied faster by hand than by set()
      for (let i = start, j = this.#len; i < end; i++) buf[j++] = src[i]!;
    } else if (start === 0 && end === src.length) buf.set(src, this.#len); // no view to make
    else buf.set(src.subarray(start, end), this.#len);
    this.#len = need;
  }

  /**
   * Stages `p` when it fits in the stage (returning nothing: no promise, no wait),
   * otherwise flushes and writes `p` directly.
   */
  write(p: Uint8Array): Promise<void> | undefined {
    if (this.#buf === EMPTY && p.length <= STAGE_SIZE) this.#buf = takeStage();
    if (this.#len + p.length <= this.#buf.length) {
      this.#buf.set(p, this.#len);
      this.#len += p.length;
      return undefined;
    }
    return this.#writeThrough(p);
  }

  /**
   * Writes `buf[start..end)` as {@linkcode BufWriter.write} does, except that staged
   * bytes (a head) that do not leave room for it in the stage but fit in `buf` just
   * before `start` are copied there and leave with it in one write, not two. The
   * caller gives up `buf[0..start)` (bytes it has consumed). Not while a flush is
   * still in flight (its stage is still being written), nor when `joinHead` is off.
   */
  writeFrom(buf: Uint8Array, start: number, end: number): Promise<void> | undefined {
    const len = this.#len;
    if (
      len === 0 || len > start || !this.joinHead || len + end - start <= this.#buf.length ||
      this.#flushing !== 0
    ) {
      return this.write(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
    }
    const from = start - len;
    buf.set(this.#buf.subarray(0, len), from);
    this.#len = 0;
    this.#release();
    return this.#writeJoined(buf.subarray(from, end));
  }

  async #writeJoined(p: Uint8Array): Promise<void> {
    await writeAll(this.conn, p);
    this.written += p.length;
  }

  async #writeThrough(p: Uint8Array): Promise<void> {
    await this.flush();
    await writeAll(this.conn, p);
    this.written += p.length;
  }

  /** Writes every staged byte to the connection. */
  flush(): Promise<void> {
    if (this.#len === 0) return RESOLVED;
    const n = this.#len;
    this.#len = 0;
    this.#flushing = n;
    return this.conn.write(this.#buf.subarray(0, n)).then(this.#onFlushed);
  }

  // After the first write of a flush: usually all of it went; else write the rest.
  readonly #onFlushed = (w: number): Promise<void> | undefined => {
    const n = this.#flushing;
    if (w < n) return writeAll(this.conn, this.#buf.subarray(w, n)).then(() => this.#flushed(n));
    this.#flushed(n);
  };

  #flushed(n: number): void {
    this.#flushing = 0; // (a failed flush leaves it set: no joined write after that)
    this.written += n;
    if (this.#len === 0) this.#release();
  }

  /** Forgets staged bytes (used when the exchange is abandoned). */
  discard(): void {
    this.#len = 0;
  }

  #release(): void {
    const buf = this.#buf;
    this.#buf = EMPTY;
    if (buf.length === STAGE_SIZE && FREE_STAGES.length < MAX_FREE_STAGES) FREE_STAGES.push(buf);
  }

  // The stage, taken from the free list when there is none, with room for `need` bytes.
  #reserve(need: number): Uint8Array {
    if (this.#buf === EMPTY) this.#buf = takeStage();
    if (need > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(0, this.#len));
      this.#buf = next;
    }
    return this.#buf;
  }
}

/**
 * Writes all of `p` to `conn`, looping over partial writes.
 *
 * @example
 * ```ts ignore
 * await writeAll(conn, new TextEncoder().encode("hello"));
 * ```
 */
export async function writeAll(conn: ByteConn, p: Uint8Array): Promise<void> {
  let off = 0;
  while (off < p.length) {
    off += await conn.write(off === 0 ? p : p.subarray(off));
  }
}
