/**
 * The client side of an HTTP/2 connection (RFC 9113), for talking to h2 and
 * h2c backends (gRPC): multiplexed request streams within the server's
 * SETTINGS, flow control both ways, GOAWAY and REFUSED_STREAM reported as safe
 * to retry, and limits against a misbehaving server (header list size,
 * CONTINUATION, frame size, server push).
 *
 * @module
 */
import type { Watchdog } from "../timer/watchdog.ts";
import { BufReader, SMALL_READ_BUFFER } from "../http1/io.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_WINDOW,
  ErrorCode,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  readUint31,
  readUint32,
  SettingId,
  writeGoaway,
} from "./frame.ts";
import { type H2Conn, H2Connection, MAX_QUEUED_CONTROL } from "./_connection.ts";
import { isConnectionSpecific } from "./request_fields.ts";
import { parseResponseFields, type ResponsePseudo } from "./response_fields.ts";
import { ClientStream, RefusedError } from "./client_stream.ts";

export { type H2ClientStream, type H2Response, RefusedError } from "./client_stream.ts";

/** The head of a request. */
export interface H2RequestHead {
  /** `:method`. */
  method: string;
  /** `:scheme` (`http` or `https`). */
  scheme: string;
  /** `:authority` (left out when ""). */
  authority: string;
  /** `:path`. */
  path: string;
  /**
   * Regular fields, flat `name, value, ...`; names are lowercased and
   * connection-specific fields (and `te` other than `trailers`) are left out.
   */
  fields: readonly string[];
  /** True when the request has no body (END_STREAM on HEADERS). */
  endStream: boolean;
}

/** Options of {@linkcode H2ClientConnection}. */
export interface H2ClientOptions {
  /** Largest decoded response header list we accept (advertised). @default 65536 */
  maxHeaderListSize?: number;
  /** Our receive window per stream (advertised). @default 262144 */
  initialWindowSize?: number;
  /** Our receive window for the whole connection. @default 1048576 */
  connectionWindowSize?: number;
  /** Largest frame payload we accept (advertised). @default 16384 */
  maxFrameSize?: number;
  /** ms a stream may wait on the server (a head, body bytes or a zero window) before it is reset; 0 = never. @default 0 */
  bodyIdleTimeout?: number;
  /** ms to wait for the server's SETTINGS in {@linkcode H2ClientConnection.start}. @default 10000 */
  settingsTimeout?: number;
  /** Ticker for the timeouts (the balancer's); one is made per connection if absent. */
  watchdog?: Watchdog;
  /** Called when {@linkcode H2ClientConnection.available} or `closed` may have changed. */
  onChange?: (connection: H2ClientConnection) => void;
}

/** The largest client stream id. */
const MAX_STREAM_ID = 0x7fffffff;
/** Streams assumed allowed before the server's SETTINGS say otherwise. */
const DEFAULT_MAX_CONCURRENT = 100;
/** Interim (1xx) heads tolerated per stream. */
const MAX_INTERIM = 16;

const UPPER_REGEXP = /[A-Z]/;

/**
 * One HTTP/2 client connection.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import http2 from "node:http2";
 * import { H2ClientConnection } from "./client.ts";
 * const server = http2.createServer((_req, res) => res.end("hi"));
 * await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
 * const port = (server.address() as { port: number }).port;
 * const h2 = new H2ClientConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
 * await h2.start();
 * const s = h2.request({ method: "GET", scheme: "http", authority: "a", path: "/", fields: [], endStream: true });
 * assertEquals((await s.response()).status, 200);
 * assertEquals(new TextDecoder().decode((await s.read())!), "hi");
 * assertEquals(await s.read(), null);
 * h2.close();
 * await new Promise((r) => server.close(r));
 * ```
 */
