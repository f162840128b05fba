/**
 * HTTP/2 client connections on the proxy path. Each request stream becomes an
 * exchange like an HTTP/1.1 request: its head is rendered as an HTTP/1.1 head
 * (parsed by the same parser, checked at the same edge, routed, scheduled,
 * pooled, retried and logged by the same code), its body read from DATA frames,
 * and the backend's response sent back as HEADERS and DATA.
 *
 * @module
 */
import type { ClientSession, ProxyContext } from "./context.ts";
import type { Timed } from "../timer/watchdog.ts";
import {
  answer,
  type AnswerOptions,
  type Cancellable,
  type ClientOrigin,
  type ClientSide,
  originOf,
} from "./client.ts";
import { PrivatePools } from "../upstream/private_pools.ts";
import { grpcMessage, grpcStatusOf, isGrpc } from "./grpc.ts";
import { type FieldsResponseInfo, h2ResponseFields, type ResponseInfo } from "./forwarded.ts";
import { handleRequest, newRecord } from "./session.ts";
import { type HeadLimits, HttpError } from "../http1/head.ts";
import { octets } from "../http1/fields.ts";
import { parseRequest, RequestHead, type ResponseHead } from "../http1/parse.ts";
import { BufReader, BufWriter, type ByteConn, SMALL_READ_BUFFER } from "../http1/io.ts";
import { simpleBody } from "../http1/status.ts";
import { H2ServerConnection } from "../h2/server.ts";
import type { H2Stream } from "../h2/stream.ts";
import { SETTLED } from "../h2/_stream_base.ts";
import { ErrorCode } from "../h2/frame.ts";

/**
 * Serves one HTTP/2 client connection until it ends; always closes `conn`, and
 * resolves to it (never rejects).
 *
 * @example
 * ```ts ignore
 * const conn = await listener.accept();
 * await serveH2(conn, ctx); // after ALPN chose "h2", or the h2c preface was seen
 * ```
 *
 * @param conn The client connection.
 * @param ctx The listener's proxy context.
 * @param reader A reader that already holds the connection's first bytes (h2c preface).
 * @param origin The client and what it connected to when a PROXY header named them
 * (the sockets' addresses otherwise).
 * @returns `conn`, once closed.
 */
export async function serveH2(
  conn: Deno.Conn,
  ctx: ProxyContext,
  reader?: BufReader,
  origin?: ClientOrigin,
): Promise<Deno.Conn> {
  const counts = ctx.h2;
  const session = new H2Session(ctx, conn, origin);
  const h2 = new H2ServerConnection(conn, {
    maxConcurrentStreams: ctx.limits.max_concurrent_streams,
    maxHeaderListSize: ctx.limits.max_head,
    idleTimeout: ctx.timeouts.idle,
    bodyIdleTimeout: ctx.timeouts.body_idle,
    watchdog: ctx.watchdog,
    onStream: (stream) => void serveStream(stream, session),
    onAbuse(reason, detail) {
      counts.closed[reason] = (counts.closed[reason] ?? 0) + 1;
      const peer = conn.remoteAddr as Deno.NetAddr;
      ctx.onH2Abuse?.(`${session.ip}:${peer.port}`, `${reason}: ${detail}`);
    },
  });
  session.conn = h2;
  ctx.sessions.add(session);
  counts.connections++;
  try {
    await h2.serve(reader);
  } finally {
    counts.connections--;
    ctx.sessions.delete(session);
    session.closePrivate();
    try {
      conn.close();
    } catch { /* closed by the connection already */ }
  }
  return conn;
}

/** What every stream of one connection shares. */
interface Dispatch {
  ctx: ProxyContext;
  /** The connection's private backend pools (routes with `proxy_protocol`). */
  privatePools(): PrivatePools;
  checkedHost: string;
  headLimits: HeadLimits;
  /** The connection, for its PING count. */
  conn: { readonly pings: number };
}

// The connection until it is made: no PINGs counted, nothing to drain or close.
const NO_CONN = { pings: 0, drain() {}, close() {} };

