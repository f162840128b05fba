/**
 * The server side of an HTTP/2 connection (RFC 9113): turns a byte connection
 * into validated request streams, with flow control both ways and limits against
 * abusive peers (rapid reset, CONTINUATION and control-frame floods, header
 * bombs, stalled windows).
 *
 * @module
 */
import type { Watchdog } from "../timer/watchdog.ts";
import { BufReader, SMALL_READ_BUFFER } from "../http1/io.ts";
import {
  CLIENT_PREFACE,
  DEFAULT_WINDOW,
  ErrorCode,
  MIN_MAX_FRAME_SIZE,
  SettingId,
  writeGoaway,
  writeRstStream,
} from "./frame.ts";
import {
  type H2Conn,
  H2Connection,
  MAX_QUEUED_CONTROL,
  MAX_WINDOW_UPDATE_CREDIT,
} from "./_connection.ts";
import { Glitch, GLITCH_WINDOW_MS, GlitchMeter } from "./abuse.ts";
import { parseRequestFields, type RequestPseudo } from "./request_fields.ts";
import { type H2Stream, ServerStream } from "./stream.ts";

export { type H2Conn, HEADER_BLOCK_SLACK, MAX_QUEUED_CONTROL } from "./_connection.ts";
export { GLITCH_WINDOW_MS, MAX_GLITCHES } from "./abuse.ts";

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
  /**
   * Told once when the connection is closed for abuse (GOAWAY ENHANCE_YOUR_CALM,
   * or no GOAWAY for a peer that reads nothing): `reason` is one of
   * `ABUSE_REASONS` (abuse.ts), `detail` a sentence for the log.
   */
  onAbuse?(reason: string, detail: string): void;
}

/**
 * Client resets of streams before any response (rapid reset, CVE-2023-44487)
 * tolerated before the ratio check: past it, when they are over half the
 * streams opened, the connection is closed for abuse.
 */
export const MAX_CLIENT_RESETS = 100;
/**
 * A reset of a stream older than this (ms) is a client giving up (a gRPC
 * deadline, a cancelled call), not a rapid reset: it held a stream slot that long.
 */
export const RAPID_RESET_MS = 500;
/**
 * After GOAWAY ENHANCE_YOUR_CALM, the streams already accepted get this long
 * (ms) and this many more glitches to finish before the connection is closed.
 */
const CALM_GRACE_MS = GLITCH_WINDOW_MS;
const CALM_GLITCHES = 100;
/** Bytes read and dropped after a fatal GOAWAY before the socket is closed. */
const LINGER_BYTES = 256 * 1024;
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
export class H2ServerConnection extends H2Connection<ServerStream> {
  readonly #onStream: (stream: H2Stream) => void;
  readonly #onAbuse: ((reason: string, detail: string) => void) | undefined;
  readonly #maxConcurrent: number;
  readonly #idleTimeout: number;
  #resetIds: Set<number> | undefined; // made with the first reset