export class H2ClientConnection extends H2Connection<ClientStream> {
  readonly #settingsTimeout: number;
  readonly #onChange: ((c: H2ClientConnection) => void) | undefined;
  readonly #pseudo: ResponsePseudo = { status: 0, contentLength: -1 };
  readonly #interim = new Map<number, number>();
  #peerMaxConcurrent = DEFAULT_MAX_CONCURRENT;
  #nextId = 1;
  // lifecycle
  #started: Promise<void> | undefined;
  #ready: { resolve(): void; reject(e: unknown): void } | undefined;
  #goawayLast = -1; // the server's GOAWAY last-stream-id; -1 until one came
  #draining = false;
  #error: Error | undefined;
  #done: Promise<void> = Promise.resolve();

  /** Wraps a connected `conn`; nothing is sent until {@linkcode H2ClientConnection.start}. */
  constructor(conn: H2Conn, options: H2ClientOptions = {}) {
    const bodyIdle = options.bodyIdleTimeout ?? 0;
    const settingsTimeout = options.settingsTimeout ?? 10_000;
    super(conn, {
      initialWindow: Math.min(MAX_WINDOW, options.initialWindowSize ?? 256 * 1024),
      connWindow: Math.min(
        MAX_WINDOW,
        Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 1 << 20),
      ),
      maxFrame: options.maxFrameSize ?? MIN_MAX_FRAME_SIZE,
      maxHeaderList: options.maxHeaderListSize ?? 65536,
      bodyIdle,
      shortestTimeout: Math.min(settingsTimeout, bodyIdle || 1000),
      watchdog: options.watchdog,
      peer: "server",
    });
    this.#settingsTimeout = settingsTimeout;
    this.#onChange = options.onChange;
  }

  /** Streams that may be opened now: 0 before start, after GOAWAY, drain or close. */
  get available(): number {
    if (!this.sawSettings || this.closing || this.#draining || this.#goawayLast !== -1) return 0;
    if (this.#nextId > MAX_STREAM_ID) return 0;
    return Math.max(0, this.#peerMaxConcurrent - this.streams.size);
  }

  /** Streams open on this connection. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** True once the connection takes no new streams for good (GOAWAY, drain, close, ids used up). */
  get retiring(): boolean {
    return this.closing || this.#draining || this.#goawayLast !== -1 ||
      this.#nextId > MAX_STREAM_ID;
  }

  /** True once the connection is closed or closing. */
  get closed(): boolean {
    return this.closing;
  }

  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until it says). */
  get maxConcurrentStreams(): number {
    return this.#peerMaxConcurrent;
  }

  /** Why the connection closed, if it failed. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Settles once the connection's socket is closed and its loops have ended. */
  get done(): Promise<void> {
    return this.#done;
  }

  /**
   * Sends the connection preface and our SETTINGS, and starts the read and
   * write loops.
   *
   * @returns settles once the server's SETTINGS arrived.
   * @throws {Error} when the connection closes first or the settings timeout passes.
   */
  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    this.#started = new Promise<void>((resolve, reject) => this.#ready = { resolve, reject });
    this.ctl.writeBytes(CLIENT_PREFACE, 0, CLIENT_PREFACE.length);
    this.sendPreface([
      SettingId.ENABLE_PUSH,
      0,
      SettingId.MAX_HEADER_LIST_SIZE,
      this.maxHeaderList,
    ]);
    this.watchdog.add(this.timer);
    this.timer.deadline = Date.now() + this.#settingsTimeout;
    const writing = this.writeLoop();
    const reading = this.#readLoop().catch((e) => {
      this.#error ??= e instanceof Error ? e : new Error(String(e));
    });
    this.#done = Promise.all([reading, writing]).then(() => this.#shutdown());
    reading.then(() => this.#shutdown());
    return this.#started;
  }

  /**
   * Opens a stream: HEADERS are queued at once (the body follows with
   * {@linkcode H2ClientStream.write} and {@linkcode H2ClientStream.end} unless
   * `head.endStream`).
   *
   * @param signal aborting it resets the stream with CANCEL.
   * @throws {RefusedError} when the connection cannot take a stream now
   * ({@linkcode H2ClientConnection.available} is 0).
   */
  request(head: H2RequestHead, signal?: AbortSignal): ClientStream {
    if (this.available <= 0) {
      throw new RefusedError(
        this.closing || this.#goawayLast !== -1 || this.#draining
          ? "Connection is closing: no new streams"
          : "Connection is at its stream limit",
      );
    }
    if (signal?.aborted) throw signal.reason;
    const id = this.#nextId;
    this.#nextId += 2;
    const list = [":method", head.method, ":scheme", head.scheme];
    if (head.authority !== "") list.push(":authority", head.authority);
    list.push(":path", head.path);
    const fields = head.fields;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      let name = fields[i]!;
      if (UPPER_REGEXP.test(name)) name = name.toLowerCase();
      if (isConnectionSpecific(name)) continue;
      const value = fields[i + 1]!;
      if (name === "te" && value !== "trailers") continue;
      if (name === "host") continue; // :authority carries it
      list.push(name, value);
    }
    const s = new ClientStream(this.host, {
      id,
      endStream: head.endStream,
      headRequest: head.method === "HEAD",
      recvWindow: this.initialWindow,
      sendWindow: this.peerInitialWindow,
    });
    this.sendHeaders(id, list, head.endStream);
    this.streams.set(id, s);
    this.watchdog.add(s);
    this.timer.deadline = 0;
    if (signal !== undefined) {
      const abort = () => s.reset(ErrorCode.CANCEL);
      signal.addEventListener("abort", abort, { once: true });
      s.detach = () => signal.removeEventListener("abort", abort);
    }
    return s;
  }

  /**
   * Opens no more streams; sends GOAWAY and closes once the open streams finish.
   */
  drain(): void {
    if (this.#draining || this.closing) return;
    this.#draining = true;
    this.#changed();
    if (this.streams.size === 0) this.#closeWith(ErrorCode.NO_ERROR);
  }

  /** Closes the connection now; open streams fail. */
  close(): void {
    this.#shutdown();
  }

  // ---- reading ----

  async #readLoop(): Promise<void> {
    const r = new BufReader(this.conn, SMALL_READ_BUFFER);
    for (;;) {
      this.readFrames(r);
      if (this.ctl.length > MAX_QUEUED_CONTROL) {
        return this.fatal(ErrorCode.ENHANCE_YOUR_CALM, "the server reads nothing");
      }
      this.kick();
      if (this.closing) {
        r.consume(r.buffered); // read and drop until the socket closes
      }
      if (this.socketClosed) return;
      this.fitReader(r);
      if (!(await r.fill())) return;
    }
  }

  // Streams we opened have odd ids below #nextId; anything else is idle.
  protected override idle(id: number): boolean {
    return (id & 1) === 0 || id >= this.#nextId;
  }

  protected override dataRefused(s: ClientStream): string {
    return s.headReceived ? "" : "DATA before the response head";
  }

  protected override onHeaderList(
    id: number,
    list: string[],
    o: { endStream: boolean; tooLarge: boolean; selfDependent: boolean },
  ): void {
    if (this.idle(id)) return this.fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS on an idle stream");
    const s = this.streams.get(id);
    if (s === undefined) return; // reset or finished by us: dropped after decoding
    const endStream = o.endStream;
    if (s.remoteClosed) {
      return this.streamError(s, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (o.selfDependent) {
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "stream depends on itself");
    }
    if (o.tooLarge) {
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "response header list too large");
    }
    if (s.headReceived) return this.acceptTrailers(s, list, o);
    const pseudo = this.#pseudo;
    const why = parseResponseFields(list, pseudo);
    if (why !== "") return this.streamError(s, ErrorCode.PROTOCOL_ERROR, why);
    const status = pseudo.status;
    if (status < 200) {
      if (endStream || status === 101) {
        return this.streamError(s, ErrorCode.PROTOCOL_ERROR, `bad interim response ${status}`);
      }
      const n = (this.#interim.get(id) ?? 0) + 1;
      if (n > MAX_INTERIM) {
        return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "too many interim responses");
      }
      this.#interim.set(id, n);
      return; // 1xx heads are skipped
    }
    this.#interim.delete(id);
    const bodiless = s.headRequest || status === 204 || status === 304;
    s.contentLength = bodiless ? -1 : pseudo.contentLength;
    if (endStream && s.contentLength > 0) {
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "content-length without a body");
    }
    s.receiveHead({ status, fields: list, endStream });
    if (endStream && s.localClosed) this.closeStream(s, undefined);
  }

  protected override onReset(s: ClientStream, code: number): void {
    const id = s.id;
    if (code === ErrorCode.NO_ERROR && s.remoteClosed) {
      // the response is complete; the server wants no more of the request (§8.1)
      s.stopSending(new Error(`Stream ${id}: the server needs no more of the request`));
      return this.closeStream(s, undefined);
    }
    const err = code === ErrorCode.REFUSED_STREAM
      ? new RefusedError(`Stream ${id} refused by the server`)
      : new Error(`Stream ${id} reset by the server: code ${code}`);
    this.closeStream(s, err);
  }

  protected override onSetting(id: number, value: number): boolean {
    if (id === SettingId.ENABLE_PUSH && value !== 0) {
      this.fatal(ErrorCode.PROTOCOL_ERROR, "server enabled push");
      return false;
    }
    if (id === SettingId.MAX_CONCURRENT_STREAMS) this.#peerMaxConcurrent = value;
    return true;
  }

  protected override settingsApplied(first: boolean): void {
    if (first) {
      this.timer.deadline = 0;
      this.#ready?.resolve();
    }
    this.#changed();
  }

  protected override onGoaway(b: Uint8Array, start: number): void {
    const last = readUint31(b, start);
    const code = readUint32(b, start + 4);
    if (this.#goawayLast !== -1 && last > this.#goawayLast) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "GOAWAY last-stream-id increased");
    }
    this.#goawayLast = last;
    // streams above `last` were not processed: safe to retry elsewhere (§6.8)
    for (const s of [...this.streams.values()]) {
      if (s.id > last) {
        this.closeStream(
          s,
          new RefusedError(`Stream ${s.id} refused: the server sent GOAWAY (code ${code})`),
        );
      }
    }
    this.#changed();
    if (code !== ErrorCode.NO_ERROR) {
      this.#error ??= new Error(`Connection closed by the server: GOAWAY code ${code}`);
    }
    if (this.streams.size === 0) this.#closeWith(ErrorCode.NO_ERROR);
  }

  // ---- streams ----

  protected override localEnded(s: ClientStream): void {
    if (s.remoteClosed) this.closeStream(s, undefined);
  }

  protected override streamClosed(s: ClientStream): void {
    this.#interim.delete(s.id);
    s.detach();
    if (this.streams.size === 0 && (this.#goawayLast !== -1 || this.#draining)) {
      this.#closeWith(ErrorCode.NO_ERROR);
    }
    this.#changed();
  }

  #changed(): void {
    this.#onChange?.(this);
  }

  protected override writeFailed(e: unknown): void {
    this.#error ??= e instanceof Error ? e : new Error(String(e));
    this.#shutdown();
  }

  // ---- lifecycle ----

  protected override expire(): void {
    this.timer.deadline = 0;
    if (!this.sawSettings && !this.closing) {
      this.#error ??= new Error("Connection failed: no SETTINGS from the server in time");
      return this.#closeWith(ErrorCode.SETTINGS_TIMEOUT);
    }
    this.#shutdown(); // the close grace has passed
  }

  // A connection error (§5.4.1): GOAWAY with `code`, every stream fails.
  protected override fatal(code: number, why: string): void {
    if (this.closing) return;
    const err = new Error(`Connection error: code ${code}: ${why}`);
    this.#error ??= err;
    for (const s of [...this.streams.values()]) this.closeStream(s, err);
    this.#closeWith(code);
  }

  #closeWith(code: number): void {
    if (this.closing) return;
    writeGoaway(this.ctl, 0, code); // we accept no server-initiated streams
    this.beginClose();
    this.#ready?.reject(this.#error ?? new Error("Connection closed before the server's SETTINGS"));
    this.#changed();
  }

  #shutdown(): void {
    if (this.socketClosed) return;
    const err = this.#error ?? new Error("Connection closed");
    this.#ready?.reject(err);
    this.closeNow(err);
    this.#changed();
  }
}