// One client connection as its streams and the balancer see it: one object with
// methods, not an options object, a session object and two closures.
class H2Session implements Dispatch, ClientSession {
  readonly ctx: ProxyContext;
  readonly ip: string;
  readonly headLimits: HeadLimits;
  checkedHost = ""; // each stream's Host is checked anew
  conn: { readonly pings: number; drain(): void; close(): void } = NO_CONN;
  readonly #socket: Deno.Conn;
  readonly #origin: ClientOrigin | undefined;
  #private: PrivatePools | undefined;

  constructor(ctx: ProxyContext, socket: Deno.Conn, origin: ClientOrigin | undefined) {
    this.ctx = ctx;
    this.#socket = socket;
    this.#origin = origin;
    this.ip = origin?.ip ?? (socket.remoteAddr as Deno.NetAddr).hostname ?? "";
    this.headLimits = { maxHead: ctx.limits.max_head, maxLine: ctx.limits.max_request_line };
  }

  /** The backend connections private to this client connection, made on first use. */
  privatePools(): PrivatePools {
    if (this.#private === undefined) {
      const o = this.#origin ?? originOf(this.#socket);
      const ends = { client: o.ip, clientPort: o.port, dest: o.dest, destPort: o.destPort };
      this.#private = new PrivatePools(this.ctx, ends, this.ctx.privateCounts);
    }
    return this.#private;
  }

  /** The connection ended: its private backend connections close. */
  closePrivate(): void {
    this.#private?.close();
  }

  /** GOAWAY: open streams finish, then it closes. */
  closeIfIdle(): void {
    this.conn.drain();
  }

  close(): void {
    this.conn.close();
  }
}

async function serveStream(stream: H2Stream, dispatch: H2Session): Promise<void> {
  const ctx = dispatch.ctx;
  const client = new StreamClient(stream, dispatch);
  const rec = newRecord(dispatch.ip);
  rec.proto = "h2";
  rec.method = stream.method;
  ctx.h2.streams++;
  try {
    let head: RequestHead;
    try {
      head = requestHead(stream, client.headLimits);
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 400;
      rec.host = stream.authority;
      rec.path = stream.path;
      await answer(client, rec, status, (e as Error).message, { close: false });
      return;
    }
    try {
      await handleRequest(client, head, rec, dispatch);
    } finally {
      freeHead(head);
    }
  } catch {
    // the stream was reset or the connection lost: nothing left to say
  } finally {
    ctx.h2.streams--;
    client.watch(undefined);
    client.settle();
    rec.duration = performance.now() - rec.duration;
    ctx.onExchange?.(rec);
  }
}

// Renders the stream's request as an HTTP/1.1 head and parses it like one read
// from a socket, so that it meets the same edge checks and header rewriting.
// Cookie crumbs are joined (RFC 9113 §8.2.3); a body without content-length is
// announced as chunked, and StreamSource frames it so.
function requestHead(stream: H2Stream, limits: HeadLimits): RequestHead {
  const head = FREE_HEADS.pop() ?? new RequestHead();
  head.beginText();
  head.text(stream.method);
  head.text(" ");
  head.text(stream.path);
  head.text(" HTTP/1.1\r\n");
  const authority = stream.authority;
  if (authority !== "") field(head, "host", authority);
  let cookie: string | undefined;
  const f = stream.fields;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    const value = f[i + 1]!;
    if (name === "cookie") cookie = cookie === undefined ? value : `${cookie}; ${value}`;
    else if (name === "host" && authority !== "") continue; // :authority wins
    else field(head, name, value); // te (only "trailers" in HTTP/2) goes on to HTTP/2 backends
  }
  if (cookie !== undefined) field(head, "cookie", cookie);
  if (stream.hasBody && stream.contentLength < 0) head.text("transfer-encoding: chunked\r\n");
  head.text("\r\n");
  const n = head.textLength;
  try {
    if (n > limits.maxHead) throw new HttpError(431, "Request header fields too large");
    parseRequest(head, head.storage, 0, n, limits.maxLine);
  } catch (e) {
    freeHead(head);
    throw e;
  }
  return head;
}

