/**
 * One HTTP/2 stream on the client side: the request sent (head, body,
 * trailers) and the response received, under flow control (RFC 9113 §5, §8).
 *
 * @module
 */
import type { Timed } from "../proxy/watchdog.ts";

/** A response head: the status and the regular fields (flat `name, value, ...`). */
export interface H2Response {
  /** `:status` (200..599). */
  status: number;
  /** Regular fields, lowercase names, in the order received. */
  fields: string[];
  /** True when the HEADERS frame carried END_STREAM (no body; gRPC's trailers-only response). */
  endStream: boolean;
}

/**
 * Thrown when the server refused a stream, or a connection could not take it:
 * the request was not processed and is safe to retry on another connection
 * (RST_STREAM REFUSED_STREAM, or a stream above the last id of a GOAWAY).
 */
export class RefusedError extends Error {
  /** Makes the error; `message` says who refused. */
  constructor(message: string) {
    super(message);
    this.name = "RefusedError";
  }
}

/** A request stream as the application sees it. */
export interface H2ClientStream {
  /** Stream id (odd). */
  readonly id: number;
  /** Aborted when the stream fails (reset, connection loss, timeout). */
  readonly signal: AbortSignal;
  /** Trailers, once {@linkcode H2ClientStream.read} returned null (undefined if none). */
  readonly trailers: readonly string[] | undefined;
  /**
   * The final response head (1xx interim responses are skipped).
   *
   * @throws {RefusedError} when the server refused the stream (safe to retry).
   * @throws {Error} when the stream or the connection failed.
   */
  response(): Promise<H2Response>;
  /**
   * The next DATA payload of the response (a copy the caller owns), or null at
   * its end; consuming it returns receive window to the server.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Sends `data[start..end)` as request DATA within the send windows; resolves
   * once every byte went to the socket (then `data` may be reused). One write at a time.
   */
  write(data: Uint8Array, start?: number, end?: number): Promise<void>;
  /** Ends the request: END_STREAM on an empty DATA frame, or on trailing HEADERS. */
  end(trailers?: readonly string[]): Promise<void>;
  /** Resets the stream with `code` (RST_STREAM), e.g. CANCEL when the client went away. */
  reset(code: number): void;
}

/** What a stream needs from its connection. */
export interface ClientStreamHost {
  /** `stream` has data or an end to send. */
  wantSend(stream: ClientStream): void;
  /** The application reset `stream`. */
  resetStream(stream: ClientStream, code: number): void;
  /** The application consumed `n` response body bytes of `stream`. */
  consumed(stream: ClientStream, n: number): void;
  /** Current time, ms (at most a tick old). */
  readonly now: number;
  /** Body idle timeout, ms (0 = none). */
  readonly bodyIdleTimeout: number;
}

const NULL_RESULT: Promise<null> = Promise.resolve(null);
const RESOLVED: Promise<void> = Promise.resolve();
const EMPTY_CHUNKS: Uint8Array[] = [];
const EMPTY = new Uint8Array(0);
function ignore(): void {}

/**
 * The client side of one stream; the connection drives its state, the
 * application uses the {@linkcode H2ClientStream} surface.
 *
 * @example
 * ```ts ignore
 * // made by H2ClientConnection.request only
 * const s = h2.request({ method: "GET", scheme: "http", authority: "a", path: "/", fields: [], endStream: true });
 * const { status } = await s.response();
 * ```
 */
export class ClientStream implements H2ClientStream, Timed {
  readonly id: number;
  trailers: readonly string[] | undefined;

  /** Bytes the server may still send on this stream. */
  recvWindow: number;
  /** Bytes we may still send on this stream. */
  sendWindow: number;
  /** Consumed bytes not yet returned to the server by WINDOW_UPDATE. */
  unacked = 0;
  /** END_STREAM received. */
  remoteClosed = false;
  /** END_STREAM sent or being sent. */
  localClosed: boolean;
  /** Closed for good (removed from the connection). */
  closed = false;
  /** The final response head arrived. */
  headReceived = false;
  /** Response content-length, -1 when absent or when the response has no body by definition. */
  contentLength = -1;
  /** Response body bytes received. */
  received = 0;
  /** The request was HEAD (its response has no body whatever content-length says). */
  readonly headRequest: boolean;
  /** Epoch ms at which a wait on the server times out; 0 = none. */
  readDeadline = 0;
  /** Epoch ms at which waiting on a zero send window times out; 0 = none. */
  sendDeadline = 0;
  /** Called once when the stream closes (unhooks the caller's abort signal). */
  detach: () => void = ignore;

  readonly #host: ClientStreamHost;
  readonly #head: Promise<H2Response>;
  #headDone!: { resolve(r: H2Response): void; reject(e: unknown): void };
  #chunks: Uint8Array[] = EMPTY_CHUNKS;
  #first = 0;
  #waiter: { resolve(c: Uint8Array | null): void; reject(e: unknown): void } | undefined;
  #error: Error | undefined;
  #ac: AbortController | undefined;

  #out: Uint8Array | undefined;
  #outStart = 0;
  #outEnd = 0;
  #writeDone: { resolve(): void; reject(e: unknown): void } | undefined;
  /** end() was called. */
  endRequested = false;
  /** Trailers given to end(). */
  endTrailers: readonly string[] | undefined;
  #endDone: { resolve(): void; reject(e: unknown): void } | undefined;

