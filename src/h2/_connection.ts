/**
 * What the server and client sides of an HTTP/2 connection share (RFC 9113):
 * the frame reader's dispatch and the frames both sides treat alike, header
 * block collection (HEADERS + CONTINUATION) with the CONTINUATION-flood bound,
 * flow control both ways, the writer loop that frames DATA within the windows,
 * and closing.
 *
 * @module
 */
import { type Timed, Watchdog } from "../timer/watchdog.ts";
import { type BufReader, BufWriter, type ByteConn } from "../http1/io.ts";
import {
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
  writeHeaders,
  writePing,
  writeRstStream,
  writeSettings,
  writeSettingsAck,
  writeWindowUpdate,
} from "./frame.ts";
import { HeaderListTooLargeError, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { Glitch } from "./abuse.ts";
import { OutQueue } from "./_out_queue.ts";
import { checkTrailerFields } from "./request_fields.ts";
import type { StreamBase, StreamHost } from "./_stream_base.ts";

/** A connection that can also be closed. */
export interface H2Conn extends ByteConn {
  /** Closes both directions. */
  close(): void;
  /** Closes the sending side (FIN), if the transport can. */
  closeWrite?(): Promise<void>;
}

/** Header block bytes accepted beyond maxHeaderListSize before the connection is closed. */
export const HEADER_BLOCK_SLACK = 16384;
/** Bytes of control frames queued for a peer that does not read before we give up on it. */
export const MAX_QUEUED_CONTROL = 1 << 20;
/** ms a closing connection waits for GOAWAY to go out (and the peer to close). */
const CLOSE_GRACE_MS = 1000;
const NO_BYTES = new Uint8Array(0);
/** Bytes of DATA framed per writer round before flushing. */
const WRITE_BUDGET = 64 * 1024;
/**
 * WINDOW_UPDATE frames a peer may send before any were earned. A DATA frame we
 * send earns two (one for its stream, one for the connection), and so does a
 * stream the server opens (grpcio raises a new stream's window at once).
 */
export const FREE_WINDOW_UPDATES = 32;
/** WINDOW_UPDATE frames a peer may have earned and not sent yet, at most. */
export const MAX_WINDOW_UPDATE_CREDIT = 1 << 16;

/** Limits and timeouts of one connection, as its side resolved them. */
export interface ConnectionLimits {
  /** Our receive window per stream. */
  initialWindow: number;
  /** Our receive window for the whole connection. */
  connWindow: number;
  /** Largest frame payload we accept. */
  maxFrame: number;
  /** Largest decoded header list. */
  maxHeaderList: number;
  /** ms a stream may wait on the peer; 0 = never. */
  bodyIdle: number;
  /** The shortest timeout the connection's own watchdog must serve, ms. */
  shortestTimeout: number;
  /** The balancer's ticker; one is made when absent. */
  watchdog: Watchdog | undefined;
  /** The peer's role, as error messages name it. */
  peer: "client" | "server";
}

/**
 * One HTTP/2 connection's shared machinery; a side adds its preface, how
 * streams open, head validation and its closing rules.
 *
 * @example
 * ```ts ignore
 * // subclassed by H2ServerConnection and H2ClientConnection only
 * class Side extends H2Connection<MyStream> { ... }
 * ```
 */
export abstract class H2Connection<S extends StreamBase> {
  protected readonly conn: H2Conn;
  protected readonly initialWindow: number;
  protected readonly connWindow: number;
  protected readonly maxFrame: number;
  protected readonly maxHeaderList: number;
  protected readonly bodyIdle: number;
  protected readonly watchdog: Watchdog;
  protected readonly ctl: OutQueue = new OutQueue();
  protected readonly encoder: HpackEncoder = new HpackEncoder();
  protected readonly streams: Map<number, S> = new Map();
  protected readonly sendable: Set<S> = new Set();
  protected readonly host: StreamHost;
  protected readonly timer: Timed;
  // peer state
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrame = MIN_MAX_FRAME_SIZE;
  protected sawSettings = false;
  protected settingsAcked = false;
  /** PINGs received (keepalive: the peer is there, its idle streams too). */
  pings = 0;
  /** WINDOW_UPDATE frames the peer may still send without a glitch. */
  protected updateCredit = FREE_WINDOW_UPDATES;
  // lifecycle
  protected closing = false; // no more frames processed; flushing, then closing
  protected socketClosed = false;

  readonly #ownWatchdog: AbortController | undefined;
  readonly #peer: string;
  readonly #writer: BufWriter;
  readonly #decoder: HpackDecoder;
  readonly #frame: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
  #settled: S[] = [];
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  // header block in progress (HEADERS without END_HEADERS, then CONTINUATION)
  #blockStream = 0;
  #blockFlags = 0;
  #block = NO_BYTES;
  #blockLength = 0;
  #blockSelfDependent = false; // its HEADERS made the stream depend on itself
  readonly #blockInfo = { endStream: false, tooLarge: false, selfDependent: false }; // reused
  #wake: (() => void) | undefined;

  /** Wraps `conn`; the side starts the loops. */
  constructor(conn: H2Conn, limits: ConnectionLimits) {
    this.conn = conn;
    this.initialWindow = limits.initialWindow;
    this.connWindow = limits.connWindow;
    this.maxFrame = limits.maxFrame;
    this.maxHeaderList = limits.maxHeaderList;
    this.bodyIdle = limits.bodyIdle;
    this.#peer = limits.peer;
    if (limits.watchdog !== undefined) this.watchdog = limits.watchdog;
    else {
      this.#ownWatchdog = new AbortController();
      this.watchdog = new Watchdog({
        resolution: Math.max(10, Math.min(100, limits.shortestTimeout >> 2)),
        signal: this.#ownWatchdog.signal,
      });
    }
    this.#writer = new BufWriter(conn);
    this.#decoder = new HpackDecoder({ maxHeaderListSize: this.maxHeaderList });
    this.host = new H2Connection.#Host(this as H2Connection<StreamBase>);
    this.timer = new H2Connection.#Timer(this as H2Connection<StreamBase>);
  }

  // What the streams call, and the connection's timer: objects with methods on their
  // prototype, instead of seven closures per connection.
  static readonly #Host = class implements StreamHost {
    readonly c: H2Connection<StreamBase>;
    readonly bodyIdleTimeout: number;
    constructor(c: H2Connection<StreamBase>) {
      this.c = c;
      this.bodyIdleTimeout = c.bodyIdle;
    }
    get now(): number {
      return this.c.watchdog.now;
    }
    sendHeaders(s: StreamBase, list: readonly string[], o: { endStream: boolean }): void {
      this.c.sendHeaders(s.id, list, o.endStream);
    }
    wantSend(s: StreamBase): void {
      this.c.sendable.add(s);
      this.c.kick();
    }
    localEnded(s: StreamBase): void {
      this.c.localEnded(s);
    }
    resetStream(s: StreamBase, code: number): void {
      this.c.#resetStream(s, code);
    }
    consumed(s: StreamBase, n: number): void {
      this.c.#consumed(s, n);
    }
  };

  static readonly #Timer = class implements Timed {
    deadline = 0;
    readonly c: H2Connection<StreamBase>;
    constructor(c: H2Connection<StreamBase>) {
      this.c = c;
    }
    expire(): void {
      this.c.expire();
    }
  };

  // ---- what a side decides ----

  /** A connection error (§5.4.1): GOAWAY with `code`, every stream fails. */
  protected abstract fatal(code: number, why: string): void;
  /** The connection's timer fired (idle, SETTINGS or close grace). */
  protected abstract expire(): void;
  /** True when `id` names a stream that was never opened. */
  protected abstract idle(id: number): boolean;
  /**
   * A complete, decoded header block for stream `id` (`tooLarge`: past
   * maxHeaderListSize; `selfDependent`: its HEADERS frame made the stream depend
   * on itself, a stream error, RFC 9113 §5.3.1); `o` is reused, read it before
   * returning.
   */
  protected abstract onHeaderList(
    id: number,
    list: string[],
    o: { endStream: boolean; tooLarge: boolean; selfDependent: boolean },
  ): void;
  /** RST_STREAM from the peer on an open stream. */
  protected abstract onReset(s: S, code: number): void;
  /** A well-formed GOAWAY frame (`b[start..]` is its payload). */
  protected abstract onGoaway(b: Uint8Array, start: number): void;
  /** END_STREAM went out for `s` (DATA, trailers, or a HEADERS the stream sent). */
  protected abstract localEnded(s: S): void;
  /** `s` closed (after it failed with the error, if any). */
  protected abstract streamClosed(s: S): void;
  /** The writer failed with `e`; the connection must shut down. */
  protected abstract writeFailed(e: unknown): void;

  /** A legal frame that served nothing, of a {@linkcode Glitch} kind; a side may count these. */
  protected glitch(_kind: number): void {}
  /** A connection error for abuse (ENHANCE_YOUR_CALM); `reason` is one of `ABUSE_REASONS`. */
  protected abusive(_reason: string, why: string): void {
    this.fatal(ErrorCode.ENHANCE_YOUR_CALM, why);
  }
  /** A PRIORITY frame made stream `id` depend on itself (a stream error, RFC 9113 §5.3.1). */
  protected onSelfDependency(id: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) this.streamError(s, ErrorCode.PROTOCOL_ERROR, "stream depends on itself");
    else writeRstStream(this.ctl, id, ErrorCode.PROTOCOL_ERROR);
  }
  /** A setting only one side knows; false when it ended the connection. */
  protected onSetting(_id: number, _value: number): boolean {
    return true;
  }
  /** The peer's SETTINGS were applied and acknowledged (`first`: its preface). */
  protected settingsApplied(_first: boolean): void {}
  /** True when HEADERS may be sent on `id` (checked before the block is read). */
  protected headersAllowed(_id: number): boolean {
    return true;
  }
  /** DATA on a stream that is closed (we reset or finished it) and not idle. */
  protected onDataClosed(_id: number): void {}
  /** Why `s` takes no DATA now ("" when it does). */
  protected dataRefused(_s: S): string {
    return "";
  }
  /** Window the peer may overrun a stream's by before our SETTINGS are acknowledged. */
  protected windowSlack(): number {
    return 0;
  }
  /** True when unread body bytes are dropped (and credited) when a stream closes cleanly. */
  protected dropsUnreadOnClose(): boolean {
    return false;
  }
  /** Called with `s` when an RST_STREAM for it was queued. */
  protected resetSent(_s: S): void {}

  // ---- starting ----

  /** Queues our SETTINGS (`settings`: id, value, ...) and the connection window (§3.4). */
  protected sendPreface(settings: number[]): void {
    if (this.initialWindow !== DEFAULT_WINDOW) {
      settings.push(SettingId.INITIAL_WINDOW_SIZE, this.initialWindow);
    }
    if (this.maxFrame !== MIN_MAX_FRAME_SIZE) {
      settings.push(SettingId.MAX_FRAME_SIZE, this.maxFrame);
    }
    writeSettings(this.ctl, settings);
    if (this.connWindow > DEFAULT_WINDOW) {
      writeWindowUpdate(this.ctl, 0, this.connWindow - DEFAULT_WINDOW);
      this.#recvWindow = this.connWindow;
    }
  }

  // ---- reading ----

  /** Handles the complete frames buffered in `r`, growing it for a larger one. */
  protected readFrames(r: BufReader): void {
    const h = this.#frame;
    while (!this.closing && parseFrameHeader(r, h)) {
      if (h.length > this.maxFrame) {
        this.fatal(ErrorCode.FRAME_SIZE_ERROR, `frame of ${h.length} bytes`);
        break;
      }
      const size = FRAME_HEADER_SIZE + h.length;
      if (r.buffered < size) {
        if (r.buf.length < size) r.borrow(size); // from the shared pool, given back when idle
        break;
      }
      const p = r.start + FRAME_HEADER_SIZE;
      this.#onFrame(h, r.buf, p, p + h.length);
      r.consume(size);
    }
  }

  #onFrame(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const type = h.type;
    if (!this.sawSettings && (type !== FrameType.SETTINGS || (h.flags & Flag.ACK) !== 0)) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, `the ${this.#peer}'s preface is not SETTINGS`);
    }
    if (
      this.#blockStream !== 0 &&
      (type !== FrameType.CONTINUATION || h.streamId !== this.#blockStream)
    ) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(h, b, start, end);
      case FrameType.HEADERS:
        return this.#onHeaders(h, b, start, end);
      case FrameType.CONTINUATION:
        return this.#onContinuation(h, b, start, end);
      case FrameType.PRIORITY:
        if (h.streamId === 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (h.length !== 5) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size");
        if (readUint31(b, start) === h.streamId) return this.onSelfDependency(h.streamId);
        return this.glitch(Glitch.PRIORITY);
      case FrameType.RST_STREAM:
        return this.#onRstStream(h, b, start);
      case FrameType.SETTINGS:
        return this.#onSettings(h, b, start, end);
      case FrameType.PUSH_PROMISE:
        return this.fatal(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
      case FrameType.PING:
        if (h.streamId !== 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (h.length !== 8) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "PING size");
        if ((h.flags & Flag.ACK) !== 0) return; // we send no PING of our own
        this.pings++;
        writePing(this.ctl, b, { start, ack: true });
        return this.glitch(Glitch.PING);
      case FrameType.GOAWAY:
        if (h.streamId !== 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (h.length < 8) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size");
        return this.onGoaway(b, start);
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(h, b, start);
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  #onData(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const id = h.streamId;
    if (id === 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const length = h.length;
    this.#recvWindow -= length;
    if (this.#recvWindow < 0) {
      return this.fatal(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    let dataEnd = end;
    if ((h.flags & Flag.PADDED) !== 0) {
      if (length < 1) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "DATA padding");
      const pad = b[start]!;
      start++;
      dataEnd = end - pad;
      if (dataEnd < start) return this.fatal(ErrorCode.PROTOCOL_ERROR, "DATA padding");
    }
    const endStream = (h.flags & Flag.END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s === undefined) {
      if (this.idle(id)) return this.fatal(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      this.#creditConnection(length);
      return this.onDataClosed(id); // a stream we reset or finished: frames in flight
    }
    if (s.remoteClosed) {
      this.#creditConnection(length);
      this.glitch(Glitch.CLOSED_STREAM);
      return this.streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    }
    const refused = this.dataRefused(s);
    if (refused !== "") {
      this.#creditConnection(length);
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR, refused);
    }
    if (length > s.recvWindow + this.windowSlack()) {
      this.#creditConnection(length);
      return this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window");
    }
    s.recvWindow -= length;
    const padding = length - (dataEnd - start);
    if (padding > 0) this.#consumed(s, padding);
    if (length === 0 && !endStream) this.glitch(Glitch.EMPTY_FRAME);
    if (!s.receiveData(b, start, dataEnd, endStream)) {
      return this.streamError(
        s,
        ErrorCode.PROTOCOL_ERROR,
        "body length differs from content-length",
      );
    }
    if (endStream && s.localClosed) this.closeStream(s, undefined);
  }

  #onHeaders(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    const id = h.streamId;
    if (id === 0 || !this.headersAllowed(id)) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    }
    const flags = h.flags;
    if ((flags & Flag.PADDED) !== 0) {
      if (end - start < 1) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "HEADERS padding");
      const pad = b[start]!;
      start++;
      end -= pad;
    }
    let selfDependent = false;
    if ((flags & Flag.PRIORITY) !== 0) { // dependency and weight: ignored, but for this
      if (end - start < 5) return this.fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS padding");
      selfDependent = readUint31(b, start) === id;
      start += 5;
    }
    if (end < start) return this.fatal(ErrorCode.PROTOCOL_ERROR, "HEADERS padding");
    this.#blockSelfDependent = selfDependent;
    if ((flags & Flag.END_HEADERS) !== 0) return this.#onBlock(id, flags, b, start, end);
    if (end === start) this.glitch(Glitch.EMPTY_FRAME);
    this.#blockStream = id;
    this.#blockFlags = flags;
    this.#blockLength = 0;
    this.#appendBlock(b, start, end);
  }

  #onContinuation(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (this.#blockStream === 0) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    }
    if (end === start && (h.flags & Flag.END_HEADERS) === 0) this.glitch(Glitch.EMPTY_FRAME);
    this.#appendBlock(b, start, end);
    if (this.closing || (h.flags & Flag.END_HEADERS) === 0) return;
    const id = this.#blockStream;
    this.#blockStream = 0;
    this.#onBlock(id, this.#blockFlags, this.#block, 0, this.#blockLength);
    if (this.#block.length > 65536) this.#block = NO_BYTES;
  }

  // Header block bytes are counted as they arrive, before any decoding: a block
  // past maxHeaderListSize plus slack ends the connection (CONTINUATION flood).
  #appendBlock(b: Uint8Array, start: number, end: number): void {
    const need = this.#blockLength + end - start;
    if (need > this.maxHeaderList + HEADER_BLOCK_SLACK) {
      return this.abusive(
        "header_block_too_large",
        "a header block past the limit (CONTINUATION flood)",
      );
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
    if (end - start > this.maxHeaderList + HEADER_BLOCK_SLACK) {
      return this.abusive(
        "header_block_too_large",
        "a header block past the limit (CONTINUATION flood)",
      );
    }
    const list: string[] = [];
    let tooLarge = false;
    try {
      this.#decoder.decode(b, start, end, list); // always: the table must stay in step
    } catch (e) {
      if (e instanceof HeaderListTooLargeError) tooLarge = true;
      else if (e instanceof HpackError) {
        return this.fatal(ErrorCode.COMPRESSION_ERROR, e.message);
      } else return this.fatal(ErrorCode.INTERNAL_ERROR, String(e));
    }
    const o = this.#blockInfo;
    o.endStream = (flags & Flag.END_STREAM) !== 0;
    o.tooLarge = tooLarge;
    o.selfDependent = this.#blockSelfDependent;
    this.onHeaderList(id, list, o);
  }

  #onRstStream(h: FrameHeader, b: Uint8Array, start: number): void {
    const id = h.streamId;
    if (id === 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (h.length !== 4) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    if (this.idle(id)) return this.fatal(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    const s = this.streams.get(id);
    if (s !== undefined) this.onReset(s, readUint32(b, start));
  }

  #onSettings(h: FrameHeader, b: Uint8Array, start: number, end: number): void {
    if (h.streamId !== 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if ((h.flags & Flag.ACK) !== 0) {
      if (h.length !== 0) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ack size");
      this.settingsAcked = true;
      return;
    }
    if (h.length % 6 !== 0) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    for (let i = start; i < end; i += 6) {
      const id = (b[i]! << 8) | b[i + 1]!;
      const value = readUint32(b, i + 2);
      const bad = validateSetting(id, value);
      if (bad !== 0) return this.fatal(bad, `bad setting ${id}: ${value}`);
      switch (id) {
        case SettingId.HEADER_TABLE_SIZE:
          this.encoder.setMaxTableSize(Math.min(value, 4096));
          break;
        case SettingId.INITIAL_WINDOW_SIZE: {
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              return this.fatal(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
            }
            if (delta > 0 && s.outPending > 0) this.sendable.add(s);
          }
          break;
        }
        case SettingId.MAX_FRAME_SIZE:
          this.peerMaxFrame = value;
          break;
        default:
          if (!this.onSetting(id, value)) return;
      }
    }
    writeSettingsAck(this.ctl);
    const first = !this.sawSettings;
    this.sawSettings = true;
    this.settingsApplied(first);
  }

  #onWindowUpdate(h: FrameHeader, b: Uint8Array, start: number): void {
    if (h.length !== 4) return this.fatal(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    const inc = readUint31(b, start);
    const id = h.streamId;
    // credit returned for our DATA (or a new stream's window raised) is normal, however small
    if (this.updateCredit > 0) this.updateCredit--;
    else this.glitch(Glitch.WINDOW_UPDATE);
    if (id === 0) {
      if (inc === 0) return this.fatal(ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        return this.fatal(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      return;
    }
    if (this.idle(id)) {
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
    }
    const s = this.streams.get(id);
    if (s === undefined) return;
    if (inc === 0) return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
    }
    if (s.outPending > 0 || (s.endRequested && !s.localClosed)) this.sendable.add(s);
  }

  /**
   * Before a read: the reader holds a buffer lent from the shared pool while much
   * is arriving (the last read filled its room, or a stream is receiving a body),
   * and reads into its own small one otherwise, so that an idle connection's
   * pending read pins no large buffer.
   */
  protected fitReader(r: BufReader): void {
    if (r.buffered !== 0) return; // a partial frame: readFrames made room for it
    if (r.filled || this.#receivingBody()) r.borrow(FRAME_HEADER_SIZE + this.maxFrame);
    else r.giveBack();
  }

  #receivingBody(): boolean {
    for (const s of this.streams.values()) if (!s.remoteClosed) return true;
    return false;
  }

  // ---- streams ----

  /** Resets `s` with `code` (a stream error, §5.4.2) and fails it. */
  protected streamError(s: S, code: number, why: string): void {
    writeRstStream(this.ctl, s.id, code);
    this.resetSent(s);
    this.closeStream(s, new Error(`Stream ${s.id} failed: ${why}`));
  }

  /** Takes a trailer block for `s`, whose head is in (END_STREAM required). */
  protected acceptTrailers(
    s: S,
    list: string[],
    o: { endStream: boolean; tooLarge: boolean },
  ): void {
    if (!o.endStream || o.tooLarge || checkTrailerFields(list) !== "") {
      return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "malformed trailers");
    }
    if (!s.receiveTrailers(list)) {
      return this.streamError(
        s,
        ErrorCode.PROTOCOL_ERROR,
        "body length differs from content-length",
      );
    }
    if (s.localClosed) this.closeStream(s, undefined);
  }

  // The application reset `s`.
  #resetStream(s: S, code: number): void {
    if (s.closed) {
      const unread = s.dropUnread();
      if (unread > 0) this.#creditConnection(unread);
      return;
    }
    if (!this.closing) {
      writeRstStream(this.ctl, s.id, code);
      this.resetSent(s);
    }
    const self = this.#peer === "client" ? "server" : "client";
    this.closeStream(s, new Error(`Stream ${s.id} reset by the ${self}: code ${code}`));
    this.kick();
  }

  /** Removes `s` from the connection; it fails with `error` unless it ended cleanly. */
  protected closeStream(s: S, error: Error | undefined): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.sendable.delete(s);
    this.watchdog.delete(s);
    if (error !== undefined || this.dropsUnreadOnClose()) {
      const unread = s.dropUnread();
      if (unread > 0) this.#creditConnection(unread);
    }
    if (error !== undefined) s.fail(error);
    this.streamClosed(s);
  }

  // The application consumed `n` bytes of `s`: return them to the peer.
  #consumed(s: S, n: number): void {
    if (!s.remoteClosed && !s.closed) {
      s.unacked += n;
      if (s.unacked >= this.initialWindow >> 1) {
        writeWindowUpdate(this.ctl, s.id, s.unacked);
        s.recvWindow += s.unacked;
        s.unacked = 0;
        this.kick();
      }
    }
    this.#creditConnection(n);
  }

  #creditConnection(n: number): void {
    if (this.closing) return;
    this.#recvUnacked += n;
    if (this.#recvUnacked >= this.connWindow >> 1) {
      writeWindowUpdate(this.ctl, 0, this.#recvUnacked);
      this.#recvWindow += this.#recvUnacked;
      this.#recvUnacked = 0;
      this.kick();
    }
  }

  /** Encodes `list` and queues it as HEADERS (+ CONTINUATION) on stream `id`. */
  protected sendHeaders(id: number, list: readonly string[], endStream: boolean): void {
    const block = this.encoder.encode(list);
    writeHeaders(this.ctl, id, block, { endStream, maxFrameSize: this.peerMaxFrame });
    this.kick();
  }

  // ---- writing ----

  /** Wakes the writer. */
  protected kick(): void {
    const w = this.#wake;
    if (w !== undefined) {
      this.#wake = undefined;
      w();
    }
  }

  #stageControl(): void {
    const ctl = this.ctl;
    if (ctl.length === 0) return;
    this.#writer.writeBytes(ctl.buf, 0, ctl.length);
    ctl.clear();
  }

  // A stream can make progress: an end to send, or data and window for it.
  #ready(s: S): boolean {
    if (s.outPending > 0) return s.sendWindow > 0 && this.#sendWindow > 0;
    return s.endRequested && !s.localClosed;
  }

  #hasWork(): boolean {
    if (this.ctl.length > 0) return true;
    for (const s of this.sendable) if (this.#ready(s)) return true;
    return false;
  }

  /**
   * Writes queued control frames and streams' DATA within the send windows,
   * one flush per round, until the connection closes; then half-closes.
   */
  protected async writeLoop(): Promise<void> {
    try {
      while (!this.socketClosed) {
        if (!this.#hasWork()) {
          this.#armStalls();
          if (this.closing) {
            await this.conn.closeWrite?.();
            return;
          }
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        // a round of its own: its streams and chunks are not kept by the waiting loop
        await this.#writeRound();
      }
    } catch (e) {
      this.writeFailed(e);
    }
  }

  // Control frames, then DATA within the windows and the budget; one flush.
  async #writeRound(): Promise<void> {
    const w = this.#writer;
    this.#stageControl();
    let budget = WRITE_BUDGET;
    let progressed = true;
    while (progressed && budget > 0 && !this.socketClosed) {
      progressed = false;
      for (const s of this.sendable) {
        if (s.closed || this.closing) {
          this.sendable.delete(s);
          continue;
        }
        this.#stageControl(); // HEADERS queued for this stream go first
        if (s.outPending > 0) {
          const n = Math.min(s.outPending, s.sendWindow, this.#sendWindow, this.peerMaxFrame);
          if (n <= 0) continue;
          s.sendWindow -= n;
          this.#sendWindow -= n;
          if (this.updateCredit < MAX_WINDOW_UPDATE_CREDIT) this.updateCredit += 2;
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
              this.sendHeaders(s.id, s.endTrailers, true);
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
          this.sendable.delete(s);
        }
        if (budget <= 0) break;
      }
    }
    this.#stageControl();
    await w.flush();
    const settled = this.#settled;
    if (settled.length > 0) {
      this.#settled = [];
      for (const s of settled) s.settleWrite();
    }
  }

  // END_STREAM is going out for `s` in the current round.
  #finishLocal(s: S): void {
    s.localClosed = true;
    this.#settled.push(s);
    if (!s.closed) this.localEnded(s);
  }

  // Streams waiting on a zero window get a deadline (reset after bodyIdleTimeout).
  #armStalls(): void {
    if (this.bodyIdle <= 0) return;
    const now = this.watchdog.now;
    for (const s of this.sendable) {
      const t = s.idleTimeout; // 0 when the stream's owner times it
      if (t > 0 && s.outPending > 0 && s.sendDeadline === 0) s.sendDeadline = now + t;
    }
  }

  // ---- closing ----

  /** Stops processing frames; the writer flushes, then the close grace runs. */
  protected beginClose(): void {
    if (this.closing) return;
    this.closing = true;
    this.#blockStream = 0;
    this.timer.deadline = this.watchdog.now + CLOSE_GRACE_MS;
    this.kick();
  }

  /**
   * Closes the socket now: open streams fail with `error`, writes in flight
   * reject. @returns false when it was closed already.
   */
  protected closeNow(error: Error): boolean {
    if (this.socketClosed) return false;
    this.socketClosed = true;
    this.closing = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    for (const s of [...this.streams.values()]) this.closeStream(s, error);
    for (const s of this.#settled) s.abandon(error);
    this.#settled = [];
    this.watchdog.delete(this.timer);
    this.#ownWatchdog?.abort();
    this.kick();
    return true;
  }
}
