/**
 * One request/response exchange between a client and a backend: pick, connect,
 * forward the head, stream both bodies at once, and tear everything down through
 * one AbortController when either side fails.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { ExchangeRecord, ProxyContext, Route } from "./context.ts";
import type { Timed } from "../timer/watchdog.ts";
import {
  type ForwardInfo,
  h2RequestFields,
  type ResponseInfo,
  writeRequestHead,
} from "./forwarded.ts";
import { BufWriter, type ByteConn } from "../http1/io.ts";
import { RefusedError } from "../h2/client.ts";
import type { H2ClientStream, H2Response } from "../h2/client_stream.ts";
import { ErrorCode } from "../h2/frame.ts";
import { type Framing, responseFraming } from "../http1/body.ts";
import { keepsAlive } from "../http1/fields.ts";
import { exhaustionHint } from "../observe/exhaustion.ts";
import { HttpError, readHead } from "../http1/head.ts";
import { parseResponse, ResponseHead } from "../http1/parse.ts";
import {
  answer,
  type AnswerOptions,
  type Cancellable,
  type ClientSide,
  endResponse,
  type Request,
} from "./client.ts";
import { grpcMessage, GrpcMessageBoundary, GrpcStatus, parseGrpcTimeout } from "./grpc.ts";
import { relayBody, type RelayOptions, relayUntilClose } from "./relay.ts";
import { type BackendConn, ConnectError } from "../upstream/pool.ts";
import { beginRequest, endRequest } from "../upstream/backend_state.ts";
import { requestKey } from "./request_key.ts";
import { applyResponseFieldsPolicy, applyResponsePolicy, responseContext } from "./policy_heads.ts";
import type { BodyEncoder } from "../policy/policy.ts";
import { EncodedBody } from "./encoded_body.ts";
import { within } from "../_async.ts";
import type { RequestCopy } from "../policy/policy.ts";

/**
 * Why an attempt failed, with what may be done about it: the retry decision
 * travels with the failure (as pingora keeps it on the error), and the retry
 * loop ({@linkcode Exchange} `#afterFailure`) only reads it.
 */
interface Failure {
  /** Status to answer with when nothing more is tried. */
  readonly status: number;
  /** Why, for the answer and the access log. */
  readonly message: string;
  /** Safe to send again to another backend. */
  readonly retryable: boolean;
  /** A reused connection died before answering: try once more on a fresh one. */
  readonly stale: boolean;
  /** This process ran out of descriptors or ports: not the backend's fault, not retried. */
  readonly local: boolean;
  /** The connect itself failed: nothing was sent, a sibling address may take it. */
  readonly connect?: boolean;
  /**
   * A connect that timed out: when the wait began (epoch ms). It counts against
   * the backend only if the backend answered nothing else since.
   */
  readonly waitedSince?: number;
}

const FROM_BACKEND: RelayOptions = { errorStatus: 502, side: "backend" };
const DECHUNK: RelayOptions = { errorStatus: 502, side: "backend", dechunk: true };
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
// Parsed response heads not in use (one is needed from response to response body).
const FREE_HEADS: ResponseHead[] = [];
const MAX_FREE_HEADS = 256;
const RELAY = 1;
const UPGRADED = 2;
const FALSE = Promise.resolve(false);
const FRESH = { fresh: true }; // skip idle pooled connections (a retry after a stale one)
const REUSE = { fresh: false };
const CLOSE = { close: true };
const HTTP1_BODY = { dechunk: false }; // relayed in the client's own framing
// how an encoded body (compress) reaches the client: its length is not known
const CHUNKED_FRAMING: Framing = { kind: "chunked", length: 0 };
const CLOSE_FRAMING: Framing = { kind: "close", length: 0 };
// why an exchange timed out (Exchange #expired)
const RESPONSE_TIMEOUT = 1; // no response head within timeouts.response
const IDLE_TIMEOUT = 2; // nothing moved for timeouts.body_idle
const ENDED = 3; // past its bound: timeouts.max_stream_duration or the gRPC deadline
// how long a gRPC call past its bound may take to end with DEADLINE_EXCEEDED in
// trailers (its client may be slow to take the last bytes) before it is reset
const END_GRACE_MS = 1000;
// how an interim (1xx) head is handed to ClientSide.sendHead: no body, nothing ends
const INTERIM: ResponseInfo = {
  framing: { kind: "none", length: 0 },
  chunked: false,
  close: false,
  clientMinor: 1,
  upgrade: false,
};

