/**
 * The client side of an HTTP/2 connection (RFC 9113), for talking to h2 and
 * h2c backends (gRPC): multiplexed request streams within the server's
 * SETTINGS, flow control both ways, GOAWAY and REFUSED_STREAM reported as safe
 * to retry, and limits against a misbehaving server (header list size,
 * CONTINUATION, frame size, server push).
 *
 * @module
 */
import { type Timed, Watchdog } from "../proxy/watchdog.ts";
import { BufReader, BufWriter } from "../http1/io.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER_SIZE,
  type FrameHeader,
  FrameType,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  parseFrameHeader,
  readUint31,
  readUint32,
  SettingId,
  validateSetting,
  writeFrameHeader,
  writeGoaway,
  writeHeaders,
  writePing,
  writeRstStream,
  writeSettings,
  writeSettingsAck,
  writeWindowUpdate,
} from "./frame.ts";
import { HeaderListTooLargeError, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { OutQueue } from "./_out_queue.ts";
import { checkTrailerFields, isConnectionSpecific } from "./request_fields.ts";
import { parseResponseFields, type ResponsePseudo } from "./response_fields.ts";
import { ClientStream, type ClientStreamHost, RefusedError } from "./client_stream.ts";
import type { H2Conn } from "./server.ts";

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

/** Header block bytes accepted beyond maxHeaderListSize before the connection is closed. */
const HEADER_BLOCK_SLACK = 16384;
/** Bytes of control frames queued for a server that does not read before we give up on it. */
const MAX_QUEUED_CONTROL = 1 << 20;
/** ms a closing connection waits for GOAWAY to go out. */
const CLOSE_GRACE_MS = 1000;
/** Bytes of DATA framed per writer round before flushing. */
const WRITE_BUDGET = 64 * 1024;
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
export class H2ClientConnection {
  readonly #conn: H2Conn;
  readonly #initialWindow: number;
  readonly #connWindow: number;
  readonly #maxFrame: number;
  readonly #maxHeaderList: number;
  readonly #bodyIdle: number;
  readonly #settingsTimeout: number;
  readonly #watchdog: Watchdog;
  readonly #ownWatchdog: AbortController | undefined;
  readonly #onChange: ((c: H2ClientConnection) => void) | undefined;

  readonly #writer: BufWriter;
  readonly #ctl = new OutQueue();
  readonly #decoder: HpackDecoder;
  readonly #encoder = new HpackEncoder();
  readonly #streams = new Map<number, ClientStream>();
  readonly #sendable = new Set<ClientStream>();
  #settled: ClientStream[] = [];
  readonly #host: ClientStreamHost;
  readonly #timer: Timed;
  readonly #frame: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  readonly #pseudo: ResponsePseudo = { status: 0, contentLength: -1 };
  readonly #interim = new Map<number, number>();

  // server state
  #peerMaxConcurrent = DEFAULT_MAX_CONCURRENT;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = MIN_MAX_FRAME_SIZE;
  #sendWindow = DEFAULT_WINDOW;
  #sawSettings = false;
  #settingsAcked = false;
  // receive state
  #recvWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  #nextId = 1;
  // header block in progress (HEADERS without END_HEADERS, then CONTINUATION)
  #blockStream = 0;
  #blockFlags = 0;
  #block = new Uint8Array(0);
  #blockLength = 0;
  // lifecycle
  #started: Promise<void> | undefined;
  #ready: { resolve(): void; reject(e: unknown): void } | undefined;
  #goawayLast = -1; // the server's GOAWAY last-stream-id; -1 until one came
  #draining = false;
  #closing = false; // no more frames processed; flushing, then closing
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #done: Promise<void> = Promise.resolve();

  /** Wraps a connected `conn`; nothing is sent until {@linkcode H2ClientConnection.start}. */
  constructor(conn: H2Conn, options: H2ClientOptions = {}) {
    this.#conn = conn;
    this.#initialWindow = Math.min(MAX_WINDOW, options.initialWindowSize ?? 256 * 1024);
    this.#connWindow = Math.min(
      MAX_WINDOW,
      Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 1 << 20),
    );
    this.#maxFrame = options.maxFrameSize ?? MIN_MAX_FRAME_SIZE;
    this.#maxHeaderList = options.maxHeaderListSize ?? 65536;
    this.#bodyIdle = options.bodyIdleTimeout ?? 0;
    this.#settingsTimeout = options.settingsTimeout ?? 10_000;
    this.#onChange = options.onChange;
    if (options.watchdog !== undefined) this.#watchdog = options.watchdog;
    else {
      this.#ownWatchdog = new AbortController();
      const shortest = Math.min(this.#settingsTimeout, this.#bodyIdle || 1000);
      this.#watchdog = new Watchdog({
        resolution: Math.max(10, Math.min(100, shortest >> 2)),
        signal: this.#ownWatchdog.signal,
      });
    }
    this.#writer = new BufWriter(conn);
    this.#decoder = new HpackDecoder({ maxHeaderListSize: this.#maxHeaderList });
    const watchdog = this.#watchdog;
    this.#host = {
      wantSend: (s) => {
        this.#sendable.add(s);
        this.#kick();
      },
      resetStream: (s, code) => this.#resetStream(s, code),
      consumed: (s, n) => this.#consumed(s, n),
      get now() {
        return watchdog.now;
      },
      bodyIdleTimeout: this.#bodyIdle,
    };
    this.#timer = { deadline: 0, expire: () => this.#expire() };
  }

  /** Streams that may be opened now: 0 before start, after GOAWAY, drain or close. */
  get available(): number {
    if (!this.#sawSettings || this.#closing || this.#draining || this.#goawayLast !== -1) return 0;
    if (this.#nextId > MAX_STREAM_ID) return 0;
    return Math.max(0, this.#peerMaxConcurrent - this.#streams.size);
  }

  /** Streams open on this connection. */
  get activeStreams(): number {
    return this.#streams.size;
  }

  /** True once the connection takes no new streams for good (GOAWAY, drain, close, ids used up). */
  get retiring(): boolean {
    return this.#closing || this.#draining || this.#goawayLast !== -1 ||
      this.#nextId > MAX_STREAM_ID;
  }

  /** True once the connection is closed or closing. */
  get closed(): boolean {
    return this.#closing;
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
    const settings = [
      SettingId.ENABLE_PUSH,
      0,
      SettingId.MAX_HEADER_LIST_SIZE,
      this.#maxHeaderList,
    ];
    if (this.#initialWindow !== DEFAULT_WINDOW) {
      settings.push(SettingId.INITIAL_WINDOW_SIZE, this.#initialWindow);
    }
    if (this.#maxFrame !== MIN_MAX_FRAME_SIZE) {
      settings.push(SettingId.MAX_FRAME_SIZE, this.#maxFrame);
    }
    this.#ctl.writeBytes(CLIENT_PREFACE, 0, CLIENT_PREFACE.length);
    writeSettings(this.#ctl, settings);
    if (this.#connWindow > DEFAULT_WINDOW) {
      writeWindowUpdate(this.#ctl, 0, this.#connWindow - DEFAULT_WINDOW);
      this.#recvWindow = this.#connWindow;
    }
    this.#watchdog.add(this.#timer);
    this.#timer.deadline = Date.now() + this.#settingsTimeout;
    const writing = this.#writeLoop();
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
        this.#closing || this.#goawayLast !== -1 || this.#draining
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
    const s = new ClientStream(this.#host, {
      id,
      endStream: head.endStream,
      headRequest: head.method === "HEAD",
      recvWindow: this.#initialWindow,
      sendWindow: this.#peerInitialWindow,
    });
    this.#sendHeaders(id, list, head.endStream);
    this.#streams.set(id, s);
    this.#watchdog.add(s);
    this.#timer.deadline = 0;
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
    if (this.#draining || this.#closing) return;
    this.#draining = true;
    this.#changed();
    if (this.#streams.size === 0) this.#beginClose(ErrorCode.NO_ERROR);
  }

  /** Closes the connection now; open streams fail. */
  close(): void {
    this.#shutdown();
  }

  // ---- reading ----

  async #readLoop(): Promise<void> {
    const r = new BufReader(this.#conn, this.#maxFrame + FRAME_HEADER_SIZE);
    const h = this.#frame;
    for (;;) {
      while (!this.#closing && parseFrameHeader(r, h)) {
        if (h.length > this.#maxFrame) {
          this.#fatal(ErrorCode.FRAME_SIZE_ERROR, `frame of ${h.length} bytes`);
          break;
        }
        const size = FRAME_HEADER_SIZE + h.length;
        if (r.buffered < size) {
          if (r.buf.length < size) r.resize(size);
          break;
        }
        const p = r.start + FRAME_HEADER_SIZE;
        this.#onFrame(h, r.buf, p, p + h.length);
        r.consume(size);
      }
      if (this.#ctl.length > MAX_QUEUED_CONTROL) {
        return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM, "the server reads nothing");
      }
      this.#kick();
      if (this.#closing) {
        r.consume(r.buffered); // read and drop until the socket closes
      }
      if (this.#closed || !(await r.fill())) return;
    }
  }

  #onFrame(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const type = h.type;
    if (!this.#sawSettings && (type !== FrameType.SETTINGS || (h.flags & Flag.ACK) !== 0)) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "the server's preface is not SETTINGS");
    }
    if (
      this.#blockStream !== 0 &&
      (type !== FrameType.CONTINUATION || h.streamId !== this.#blockStream)
    ) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(h, b, start, end);
      case FrameType.HEADERS:
        return this.#onHeaders(h, b, start, end);
      case FrameType.CONTINUATION:
        return this.#onContinuation(h, b, start, end);
      case FrameType.PRIORITY:
        if (h.streamId === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (h.length !== 5) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size");
        return;
      case FrameType.RST_STREAM:
        return this.#onRstStream(h, b, start);
      case FrameType.SETTINGS:
        return this.#onSettings(h, b, start, end);
      case FrameType.PUSH_PROMISE:
        return this.#fatal(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
      case FrameType.PING:
        if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (h.length !== 8) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "PING size");
        if ((h.flags & Flag.ACK) === 0) writePing(this.#ctl, b, { start, ack: true });
        return;
      case FrameType.GOAWAY:
        return this.#onGoaway(h, b, start);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(h, b, start);
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  // Streams we opened have odd ids below #nextId; anything else is idle.
  #opened(id: number): boolean {
    return (id & 1) === 1 && id < this.#nextId;
  }

  #onData(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const id = h.streamId;
    if (id === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const length = h.length;
    this.#recvWindow -= length;
    if (this.#recvWindow < 0) {
      return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    let dataEnd = end;
    if ((h.flags & Flag.PADDED) !== 0) {
      if (length < 1) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "DATA padding");
      const pad = b[start]!;
      start++;
      dataEnd = end - pad;
      if (dataEnd < start) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "DATA padding");
    }
    const endStream = (h.flags & Flag.END_STREAM) !== 0;
    const s = this.#streams.get(id);
    if (s === undefined || s.remoteClosed) {
      if (!this.#opened(id)) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      this.#creditConnection(length);
      if (s !== undefined) {
        return this.#streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
      }
      return; // a stream we reset or finished: frames in flight
    }
    if (!s.headReceived) {
      this.#creditConnection(length);
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "DATA before the response head");
    }
    if (length > s.recvWindow) {
      this.#creditConnection(length);
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window");
    }
    s.recvWindow -= length;
    const padding = length - (dataEnd - start);
    if (padding > 0) this.#consumed(s, padding);
    if (!s.receiveData(b, start, dataEnd, endStream)) {
      return this.#streamError(
        s,
        ErrorCode.PROTOCOL_ERROR,
        "body length differs from content-length",
      );
    }
    if (endStream && s.localClosed) this.#closeStream(s, undefined);
  }

  #onHeaders(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const id = h.streamId;
    if (id === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    const flags = h.flags;
    if ((flags & Flag.PADDED) !== 0) {
      if (end - start < 1) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "HEADERS padding");
      const pad = b[start]!;
      start++;
      end -= pad;
    }
    if ((flags & Flag.PRIORITY) !== 0) start += 5; // dependency and weight: ignored
    if (end < start) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS padding");
    if ((flags & Flag.END_HEADERS) !== 0) return this.#onBlock(id, flags, b, start, end);
    this.#blockStream = id;
    this.#blockFlags = flags;
    this.#blockLength = 0;
    this.#appendBlock(b, start, end);
  }

  #onContinuation(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (this.#blockStream === 0) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    }
    this.#appendBlock(b, start, end);
    if (this.#closing || (h.flags & Flag.END_HEADERS) === 0) return;
    const id = this.#blockStream;
    this.#blockStream = 0;
    this.#onBlock(id, this.#blockFlags, this.#block, 0, this.#blockLength);
    if (this.#block.length > 65536) this.#block = new Uint8Array(0);
  }

  // Header block bytes are counted as they arrive, before any decoding: a block
  // past maxHeaderListSize plus slack ends the connection (CONTINUATION flood).
  #appendBlock(b: Uint8Array, start: number, end: number): void {
    const need = this.#blockLength + end - start;
    if (need > this.#maxHeaderList + HEADER_BLOCK_SLACK) {
      return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (need > this.#block.length) {
      const next = new Uint8Array(Math.max(need, this.#block.length * 2, 4096));
      next.set(this.#block.subarray(0, this.#blockLength));
      this.#block = next;
    }
    this.#block.set(b.subarray(start, end), this.#blockLength);
    this.#blockLength = need;
  }

  #onBlock(id: number, flags: number, b: Uint8Array, start: number, end: number): void {
    if (end - start > this.#maxHeaderList + HEADER_BLOCK_SLACK) {
      return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    const list: string[] = [];
    let tooLarge = false;
    try {
      this.#decoder.decode(b, start, end, list); // always: the table must stay in step
    } catch (e) {
      if (e instanceof HeaderListTooLargeError) tooLarge = true;
      else if (e instanceof HpackError) {
        return this.#fatal(ErrorCode.COMPRESSION_ERROR, e.message);
      } else return this.#fatal(ErrorCode.INTERNAL_ERROR, String(e));
    }
    if (!this.#opened(id)) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS on an idle stream");
    }
    const s = this.#streams.get(id);
    if (s === undefined) return; // reset or finished by us: dropped after decoding
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (s.remoteClosed) {
      return this.#streamError(s, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (tooLarge) {
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "response header list too large");
    }
    if (s.headReceived) { // trailers
      if (!endStream || checkTrailerFields(list) !== "") {
        return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "malformed trailers");
      }
      if (!s.receiveTrailers(list)) {
        return this.#streamError(
          s,
          ErrorCode.PROTOCOL_ERROR,
          "body length differs from content-length",
        );
      }
      if (s.localClosed) this.#closeStream(s, undefined);
      return;
    }
    const pseudo = this.#pseudo;
    const why = parseResponseFields(list, pseudo);
    if (why !== "") return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, why);
    const status = pseudo.status;
    if (status < 200) {
      if (endStream || status === 101) {
        return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, `bad interim response ${status}`);
      }
      const n = (this.#interim.get(id) ?? 0) + 1;
      if (n > MAX_INTERIM) {
        return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "too many interim responses");
      }
      this.#interim.set(id, n);
      return; // 1xx heads are skipped
    }
    this.#interim.delete(id);
    const bodiless = s.headRequest || status === 204 || status === 304;
    s.contentLength = bodiless ? -1 : pseudo.contentLength;
    if (endStream && s.contentLength > 0) {
      return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "content-length without a body");
    }
    s.receiveHead({ status, fields: list, endStream });
    if (endStream && s.localClosed) this.#closeStream(s, undefined);
  }

  #onRstStream(h: FrameHeader, b: Uint8Array, start: number): void {
    const id = h.streamId;
    if (id === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (h.length !== 4) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    if (!this.#opened(id)) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    const code = readUint32(b, start);
    if (code === ErrorCode.NO_ERROR && s.remoteClosed) {
      // the response is complete; the server wants no more of the request (§8.1)
      s.stopSending(new Error(`Stream ${id}: the server needs no more of the request`));
      return this.#closeStream(s, undefined);
    }
    const err = code === ErrorCode.REFUSED_STREAM
      ? new RefusedError(`Stream ${id} refused by the server`)
      : new Error(`Stream ${id} reset by the server: code ${code}`);
    this.#closeStream(s, err);
  }

  #onSettings(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if ((h.flags & Flag.ACK) !== 0) {
      if (h.length !== 0) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ack size");
      this.#settingsAcked = true;
      return;
    }
    if (h.length % 6 !== 0) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    for (let i = start; i < end; i += 6) {
      const id = (b[i]! << 8) | b[i + 1]!;
      const value = readUint32(b, i + 2);
      const bad = validateSetting(id, value);
      if (bad !== 0) return this.#fatal(bad, `bad setting ${id}: ${value}`);
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(Math.min(value, 4096));
          break;
        case SettingId.ENABLE_PUSH:
          if (value !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "server enabled push");
          break;
        case SettingId.MAX_CONCURRENT_STREAMS:
          this.#peerMaxConcurrent = value;
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const s of this.#streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
            }
            if (delta > 0 && s.outPending > 0) this.#sendable.add(s);
          }
          break;
        }
        case SettingId.MAX_FRAME_SIZE:
          this.#peerMaxFrame = value;
          break;
      }
    }
    writeSettingsAck(this.#ctl);
    if (!this.#sawSettings) {
      this.#sawSettings = true;
      this.#timer.deadline = 0;
      this.#ready?.resolve();
    }
    this.#changed();
  }

  #onGoaway(h: FrameHeader, b: Uint8Array, start: number): void {
    if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (h.length < 8) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size");
    const last = readUint31(b, start);
    const code = readUint32(b, start + 4);
    if (this.#goawayLast !== -1 && last > this.#goawayLast) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "GOAWAY last-stream-id increased");
    }
    this.#goawayLast = last;
    // streams above `last` were not processed: safe to retry elsewhere (§6.8)
    for (const s of [...this.#streams.values()]) {
      if (s.id > last) {
        this.#closeStream(
          s,
          new RefusedError(`Stream ${s.id} refused: the server sent GOAWAY (code ${code})`),
        );
      }
    }
    this.#changed();
    if (code !== ErrorCode.NO_ERROR) {
      this.#error ??= new Error(`Connection closed by the server: GOAWAY code ${code}`);
    }
    if (this.#streams.size === 0) this.#beginClose(ErrorCode.NO_ERROR);
  }

  #onWindowUpdate(h: FrameHeader, b: Uint8Array, start: number): void {
    if (h.length !== 4) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    const inc = readUint31(b, start);
    const id = h.streamId;
    if (id === 0) {
      if (inc === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      return;
    }
    if (!this.#opened(id)) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (inc === 0) return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
    }
    if (s.outPending > 0 || (s.endRequested && !s.localClosed)) this.#sendable.add(s);
  }

  // ---- streams ----

  #streamError(s: ClientStream, code: number, why: string): void {
    writeRstStream(this.#ctl, s.id, code);
    this.#closeStream(s, new Error(`Stream ${s.id} failed: ${why}`));
  }

  #resetStream(s: ClientStream, code: number): void {
    if (s.closed) {
      const unread = s.dropUnread();
      if (unread > 0) this.#creditConnection(unread);
      return;
    }
    if (!this.#closing) writeRstStream(this.#ctl, s.id, code);
    this.#closeStream(s, new Error(`Stream ${s.id} reset by the client: code ${code}`));
    this.#kick();
  }

  #closeStream(s: ClientStream, error: Error | undefined): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    this.#sendable.delete(s);
    this.#watchdog.delete(s);
    this.#interim.delete(s.id);
    s.detach();
    if (error !== undefined) {
      const unread = s.dropUnread();
      if (unread > 0) this.#creditConnection(unread);
      s.fail(error);
    }
    if (this.#streams.size === 0 && (this.#goawayLast !== -1 || this.#draining)) {
      this.#beginClose(ErrorCode.NO_ERROR);
    }
    this.#changed();
  }

  // The application consumed `n` bytes of `s`: return them to the server.
  #consumed(s: ClientStream, n: number): void {
    if (!s.remoteClosed && !s.closed) {
      s.unacked += n;
      if (s.unacked >= this.#initialWindow >> 1) {
        writeWindowUpdate(this.#ctl, s.id, s.unacked);
        s.recvWindow += s.unacked;
        s.unacked = 0;
        this.#kick();
      }
    }
    this.#creditConnection(n);
  }

  #creditConnection(n: number): void {
    if (this.#closing) return;
    this.#recvUnacked += n;
    if (this.#recvUnacked >= this.#connWindow >> 1) {
      writeWindowUpdate(this.#ctl, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
      this.#kick();
    }
  }

  #sendHeaders(id: number, list: readonly string[], endStream: boolean): void {
    const block = this.#encoder.encode(list);
    writeHeaders(this.#ctl, id, block, { endStream, maxFrameSize: this.#peerMaxFrame });
    this.#kick();
  }

  #changed(): void {
    this.#onChange?.(this);
  }

  // ---- writing ----

  #kick(): void {
    const w = this.#wake;
    if (w !== undefined) {
      this.#wake = undefined;
      w();
    }
  }

  #stageControl(): void {
    const ctl = this.#ctl;
    if (ctl.length === 0) return;
    this.#writer.writeBytes(ctl.buf, 0, ctl.length);
    ctl.clear();
  }

  // A stream can make progress: an end to send, or data and window for it.
  #readyToSend(s: ClientStream): boolean {
    if (s.outPending > 0) return s.sendWindow > 0 && this.#sendWindow > 0;
    return s.endRequested && !s.localClosed;
  }

  #hasWork(): boolean {
    if (this.#ctl.length > 0) return true;
    for (const s of this.#sendable) if (this.#readyToSend(s)) return true;
    return false;
  }

  async #writeLoop(): Promise<void> {
    const w = this.#writer;
    try {
      while (!this.#closed) {
        if (!this.#hasWork()) {
          this.#armStalls();
          if (this.#closing) {
            await this.#conn.closeWrite?.();
            return;
          }
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        this.#stageControl();
        let budget = WRITE_BUDGET;
        let progressed = true;
        while (progressed && budget > 0 && !this.#closed) {
          progressed = false;
          for (const s of this.#sendable) {
            if (s.closed || this.#closing) {
              this.#sendable.delete(s);
              continue;
            }
            this.#stageControl(); // HEADERS queued for this stream go first
            if (s.outPending > 0) {
              const n = Math.min(s.outPending, s.sendWindow, this.#sendWindow, this.#peerMaxFrame);
              if (n <= 0) continue;
              s.sendWindow -= n;
              this.#sendWindow -= n;
              s.sendDeadline = 0;
              budget -= n;
              const chunk = s.takeOut(n);
              const last = s.outPending === 0;
              const endStream = last && s.endRequested && s.endTrailers === undefined;
              writeFrameHeader(w, {
                length: n,
                type: FrameType.DATA,
                flags: endStream ? Flag.END_STREAM : 0,
                streamId: s.id,
              });
              const p = w.write(chunk);
              if (p !== undefined) await p;
              progressed = true;
              if (last) this.#settled.push(s);
              if (endStream) this.#finishLocal(s);
              if (s.closed) continue;
            }
            if (s.outPending === 0) {
              if (s.endRequested && !s.localClosed) {
                if (s.endTrailers !== undefined) {
                  this.#sendHeaders(s.id, trailerFields(s.endTrailers), true);
                  this.#stageControl();
                } else {
                  writeFrameHeader(w, {
                    length: 0,
                    type: FrameType.DATA,
                    flags: Flag.END_STREAM,
                    streamId: s.id,
                  });
                }
                this.#finishLocal(s);
                progressed = true;
              }
              this.#sendable.delete(s);
            }
            if (budget <= 0) break;
          }
        }
        this.#stageControl();
        await w.flush();
        const settled = this.#settled;
        if (settled.length > 0) {
          this.#settled = [];
          for (const s of settled) {
            s.settleWrite();
            if (s.localClosed) s.settleEnd();
          }
        }
      }
    } catch (e) {
      this.#error ??= e instanceof Error ? e : new Error(String(e));
      this.#shutdown();
    }
  }

  // END_STREAM is going out for `s` in the current round.
  #finishLocal(s: ClientStream): void {
    s.localClosed = true;
    this.#settled.push(s);
    if (s.remoteClosed && !s.closed) this.#closeStream(s, undefined);
  }

  // Streams waiting on a zero window get a deadline (reset after bodyIdleTimeout).
  #armStalls(): void {
    if (this.#bodyIdle <= 0) return;
    const at = this.#watchdog.now + this.#bodyIdle;
    for (const s of this.#sendable) {
      if (s.outPending > 0 && s.sendDeadline === 0) s.sendDeadline = at;
    }
  }

  // ---- lifecycle ----

  #expire(): void {
    this.#timer.deadline = 0;
    if (!this.#sawSettings && !this.#closing) {
      this.#error ??= new Error("Connection failed: no SETTINGS from the server in time");
      return this.#beginClose(ErrorCode.SETTINGS_TIMEOUT);
    }
    this.#shutdown(); // the close grace has passed
  }

  // A connection error (§5.4.1): GOAWAY with `code`, every stream fails.
  #fatal(code: number, why: string): void {
    if (this.#closing) return;
    const err = new Error(`Connection error: code ${code}: ${why}`);
    this.#error ??= err;
    for (const s of [...this.#streams.values()]) this.#closeStream(s, err);
    this.#beginClose(code);
  }

  #beginClose(code: number): void {
    if (this.#closing) return;
    writeGoaway(this.#ctl, 0, code); // we accept no server-initiated streams
    this.#closing = true;
    this.#blockStream = 0;
    this.#ready?.reject(this.#error ?? new Error("Connection closed before the server's SETTINGS"));
    this.#timer.deadline = this.#watchdog.now + CLOSE_GRACE_MS;
    this.#changed();
    this.#kick();
  }

  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    const err = this.#error ?? new Error("Connection closed");
    this.#ready?.reject(err);
    for (const s of [...this.#streams.values()]) this.#closeStream(s, err);
    for (const s of this.#settled) s.abandon(err);
    this.#settled = [];
    this.#watchdog.delete(this.#timer);
    this.#ownWatchdog?.abort();
    this.#changed();
    this.#kick();
  }
}

// Trailer fields with names lowercased and connection-specific fields left out.
function trailerFields(fields: readonly string[]): string[] {
  const list: string[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    let name = fields[i]!;
    if (UPPER_REGEXP.test(name)) name = name.toLowerCase();
    if (isConnectionSpecific(name) || name.charCodeAt(0) === 0x3a) continue;
    list.push(name, fields[i + 1]!);
  }
  return list;
}
