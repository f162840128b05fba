/**
 * One request/response exchange between a client and a backend: pick, connect,
 * forward the head, stream both bodies at once, and tear everything down through
 * one AbortController when either side fails.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { ExchangeRecord, ProxyContext, Route } from "./context.ts";
import type { Timed } from "./watchdog.ts";
import { writeRequestHead, writeResponseHead } from "./forwarded.ts";
import { type Framing, responseFraming } from "../http1/body.ts";
import { keepsAlive } from "../http1/fields.ts";
import { exhaustionHint } from "../observe/exhaustion.ts";
import { HttpError, readHead } from "../http1/head.ts";
import { parseResponse, ResponseHead } from "../http1/parse.ts";
import { answer, type ClientSide, type Request } from "./client.ts";
import { relayBody, type RelayOptions, relayUntilClose } from "./relay.ts";
import { type BackendConn, ConnectError } from "../upstream/pool.ts";
import { within } from "../_async.ts";

interface Failure {
  status: number;
  message: string;
  /** Safe to send again to another backend. */
  retryable: boolean;
  /** A reused connection died before answering: try once more on a fresh one. */
  stale: boolean;
  /** This process ran out of descriptors or ports: not the backend's fault, not retried. */
  local?: boolean;
}

const FROM_BACKEND: RelayOptions = { errorStatus: 502, side: "backend" };
const DECHUNK: RelayOptions = { errorStatus: 502, side: "backend", dechunk: true };
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
// Parsed response heads not in use (one is needed from response to response body).
const FREE_HEADS: ResponseHead[] = [];
const MAX_FREE_HEADS = 256;
const RELAY = 1;
const UPGRADED = 2;

/**
 * Forwards one request to a backend of `route` and relays the answer. The
 * exchange owns `client`'s timeout until the client takes it back with
 * `watch(undefined)` once the returned promise settles.
 *
 * @returns true when the client connection can carry another request.
 */
export function forward(
  client: ClientSide,
  req: Request,
  route: Route,
  ctx: ProxyContext,
  rec: ExchangeRecord,
): Promise<boolean> {
  const ex = new Exchange(client, req, ctx, rec);
  client.watch(ex);
  return ex.run(route);
}

class Exchange implements Timed {
  deadline = 0;
  readonly #client: ClientSide;
  readonly #req: Request;
  readonly #ctx: ProxyContext;
  readonly #rec: ExchangeRecord;
  #ac: AbortController | undefined; // made on first use: most exchanges never need it
  #bc: BackendConn | undefined;
  #inBody = false;
  #progress = -1;
  #timedOut = false;
  #reqDone = true;
  #reqFailed = false;
  #reqError: unknown;
  #reqSettled: Promise<void> | undefined;
  // the response, as #sendResponseHead found it
  #resFraming: Framing | undefined;
  #dechunk = false;
  #close = false;
  #backendKeeps = false;