/**
 * Forwards one request to a backend of `route` and relays the answer. The
 * exchange owns `client`'s timeout until the client takes it back with
 * `watch(undefined)` once the returned promise settles. `copy`, when given,
 * is handed the request body's bytes as they go to the backend, and ended
 * when the body has (the caller gives it up once the exchange is over).
 *
 * @returns true when the client connection can carry another request.
 */
export function forward(
  client: ClientSide,
  req: Request,
  route: Route,
  ctx: ProxyContext,
  rec: ExchangeRecord,
  copy?: RequestCopy,
): Promise<boolean> {
  const hashKey = route.hashKey;
  const key = hashKey && requestKey(hashKey, { head: req.head, clientIp: rec.client });
  const ex = new Exchange(client, req, route, ctx, rec, key, copy);
  if (route.timeouts.max_stream_duration > 0 || client.grpc === true) ex.bound();
  client.watch(ex);
  const backend = route.scheduler.next(undefined, key);
  if (backend === undefined) {
    const close = req.framing.kind !== "none"; // its body was not read
    return ex.fail(503, `no healthy backend for route ${route.name}`, { close });
  }
  if (client.cancelWith === undefined) return ex.attempt(backend, REUSE);
  // An HTTP/2 client can cancel one request (RST_STREAM): the exchange stops at once,
  // whatever it waits on, and the backend is not blamed.
  client.cancelWith(ex);
  return ex.attempt(backend, REUSE).finally(() => client.cancelWith!(undefined));
}

/**
 * The exchange, as phases (connect, send the request head and start its body,
 * read the response head, relay the response), after pingora's. One attempt is
 * {@linkcode Exchange.attempt}, the exchange's one async frame on the usual path;
 * a failed attempt hands its {@linkcode Failure} to `#afterFailure`, the retry
 * loop's body, which starts the next attempt or answers the client.
 */
class Exchange implements Timed, Cancellable {
  deadline = 0;
  readonly #client: ClientSide;
  readonly #req: Request;
  readonly #route: Route;
  readonly #ctx: ProxyContext;
  readonly #rec: ExchangeRecord;
  readonly #key: string | undefined; // the hash scheduler's key, when the route has one
  #copy: RequestCopy | undefined; // a mirror's copy, given the body once
  #ac: AbortController | undefined; // made on first use: most exchanges never need it
  #bc: BackendConn | undefined;
  #h2: H2ClientStream | undefined; // the stream to an HTTP/2 backend
  #h2Body: BufWriter | undefined; // the request body going into #h2
  #tried: Backend[] | undefined; // the backends that failed, once one has
  #siblings = 0; // of those, the ones left for another address of their SRV target
  #waitRetried = false; // a connect timed out on a backend that was answering: tried again
  #inBody = false;
  #progress = -1;
  #expired = 0; // why it timed out: RESPONSE_TIMEOUT, IDLE_TIMEOUT, ENDED; 0 = it did not
  #endBy = 0; // epoch ms the exchange is over by (max_stream_duration, grpc-timeout); 0 = none
  #endWhy = ""; // what set #endBy
  #reqDone = true;
  #reqFailed = false;
  #reqError: unknown;
  #reqSettled: Promise<void> | undefined;
  // the response, as #sendResponseHead found it
  #resFraming: Framing | undefined;
  #dechunk = false;
  #close = false;
  #backendKeeps = false;
  #encoder: BodyEncoder | undefined; // the body's encoder, when a policy (compress) chose one

  constructor(
    client: ClientSide,
    req: Request,
    route: Route,
    ctx: ProxyContext,
    rec: ExchangeRecord,
    key: string | undefined,
    copy: RequestCopy | undefined,
  ) {
    this.#key = key;
    this.#copy = copy;
    this.#client = client;
    this.#req = req;
    this.#route = route;
    this.#ctx = ctx;
    this.#rec = rec;
  }