function field(head: RequestHead, name: string, value: string): void {
  head.text(name);
  head.text(": ");
  head.text(value);
  head.text("\r\n");
}

// Parsed heads not in use: one is taken per stream and given back when it ends.
const FREE_HEADS: RequestHead[] = [];
const MAX_FREE_HEADS = 1024;

function freeHead(head: RequestHead): void {
  if (FREE_HEADS.length < MAX_FREE_HEADS) FREE_HEADS.push(head);
}

/** One stream seen as the client side of an exchange. */
class StreamClient implements ClientSide, ByteConn {
  readonly writer: BufWriter;
  readonly headLimits: HeadLimits;
  readonly http2 = true;
  readonly grpc: boolean;
  readonly #stream: H2Stream;
  readonly #ctx: ProxyContext;
  readonly #conn: { readonly pings: number };
  readonly #dispatch: Dispatch;
  #reader: BufReader | undefined;
  #timed: Timed | undefined;
  #responded = false;
  #ended = false;

  constructor(stream: H2Stream, dispatch: Dispatch) {
    this.#stream = stream;
    this.#ctx = dispatch.ctx;
    this.#conn = dispatch.conn;
    this.#dispatch = dispatch;
    this.grpc = isGrpc(stream.fields);
    this.writer = new BufWriter(this);
    this.headLimits = dispatch.headLimits;
  }

  privatePools(): PrivatePools {
    return this.#dispatch.privatePools();
  }

  /** The call's `grpc-timeout` value (gRPC calls only). */
  get grpcTimeout(): string | undefined {
    if (!this.grpc) return undefined;
    const f = this.#stream.fields;
    for (let i = 0; i + 1 < f.length; i += 2) if (f[i] === "grpc-timeout") return f[i + 1];
    return undefined;
  }

  /** PINGs received on this stream's connection. */
  get pings(): number {
    return this.#conn.pings;
  }

  /** The request body, made when first asked for (most streams have none). */
  get reader(): BufReader {
    const s = this.#stream;
    return this.#reader ??= new BufReader(new StreamSource(s), s.hasBody ? SMALL_READ_BUFFER : 0);
  }

  /** ByteConn for the writer: response body bytes become DATA frames. */
  read(): Promise<number | null> {
    return Promise.resolve(null);
  }

  /** ByteConn for the writer: sends `p` as DATA within the windows. */
  async write(p: Uint8Array): Promise<number> {
    await this.#stream.write(p, 0, p.length);
    return p.length;
  }

  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stream.reset(this.#responded ? ErrorCode.INTERNAL_ERROR : ErrorCode.CANCEL);
  }

