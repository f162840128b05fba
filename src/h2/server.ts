/**
 * The server side of an HTTP/2 connection (RFC 9113): turns a byte connection
 * into validated request streams, with flow control both ways and limits against
 * abusive peers (rapid reset, CONTINUATION and control-frame floods, header
 * bombs, stalled windows).
 *
 * @module
 */
import { type Timed, Watchdog } from "../proxy/watchdog.ts";
import { BufReader, BufWriter, type ByteConn } from "../http1/io.ts";
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
import { checkTrailerFields, parseRequestFields, type RequestPseudo } from "./request_fields.ts";
import { type H2Stream, ServerStream, type StreamHost } from "./stream.ts";

/** A connection the server can also close. */
export interface H2Conn extends ByteConn {
  /** Closes both directions. */
  close(): void;
  /** Closes the sending side (FIN), if the transport can. */
  closeWrite?(): Promise<void>;
}

/** Options of {@linkcode H2ServerConnection}. */
export interface H2ServerOptions {
  /** Concurrent streams we advertise; HEADERS beyond get RST_STREAM REFUSED_STREAM. @default 100 */
  maxConcurrentStreams?: number;
  /** Our receive window per stream. @default 65535 */
  initialWindowSize?: number;
  /** Our receive window for the whole connection. @default 1048576 */
  connectionWindowSize?: number;
  /** Largest frame payload we accept. @default 16384 */
  maxFrameSize?: number;
  /** Largest decoded header list (RFC 9113 §6.5.2 sizing). @default 65536 */
  maxHeaderListSize?: number;
  /** ms without streams after which the connection gets GOAWAY and closes; 0 = never. @default 0 */
  idleTimeout?: number;
  /** ms a stream may wait on the peer (body bytes or a zero window) before it is reset; 0 = never. @default 0 */
  bodyIdleTimeout?: number;
  /** Ticker for the timeouts (the balancer's); one is made per connection if absent. */
  watchdog?: Watchdog;
  /** Called for each valid request stream, after the read batch that opened it. */
  onStream(stream: H2Stream): void;
}

/** Client resets (of streams without a complete response) tolerated before the ratio check. */
export const MAX_CLIENT_RESETS = 100;
/** Glitches (suspicious but legal frames) tolerated per {@linkcode GLITCH_WINDOW_MS}. */
export const MAX_GLITCHES = 1000;
/** Window over which glitches are counted, ms. */
export const GLITCH_WINDOW_MS = 10_000;
/** Header block bytes accepted beyond maxHeaderListSize before the connection is closed. */
export const HEADER_BLOCK_SLACK = 16384;
/** Bytes of control frames queued for a peer that does not read before we give up on it. */
export const MAX_QUEUED_CONTROL = 1 << 20;
/** Bytes read and dropped after a fatal GOAWAY before the socket is closed. */
const LINGER_BYTES = 256 * 1024;
/** ms a closing connection waits for the peer to see GOAWAY and close. */
const CLOSE_GRACE_MS = 1000;
/** Bytes of DATA framed per writer round before flushing. */
const WRITE_BUDGET = 64 * 1024;
/** Remember this many stream ids we closed before the peer did (frames on them are ignored). */
const MAX_RESET_IDS = 1024;

const PREFACE_LENGTH = CLIENT_PREFACE.length;

/**
 * One HTTP/2 server connection.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { H2ServerConnection } from "./server.ts";
 * // A peer that sends a bad preface and is closed at once.
 * const input = [new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")];
 * let closed = false;
 * const conn = {
 *   read: (p: Uint8Array) => {
 *     const c = input.shift();
 *     if (!c) return Promise.resolve(null);
 *     p.set(c);
 *     return Promise.resolve(c.length);
 *   },
 *   write: (p: Uint8Array) => Promise.resolve(p.length),
 *   close: () => { closed = true; },
 * };
 * const h2 = new H2ServerConnection(conn, { onStream: () => {} });
 * await h2.serve();
 * assertEquals(closed, true);
 * ```
 */
