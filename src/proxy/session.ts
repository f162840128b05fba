/**
 * The client side of the data path: one loop per accepted connection reading
 * request heads, validating them at the edge, routing, and handing each request
 * to {@linkcode forward}. Requests on one connection are answered in order.
 *
 * @module
 */
import type { ExchangeRecord, ProxyContext, Route } from "./context.ts";
import type { Timed } from "../timer/watchdog.ts";
import {
  answer,
  type AnswerOptions,
  type ClientOrigin,
  type ClientSide,
  originOf,
  type Request,
} from "./client.ts";
import { PrivatePools } from "../upstream/private_pools.ts";
import { forward } from "./exchange.ts";
import { applyRequestPolicy, type PolicyOutcome, startCopy } from "./policy_heads.ts";
import { realClient } from "./real_client.ts";
import { requestFraming } from "../http1/body.ts";
import { EXPECT, HOST, keepsAlive, UPGRADE } from "../http1/fields.ts";
import { type HeadLimits, HttpError, readHead } from "../http1/head.ts";
import { parseRequest, RequestHead, type ResponseHead } from "../http1/parse.ts";
import { answerHead, simpleResponse, type SimpleResponseOptions } from "../http1/status.ts";
import {
  type FieldsResponseInfo,
  type ResponseInfo,
  writeFieldsResponseHead,
  writeResponseHead,
} from "./forwarded.ts";
import { BufReader, BufWriter, SMALL_READ_BUFFER } from "../http1/io.ts";

// Parsed heads not in use: one is taken per request, so idle connections hold none.
const FREE_HEADS: RequestHead[] = [];
const MAX_FREE_HEADS = 1024;
const ABSOLUTE_REGEXP = /^https?:\/\/([^/?#]*)([^#]*)/i;
// RFC 9110 §7.2 / RFC 3986 host [":" port]: reg-name, IPv4 or [IP-literal]; no userinfo,
// no "/" and no "," (a list of hosts is ambiguous)
const HOST_REGEXP = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+;=%-]*)(?::\d*)?$/;

/**
 * Serves one HTTP/1.x client connection until it closes, errs, times out or the
 * balancer shuts down; always closes `conn`, and resolves to it (never rejects).
 * `reader` is one that already holds the connection's first bytes; `origin` the
 * client and what it connected to when a PROXY header named them (the sockets'
 * addresses otherwise).
 *
 * @example
 * ```ts ignore
 * for await (const conn of Deno.listen({ port: 8080 })) serveConn(conn, ctx);
 * ```
 */
export function serveConn(
  conn: Deno.Conn,
  ctx: ProxyContext,
  reader?: BufReader,
  origin?: ClientOrigin,
): Promise<Deno.Conn> {
  return new Session(conn, ctx, reader, origin).serve();
}

class Session implements ClientSide, Timed {
  readonly reader: BufReader;
  readonly writer: BufWriter;
  readonly headLimits: HeadLimits;
  readonly #conn: Deno.Conn;
  readonly #ctx: ProxyContext;
  /** The context of the listener it came in on. */
  readonly ctx: ProxyContext;
  readonly #dispatch: { ctx: ProxyContext; checkedHost: string };
  readonly #ip: string;
  readonly #origin: ClientOrigin | undefined;
  #private: PrivatePools | undefined; // routes with proxy_protocol: made on first use
  #closed = false;
  #waiting = false; // for the next request
  #deadline = 0;
  #delegate: Timed | undefined; // the exchange in progress owns the timeout
  #host = ""; // the last Host value seen and checked: keep-alive clients repeat it

  constructor(
    conn: Deno.Conn,
    ctx: ProxyContext,
    reader: BufReader | undefined,
    origin: ClientOrigin | undefined,
  ) {
    this.#conn = conn;
    this.#ctx = this.ctx = ctx;
    this.#dispatch = { ctx, checkedHost: "" };
    this.reader = reader ?? new BufReader(conn, SMALL_READ_BUFFER);
    // TLS: a head joined to a 64 KiB body stalled ~40 ms on Nagle's algorithm (README)
    this.writer = new BufWriter(conn, { joinHead: ctx.proto !== "https" });
    this.headLimits = { maxHead: ctx.limits.max_head, maxLine: ctx.limits.max_request_line };
    this.#origin = origin;
    this.#ip = origin?.ip ?? (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
  }