  constructor(client: ClientSide, req: Request, ctx: ProxyContext, rec: ExchangeRecord) {
    this.#client = client;
    this.#req = req;
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
    if (this.#inBody) this.#client.close();
  }

  /** Timeout: the response head is late, or a body stopped moving. */
  expire(now: number): void {
    if (this.#inBody) {
      const p = this.#client.writer.written + (this.#bc?.writer.written ?? 0);
      if (p !== this.#progress) {
        this.#progress = p;
        this.deadline = now + this.#ctx.timeouts.body_idle;
        return;
      }
    }
    this.#timedOut = true;
    this.#abort(new Error("timeout"));
  }

  /**
   * Tries backends until one answers or there is nothing left to try. One async
   * frame for the whole exchange: the usual path awaits a request flush, the
   * response's first read and the response flush, and nothing else.
   */
  async run(route: Route): Promise<boolean> {
    const ctx = this.#ctx;
    const req = this.#req;
    let backend = route.scheduler.next();
    let retries = 0;
    let tried: Backend[] | undefined; // only allocated after a failure
    let fresh = false;
    const hasBody = req.framing.kind !== "none";
    for (;;) {
      if (backend === undefined) {
        return await this.#fail(503, `no healthy backend for route ${route.name}`, hasBody);
      }
      this.#rec.backend = backend.id;
      backend.inflight++;
      route.scheduler.loadChanged?.(backend);
      let f: Failure;
      attempt: try {
        const pool = ctx.pool(backend);
        let bc: BackendConn;
        try {
          const got = pool.acquire(fresh, this);
          bc = got instanceof Promise ? await got : got; // an idle connection: no wait at all
        } catch (e) {
          const cause = (e as Error).cause;
          if (exhaustionHint(cause) !== undefined) {
            ctx.onExhausted?.(`connect to ${backend.id}`, cause);
            f = { ...failure(503, (e as Error).message, false, false), local: true };
            break attempt;
          }
          const status = e instanceof ConnectError && e.timedOut ? 504 : 502;
          f = failure(status, (e as Error).message, true, false);
          break attempt;
        }
        this.#bc = bc;
        const reused = bc.uses > 0;
        this.deadline = ctx.watchdog.now + ctx.timeouts.response;
        writeRequestHead(bc.writer, req.head, {
          clientIp: this.#rec.client,
          proto: ctx.proto,
          host: req.host,
          framing: req.framing,
          upgrade: req.upgrade,
        });
        if (hasBody) this.#startRequestBody(bc);
        else {
          try {
            await bc.writer.flush();
          } catch (e) {
            pool.release(bc, false);
            const why = `write to ${backend.id} failed: ${(e as Error).message}`;
            f = failure(502, why, true, reused);
            break attempt;
          }
        }
        let head: ResponseHead;
        try {
          // wait for the first bytes with a bare read, then the head is usually complete
          if (bc.reader.buffered === 0 && !(await bc.reader.fill())) throw new Error("closed");
          const r = readHead(bc.reader, this.#client.headLimits, true);
          const end = typeof r === "number" ? r : await r;
          head = responseHead(bc, end);
          if (head.status < 200 && head.status !== 101) head = await this.#interim(bc, head);
        } catch (e) {
          pool.release(bc, false);
          f = this.#noResponse(e, backend, bc, reused);
          break attempt;
        }
        const client = this.#client;
        const before = client.writer.written; // counts flushed bytes: the head is only staged
        const sent = this.#sendResponseHead(head);
        if (typeof sent !== "number") {
          pool.release(bc, false);
          f = sent;
          break attempt;
        }
        try {
          if (sent === UPGRADED) {
            await this.#tunnel(bc);
            pool.release(bc, false);
            return false;
          }
          const framing = this.#resFraming!;
          const moved = relayBody(
            bc.reader,
            client.writer,
            framing,
            this.#dechunk ? DECHUNK : FROM_BACKEND,
          );
          if (typeof moved !== "number") await moved;
          await client.writer.flush();
        } catch {
          this.#abort(new Error("response relay failed"));
          client.writer.discard();
          pool.release(bc, false);
          return false;
        } finally {
          this.#rec.bytesOut = client.writer.written - before;
        }
        if (!this.#reqDone && this.#reqSettled) await settleSoon(this.#reqSettled);
        pool.release(bc, this.#backendKeeps && this.#reqDone);
        ctx.health.success(backend);
        return !this.#close && this.#reqDone;
      } finally {
        backend.inflight--;
        route.scheduler.loadChanged?.(backend);
      }
      if (this.#reqFailed) { // the client went away, or sent a broken or oversized body
        const e = this.#reqError;
        return e instanceof HttpError && await this.#fail(e.status, e.message, true);
      }
      if (f.stale && !fresh) {
        fresh = true;
        continue;
      }
      if (!f.local) ctx.health.failure(backend, f.message);
      fresh = false;
      if (f.retryable && retries < ctx.retries) {
        retries++;
        (tried ??= []).push(backend);
        const next = route.scheduler.next(tried);
        if (next !== undefined) {
          backend = next;
          continue;
        }
      }
      return await this.#fail(f.status, f.message, !this.#reqDone || hasBody);
    }
  }

  #startRequestBody(bc: BackendConn): void {
    this.#reqDone = false;
    const client = this.#client;
    this.#reqSettled = (async () => {
      try {
        const n = await relayBody(client.reader, bc.writer, this.#req.framing, {
          errorStatus: 400,
          side: "client",
          maxBody: this.#ctx.limits.max_body,
        });
        await bc.writer.flush();
        this.#rec.bytesIn = n;
        this.#reqDone = true;
      } catch (e) {
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
  // they come; resolves to the final head.
  async #interim(bc: BackendConn, head: ResponseHead): Promise<ResponseHead> {
    while (head.status < 200 && head.status !== 101) {
      if (this.#req.head.minor === 1) {
        this.#client.writer.writeBytes(head.buf, head.start, head.end);
        await this.#client.writer.flush();
      }
      if (bc.reader.buffered === 0 && !(await bc.reader.fill())) throw new Error("closed");
      const r = readHead(bc.reader, this.#client.headLimits, true);
      head = responseHead(bc, typeof r === "number" ? r : await r);
    }
    return head;
  }

  // What a backend that sent no usable response head amounts to.
  #noResponse(e: unknown, backend: Backend, bc: BackendConn, reused: boolean): Failure {
    if (this.#timedOut) {
      return failure(504, `${backend.id} sent no response within timeouts.response`, false, false);
    }
    const req = this.#req;
    const nothing = bc.reader.buffered === 0 && !(e instanceof HttpError);
    const safe = nothing && req.framing.kind === "none" && IDEMPOTENT.has(req.head.method);
    const why = e instanceof HttpError
      ? e.message
      : `${backend.id} closed or reset before answering`;
    return failure(502, why, safe, nothing && reused && req.framing.kind === "none");
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
      return failure(502, (e as Error).message, false, false);
    }
    const upgrade = head.status === 101;
    const dechunk = framing.kind === "chunked" && req.head.minor === 0;
    const close = !req.keepAlive || framing.kind === "close" || dechunk || ctx.closing;
    this.#resFraming = framing;
    this.#dechunk = dechunk;
    this.#close = close;
    this.#backendKeeps = framing.kind !== "close" && keepsAlive(head);
    this.#inBody = true;
    this.deadline = ctx.watchdog.now + ctx.timeouts.body_idle;
    writeResponseHead(this.#client.writer, head, {
      framing,
      chunked: framing.kind === "chunked" && !dechunk,
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

  async #tunnel(bc: BackendConn): Promise<void> {
    const client = this.#client;
    await client.writer.flush();
    const up = relayUntilClose(client.reader, bc.writer).catch(() => 0);
    const down = relayUntilClose(bc.reader, client.writer).catch(() => 0);
    await Promise.race([up, down]);
    this.#abort(new Error("tunnel closed"));
    await Promise.all([up, down]);
  }

  #fail(status: number, message: string, close: boolean): Promise<boolean> {
    return answer(this.#client, this.#rec, status, message, {
      close: close || !this.#req.keepAlive,
      headOnly: this.#req.head.method === "HEAD",
    });
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

function failure(status: number, message: string, retryable: boolean, stale: boolean): Failure {
  return { status, message, retryable, stale };
}

// A request body whose last bytes were written as the response finished settles
// at once; one the backend never read (an early answer) does not: give up on it.
async function settleSoon(p: Promise<void>): Promise<void> {
  await within(p, 50);
}
