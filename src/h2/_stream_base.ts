/**
 * What server and client HTTP/2 streams share: the receive queue behind
 * `read()`, the one pending `write()` and `end()` the connection's writer takes
 * bytes from, flow-control windows, failure and timeouts (RFC 9113 §5).
 *
 * @module
 */
import type { Timed } from "../timer/watchdog.ts";

/** What a stream needs from its connection. */
export interface StreamHost {
  /** Encodes and queues a HEADERS frame (plus CONTINUATION) for `stream`. */
  sendHeaders(stream: StreamBase, list: readonly string[], options: { endStream: boolean }): void;
  /** `stream` has data or an end to send. */
  wantSend(stream: StreamBase): void;
  /** `stream` sent END_STREAM (in a HEADERS frame). */
  localEnded(stream: StreamBase): void;
  /** The application reset `stream`. */
  resetStream(stream: StreamBase, code: number): void;
  /** The application consumed `n` body bytes of `stream`. */
  consumed(stream: StreamBase, n: number): void;
  /** Current time, ms (at most a tick old). */
  readonly now: number;
  /** Body idle timeout, ms (0 = none). */
  readonly bodyIdleTimeout: number;
}

/** How a stream starts. */
export interface StreamInit {
  /** Stream id. */
  id: number;
  /** Our side: it names who reset the stream in error messages. */
  side: "server" | "client";
  /** Bytes the peer may send at first. */
  recvWindow: number;
  /** Bytes we may send at first. */
  sendWindow: number;
  /** END_STREAM already received. */
  remoteClosed: boolean;
  /** END_STREAM already sent (and end() needs no call). */
  localClosed: boolean;
  /** Content-length of the body we receive, -1 when absent. */
  contentLength: number;
}

type Settle<T> = { resolve(value: T): void; reject(e: unknown): void };

const NULL_RESULT: Promise<null> = Promise.resolve(null);
/**
 * What write() and end() return when they are done at once (their bytes copied or
 * nothing to wait for): a caller may skip awaiting it.
 */
export const SETTLED: Promise<void> = Promise.resolve();
const EMPTY_CHUNKS: Uint8Array[] = [];
const EMPTY = new Uint8Array(0);
/**
 * Bytes a stream may copy and hold for the writer (so write() resolves at once):
 * a small response leaves its exchange without waiting for the flush.
 */
export const COPY_WRITE_MAX = 16384;

/**
 * One stream's receive and send state; the connection drives it, the
 * application reads and writes through it.
 *
 * @example
 * ```ts ignore
 * // subclassed by ServerStream and ClientStream only
 * const chunk = await stream.read();
 * ```
 */
export abstract class StreamBase implements Timed {
  /** Stream id. */
  readonly id: number;
  /** Trailers received, once read() returned null (undefined if none). */
  trailers: readonly string[] | undefined;
  /** Bytes the peer may still send on this stream. */
  recvWindow: number;
  /** Bytes we may still send on this stream. */
  sendWindow: number;
  /** Consumed bytes not yet returned to the peer by WINDOW_UPDATE. */
  unacked = 0;
  /** END_STREAM received (half-closed remote). */
  remoteClosed: boolean;
  /** END_STREAM sent or being sent (half-closed local). */
  localClosed: boolean;
  /** Closed for good (removed from the connection). */
  closed = false;
  /** Content-length of the body we receive, -1 when absent. */
  contentLength: number;
  /** Body bytes received. */
  received = 0;
  /** Epoch ms at which a wait on the peer times out; 0 = none. */
  readDeadline = 0;
  /** Epoch ms at which waiting on a zero send window times out; 0 = none. */
  sendDeadline = 0;
  /** end() was called (or the HEADERS we sent ended the stream). */
  endRequested: boolean;
  /** Trailers given to end(), as sent. */
  endTrailers: readonly string[] | undefined;
  /** Told once, when the stream fails (cheaper than a listener on `signal`). */
  failureListener: { cancel(reason: unknown): void } | undefined;
  /**
   * ms a wait on the peer (a read, a zero send window) may last before the stream
   * is reset; 0 = none. The connection's body idle timeout unless whoever owns
   * the stream times it (the proxy's exchange does).
   */
  idleTimeout: number;

  readonly #host: StreamHost;
  readonly #side: "server" | "client";
  #chunks: Uint8Array[] = EMPTY_CHUNKS;
  #first = 0;
  #waiter: Settle<Uint8Array | null> | undefined;
  #error: Error | undefined;
  #ac: AbortController | undefined;
  #out: Uint8Array | undefined;
  #outOwned = false; // #out is our copy: its write() has resolved already
  #outStart = 0;
  #outEnd = 0;
  #writeDone: Settle<void> | undefined;