  /** The exchange's one abort signal (handed to connect), made on first use. */
  get signal(): AbortSignal {
    return (this.#ac ??= new AbortController()).signal;
  }

  /**
   * Tears the exchange down: the backend connection closes (stopping both of its
   * directions), and so does the client's once a response is under way.
   */
  #abort(reason: unknown): void {
    const ac = this.#ac ??= new AbortController();
    if (ac.signal.aborted) return;
    ac.abort(reason);
    this.#bc?.close();
    this.#h2?.reset(ErrorCode.CANCEL);
    if (this.#inBody) this.#client.close();
  }

  /** The client cancelled the request: stop everything, blame no backend, retry nothing. */
  cancel(reason: unknown): void {
    this.#reqFailed = true;
    this.#reqError = reason;
    this.#abort(reason);
  }

  /**
   * Sets the exchange's bound, from the route's `max_stream_duration` and a gRPC
   * call's `grpc-timeout` (capped by the route's `max_grpc_timeout`), whichever
   * ends first. Called before any deadline is armed.
   */
  bound(): void {
    const t = this.#route.timeouts;
    const now = this.#ctx.watchdog.now;
    if (t.max_stream_duration > 0) {
      this.#endBy = now + t.max_stream_duration;
      this.#endWhy = "timeouts.max_stream_duration";
    }
    const header = this.#client.grpcTimeout;
    let ms = header === undefined ? -1 : parseGrpcTimeout(header);
    if (ms >= 0) {
      const cap = t.max_grpc_timeout;
      const capped = cap > 0 && ms > cap;
      if (capped) ms = cap;
      if (this.#endBy === 0 || now + ms < this.#endBy) {
        this.#endBy = now + ms;
        this.#endWhy = capped ? "timeouts.max_grpc_timeout (below grpc-timeout)" : "grpc-timeout";
      }
    }
    this.deadline = this.#endBy;
  }

  // The deadline `ms` from now (0 = none), or the exchange's bound when sooner.
  #arm(ms: number): void {
    const at = ms > 0 ? this.#ctx.watchdog.now + ms : 0;
    const end = this.#endBy;
    this.deadline = end !== 0 && (at === 0 || end < at) ? end : at;
  }