  #toDispatch: ServerStream[] = [];
  readonly #pseudo: RequestPseudo = {
    method: "",
    scheme: "",
    authority: "",
    path: "",
    contentLength: -1,
  };
  #lastStreamId = 0;
  // abuse accounting
  #streamsOpened = 0;
  #clientResets = 0;
  readonly #glitches = new GlitchMeter();
  #calmed = false; // GOAWAY ENHANCE_YOUR_CALM sent; the accepted streams finish
  #abuseReported = false;
  // lifecycle
  #goawayLast = -1; // -1 until we sent GOAWAY
  #goawayCode = -1;
  #peerGoaway = false;
  #now = Date.now();

  /** Wraps `conn`; nothing happens until {@linkcode H2ServerConnection.serve}. */
  constructor(conn: H2Conn, options: H2ServerOptions) {
    const idleTimeout = options.idleTimeout ?? 0;
    const bodyIdle = options.bodyIdleTimeout ?? 0;
    super(conn, {
      initialWindow: options.initialWindowSize ?? DEFAULT_WINDOW,
      connWindow: Math.max(DEFAULT_WINDOW, options.connectionWindowSize ?? 1 << 20),
      maxFrame: options.maxFrameSize ?? MIN_MAX_FRAME_SIZE,
      maxHeaderList: options.maxHeaderListSize ?? 65536,
      bodyIdle,
      shortestTimeout: Math.min(idleTimeout || 1000, bodyIdle || 1000),
      watchdog: options.watchdog,
      peer: "client",
    });
    this.#onStream = options.onStream;
    this.#onAbuse = options.onAbuse;
    this.#maxConcurrent = options.maxConcurrentStreams ?? 100;
    this.#idleTimeout = idleTimeout;
  }

  /** Number of streams open (or half-closed) on this connection. */
  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Runs the connection until it ends: reads the client preface (from `reader`
   * when the caller already read some bytes into one), exchanges SETTINGS and
   * serves streams. Never rejects.
   */
  async serve(reader?: BufReader): Promise<void> {
    const r = reader ?? new BufReader(this.conn, SMALL_READ_BUFFER);
    this.watchdog.add(this.timer);
    this.#armIdle();
    // our SETTINGS and the connection window go out at once (RFC 9113 §3.4)
    this.sendPreface([
      SettingId.MAX_CONCURRENT_STREAMS,
      this.#maxConcurrent,
      SettingId.MAX_HEADER_LIST_SIZE,
      this.maxHeaderList,
    ]);
    const writing = this.writeLoop();
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
    if (this.socketClosed || this.#goawayLast !== -1) return;
    this.#goaway(ErrorCode.NO_ERROR);
    if (this.streams.size === 0) this.beginClose();
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
    let lingered = 0;
    for (;;) {
      if (!this.closing) {
        this.#now = Date.now();
        this.readFrames(r);
        this.#dispatch();
        if (this.ctl.length > MAX_QUEUED_CONTROL) { // the peer reads nothing
          this.#report(
            "not_reading",
            "over 1 MiB of control frames queued for a client that reads nothing; closed without GOAWAY",
          );
          return;
        }
        this.kick();
      }
      if (this.closing) { // after GOAWAY: read and drop, so the peer sees GOAWAY, not a reset
        lingered += r.buffered;
        r.consume(r.buffered);
        if (lingered > LINGER_BYTES) return;
      }
      if (this.socketClosed) return;
      this.fitReader(r);
      if (!(await r.fill())) return;
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

  protected override idle(id: number): boolean {
    return id > this.#lastStreamId;
  }

  protected override headersAllowed(id: number): boolean {
    return (id & 1) === 1; // client streams are odd
  }

  protected override onDataClosed(id: number): void {
    if (this.#resetIds?.has(id)) return;
    this.glitch(Glitch.CLOSED_STREAM);
    writeRstStream(this.ctl, id, ErrorCode.STREAM_CLOSED);
  }

  // The client may use the default window until it acknowledged our SETTINGS.
  protected override windowSlack(): number {
    return this.settingsAcked ? 0 : Math.max(0, DEFAULT_WINDOW - this.initialWindow);
  }

  protected override onHeaderList(
    id: number,
    list: string[],
    o: { endStream: boolean; tooLarge: boolean; selfDependent: boolean },
  ): void {
    const endStream = o.endStream;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      if (o.selfDependent) {
        return this.streamError(existing, ErrorCode.PROTOCOL_ERROR, "stream depends on itself");
      }
      if (!existing.remoteClosed) return this.acceptTrailers(existing, list, o);
      return this.streamError(existing, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    }
    if (id <= this.#lastStreamId) {
      if (this.#resetIds?.has(id)) return; // decoded for HPACK's sake, then dropped
      return this.fatal(ErrorCode.PROTOCOL_ERROR, "reused or decreasing stream id");
    }
    this.#lastStreamId = id;
    if (this.#goawayLast !== -1 || this.#peerGoaway) return this.#rememberReset(id); // after GOAWAY
    if (list.length === 0) this.glitch(Glitch.EMPTY_FRAME);
    if (this.closing || this.#goawayLast !== -1) return this.#rememberReset(id); // that glitch
    if (o.tooLarge) {
      this.glitch(Glitch.BAD_STREAM);
      return this.#refuse(id, { status: 431, endStream });
    }
    if (this.streams.size >= this.#maxConcurrent) {
      this.glitch(Glitch.BAD_STREAM);
      writeRstStream(this.ctl, id, ErrorCode.REFUSED_STREAM);
      return this.#rememberReset(id);
    }
    const pseudo = this.#pseudo;
    const why = parseRequestFields(list, pseudo);
    if (why !== "" || o.selfDependent || (endStream && pseudo.contentLength > 0)) {
      this.glitch(Glitch.BAD_STREAM);
      writeRstStream(this.ctl, id, ErrorCode.PROTOCOL_ERROR);
      return this.#rememberReset(id);
    }
    if (pseudo.method === "CONNECT") return this.#refuse(id, { status: 501, endStream });
    const s = new ServerStream(this.host, {
      id,
      pseudo,
      fields: list,
      endStream,
      recvWindow: this.initialWindow,
      sendWindow: this.peerInitialWindow,
    });
    pseudo.path = pseudo.authority = ""; // the stream has them; an idle connection keeps none
    s.openedAt = this.#now;
    this.streams.set(id, s);
    this.#streamsOpened++;
    // grpcio raises a new stream's window at once: earned, not a glitch
    if (this.updateCredit < MAX_WINDOW_UPDATE_CREDIT) this.updateCredit += 2;
    this.timer.deadline = 0;
    this.watchdog.add(s);
    this.#toDispatch.push(s);
  }

  // Answers a request that never becomes a stream with a bodiless response.
  #refuse(id: number, o: { status: number; endStream: boolean }): void {
    this.sendHeaders(id, [":status", String(o.status)], true);
    if (!o.endStream) writeRstStream(this.ctl, id, ErrorCode.NO_ERROR);
    this.#rememberReset(id);
  }

  protected override onReset(s: ServerStream, code: number): void {
    // Rapid reset (CVE-2023-44487): a stream reset young and before any response
    // freed its slot for the next at once; the work it started served nobody.
    const rapid = !s.finalSent && this.#now - s.openedAt < RAPID_RESET_MS;
    this.closeStream(s, new Error(`Stream ${s.id} reset by the client: code ${code}`));
    if (!rapid) return;
    const resets = ++this.#clientResets;
    if (resets > MAX_CLIENT_RESETS && resets * 2 > this.#streamsOpened) {
      return this.#abuse(
        "rapid_reset",
        `${resets} of ${this.#streamsOpened} streams reset before any response`,
      );
    }
    this.glitch(Glitch.RESET);
  }

  protected override onSelfDependency(id: number): void {
    this.glitch(Glitch.BAD_STREAM);
    if (!this.closing) super.onSelfDependency(id);
  }

  protected override settingsApplied(): void {
    this.glitch(Glitch.SETTINGS);
  }

  protected override onGoaway(): void {
    this.#peerGoaway = true;
    if (this.streams.size === 0) this.beginClose();
  }

  // ---- abuse accounting ----

  // Frames that are legal but cost us work for nothing (abuse.ts): past
  // MAX_GLITCHES in GLITCH_WINDOW_MS the connection is closed for abuse.
  protected override glitch(kind: number): void {
    const g = this.#glitches;
    if (g.count(kind, this.#now)) this.#abuse(g.reason(), g.describe());
  }

  protected override abusive(reason: string, why: string): void {
    this.#report(reason, `${why}; GOAWAY ENHANCE_YOUR_CALM`);
    this.fatal(ErrorCode.ENHANCE_YOUR_CALM, why);
  }

  // GOAWAY ENHANCE_YOUR_CALM with the last stream id: no new streams, and those
  // accepted finish within CALM_GRACE_MS and CALM_GLITCHES; abuse again (or
  // the grace running out) closes the connection at once.
  #abuse(reason: string, why: string): void {
    if (this.closing) return;
    if (this.#calmed) return this.fatal(ErrorCode.ENHANCE_YOUR_CALM, why);
    this.#calmed = true;
    this.#goaway(ErrorCode.ENHANCE_YOUR_CALM);
    const open = this.streams.size;
    this.#report(
      reason,
      `${why}; GOAWAY ENHANCE_YOUR_CALM, last stream ${this.#goawayLast}, ` +
        `${open} stream${open === 1 ? "" : "s"} left to finish`,
    );
    if (open === 0) return this.beginClose();
    this.#glitches.restart(CALM_GLITCHES);
    this.timer.deadline = this.watchdog.now + CALM_GRACE_MS;
  }

  #report(reason: string, detail: string): void {
    if (this.#abuseReported) return;
    this.#abuseReported = true;
    this.#onAbuse?.(reason, detail);
  }

  // ---- streams ----

  #rememberReset(id: number): void {
    const ids = this.#resetIds ??= new Set();
    if (ids.size >= MAX_RESET_IDS) ids.delete(ids.values().next().value!);
    ids.add(id);
  }

  protected override resetSent(s: ServerStream): void {
    if (!s.remoteClosed) this.#rememberReset(s.id);
  }

  protected override localEnded(s: ServerStream): void {
    if (s.remoteClosed) this.closeStream(s, undefined);
    else {
      // a complete response: the rest of the request body is not wanted (§8.1)
      writeRstStream(this.ctl, s.id, ErrorCode.NO_ERROR);
      this.#rememberReset(s.id);
      this.closeStream(s, new Error(`Stream ${s.id} closed: the response ended first`));
    }
  }

  // Request body bytes nobody will read are returned to the connection window.
  protected override dropsUnreadOnClose(): boolean {
    return true;
  }

  protected override streamClosed(): void {
    if (this.streams.size === 0) {
      if (this.#goawayLast !== -1 || this.#peerGoaway) this.beginClose();
      else this.#armIdle();
    }
  }

  protected override writeFailed(): void {
    this.#shutdown();
  }

  // ---- lifecycle ----

  #armIdle(): void {
    if (this.#idleTimeout > 0 && !this.closing) {
      this.timer.deadline = this.watchdog.now + this.#idleTimeout;
    }
  }

  protected override expire(): void {
    this.timer.deadline = 0;
    if (this.closing) return this.#shutdown();
    if (this.#calmed) return this.fatal(ErrorCode.ENHANCE_YOUR_CALM, "abuse grace over");
    if (this.streams.size === 0) {
      this.#goaway(ErrorCode.NO_ERROR);
      this.beginClose();
    }
  }

  #goaway(code: number): void {
    if (this.#goawayLast === -1) this.#goawayLast = this.#lastStreamId;
    if (code === this.#goawayCode) return; // said already
    this.#goawayCode = code;
    writeGoaway(this.ctl, this.#goawayLast, code);
    this.kick();
  }

  // GOAWAY with `code`, every stream fails, and the socket closes once GOAWAY
  // is out (reading, but not processing, meanwhile).
  protected override fatal(code: number, _why: string): void {
    if (this.closing) return;
    this.#goaway(code);
    const err = new Error(`Connection error: code ${code}`);
    for (const s of [...this.streams.values()]) this.closeStream(s, err);
    this.beginClose();
  }

  #shutdown(): void {
    const err = new Error("Connection closed");
    if (!this.closeNow(err)) return;
    for (const s of this.#toDispatch) s.fail(err);
    this.#toDispatch = [];
  }
}