  /**
   * The exchange `t` times the stream from now on (its waits on the client too:
   * the stream's own idle timer is off), until called with undefined.
   */
  watch(t: Timed | undefined): void {
    if (this.#timed !== undefined) this.#ctx.watchdog.delete(this.#timed);
    this.#timed = t;
    if (t !== undefined) this.#ctx.watchdog.add(t);
    this.#stream.idleTimeout = t === undefined ? this.#ctx.timeouts.body_idle : 0;
  }

  sendHead(head: ResponseHead, info: ResponseInfo): void {
    const fields = h2ResponseFields(head, info.framing);
    if (head.status < 200) { // 100 Continue, 103 Early Hints: interim HEADERS, the stream goes on
      this.#respond(head.status, fields, false);
      return;
    }
    const empty = info.framing.kind === "none" ||
      (info.framing.kind === "length" && info.framing.length === 0);
    this.#responded = true;
    this.#respond(head.status, fields, empty);
  }

  sendFields(status: number, fields: readonly string[], info: FieldsResponseInfo): void {
    this.#responded = true;
    this.#respond(status, withVia(fields), info.bodyless);
  }

  cancelWith(target: Cancellable | undefined): void {
    this.#stream.failureListener = target;
  }

  sendSimple(status: number, message: string, options: AnswerOptions): void {
    if (this.grpc) { // a gRPC client reads errors from grpc-status, not from a page
      this.#responded = true;
      const code = String(options.grpcStatus ?? grpcStatusOf(status));
      const text = grpcMessage(options.grpcMessage ?? simpleBody(status, message).trimEnd());
      this.#respond(200, [
        "content-type",
        "application/grpc",
        "grpc-status",
        code,
        "grpc-message",
        text,
      ], true);
      return;
    }
    const own = options.body; // a body of its own (an auth service's answer): all its fields given
    const body = own ?? simpleBody(status, message);
    const fields = own === undefined ? ["content-type", "text/plain; charset=utf-8"] : [];
    const bodyless = status === 204 || status === 304;
    if (!bodyless || own === undefined) fields.push("content-length", String(body.length));
    for (const h of options.headers ?? []) {
      const colon = h.indexOf(":");
      fields.push(h.slice(0, colon).trim().toLowerCase(), h.slice(colon + 1).trim());
    }
    this.#responded = true;
    if (options.headOnly || body.length === 0) {
      this.#respond(status, fields, true);
      return;
    }
    this.#respond(status, fields, false);
    if (typeof body === "string") this.writer.writeString(body);
    else this.writer.writeBytes(body, 0, body.length);
  }

  // HEADERS, never throwing: a stream the client reset or lost takes no answer, and
  // the exchange learns it from its next write (or from its cancelWith target).
  #respond(status: number, fields: readonly string[], endStream: boolean): void {
    try {
      this.#stream.respond(status, fields, { endStream });
      if (endStream) this.#ended = true;
    } catch {
      this.#ended = true; // nothing left to end
    }
  }

  finish(trailers?: readonly string[]): Promise<void> | undefined {
    if (this.#ended) return undefined;
    this.#ended = true;
    const p = this.#stream.end(trailers);
    return p === SETTLED ? undefined : p; // usually: END_STREAM goes out with the writer
  }

  /** After the exchange: a stream left without an end (a failure) is reset. */
  settle(): void {
    if (!this.#ended) this.close();
  }
}

// An HTTP/2 backend's response fields with this hop added to `via`.
function withVia(fields: readonly string[]): string[] {
  const out: string[] = [];
  let via = "";
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "via") via += fields[i + 1] + ", ";
    else out.push(fields[i]!, fields[i + 1]!);
  }
  out.push("via", `${via}2 unload`);
  return out;
}

const CRLF = octets("\r\n");
const LAST_CHUNK = octets("0\r\n\r\n");

/**
 * The request body as a byte stream for a {@linkcode BufReader}: DATA payloads
 * as they come, in chunked coding when the request had no content-length (the
 * backend then gets `Transfer-Encoding: chunked`).
 */
class StreamSource implements ByteConn {
  readonly #stream: H2Stream;
  readonly #chunked: boolean;
  #parts: Uint8Array[] = [];
  #at = 0; // offset in #parts[0]
  #done = false;

  constructor(stream: H2Stream) {
    this.#stream = stream;
    this.#chunked = stream.hasBody && stream.contentLength < 0;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#parts.length === 0) {
      if (this.#done) return null;
      const data = await this.#stream.read();
      if (data === null) {
        this.#done = true;
        if (this.#chunked) this.#parts.push(LAST_CHUNK);
      } else if (data.length > 0) {
        if (this.#chunked) this.#parts.push(octets(`${data.length.toString(16)}\r\n`), data, CRLF);
        else this.#parts.push(data);
      }
    }
    let n = 0;
    while (n < p.length && this.#parts.length > 0) {
      const part = this.#parts[0]!;
      const take = Math.min(p.length - n, part.length - this.#at);
      p.set(part.subarray(this.#at, this.#at + take), n);
      n += take;
      this.#at += take;
      if (this.#at === part.length) {
        this.#parts.shift();
        this.#at = 0;
      }
    }
    return n;
  }

  write(): Promise<number> {
    return Promise.reject(new Error("A request body source is read-only"));
  }
}