  /**
   * Timeout: the response head is late, a body stopped moving (a PING from an
   * HTTP/2 client counts as moving), or the exchange's bound has passed.
   */
  expire(now: number): void {
    if (this.#expired !== 0) { // over already, or a gRPC call's grace to end with a status ran out
      this.#abort(new Error("timeout"));
      return;
    }
    const end = this.#endBy;
    let why: number;
    if (end !== 0 && now >= end) why = ENDED;
    else if (this.#inBody) {
      const client = this.#client;
      const p = client.writer.written + (this.#bc?.writer.written ?? this.#h2Body?.written ?? 0) +
        (client.pings ?? 0);
      if (p !== this.#progress) {
        this.#progress = p;
        this.#arm(this.#route.timeouts.body_idle);
        return;
      }
      why = IDLE_TIMEOUT;
    } else why = RESPONSE_TIMEOUT;
    this.#expired = why;
    if (this.#inBody && this.#h2 !== undefined && this.#client.grpc) {
      // the relay ends the call with a status in trailers once the backend stream is gone
      this.#h2.reset(ErrorCode.CANCEL);
      this.deadline = now + END_GRACE_MS;
      return;
    }
    this.#abort(new Error(why === ENDED ? `${this.#endWhy} elapsed` : "timeout"));
  }

  /**
   * One attempt on `backend`, holding its load (`beginRequest`/`endRequest`) from
   * start to end. The usual path awaits a request flush, the response's first
   * read and the response flush, and nothing else. A failure is decided on by
   * `#afterFailure` from inside the attempt, whose load is dropped right after,
   * before anything else runs.
   *
   * @returns true when the client connection can carry another request.
   */
  attempt(backend: Backend, options: { fresh: boolean }): Promise<boolean> {
    return backend.h2 ? this.#attemptH2(backend, options) : this.#attemptHttp1(backend, options);
  }

  // One attempt on an HTTP/1.1 backend (see attempt).
  async #attemptHttp1(backend: Backend, options: { fresh: boolean }): Promise<boolean> {
    const ctx = this.#ctx;
    const fresh = options.fresh;
    this.#rec.backend = backend.id;
    beginRequest(backend);
    try {
      // connect: an idle pooled connection at once, else a new one (one of this
      // client's own when the backend takes a PROXY header naming it)
      const pool = backend.proxy === undefined
        ? ctx.pool(backend)
        : this.#client.privatePools!().pool(backend, this.#rec.client);
      let bc: BackendConn;
      let waitedSince = 0;
      try {
        const got = pool.acquire(fresh, this);
        if (got instanceof Promise) {
          waitedSince = Date.now();
          bc = await got;
        } else bc = got;
      } catch (e) {
        const f = this.#connectFailure(backend, e, waitedSince);
        return this.#afterFailure(backend, f, options);
      }
      this.#bc = bc;
      const reused = bc.uses > 0;

      // request: the head, then the body relayed in the background (or a flush)
      this.#sendRequestHead(bc);
      if (this.#req.framing.kind !== "none") this.#startRequestBody(bc.writer);
      else {
        try {
          await bc.writer.flush();
        } catch (e) {
          pool.release(bc, false);
          const message = `write to ${backend.id} failed: ${(e as Error).message}`;
          const f = { status: 502, message, retryable: true, stale: reused, local: false };
          return this.#afterFailure(backend, f, options);
        }
      }

      // response head, after any interim ones
      let head: ResponseHead;
      try {
        // wait for the first bytes with a bare read, then the head is usually complete
        if (bc.reader.buffered === 0 && !(await bc.reader.fill())) throw new Error("closed");
        const r = readHead(bc.reader, this.#client.headLimits, true);
        head = responseHead(bc, typeof r === "number" ? r : await r);
        if (head.status < 200 && head.status !== 101) head = await this.#interim(bc, head);
      } catch (e) {
        pool.release(bc, false);
        return this.#afterFailure(backend, this.#noResponse(e, backend, { reused }), options);
      }

      // response body, or a tunnel after 101
      const client = this.#client;
      const before = client.writer.written; // counts flushed bytes: the head is only staged
      const sent = this.#sendResponseHead(head);
      if (typeof sent !== "number") {
        pool.release(bc, false);
        return this.#afterFailure(backend, sent, options);
      }
      try {
        if (sent === UPGRADED) {
          await this.#tunnel(bc);
          pool.release(bc, false);
          return false;
        }
        const framing = this.#resFraming!;
        if (this.#encoder !== undefined) await this.#relayEncoded(bc, framing, this.#encoder);
        else {
          // an HTTP/2 client gets a chunked body's trailers as trailers
          const trailers = client.http2 && framing.kind === "chunked" ? [] : undefined;
          const moved = relayBody(
            bc.reader,
            client.writer,
            framing,
            trailers ? { ...DECHUNK, trailers } : this.#dechunk ? DECHUNK : FROM_BACKEND,
          );
          if (typeof moved !== "number") await moved;
          await endResponse(client, trailers?.length ? trailers : undefined);
        }
      } catch {
        this.#abort(new Error("response relay failed"));
        client.writer.discard();
        pool.release(bc, false);
        return false;
      } finally {
        this.#rec.bytesOut = client.writer.written - before;
        if (this.#encoder !== undefined) this.#encoded(this.#encoder);
      }
      if (!this.#reqDone && this.#reqSettled) await settleSoon(this.#reqSettled);
      pool.release(bc, this.#backendKeeps && this.#reqDone);
      ctx.health.success(backend);
      return !this.#close && this.#reqDone;
    } finally {
      endRequest(backend);
    }
  }

  /**
   * The retry loop's body, after an attempt on `backend` failed with `f`: the
   * client's own failure ends the exchange; a stale pooled connection is tried
   * once more on a fresh one; anything else counts against the backend's
   * health, and a retryable failure moves on to a backend not tried yet, up to
   * `retries` of them. Otherwise the client gets `f`'s status.
   */
  #afterFailure(backend: Backend, f: Failure, last: { fresh: boolean }): Promise<boolean> {
    if (this.#reqFailed) { // the client went away, or sent a broken or oversized body
      const e = this.#reqError;
      return e instanceof HttpError ? this.fail(e.status, e.message, CLOSE) : FALSE;
    }
    if (this.#expired === ENDED) { // the client's deadline or the route's bound: nobody's fault
      const close = !this.#reqDone || this.#req.framing.kind !== "none";
      const message = `${this.#endWhy} elapsed before ${backend.id} answered`;
      return this.fail(504, message, {
        close,
        grpcStatus: GrpcStatus.DEADLINE_EXCEEDED,
        grpcMessage: this.#deadlineText(),
      });
    }
    if (f.stale && !last.fresh) return this.attempt(backend, FRESH);
    const waited = f.waitedSince;
    if (
      waited !== undefined && !this.#waitRetried && this.#ctx.health.answeredSince(backend, waited)
    ) {
      // The backend answered others while this connect waited: the wait was this
      // process's (a saturated event loop), nothing was sent. Once more, on any connection.
      this.#waitRetried = true;
      return this.attempt(backend, REUSE);
    }
    if (f.connect && this.#route.fallback !== undefined) {
      // another address of the same SRV target: not a retry, and no blame (dns.family auto)
      const sibling = this.#route.fallback(backend, this.#tried ?? [], f.message);
      if (sibling !== undefined) {
        (this.#tried ??= []).push(backend);
        this.#siblings++;
        return this.attempt(sibling, REUSE);
      }
    }
    if (!f.local) this.#ctx.health.failure(backend, f.message, f.waitedSince);
    if (f.retryable && (this.#tried?.length ?? 0) - this.#siblings < this.#ctx.retries) {
      const tried = this.#tried ??= [];
      tried.push(backend);
      const next = this.#route.scheduler.next(tried, this.#key);
      if (next !== undefined) return this.attempt(next, REUSE);
    }
    const close = !this.#reqDone || this.#req.framing.kind !== "none"; // a body may be unread
    return this.fail(f.status, f.message, { close });
  }

  /**
   * One attempt on an HTTP/2 backend (`backend_protocol: h2c | h2`): a stream on
   * one of its pooled connections; the request body relayed as DATA while the
   * response is awaited; the response relayed with its trailers (HTTP/2 clients
   * get them as trailers, HTTP/1.1 clients as chunked trailers). A client that
   * resets its stream or goes away resets the backend stream (CANCEL).
   *
   * @returns true when the client connection can carry another request.
   */
  async #attemptH2(backend: Backend, options: { fresh: boolean }): Promise<boolean> {
    const ctx = this.#ctx;
    const req = this.#req;
    const client = this.#client;
    this.#rec.backend = backend.id;
    beginRequest(backend);
    try {
      this.#arm(this.#route.timeouts.response);
      const hasBody = req.framing.kind !== "none";
      const target = req.head.target;
      let stream: H2ClientStream;
      const waitedSince = Date.now();
      try {
        const pool = backend.proxy === undefined
          ? ctx.h2pool(backend)
          : this.#client.privatePools!().h2(backend, this.#rec.client);
        stream = await pool.open({
          method: req.head.method,
          scheme: backend.tls ? "https" : "http",
          authority: req.host,
          path: target.charCodeAt(0) === 47 ? target : req.path,
          fields: h2RequestFields(req.head, this.#forwardInfo()),
          endStream: !hasBody,
        }, this.signal);
      } catch (e) {
        const f = e instanceof RefusedError
          ? refused(backend)
          : this.#connectFailure(backend, e, waitedSince);
        return this.#afterFailure(backend, f, options);
      }
      this.#h2 = stream;
      if (hasBody) {
        this.#h2Body = new BufWriter(streamSink(stream));
        this.#startRequestBody(this.#h2Body, { dechunk: true, end: () => stream.end() });
      }
      let res: H2Response;
      try {
        res = await stream.response();
      } catch (e) {
        this.#h2 = undefined;
        stream.reset(ErrorCode.CANCEL);
        if (this.#expired === RESPONSE_TIMEOUT) {
          const message = `${backend.id} sent no response within timeouts.response`;
          return this.#afterFailure(
            backend,
            { status: 504, message, retryable: false, stale: false, local: false },
            options,
          );
        }
        const f: Failure = e instanceof RefusedError ? refused(backend) : {
          status: 502,
          message: `${backend.id} reset the stream before answering: ${(e as Error).message}`,
          retryable: false,
          stale: false,
          local: false,
        };
        return this.#afterFailure(backend, f, options);
      }
      // the response: its head, its body as it comes, its trailers
      this.#inBody = true;
      this.#arm(this.#route.timeouts.body_idle);
      this.#rec.status = res.status;
      const bodyless = res.endStream || req.head.method === "HEAD" || res.status === 204 ||
        res.status === 304;
      const policy = this.#route.policy;
      let fields: readonly string[] = res.fields;
      let encoder: BodyEncoder | undefined;
      if (policy !== undefined && !policy.passesResponses) {
        const ask = bodyless || policy.body === undefined
          ? undefined
          : responseContext(req.head, res.status);
        const out = applyResponseFieldsPolicy(policy, res.fields, ask);
        fields = out.head;
        encoder = this.#encoder = out.encoder;
      }
      const length = bodyless || encoder !== undefined ? -1 : contentLength(res.fields);
      const chunked = !client.http2 && !bodyless && length < 0 && req.head.minor === 1;
      const close = !req.keepAlive || ctx.closing ||
        (!client.http2 && !bodyless && length < 0 && !chunked); // HTTP/1.0: delimited by close
      client.sendFields(res.status, fields, {
        length,
        bodyless,
        close,
        clientMinor: req.head.minor,
      });
      const w = client.writer;
      const before = w.written;
      // a gRPC response is followed message by message: one that loses its backend
      // between two messages still ends with a status
      const messages = client.grpc ? new GrpcMessageBoundary() : undefined;
      const encoded = encoder && new EncodedBody(w, encoder, chunked);
      try {
        if (encoded !== undefined) {
          for (;;) {
            const data = await stream.read();
            if (data === null) break;
            await encoded.write(data);
          }
          const trailers = stream.trailers;
          await encoded.end(trailers);
          await endResponse(client, trailers);
        } else if (!res.endStream) {
          for (;;) {
            let data: Uint8Array | null;
            try {
              data = await stream.read();
            } catch (e) {
              if (messages === undefined || !messages.atBoundary || this.#ac?.signal.aborted) {
                throw e;
              }
              return await this.#endCall(backend, e);
            }
            if (data === null) break;
            if (bodyless || data.length === 0) continue;
            messages?.push(data);
            if (chunked) w.writeString(`${data.length.toString(16)}\r\n`);
            w.writeBytes(data, 0, data.length);
            if (chunked) w.writeString("\r\n");
            await w.flush();
          }
        }
        if (encoded === undefined) {
          const trailers = res.endStream ? undefined : stream.trailers;
          if (chunked) w.writeString(chunkedEnd(trailers));
          await endResponse(client, trailers);
        }
      } catch {
        this.#abort(new Error("response relay failed"));
        w.discard();
        return false;
      } finally {
        this.#rec.bytesOut = w.written - before;
        if (encoder !== undefined) this.#encoded(encoder);
      }
      if (!this.#reqDone && this.#reqSettled) await settleSoon(this.#reqSettled);
      if (!this.#reqDone) stream.reset(ErrorCode.CANCEL); // answered before the body ended
      ctx.health.success(backend);
      return !close && this.#reqDone;
    } finally {
      endRequest(backend);
    }
  }

  /**
   * Ends a gRPC call whose response started and whose backend stream is gone
   * (the backend failed, nothing moved for `body_idle`, or the call's bound
   * passed), between two messages: with trailers carrying DEADLINE_EXCEEDED past
   * the bound, else UNAVAILABLE, which gRPC clients may retry. The stream to the
   * backend is reset.
   *
   * @returns false: the call is over.
   */
  async #endCall(backend: Backend, e: unknown): Promise<false> {
    const expired = this.#expired;
    const status = expired === ENDED ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.UNAVAILABLE;
    // the client is told what ran out, never the backend's address or error (the log is)
    const text = expired === ENDED
      ? this.#deadlineText()
      : expired === IDLE_TIMEOUT
      ? "stream idle: nothing moved for timeouts.body_idle"
      : "502 Bad Gateway: the backend failed mid-response";
    this.#h2?.reset(ErrorCode.CANCEL);
    this.#rec.error = expired === 0
      ? `${backend.id} failed mid-response: ${(e as Error).message}`
      : `${text} (${backend.id})`;
    await endResponse(this.#client, [
      "grpc-status",
      String(status),
      "grpc-message",
      grpcMessage(text),
    ]);
    return false;
  }

  // What a gRPC client is told when the exchange's bound passed.
  #deadlineText(): string {
    return `deadline exceeded: ${this.#endWhy} elapsed`;
  }

  // What the forwarded head needs besides the client's head (one object per attempt, as before).
  #forwardInfo(): ForwardInfo {
    const req = this.#req;
    return {
      clientIp: this.#rec.via ?? this.#rec.client, // the hop that reached us, appended
      proto: this.#ctx.proto,
      host: req.host,
      framing: req.framing,
      upgrade: req.upgrade,
      http2: this.#client.http2,
    };
  }

  // `waitedSince`: when the wait for the connection began (epoch ms).
  #connectFailure(backend: Backend, e: unknown, waitedSince: number): Failure {
    const message = (e as Error).message;
    const cause = (e as Error).cause;
    if (exhaustionHint(cause) !== undefined) {
      this.#ctx.onExhausted?.(`connect to ${backend.id}`, cause);
      return { status: 503, message, retryable: false, stale: false, local: true };
    }
    const connect = e instanceof ConnectError;
    const timedOut = connect && e.timedOut;
    const status = timedOut ? 504 : 502;
    const f = { status, message, retryable: true, stale: false, local: false, connect };
    return timedOut ? { ...f, waitedSince } : f;
  }

  #sendRequestHead(bc: BackendConn): void {
    this.#arm(this.#route.timeouts.response);
    writeRequestHead(bc.writer, this.#req.head, this.#forwardInfo());
  }

  /**
   * Relays the request body into `sink` in the background (the response may come
   * first). HTTP/1.1 backends get it in the client's framing; an HTTP/2 stream
   * gets the data only (`dechunk`), then `end()` (END_STREAM).
   */
  #startRequestBody(
    sink: BufWriter,
    options: { dechunk: boolean; end?: () => Promise<void> } = HTTP1_BODY,
  ): void {
    this.#reqDone = false;
    const client = this.#client;
    const copy = this.#copy;
    this.#copy = undefined;
    this.#reqSettled = (async () => {
      try {
        const relay: RelayOptions = {
          errorStatus: 400,
          side: "client",
          maxBody: this.#ctx.limits.max_body,
          dechunk: options.dechunk,
        };
        if (copy !== undefined) relay.tee = copy; // a mirrored request's options only
        const n = await relayBody(client.reader, sink, this.#req.framing, relay);
        copy?.end();
        await sink.flush();
        if (options.end) await options.end();
        this.#rec.bytesIn = n;
        this.#reqDone = true;
      } catch (e) {
        copy?.abandon();
        // The client side failed (closed, reset, bad framing): stop everything. A failed
        // write to the backend instead leaves the response to tell what happened.
        if (client.reader.eof || e instanceof HttpError) {
          this.#reqFailed = true;
          this.#reqError = e;
          this.#abort(e);
        }
      }
    })();
  }

  // Interim responses (100 Continue, 103 Early Hints) go to an HTTP/1.1 client as
  // they come, and to an HTTP/2 one as interim HEADERS (an HTTP/1.0 client gets
  // none); resolves to the final head.
  async #interim(bc: BackendConn, head: ResponseHead): Promise<ResponseHead> {
    while (head.status < 200 && head.status !== 101) {
      const client = this.#client;
      if (client.http2) {
        client.sendHead(head, INTERIM);
        await client.writer.flush();
      } else if (this.#req.head.minor === 1) {
        client.writer.writeBytes(head.buf, head.start, head.end);
        await client.writer.flush();
      }
      if (bc.reader.buffered === 0 && !(await bc.reader.fill())) throw new Error("closed");
      const r = readHead(bc.reader, this.#client.headLimits, true);
      head = responseHead(bc, typeof r === "number" ? r : await r);
    }
    return head;
  }

  // What a backend that sent no usable response head amounts to.
  #noResponse(e: unknown, backend: Backend, conn: { reused: boolean }): Failure {
    if (this.#expired === RESPONSE_TIMEOUT) {
      const message = `${backend.id} sent no response within timeouts.response`;
      return { status: 504, message, retryable: false, stale: false, local: false };
    }
    const req = this.#req;
    const nothing = this.#bc!.reader.buffered === 0 && !(e instanceof HttpError);
    const noBody = req.framing.kind === "none";
    return {
      status: 502,
      message: e instanceof HttpError
        ? e.message
        : `${backend.id} closed or reset before answering`,
      retryable: nothing && noBody && IDEMPOTENT.has(req.head.method),
      stale: nothing && noBody && conn.reused,
      local: false,
    };
  }