export class H2ServerConnection {
  readonly #conn: H2Conn;
  readonly #onStream: (stream: H2Stream) => void;
  readonly #maxConcurrent: number;
  readonly #initialWindow: number;
  readonly #connWindow: number;
  readonly #maxFrame: number;
  readonly #maxHeaderList: number;
  readonly #idleTimeout: number;
  readonly #bodyIdle: number;
  readonly #watchdog: Watchdog;
  readonly #ownWatchdog: AbortController | undefined;

  readonly #writer: BufWriter;
  readonly #ctl = new OutQueue();
  readonly #decoder: HpackDecoder;
  readonly #encoder = new HpackEncoder();
  readonly #streams = new Map<number, ServerStream>();
  readonly #sendable = new Set<ServerStream>();
  readonly #resetIds = new Set<number>();
  #toDispatch: ServerStream[] = [];
  #settled: ServerStream[] = [];
  readonly #host: StreamHost;
  readonly #timer: Timed;
  readonly #frame: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  readonly #pseudo: RequestPseudo = {
    method: "",
    scheme: "",
    authority: "",
    path: "",
    contentLength: -1,
  };

  // peer state
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = MIN_MAX_FRAME_SIZE;
  #sendWindow = DEFAULT_WINDOW;
  #settingsAcked = false;
  #sawSettings = false;
  // receive state
  #recvWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  #lastStreamId = 0;
  // header block in progress (HEADERS without END_HEADERS, then CONTINUATION)
  #blockStream = 0;
  #blockFlags = 0;
  #block = new Uint8Array(0);
  #blockLength = 0;
  // abuse accounting
  #streamsOpened = 0;
  #clientResets = 0;
  #glitches = 0;
  #glitchStart = 0;
  // lifecycle
  #goawayLast = -1; // -1 until we sent GOAWAY
  #peerGoaway = false;
  #closing = false; // no more frames processed; flushing, then closing
  #closed = false;
  #wake: (() => void) | undefined;
  #now = Date.now();

  /** Wraps `conn`; nothing happens until {@linkcode H2ServerConnection.serve}. */
  constructor(conn: H2Conn, options: H2ServerOptions) {
    this.#conn = conn;
    this.#onStream = options.onStream;
    this.#maxConcurrent = options.maxConcurrentStreams ?? 100;
    this.#initialWindow = options.initialWindowSize ?? DEFAULT_WINDOW;
    this.#connWindow = Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 1 << 20);
    this.#maxFrame = options.maxFrameSize ?? MIN_MAX_FRAME_SIZE;
    this.#maxHeaderList = options.maxHeaderListSize ?? 65536;
    this.#idleTimeout = options.idleTimeout ?? 0;
    this.#bodyIdle = options.bodyIdleTimeout ?? 0;
    if (options.watchdog !== undefined) this.#watchdog = options.watchdog;
    else {
      this.#ownWatchdog = new AbortController();
      const shortest = Math.min(this.#idleTimeout || 1000, this.#bodyIdle || 1000);
      this.#watchdog = new Watchdog({
        resolution: Math.max(10, Math.min(100, shortest >> 2)),
        signal: this.#ownWatchdog.signal,
      });
    }
    this.#writer = new BufWriter(conn);
    this.#decoder = new HpackDecoder({ maxHeaderListSize: this.#maxHeaderList });
    const watchdog = this.#watchdog;
    this.#host = {
      sendHeaders: (s, list, o) => this.#sendHeaders(s.id, list, o.endStream),
      wantSend: (s) => {
        this.#sendable.add(s);
        this.#kick();
      },
      localEnded: (s) => this.#localEnded(s),
      resetStream: (s, code) => this.#resetStream(s, code),
      consumed: (s, n) => this.#consumed(s, n),
      get now() {
        return watchdog.now;
      },
      bodyIdleTimeout: this.#bodyIdle,
    };
    this.#timer = { deadline: 0, expire: () => this.#expire() };
  }

  /** Number of streams open (or half-closed) on this connection. */
  get openStreams(): number {
    return this.#streams.size;
  }

  /**
   * Runs the connection until it ends: reads the client preface (from `reader`
   * when the caller already read some bytes into one), exchanges SETTINGS and
   * serves streams. Never rejects.
   */
  async serve(reader?: BufReader): Promise<void> {
    const r = reader ?? new BufReader(this.#conn, this.#maxFrame + FRAME_HEADER_SIZE);
    if (r.buf.length < this.#maxFrame + FRAME_HEADER_SIZE) {
      r.resize(this.#maxFrame + FRAME_HEADER_SIZE);
    }
    this.#watchdog.add(this.#timer);
    this.#armIdle();
    // our SETTINGS and the connection window go out at once (RFC 9113 §3.4)
    const settings = [
      SettingId.MAX_CONCURRENT_STREAMS,
      this.#maxConcurrent,
      SettingId.MAX_HEADER_LIST_SIZE,
      this.#maxHeaderList,
    ];
    if (this.#initialWindow !== DEFAULT_WINDOW) {
      settings.push(SettingId.INITIAL_WINDOW_SIZE, this.#initialWindow);
    }
    if (this.#maxFrame !== MIN_MAX_FRAME_SIZE) {
      settings.push(SettingId.MAX_FRAME_SIZE, this.#maxFrame);
    }
    writeSettings(this.#ctl, settings);
    if (this.#connWindow > DEFAULT_WINDOW) {
      writeWindowUpdate(this.#ctl, 0, this.#connWindow - DEFAULT_WINDOW);
      this.#recvWindow = this.#connWindow;
    }
    const writing = this.#writeLoop();
    try {
      await this.#readLoop(r);
    } catch {
      // a read error ends the connection like EOF
    }
    this.#shutdown();
    await writing;
  }

  /**
   * Stops taking new streams (GOAWAY NO_ERROR with the last stream id) and
   * closes once the open streams finish.
   */
  drain(): void {
    if (this.#closed || this.#goawayLast !== -1) return;
    this.#goaway(ErrorCode.NO_ERROR);
    if (this.#streams.size === 0) this.#beginClose();
  }

  /** Closes the connection now; open streams fail. */
  close(): void {
    this.#shutdown();
  }

  // ---- reading ----

  async #readLoop(r: BufReader): Promise<void> {
    while (r.buffered < PREFACE_LENGTH) {
      if (!(await r.fill())) return;
    }
    for (let i = 0; i < PREFACE_LENGTH; i++) {
      if (r.buf[r.start + i] !== CLIENT_PREFACE[i]) return;
    }
    r.consume(PREFACE_LENGTH);
    const h = this.#frame;
    let lingered = 0;
    for (;;) {
      if (!this.#closing) {
        this.#now = Date.now();
        while (!this.#closing && parseFrameHeader(r, h)) {
          if (h.length > this.#maxFrame) {
            this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
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
        this.#dispatch();
        if (this.#ctl.length > MAX_QUEUED_CONTROL) return; // the peer reads nothing
        this.#kick();
      }
      if (this.#closing) { // after GOAWAY: read and drop, so the peer sees GOAWAY, not a reset
        lingered += r.buffered;
        r.consume(r.buffered);
        if (lingered > LINGER_BYTES) return;
      }
      if (this.#closed || !(await r.fill())) return;
    }
  }

  #dispatch(): void {
    const list = this.#toDispatch;
    if (list.length === 0) return;
    this.#toDispatch = [];
    for (const s of list) {
      if (s.closed || s.error !== undefined) continue;
      try {
        this.#onStream(s);
      } catch (e) {
        s.reset(ErrorCode.INTERNAL_ERROR);
        s.fail(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  #onFrame(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const type = h.type;
    if (!this.#sawSettings) {
      if (type !== FrameType.SETTINGS || (h.flags & Flag.ACK) !== 0) {
        return this.#fatal(ErrorCode.PROTOCOL_ERROR);
      }
      this.#sawSettings = true;
    }
    if (
      this.#blockStream !== 0 &&
      (type !== FrameType.CONTINUATION || h.streamId !== this.#blockStream)
    ) {
      return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(h, b, start, end);
      case FrameType.HEADERS:
        return this.#onHeaders(h, b, start, end);
      case FrameType.CONTINUATION:
        return this.#onContinuation(h, b, start, end);
      case FrameType.PRIORITY:
        if (h.streamId === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
        if (h.length !== 5) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
        return this.#glitch();
      case FrameType.RST_STREAM:
        return this.#onRstStream(h, b, start);
      case FrameType.SETTINGS:
        return this.#onSettings(h, b, start, end);
      case FrameType.PUSH_PROMISE:
        return this.#fatal(ErrorCode.PROTOCOL_ERROR);
      case FrameType.PING:
        if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
        if (h.length !== 8) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
        if ((h.flags & Flag.ACK) !== 0) return; // we send no PING of our own
        writePing(this.#ctl, b, { start, ack: true });
        return this.#glitch();
      case FrameType.GOAWAY:
        if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
        if (h.length < 8) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
        this.#peerGoaway = true;
        if (this.#streams.size === 0) this.#beginClose();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(h, b, start);
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  #onData(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const id = h.streamId;
    if (id === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    const length = h.length;
    this.#recvWindow -= length;
    if (this.#recvWindow < 0) return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR);
    let dataEnd = end;
    if ((h.flags & Flag.PADDED) !== 0) {
      if (length < 1) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
      const pad = b[start]!;
      start++;
      dataEnd = end - pad;
      if (dataEnd < start) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    }
    const endStream = (h.flags & Flag.END_STREAM) !== 0;
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#lastStreamId) return this.#fatal(ErrorCode.PROTOCOL_ERROR); // idle
      this.#creditConnection(length);
      if (this.#resetIds.has(id)) return;
      this.#glitch();
      writeRstStream(this.#ctl, id, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (s.remoteClosed) {
      this.#creditConnection(length);
      this.#glitch();
      return this.#streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    }
    const slack = this.#settingsAcked ? 0 : Math.max(0, DEFAULT_WINDOW - this.#initialWindow);
    if (length > s.recvWindow + slack) {
      this.#creditConnection(length);
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window");
    }
    s.recvWindow -= length;
    const padding = length - (dataEnd - start);
    if (padding > 0) this.#consumed(s, padding);
    if (length === 0 && !endStream) this.#glitch();
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
    if (id === 0 || (id & 1) === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    const flags = h.flags;
    if ((flags & Flag.PADDED) !== 0) {
      if (end - start < 1) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
      const pad = b[start]!;
      start++;
      end -= pad;
    }
    if ((flags & Flag.PRIORITY) !== 0) start += 5; // dependency and weight: ignored
    if (end < start) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    if ((flags & Flag.END_HEADERS) !== 0) return this.#onBlock(id, flags, b, start, end);
    if (end === start) this.#glitch();
    this.#blockStream = id;
    this.#blockFlags = flags;
    this.#blockLength = 0;
    this.#appendBlock(b, start, end);
  }

  #onContinuation(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (this.#blockStream === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    if (end === start && (h.flags & Flag.END_HEADERS) === 0) this.#glitch();
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
      return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM);
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
      return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM);
    }
    const list: string[] = [];
    let tooLarge = false;
    try {
      this.#decoder.decode(b, start, end, list);
    } catch (e) {
      if (e instanceof HeaderListTooLargeError) tooLarge = true;
      else if (e instanceof HpackError) return this.#fatal(ErrorCode.COMPRESSION_ERROR);
      else return this.#fatal(ErrorCode.INTERNAL_ERROR);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const existing = this.#streams.get(id);
    if (existing !== undefined) return this.#onTrailers(existing, list, { endStream, tooLarge });
    if (id <= this.#lastStreamId) {
      if (this.#resetIds.has(id)) return; // decoded for HPACK's sake, then dropped
      return this.#fatal(ErrorCode.PROTOCOL_ERROR); // reused or decreasing id
    }
    this.#lastStreamId = id;
    if (this.#goawayLast !== -1 || this.#peerGoaway) return this.#rememberReset(id); // after GOAWAY
    if (list.length === 0) this.#glitch();
    if (tooLarge) {
      this.#glitch();
      return this.#refuse(id, { status: 431, endStream });
    }
    if (this.#streams.size >= this.#maxConcurrent) {
      this.#glitch();
      writeRstStream(this.#ctl, id, ErrorCode.REFUSED_STREAM);
      return this.#rememberReset(id);
    }
    const pseudo = this.#pseudo;
    const why = parseRequestFields(list, pseudo);
    if (why !== "" || (endStream && pseudo.contentLength > 0)) {
      this.#glitch();
      writeRstStream(this.#ctl, id, ErrorCode.PROTOCOL_ERROR);
      return this.#rememberReset(id);
    }
    if (pseudo.method === "CONNECT") return this.#refuse(id, { status: 501, endStream });
    const s = new ServerStream(this.#host, {
      id,
      pseudo,
      fields: list,
      endStream,
      recvWindow: this.#initialWindow,
      sendWindow: this.#peerInitialWindow,
    });
    this.#streams.set(id, s);
    this.#streamsOpened++;
    this.#timer.deadline = 0;
    this.#watchdog.add(s);
    this.#toDispatch.push(s);
  }

  #onTrailers(
    s: ServerStream,
    list: string[],
    o: { endStream: boolean; tooLarge: boolean },
  ): void {
    if (s.remoteClosed) {
      return this.#streamError(s, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (!o.endStream || o.tooLarge || checkTrailerFields(list) !== "") {
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
  }

  // Answers a request that never becomes a stream with a bodiless response.
  #refuse(id: number, o: { status: number; endStream: boolean }): void {
    this.#sendHeaders(id, [":status", String(o.status)], true);
    if (!o.endStream) writeRstStream(this.#ctl, id, ErrorCode.NO_ERROR);
    this.#rememberReset(id);
  }

  #onRstStream(h: FrameHeader, b: Uint8Array, start: number): void {
    const id = h.streamId;
    if (id === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    if (h.length !== 4) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
    if (id > this.#lastStreamId) return this.#fatal(ErrorCode.PROTOCOL_ERROR); // idle
    const s = this.#streams.get(id);
    if (s === undefined) return;
    const code = readUint32(b, start);
    // Rapid reset (CVE-2023-44487): resets of streams we had not answered in full.
    if (!s.localClosed) {
      this.#clientResets++;
      this.#glitch();
      if (
        this.#clientResets > MAX_CLIENT_RESETS && this.#clientResets * 2 > this.#streamsOpened
      ) {
        this.#closeStream(s, new Error(`Stream ${id} reset by the client: code ${code}`));
        return this.#fatal(ErrorCode.ENHANCE_YOUR_CALM);
      }
    }
    this.#closeStream(s, new Error(`Stream ${id} reset by the client: code ${code}`));
  }

  #onSettings(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (h.streamId !== 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
    if ((h.flags & Flag.ACK) !== 0) {
      if (h.length !== 0) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
      this.#settingsAcked = true;
      return;
    }
    if (h.length % 6 !== 0) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
    for (let i = start; i < end; i += 6) {
      const id = (b[i]! << 8) | b[i + 1]!;
      const value = readUint32(b, i + 2);
      const bad = validateSetting(id, value);
      if (bad !== 0) return this.#fatal(bad);
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.#encoder.setMaxTableSize(Math.min(value, 4096));
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const s of this.#streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR);
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
    this.#glitch();
  }

  #onWindowUpdate(h: FrameHeader, b: Uint8Array, start: number): void {
    if (h.length !== 4) return this.#fatal(ErrorCode.FRAME_SIZE_ERROR);
    const inc = readUint31(b, start);
    const id = h.streamId;
    if (inc < 1024) this.#glitch();
    if (id === 0) {
      if (inc === 0) return this.#fatal(ErrorCode.PROTOCOL_ERROR);
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) return this.#fatal(ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (id > this.#lastStreamId) return this.#fatal(ErrorCode.PROTOCOL_ERROR); // idle
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (inc === 0) return this.#streamError(s, ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.#streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
    }
    if (s.outPending > 0 || s.endRequested) this.#sendable.add(s);
  }

  // ---- abuse accounting ----

  // Frames that are legal but cost us work for nothing (PING, SETTINGS, PRIORITY,
  // empty DATA, tiny WINDOW_UPDATE, refused or malformed streams, client resets):
  // past MAX_GLITCHES in GLITCH_WINDOW_MS the connection gets ENHANCE_YOUR_CALM.
  #glitch(): void {
    if (this.#now - this.#glitchStart > GLITCH_WINDOW_MS) {
      this.#glitchStart = this.#now;
      this.#glitches = 0;
    }
    if (++this.#glitches > MAX_GLITCHES) this.#fatal(ErrorCode.ENHANCE_YOUR_CALM);
  }

  // ---- streams ----

  #rememberReset(id: number): void {
    const ids = this.#resetIds;
    if (ids.size >= MAX_RESET_IDS) ids.delete(ids.values().next().value!);
    ids.add(id);
  }

  #streamError(s: ServerStream, code: number, why: string): void {
    writeRstStream(this.#ctl, s.id, code);
    if (!s.remoteClosed) this.#rememberReset(s.id);
    this.#closeStream(s, new Error(`Stream ${s.id} failed: ${why}`));
  }

  #resetStream(s: ServerStream, code: number): void {
    if (s.closed) return;
    writeRstStream(this.#ctl, s.id, code);
    if (!s.remoteClosed) this.#rememberReset(s.id);
    this.#closeStream(s, new Error(`Stream ${s.id} reset by the server: code ${code}`));
    this.#kick();
  }

  #localEnded(s: ServerStream): void {
    if (s.remoteClosed) this.#closeStream(s, undefined);
    else {
      // a complete response: the rest of the request body is not wanted (§8.1)
      writeRstStream(this.#ctl, s.id, ErrorCode.NO_ERROR);
      this.#rememberReset(s.id);
      this.#closeStream(s, new Error(`Stream ${s.id} closed: the response ended first`));
    }
  }

  #closeStream(s: ServerStream, error: Error | undefined): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    this.#sendable.delete(s);
    this.#watchdog.delete(s);
    const unread = s.dropUnread();
    if (unread > 0) this.#creditConnection(unread);
    if (error !== undefined) s.fail(error);
    if (this.#streams.size === 0) {
      if (this.#goawayLast !== -1 || this.#peerGoaway) this.#beginClose();
      else this.#armIdle();
    }
  }

  // The application consumed `n` bytes of `s`: return them to the peer.
  #consumed(s: ServerStream, n: number): void {
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
  #ready(s: ServerStream): boolean {
    if (s.outPending > 0) return s.sendWindow > 0 && this.#sendWindow > 0;
    return s.endRequested && !s.localClosed;
  }

  #hasWork(): boolean {
    if (this.#ctl.length > 0) return true;
    for (const s of this.#sendable) if (this.#ready(s)) return true;
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
            if (s.closed) {
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
                  s.localClosed = true;
                  this.#sendHeaders(s.id, s.endTrailers, true);
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
    } catch {
      this.#shutdown();
    }
  }

  // END_STREAM is going out for `s` in the current round.
  #finishLocal(s: ServerStream): void {
    s.localClosed = true;
    this.#settled.push(s);
    if (!s.closed) this.#localEnded(s);
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

  #armIdle(): void {
    if (this.#idleTimeout > 0 && !this.#closing) {
      this.#timer.deadline = this.#watchdog.now + this.#idleTimeout;
    }
  }

  #expire(): void {
    this.#timer.deadline = 0;
    if (this.#closing) return this.#shutdown();
    if (this.#streams.size === 0) {
      this.#goaway(ErrorCode.NO_ERROR);
      this.#beginClose();
    }
  }

  #goaway(code: number): void {
    if (this.#goawayLast === -1) this.#goawayLast = this.#lastStreamId;
    writeGoaway(this.#ctl, this.#goawayLast, code);
    this.#kick();
  }

  // A connection error (§5.4.1): GOAWAY with `code`, every stream fails, and the
  // socket closes once GOAWAY is out (reading, but not processing, meanwhile).
  #fatal(code: number): void {
    if (this.#closing) return;
    this.#goaway(code);
    const err = new Error(`Connection error: code ${code}`);
    for (const s of [...this.#streams.values()]) this.#closeStream(s, err);
    this.#beginClose();
  }

  #beginClose(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#blockStream = 0;
    this.#timer.deadline = this.#watchdog.now + CLOSE_GRACE_MS;
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
    const err = new Error("Connection closed");
    for (const s of [...this.#streams.values()]) this.#closeStream(s, err);
    for (const s of this.#toDispatch) s.fail(err);
    this.#toDispatch = [];
    for (const s of this.#settled) s.abandon(err);
    this.#settled = [];
    this.#watchdog.delete(this.#timer);
    this.#ownWatchdog?.abort();
    this.#kick();
  }
}