  /** Starts the stream's state from `init`. */
  constructor(host: StreamHost, init: StreamInit) {
    this.#host = host;
    this.#side = init.side;
    this.id = init.id;
    this.recvWindow = init.recvWindow;
    this.sendWindow = init.sendWindow;
    this.remoteClosed = init.remoteClosed;
    this.localClosed = init.localClosed;
    this.endRequested = init.localClosed;
    this.contentLength = init.contentLength;
    this.idleTimeout = host.bodyIdleTimeout;
  }

  /** Earliest pending timeout (Watchdog contract). */
  get deadline(): number {
    const r = this.readDeadline;
    const s = this.sendDeadline;
    return r === 0 ? s : s === 0 ? r : Math.min(r, s);
  }

  /** Called by the watchdog once a wait on the peer lasted bodyIdleTimeout. */
  expire(): void {
    this.readDeadline = this.sendDeadline = 0;
    const peer = this.#side === "server" ? "peer" : "server";
    const err = new Error(
      `Stream ${this.id} timed out: the ${peer} sent nothing or held a zero window`,
    );
    if (!this.closed) this.#host.resetStream(this, 0x8 /* CANCEL */);
    this.fail(err);
  }

  /** Aborted when the stream fails (reset, connection loss, timeout). */
  get signal(): AbortSignal {
    let ac = this.#ac;
    if (ac === undefined) {
      ac = this.#ac = new AbortController();
      if (this.#error !== undefined) ac.abort(this.#error);
    }
    return ac.signal;
  }

  /** The error the stream failed with, if any. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Received body bytes not yet read by the application. */
  get unread(): number {
    let n = 0;
    for (let i = this.#first; i < this.#chunks.length; i++) n += this.#chunks[i]!.length;
    return n;
  }

  /**
   * The next DATA payload (a copy the caller owns), or null at the end of the
   * body; consuming it returns receive window to the peer.
   */
  read(): Promise<Uint8Array | null> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#first < this.#chunks.length) {
      const c = this.#chunks[this.#first]!;
      this.#chunks[this.#first++] = EMPTY;
      if (this.#first === this.#chunks.length) {
        this.#chunks.length = 0;
        this.#first = 0;
      }
      this.#host.consumed(this, c.length);
      return Promise.resolve(c);
    }
    if (this.remoteClosed) return NULL_RESULT;
    if (this.#waiter !== undefined) return Promise.reject(new Error("A read is already pending"));
    const t = this.idleTimeout;
    if (t > 0) this.readDeadline = this.#host.now + t;
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }

  /**
   * Takes DATA payload `buf[start..end)` (copied) and END_STREAM.
   *
   * @returns false when the body disagrees with content-length.
   */
  receiveData(buf: Uint8Array, start: number, end: number, endStream: boolean): boolean {
    const n = end - start;
    this.received += n;
    const cl = this.contentLength;
    if (cl >= 0 && (this.received > cl || (endStream && this.received !== cl))) return false;
    if (endStream) this.remoteClosed = true;
    if (n > 0) {
      const copy = buf.slice(start, end);
      const w = this.#waiter;
      if (w !== undefined) {
        this.#waiter = undefined;
        this.readDeadline = 0;
        this.#host.consumed(this, n);
        w.resolve(copy);
      } else {
        if (this.#chunks === EMPTY_CHUNKS) this.#chunks = [];
        this.#chunks.push(copy);
      }
    } else if (endStream) this.wakeEnd();
    return true;
  }

  /** Takes the trailers (END_STREAM). @returns false on a content-length mismatch. */
  receiveTrailers(list: string[]): boolean {
    this.trailers = list;
    const cl = this.contentLength;
    if (cl >= 0 && this.received !== cl) return false;
    return this.receiveData(EMPTY, 0, 0, true);
  }

  /** A pending read learns that the body ended. */
  protected wakeEnd(): void {
    const w = this.#waiter;
    if (w === undefined) return;
    this.#waiter = undefined;
    this.readDeadline = 0;
    w.resolve(null);
  }

  /** Fails the stream: the signal aborts, pending and later reads and writes reject. */
  fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.readDeadline = this.sendDeadline = 0;
    this.#ac?.abort(error);
    this.failureListener?.cancel(error);
    this.failed(error);
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(error);
    // a write already handed to the connection is settled by it
    if (this.#out !== undefined && this.#outStart < this.#outEnd) this.#rejectWrite(error);
  }

  /** Called by {@linkcode StreamBase.fail} once, before pending reads reject. */
  protected failed(_error: Error): void {}

  /** Rejects whatever write is still pending (the connection is gone). */
  abandon(error: Error): void {
    this.fail(error);
    this.rejectPending(error);
  }

  /** Rejects the pending write. */
  protected rejectPending(error: Error): void {
    this.#rejectWrite(error);
  }

  #rejectWrite(error: Error): void {
    const wd = this.#writeDone;
    this.#writeDone = undefined;
    this.#out = undefined;
    wd?.reject(error);
  }

  /** Why `write` or `end` may not be called yet ("" when they may). */
  protected notReady(_call: "data" | "end"): string {
    return "";
  }

  /** `trailers` as they go out in the final HEADERS. */
  protected abstract trailerList(trailers: readonly string[]): readonly string[];

  /**
   * Sends `data[start..end)` as DATA frames within the send windows. Up to
   * {@linkcode COPY_WRITE_MAX} bytes that the stream's window allows are copied
   * and the write resolves at once ({@linkcode SETTLED}); a larger one resolves
   * once every byte has been handed to the connection. Either way the caller may
   * then reuse `data`. One write at a time.
   */
  write(data: Uint8Array, start = 0, end: number = data.length): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    const why = this.notReady("data");
    if (why !== "") return Promise.reject(new Error(why));
    if (this.localClosed || this.endRequested) {
      const what = this.#side === "server" ? "has ended" : "request has ended";
      return Promise.reject(new Error(`Stream ${this.id} ${what}`));
    }
    const out = this.#out;
    if (out !== undefined && (!this.#outOwned || this.#writeDone !== undefined)) {
      return Promise.reject(new Error("A write is already pending"));
    }
    const n = end - start;
    if (out === undefined && n <= 0) return SETTLED;
    if (out === undefined && (n > COPY_WRITE_MAX || n > this.sendWindow)) {
      // too large to copy: the writer frames it from `data`, and the write settles after
      this.#out = data;
      this.#outOwned = false;
      this.#outStart = start;
      this.#outEnd = end;
      this.#host.wantSend(this);
      return new Promise<void>((resolve, reject) => this.#writeDone = { resolve, reject });
    }
    // copied, after what is left of an earlier copy still going out: the write resolves
    // at once while the copy is small and within the window, else once the writer took it
    const pending = out === undefined ? 0 : this.#outEnd - this.#outStart;
    const total = pending + n;
    const copy = new Uint8Array(total);
    if (out !== undefined) copy.set(out.subarray(this.#outStart, this.#outEnd));
    copy.set(data.subarray(start, end), pending);
    this.#out = copy;
    this.#outOwned = true;
    this.#outStart = 0;
    this.#outEnd = total;
    this.#host.wantSend(this);
    if (total <= COPY_WRITE_MAX && total <= this.sendWindow) return SETTLED;
    return new Promise<void>((resolve, reject) => this.#writeDone = { resolve, reject });
  }

  /**
   * Ends what we send: END_STREAM on the last DATA frame, an empty one, or on
   * trailing HEADERS, with the writer's next round. Resolves at once
   * ({@linkcode SETTLED}); a failure after that shows as the stream's error.
   */
  end(trailers?: readonly string[]): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    const why = this.notReady("end");
    if (why !== "") return Promise.reject(new Error(why));
    if (this.localClosed || this.endRequested) return SETTLED;
    this.endRequested = true;
    this.endTrailers = trailers !== undefined && trailers.length > 0
      ? this.trailerList(trailers)
      : undefined;
    this.#host.wantSend(this);
    return SETTLED; // END_STREAM goes out with the writer's next round
  }

  /** Resets the stream with `code` (RST_STREAM). */
  reset(code: number): void {
    if (this.closed) return;
    this.#host.resetStream(this, code);
    this.fail(new Error(`Stream ${this.id} reset by the ${this.#side}: code ${code}`));
  }

  /** Bytes of the current write not yet framed. */
  get outPending(): number {
    return this.#out === undefined ? 0 : this.#outEnd - this.#outStart;
  }

  /** The next `n` bytes of the current write, as a view; advances past them. */
  takeOut(n: number): Uint8Array {
    const out = this.#out!;
    const s = this.#outStart;
    this.#outStart = s + n;
    return s === 0 && n === out.length ? out : out.subarray(s, s + n);
  }

  /** Settles the write whose bytes all went out (after the connection flushed). */
  settleWrite(): void {
    if (this.#out !== undefined && this.#outStart === this.#outEnd) {
      this.#out = undefined;
      const wd = this.#writeDone;
      this.#writeDone = undefined;
      wd?.resolve();
    }
  }

  /** Body bytes received but unread are dropped (the stream closes). @returns their count. */
  dropUnread(): number {
    const n = this.unread;
    this.#chunks = EMPTY_CHUNKS;
    this.#first = 0;
    return n;
  }
}