  /**
   * Checks the response's framing and stages its head for the client (the head is
   * given back to the free list: its bytes are about to be overwritten).
   *
   * @returns RELAY or UPGRADED, or the failure when the response is unusable.
   */
  #sendResponseHead(head: ResponseHead): number | Failure {
    const ctx = this.#ctx;
    const req = this.#req;
    let framing: Framing;
    try {
      framing = responseFraming(head, req.head.method);
      if (head.status === 101 && req.upgrade === undefined) {
        throw new HttpError(502, "Backend switched protocols unasked");
      }
    } catch (e) {
      return {
        status: 502,
        message: (e as Error).message,
        retryable: false,
        stale: false,
        local: false,
      };
    }
    const upgrade = head.status === 101;
    const client = this.#client;
    const dechunk = framing.kind === "chunked" &&
      (req.head.minor === 0 || client.http2);
    let close = !req.keepAlive || framing.kind === "close" || dechunk || ctx.closing;
    this.#resFraming = framing;
    this.#dechunk = dechunk;
    this.#backendKeeps = framing.kind !== "close" && keepsAlive(head);
    this.#inBody = true;
    this.#arm(this.#route.timeouts.body_idle);
    const policy = this.#route.policy;
    let sent = head;
    let sentFraming = framing;
    if (policy !== undefined && !policy.passesResponses && !upgrade) {
      const ask = framing.kind === "none" || policy.body === undefined
        ? undefined
        : responseContext(req.head, head.status);
      const out = applyResponsePolicy(policy, head, ask);
      sent = out.head;
      if (out.encoder !== undefined) {
        // the encoded body's length is unknown: chunked for HTTP/1.1, close for HTTP/1.0
        this.#encoder = out.encoder;
        const http10 = !client.http2 && req.head.minor === 0;
        sentFraming = http10 ? CLOSE_FRAMING : CHUNKED_FRAMING;
        close ||= http10;
      }
    }
    this.#close = close;
    client.sendHead(sent, {
      framing: sentFraming,
      chunked: sentFraming.kind === "chunked" && !client.http2 &&
        (this.#encoder !== undefined || !dechunk),
      close,
      clientMinor: req.head.minor,
      upgrade,
    });
    this.#rec.status = head.status;
    if (FREE_HEADS.length < MAX_FREE_HEADS) {
      head.clear();
      FREE_HEADS.push(head);
    }
    return upgrade ? UPGRADED : RELAY;
  }