  privatePools(): PrivatePools {
    if (this.#private === undefined) {
      const o = this.#origin ?? originOf(this.#conn);
      const ends = { client: o.ip, clientPort: o.port, dest: o.dest, destPort: o.destPort };
      this.#private = new PrivatePools(this.#ctx, ends, this.#ctx.privateCounts);
    }
    return this.#private;
  }

  /** When this connection times out: its own deadline, or its exchange's. */
  get deadline(): number {
    return this.#delegate === undefined ? this.#deadline : this.#delegate.deadline;
  }

  set deadline(ms: number) {
    this.#deadline = ms;
  }

  /** Head or idle timeout: drop the connection; during an exchange, the exchange decides. */
  expire(now: number): void {
    if (this.#delegate !== undefined) this.#delegate.expire(now);
    else this.close();
  }

  watch(t: Timed | undefined): void {
    this.#delegate = t;
  }

  /** HTTP/1.x: bodies framed by Content-Length or chunked coding, passed on as they are. */
  readonly http2 = false;

  sendHead(head: ResponseHead, info: ResponseInfo): void {
    writeResponseHead(this.writer, head, info);
  }

  sendFields(status: number, fields: readonly string[], info: FieldsResponseInfo): void {
    writeFieldsResponseHead(this.writer, status, fields, info);
  }

  /** HTTP/1.x has no way to cancel one request: a client that goes away closes. */

  sendSimple(status: number, message: string, options: SimpleResponseOptions): void {
    const body = options.body;
    if (body === undefined) this.writer.writeString(simpleResponse(status, message, options));
    else {
      this.writer.writeString(answerHead(status, body.length, options));
      if (!options.headOnly && body.length > 0) this.writer.writeBytes(body, 0, body.length);
    }
  }

  finish(): undefined {
    return undefined;
  }

  /** Shutdown: a connection between requests closes now, one mid-request finishes first. */
  closeIfIdle(): void {
    if (this.#waiting) this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /**
   * Serves requests until the connection ends; resolves to the connection, never
   * rejects. One async frame for the connection's whole life, none per request.
   */
  async serve(): Promise<Deno.Conn> {
    const ctx = this.#ctx;
    const reader = this.reader;
    const limits = this.headLimits;
    ctx.watchdog.add(this);
    ctx.sessions.add(this);
    try {
      let first = true;
      while (!ctx.closing || first) {
        this.deadline = ctx.watchdog.now + (first ? ctx.timeouts.head : ctx.timeouts.idle);
        // Between requests only this frame and the pending read are held
        // (10,000 idle keep-alive connections add up).
        this.#waiting = true;
        if (reader.buffered === 0 && !(await reader.fill())) break;
        this.deadline = ctx.watchdog.now + ctx.timeouts.head; // a request has begun
        let end: number;
        try {
          const r = readHead(reader, limits); // usually all there already: no wait
          end = typeof r === "number" ? r : await r;
        } catch (e) {
          await this.#refuse(e, undefined);
          break;
        } finally {
          this.#waiting = false;
        }
        if (end === -1) break;
        const rec = newRecord(this.#ip); // the request starts now, not when the connection went idle
        this.deadline = 0;
        const head = FREE_HEADS.pop() ?? new RequestHead();
        try {
          const n = end - reader.start;
          head.own(reader.buf, reader.start, end); // the head's bytes stay while the body moves
          reader.consume(n);
          try {
            parseRequest(head, head.storage, 0, n, limits.maxLine);
          } catch (e) {
            await this.#refuse(e, rec);
            break;
          }
          const dispatch = this.#dispatch; // one options object per connection, not per request
          dispatch.checkedHost = this.#host;
          const keep = await handleRequest(this, head, rec, dispatch);
          if (rec.host !== "") this.#host = rec.host;
          this.#report(rec);
          if (!keep || this.#closed) break;
        } finally {
          this.watch(undefined); // the exchange is over: its timeouts too
          if (FREE_HEADS.length < MAX_FREE_HEADS) FREE_HEADS.push(head);
        }
        // back to a small buffer once a large head or body has gone through
        if (reader.buffered === 0 && reader.buf.length > SMALL_READ_BUFFER) {
          reader.resize(SMALL_READ_BUFFER);
        }
        first = false;
      }
    } catch {
      // a reset, or a read on a connection closed by a timeout: nothing left to say
    } finally {
      ctx.watchdog.delete(this);
      ctx.sessions.delete(this);
      this.close();
      this.#private?.close();
    }
    return this.#conn;
  }

  // A head that could not be read or parsed: answer its status (then the caller closes).
  async #refuse(e: unknown, rec: ExchangeRecord | undefined): Promise<void> {
    if (!(e instanceof HttpError) || this.#closed) return;
    rec ??= newRecord(this.#ip);
    let message = e.message;
    if (e.status === 505 && message.endsWith("HTTP/2.0") && !this.#ctx.h2c) {
      // an h2c client with prior knowledge, on a listener that does not take it
      message += this.#ctx.proto === "http"
        ? " (cleartext HTTP/2 needs listen.h2c: true)"
        : " (HTTP/2 over TLS is chosen by ALPN, not by the request line)";
    }
    await answer(this, rec, e.status, message, { close: true });
    this.#report(rec);
  }

  #report(rec: ExchangeRecord): void {
    rec.duration = performance.now() - rec.duration;
    this.#ctx.onExchange?.(rec);
  }
}

/**
 * Checks a parsed request at the edge, routes it and hands it to
 * {@linkcode forward}, or answers it (400, 413, 308, 404) when it goes nowhere.
 * Shared by HTTP/1.1 connections and HTTP/2 streams (whose requests are
 * rendered as HTTP/1.1 heads). Not async: every branch ends in one promise,
 * returned as is (no frame kept).
 *
 * @param client Where the answer goes.
 * @param head The request head.
 * @param rec The record of this request (filled in).
 * @param options The proxy context, and a Host value already found valid on this connection.
 * @returns true when the client connection can carry another request.
 */
export function handleRequest(
  client: ClientSide,
  head: RequestHead,
  rec: ExchangeRecord,
  options: { ctx: ProxyContext; checkedHost: string },
): Promise<boolean> {
  const ctx = options.ctx;
  const trusted = ctx.trustedProxies;
  if (trusted !== undefined) {
    const real = realClient(head, rec.client, trusted);
    if (real !== rec.client) {
      rec.via = rec.client;
      rec.client = real;
    }
  }
  rec.method = head.method;
  if (head.minor === 0) rec.proto = "http/1.0";
  let req: Request;
  try {
    req = edgeCheck(head, options.checkedHost);
  } catch (e) {
    const status = e instanceof HttpError ? e.status : 400;
    return answer(client, rec, status, (e as Error).message, { close: true });
  }
  const path = req.path;
  rec.host = req.host;
  rec.path = path;
  const close = req.framing.kind !== "none" || !req.keepAlive;
  const headOnly = head.method === "HEAD";
  if (ctx.limits.max_body > 0 && req.framing.length > ctx.limits.max_body) {
    return answer(client, rec, 413, "request body over limits.max_body", { close: true });
  }
  if (ctx.redirectHttpsPort !== undefined) {
    const host = req.host.replace(/:\d+$/, "");
    const port = ctx.redirectHttpsPort === 443 ? "" : `:${ctx.redirectHttpsPort}`;
    const location = `location: https://${host}${port}${head.target}`;
    return answer(client, rec, 308, "use https", { close, headOnly, headers: [location] });
  }
  const route = ctx.router.match(req.host, path);
  if (route === undefined) {
    return answer(client, rec, 404, `no route for ${req.host}${path}`, { close, headOnly });
  }
  rec.route = route.name;
  const policy = route.policy;
  if (policy === undefined) return forward(client, req, route, ctx, rec);
  const out = applyRequestPolicy(policy, req, rec.client, { scheme: ctx.proto });
  if (out instanceof Promise) {
    return out.then((o) => afterPolicy(client, head, o, route, ctx, rec, close, headOnly));
  }
  return afterPolicy(client, head, out, route, ctx, rec, close, headOnly);
}

// The policy's answer goes to the client; or the request, as the policy left it, is forwarded.
function afterPolicy(
  client: ClientSide,
  head: RequestHead,
  out: PolicyOutcome,
  route: Route,
  ctx: ProxyContext,
  rec: ExchangeRecord,
  close: boolean,
  headOnly: boolean,
): Promise<boolean> {
  if (out.answer !== undefined) {
    const a = out.answer;
    rec.policy = a.policy;
    const options: AnswerOptions & { close: boolean } = { close, headOnly, headers: a.headers };
    if (a.body !== undefined) options.body = a.body;
    if (a.grpcStatus !== undefined) options.grpcStatus = a.grpcStatus;
    return answer(client, rec, a.status, a.message, options);
  }
  const req = out.req;
  if (req.head !== head) rec.target = req.head.target;
  if (route.policy!.copy === undefined) return forward(client, req, route, ctx, rec);
  const info = {
    clientIp: rec.via ?? rec.client,
    proto: ctx.proto,
    host: req.host,
    framing: req.framing,
    upgrade: req.upgrade,
    http2: client.http2,
  };
  const stream = client.grpc === true || req.upgrade !== undefined;
  const copy = startCopy(route.policy!, req, { info, stream });
  if (copy === undefined) return forward(client, req, route, ctx, rec);
  return forward(client, req, route, ctx, rec, copy).finally(() => copy.abandon());
}

/**
 * Everything checked before a request may go anywhere: framing, Host, target form,
 * Expect. `checked` is a Host value already found valid on this connection.
 *
 * @throws {HttpError} with the status to answer.
 */
function edgeCheck(head: RequestHead, checked: string): Request {
  const framing = requestFraming(head);
  const at = head.indexOf(HOST);
  if (at === -1 && head.minor === 1) throw new HttpError(400, "Missing Host header");
  if (at !== -1 && head.countOf(HOST) > 1) throw new HttpError(400, "More than one Host header");
  // whatever its target form: a CONNECT must never reach a backend as a plain request
  if (head.method === "CONNECT") throw new HttpError(405, "CONNECT is not supported");
  let host = at === -1 ? "" : head.valueIs(at, checked) ? checked : head.value(at);
  let path = head.target;
  if (path.charCodeAt(0) !== 47) { // not "/..."
    const abs = ABSOLUTE_REGEXP.exec(path);
    if (abs) {
      host = abs[1]!;
      path = abs[2] || "/";
      if (host === "") throw new HttpError(400, "Invalid request target: empty authority");
    } else if (path === "*" && head.method === "OPTIONS") {
      path = "/"; // asterisk-form: routed as the host's root, forwarded as "*"
    } else {
      throw new HttpError(400, "Invalid request target");
    }
  }
  if (host !== checked && !HOST_REGEXP.test(host)) throw new HttpError(400, "Invalid Host header");
  const expect = head.valueOf(EXPECT);
  if (expect !== undefined && expect.toLowerCase() !== "100-continue") {
    throw new HttpError(417, "Only Expect: 100-continue is supported");
  }
  let upgrade: string | undefined;
  if (head.minor === 1 && head.connection.includes("upgrade")) upgrade = head.valueOf(UPGRADE);
  return { head, framing, host, path, keepAlive: keepsAlive(head), upgrade };
}

/**
 * A fresh record for a request from `client`, started now.
 *
 * @param client The client's IP address.
 * @returns The record, its duration field holding the start time.
 */
export function newRecord(client: string): ExchangeRecord {
  return {
    time: Date.now(),
    client,
    proto: "http/1.1",
    method: "",
    host: "",
    path: "",
    status: 0,
    bytesIn: 0,
    bytesOut: 0,
    duration: performance.now(), // the start, until #report turns it into the duration
    route: "",
    backend: "",
  };
}
