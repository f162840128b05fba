/**
 * One HTTP/2 request stream on the server side: the request's head and body as
 * received, and the response sent back, under flow control (RFC 9113 §5, §8).
 *
 * @module
 */
import type { Timed } from "../proxy/watchdog.ts";
import { isConnectionSpecific, type RequestPseudo } from "./request_fields.ts";

/** A validated request stream, as handed to `H2ServerOptions.onStream`. */
export interface H2Stream {
  /** Stream id (odd). */
  readonly id: number;
  /** `:method`. */
  readonly method: string;
  /** `:scheme`. */
  readonly scheme: string;
  /** `:authority` ("" when absent). */
  readonly authority: string;
  /** `:path`. */
  readonly path: string;
  /** Regular fields, flat `name, value, ...` (lowercase names; cookie crumbs stay separate). */
  readonly fields: readonly string[];
  /** Value of content-length, -1 when absent. */
  readonly contentLength: number;
  /** False when the HEADERS frame carried END_STREAM. */
  readonly hasBody: boolean;
  /** Aborted on RST_STREAM from the client, connection loss, or a timeout. */
  readonly signal: AbortSignal;
  /** Trailers, once {@linkcode H2Stream.read} has returned null (undefined if none). */
  readonly trailers: readonly string[] | undefined;
  /**
   * The next DATA payload (a copy the caller owns), or null at the end of the
   * body; consuming it returns receive window to the peer.
   *
   * @throws {Error} when the stream was reset, timed out or the body is malformed.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Sends response HEADERS: a 1xx interim response, or the final one
   * (`endStream` for a response without body). Names are lowercased and
   * connection-specific fields are left out.
   *
   * @throws {Error} when a final response was already sent or the stream is closed.
   */
  respond(status: number, fields: readonly string[], options?: { endStream?: boolean }): void;
  /**
   * Sends `data[start..end)` as DATA frames within the send windows; resolves
   * once every byte has been handed to the connection (the caller may then reuse
   * `data`). One write at a time.
   */
  write(data: Uint8Array, start?: number, end?: number): Promise<void>;
  /** Ends the response: END_STREAM on an empty DATA frame, or on trailing HEADERS. */
  end(trailers?: readonly string[]): Promise<void>;
  /** Resets the stream with `code` (RST_STREAM). */
  reset(code: number): void;
}

/** What a stream needs from its connection. */
export interface StreamHost {
  /** Encodes and queues a HEADERS frame (plus CONTINUATION) for `stream`. */
  sendHeaders(stream: ServerStream, list: readonly string[], options: { endStream: boolean }): void;
  /** `stream` has data or an end to send. */
  wantSend(stream: ServerStream): void;
  /** `stream` sent END_STREAM (in a HEADERS frame). */
  localEnded(stream: ServerStream): void;
  /** The application reset `stream`. */
  resetStream(stream: ServerStream, code: number): void;
  /** The application consumed `n` body bytes of `stream`. */
  consumed(stream: ServerStream, n: number): void;
  /** Current time, ms (at most a tick old). */
  readonly now: number;
  /** Body idle timeout, ms (0 = none). */
  readonly bodyIdleTimeout: number;
}

const NULL_RESULT: Promise<null> = Promise.resolve(null);
const RESOLVED: Promise<void> = Promise.resolve();
const EMPTY_CHUNKS: Uint8Array[] = [];

/**
 * The server side of one stream; the connection drives its receive and send
 * state, the application uses the {@linkcode H2Stream} surface.
 *
 * @example
 * ```ts ignore
 * // made by H2ServerConnection only
 * server.onStream = (s) => { s.respond(200, ["content-type", "text/plain"]); s.end(); };
 * ```
 */
export class ServerStream implements H2Stream, Timed {
  readonly id: number;
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly fields: readonly string[];
  readonly contentLength: number;
  readonly hasBody: boolean;
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
  localClosed = false;
  /** Closed for good (removed from the connection). */
  closed = false;
  /** A final (non-1xx) response was sent. */
  finalSent = false;
  /** Body bytes received. */
  received = 0;
  /** Epoch ms at which a wait on the peer times out; 0 = none. */
  readDeadline = 0;
  /** Epoch ms at which waiting on a zero send window times out; 0 = none. */
  sendDeadline = 0;

  readonly #host: StreamHost;
  #chunks: Uint8Array[] = EMPTY_CHUNKS;
  #head = 0;
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