  /**
   * Relays the response body of `bc` through `encoder` (compress): read as
   * `framing` says, encoded and flushed piece by piece, then ended (with a
   * chunked body's trailers).
   */
  async #relayEncoded(bc: BackendConn, framing: Framing, encoder: BodyEncoder): Promise<void> {
    const client = this.#client;
    const trailers: string[] = [];
    const body = new EncodedBody(
      client.writer,
      encoder,
      !client.http2 && this.#req.head.minor === 1,
    );
    const stage = new BufWriter(body);
    const moved = relayBody(bc.reader, stage, framing, { ...DECHUNK, trailers });
    if (typeof moved !== "number") await moved;
    body.last = true; // the whole body was read: what is staged leaves with the end
    await stage.flush();
    await body.end(trailers);
    await endResponse(client, trailers.length > 0 ? trailers : undefined);
  }

  // The encoded response is over (sent or not): its encoder lets go, the record says what it did.
  #encoded(encoder: BodyEncoder): void {
    encoder.close();
    const rec = this.#rec;
    rec.encoding = encoder.coding;
    rec.encodedIn = encoder.bytesIn;
    rec.encodedOut = encoder.bytesOut;
  }

  async #tunnel(bc: BackendConn): Promise<void> {
    const client = this.#client;
    await client.writer.flush();
    const up = relayUntilClose(client.reader, bc.writer).catch(() => 0);
    const down = relayUntilClose(bc.reader, client.writer).catch(() => 0);
    await Promise.race([up, down]);
    this.#abort(new Error("tunnel closed"));
    await Promise.all([up, down]);
  }

  /** Answers the client with a short error of the balancer's own. */
  fail(
    status: number,
    message: string,
    options: AnswerOptions & { close: boolean },
  ): Promise<boolean> {
    const answerOptions: AnswerOptions & { close: boolean } = {
      close: options.close || !this.#req.keepAlive,
      headOnly: this.#req.head.method === "HEAD",
    };
    if (options.grpcStatus !== undefined) answerOptions.grpcStatus = options.grpcStatus;
    if (options.grpcMessage !== undefined) answerOptions.grpcMessage = options.grpcMessage;
    return answer(this.#client, this.#rec, status, message, answerOptions);
  }
}