  /** Makes a stream whose HEADERS are being sent (`endStream`: they end the request). */
  constructor(
    host: ClientStreamHost,
    init: {
      id: number;
      endStream: boolean;
      headRequest: boolean;
      recvWindow: number;
      sendWindow: number;
    },
  ) {
    this.#host = host;
    this.id = init.id;
    this.localClosed = init.endStream;
    this.endRequested = init.endStream;
    this.headRequest = init.headRequest;
    this.recvWindow = init.recvWindow;
    this.sendWindow = init.sendWindow;
    this.#head = new Promise((resolve, reject) => this.#headDone = { resolve, reject });
    this.#head.catch(ignore); // the caller may never ask for it
    const t = host.bodyIdleTimeout;
    if (t > 0) this.readDeadline = host.now + t; // waiting for the response head
  }

  /** Earliest pending timeout (Watchdog contract). */
  get deadline(): number {
    const r = this.readDeadline;
    const s = this.sendDeadline;
    return r === 0 ? s : s === 0 ? r : Math.min(r, s);
  }

  /** Called by the watchdog once a wait on the server lasted bodyIdleTimeout. */
  expire(): void {
    this.readDeadline = this.sendDeadline = 0;
    const err = new Error(
      `Stream ${this.id} timed out: the server sent nothing or held a zero window`,
    );
    if (!this.closed) this.#host.resetStream(this, 0x8 /* CANCEL */);
    this.fail(err);
  }

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

  response(): Promise<H2Response> {
    return this.#head;
  }

  /** The final head arrived. */
  receiveHead(head: H2Response): void {
    this.headReceived = true;
    if (head.endStream) this.remoteClosed = true;
    this.readDeadline = 0; // armed again by read()
    this.#headDone.resolve(head);
    if (head.endStream) this.#wakeEnd();
  }

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
    const t = this.#host.bodyIdleTimeout;
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
    const w = this.#waiter;
    if (n > 0) {
      const copy = buf.slice(start, end);
      if (w !== undefined) {
        this.#waiter = undefined;
        this.readDeadline = 0;
        this.#host.consumed(this, n);
        w.resolve(copy);
      } else {
        if (this.#chunks === EMPTY_CHUNKS) this.#chunks = [];
        this.#chunks.push(copy);
      }
    } else if (endStream) this.#wakeEnd();
    return true;
  }

  /** Takes the trailers (END_STREAM). @returns false on a content-length mismatch. */
  receiveTrailers(list: string[]): boolean {
    this.trailers = list;
    const cl = this.contentLength;
    if (cl >= 0 && this.received !== cl) return false;
    return this.receiveData(EMPTY, 0, 0, true);
  }

  #wakeEnd(): void {
    const w = this.#waiter;
    if (w === undefined) return;
    this.#waiter = undefined;
    this.readDeadline = 0;
    w.resolve(null);
  }

  /**
   * Fails the stream: the signal aborts, the head and pending and later reads
   * and writes reject.
   */
  fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.readDeadline = this.sendDeadline = 0;
    this.#ac?.abort(error);
    if (!this.headReceived) this.#headDone.reject(error);
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(error);
    // a write or end already handed to the connection is settled by it
    if (this.#out !== undefined && this.#outStart < this.#outEnd) this.#rejectWrite(error);
    if (!this.localClosed) this.#rejectEnd(error);
  }

  /**
   * The response is complete but the server does not want the rest of the
   * request (RST_STREAM NO_ERROR after END_STREAM): pending and later writes
   * reject, the response stays readable.
   */
  stopSending(error: Error): void {
    this.#rejectWrite(error);
    this.#rejectEnd(error);
    this.localClosed = true;
  }

  /** Rejects whatever write or end is still pending (the connection is gone). */
  abandon(error: Error): void {
    this.fail(error);
    this.#rejectWrite(error);
    this.#rejectEnd(error);
  }

  #rejectWrite(error: Error): void {
    const wd = this.#writeDone;
    this.#writeDone = undefined;
    this.#out = undefined;
    wd?.reject(error);
  }

  #rejectEnd(error: Error): void {
    const ed = this.#endDone;
    this.#endDone = undefined;
    ed?.reject(error);
  }

  write(data: Uint8Array, start = 0, end: number = data.length): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.localClosed || this.endRequested) {
      return Promise.reject(new Error(`Stream ${this.id} request has ended`));
    }
    if (this.#out !== undefined) return Promise.reject(new Error("A write is already pending"));
    if (end <= start) return RESOLVED;
    this.#out = data;
    this.#outStart = start;
    this.#outEnd = end;
    const p = new Promise<void>((resolve, reject) => this.#writeDone = { resolve, reject });
    this.#host.wantSend(this);
    return p;
  }

  end(trailers?: readonly string[]): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.localClosed || this.endRequested) return RESOLVED;
    this.endRequested = true;
    this.endTrailers = trailers !== undefined && trailers.length > 0 ? trailers : undefined;
    const p = new Promise<void>((resolve, reject) => this.#endDone = { resolve, reject });
    this.#host.wantSend(this);
    return p;
  }

  reset(code: number): void {
    if (this.closed) return;
    this.#host.resetStream(this, code);
    this.fail(new Error(`Stream ${this.id} reset by the client: code ${code}`));
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

  /** Settles end() once END_STREAM went out. */
  settleEnd(): void {
    const ed = this.#endDone;
    this.#endDone = undefined;
    ed?.resolve();
  }

  /** Response body bytes received but unread, dropped (the stream closes). @returns their count. */
  dropUnread(): number {
    let n = 0;
    for (let i = this.#first; i < this.#chunks.length; i++) n += this.#chunks[i]!.length;
    this.#chunks = EMPTY_CHUNKS;
    this.#first = 0;
    return n;
  }
}