  /** Makes a stream from a validated request (`fields` are the regular fields). */
  constructor(
    host: StreamHost,
    init: {
      id: number;
      pseudo: RequestPseudo;
      fields: readonly string[];
      endStream: boolean;
      recvWindow: number;
      sendWindow: number;
    },
  ) {
    this.#host = host;
    this.id = init.id;
    const p = init.pseudo;
    this.method = p.method;
    this.scheme = p.scheme;
    this.authority = p.authority;
    this.path = p.path;
    this.contentLength = p.contentLength;
    this.fields = init.fields;
    this.hasBody = !init.endStream;
    this.remoteClosed = init.endStream;
    this.recvWindow = init.recvWindow;
    this.sendWindow = init.sendWindow;
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
    if (!this.closed) this.#host.resetStream(this, 0x8 /* CANCEL */);
    this.fail(
      new Error(`Stream ${this.id} timed out: the peer sent nothing or held a zero window`),
    );
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

  /** Received body bytes not yet read by the application. */
  get unread(): number {
    let n = 0;
    for (let i = this.#head; i < this.#chunks.length; i++) n += this.#chunks[i]!.length;
    return n;
  }

  read(): Promise<Uint8Array | null> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#head < this.#chunks.length) {
      const c = this.#chunks[this.#head]!;
      this.#chunks[this.#head++] = EMPTY;
      if (this.#head === this.#chunks.length) {
        this.#chunks.length = 0;
        this.#head = 0;
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
    } else if (endStream && w !== undefined) {
      this.#waiter = undefined;
      this.readDeadline = 0;
      w.resolve(null);
    }
    return true;
  }

  /** Takes the request trailers (END_STREAM). @returns false on a content-length mismatch. */
  receiveTrailers(list: string[]): boolean {
    this.trailers = list;
    const cl = this.contentLength;
    if (cl >= 0 && this.received !== cl) return false;
    return this.receiveData(EMPTY, 0, 0, true);
  }

  /** Fails the stream: the signal aborts, pending and later reads and writes reject. */
  fail(error: Error): void {
    if (this.#error !== undefined) return;
    this.#error = error;
    this.readDeadline = this.sendDeadline = 0;
    this.#ac?.abort(error);
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(error);
    // a write or end already handed to the connection is settled by it
    if (this.#out !== undefined && this.#outStart < this.#outEnd) this.#rejectWrite(error);
    if (!this.localClosed) this.#rejectEnd(error);
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

  respond(status: number, fields: readonly string[], options?: { endStream?: boolean }): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.finalSent || this.localClosed) {
      throw new Error(`Stream ${this.id} already has a response`);
    }
    const final = status >= 200;
    const endStream = final && options?.endStream === true;
    const list = h2Fields([":status", String(status)], fields);
    if (final) this.finalSent = true;
    if (endStream) this.localClosed = true;
    this.#host.sendHeaders(this, list, { endStream });
    if (endStream) this.#host.localEnded(this);
  }

  write(data: Uint8Array, start = 0, end: number = data.length): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (!this.finalSent) return Promise.reject(new Error("A response must be sent before data"));
    if (this.localClosed || this.endRequested) {
      return Promise.reject(new Error(`Stream ${this.id} has ended`));
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
    if (!this.finalSent) return Promise.reject(new Error("A response must be sent before end"));
    if (this.localClosed || this.endRequested) return RESOLVED;
    this.endRequested = true;
    this.endTrailers = trailers !== undefined && trailers.length > 0
      ? h2Fields([], trailers)
      : undefined;
    const p = new Promise<void>((resolve, reject) => this.#endDone = { resolve, reject });
    this.#host.wantSend(this);
    return p;
  }

  reset(code: number): void {
    if (this.closed) return;
    this.#host.resetStream(this, code);
    this.fail(new Error(`Stream ${this.id} reset by the server: code ${code}`));
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

  /** The request body bytes received but unread are dropped (the stream closes). */
  dropUnread(): number {
    const n = this.unread;
    this.#chunks = EMPTY_CHUNKS;
    this.#head = 0;
    return n;
  }
}

const EMPTY = new Uint8Array(0);
const UPPER_REGEXP = /[A-Z]/;

// `fields` appended to `list`, names lowercased, connection-specific fields left out.
function h2Fields(list: string[], fields: readonly string[]): string[] {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    let name = fields[i]!;
    if (UPPER_REGEXP.test(name)) name = name.toLowerCase();
    if (isConnectionSpecific(name)) continue;
    list.push(name, fields[i + 1]!);
  }
  return list;
}