// The response head ending at `end` in the backend reader's buffer, parsed in place
// (valid until that reader reads again) and consumed.
function responseHead(bc: BackendConn, end: number): ResponseHead {
  if (end === -1) throw new Error("closed");
  const reader = bc.reader;
  const head = parseResponse(FREE_HEADS.pop() ?? new ResponseHead(), reader.buf, reader.start, end);
  reader.consume(end - reader.start);
  return head;
}

// A request body whose last bytes were written as the response finished settles
// at once; one the backend never read (an early answer) does not: give up on it.
// An HTTP/2 backend refused the stream (REFUSED_STREAM, or GOAWAY before it): it
// did no work, so it is safe to send again, on a fresh connection or elsewhere.
function refused(backend: Backend): Failure {
  const message = `${backend.id} refused the stream`;
  return { status: 502, message, retryable: true, stale: true, local: false };
}

// The content-length among HTTP/2 response fields, -1 when absent.
function contentLength(fields: readonly string[]): number {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "content-length") return Number(fields[i + 1]);
  }
  return -1;
}

// The last chunk of a chunked body, with `trailers` as trailer fields.
function chunkedEnd(trailers: readonly string[] | undefined): string {
  let s = "0\r\n";
  if (trailers !== undefined) {
    for (let i = 0; i + 1 < trailers.length; i += 2) s += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
  }
  return s + "\r\n";
}

// A ByteConn whose writes become DATA frames of `stream` (for a BufWriter).
function streamSink(stream: H2ClientStream): ByteConn {
  return {
    read: () => Promise.resolve(null),
    write: async (p) => {
      await stream.write(p, 0, p.length);
      return p.length;
    },
  };
}

async function settleSoon(p: Promise<void>): Promise<void> {
  await within(p, 50);
}
