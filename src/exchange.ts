/**
 * One request/response exchange between a client and a backend: pick, connect,
 * forward the head, stream both bodies at once, and tear everything down through
 * one AbortController when either side fails.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import type { ExchangeRecord, ProxyContext, Route } from "./context.ts";
import type { Timed } from "./deadline.ts";
import { writeRequestHead, writeResponseHead } from "./headers.ts";
import { type Framing, responseFraming } from "./http1/body.ts";
import { keepsAlive } from "./http1/fields.ts";
import { HttpError, readHead } from "./http1/head.ts";
import { parseResponse, ResponseHead } from "./http1/parse.ts";
import { answer, type ClientSide, type Request } from "./client.ts";
import { relayBody, type RelayOptions, relayUntilClose } from "./pipe.ts";
import { type BackendConn, ConnectError } from "./pool.ts";

interface Failure {
  status: number;
  message: string;
  /** Safe to send again to another backend. */
  retryable: boolean;
  /** A reused connection died before answering: try once more on a fresh one. */
  stale: boolean;
}

const FROM_BACKEND: RelayOptions = { errorStatus: 502, side: "backend" };
const DECHUNK: RelayOptions = { errorStatus: 502, side: "backend", dechunk: true };
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
// Parsed response heads not in use (one is needed from response to response body).
const FREE_HEADS: ResponseHead[] = [];
const MAX_FREE_HEADS = 256;
const KEEP = 1;
const CLOSE = 0;

/**
 * Forwards one request to a backend of `route` and relays the answer.
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
  return ex.run(route).then(ex.finished, ex.failed);
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

  constructor(client: ClientSide, req: Request, ctx: ProxyContext, rec: ExchangeRecord) {
    this.#client = client;
    this.#req = req;
    this.#ctx = ctx;
    this.#rec = rec;
  }

  /** The exchange's one abort signal (handed to connect). */
  get #signal(): AbortSignal {
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

  /** The exchange is over: stop its timeouts; true when the client connection goes on. */
  readonly finished = (outcome: number): boolean => {
    this.#client.watch(undefined);
    return outcome === KEEP;
  };

  /** The exchange threw: stop its timeouts and pass the error on. */
  readonly failed = (e: unknown): never => {
    this.#client.watch(undefined);
    throw e;
  };

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

  async run(route: Route): Promise<number> {
    const ctx = this.#ctx;
    let backend = route.scheduler.next();
    let retries = 0;
    let tried: Backend[] | undefined; // only allocated after a failure
    let fresh = false;
    const hasBody = this.#req.framing.kind !== "none";
    for (;;) {
      if (backend === undefined) {
        return this.#fail(503, `no healthy backend for route ${route.name}`, hasBody);
      }
      this.#rec.backend = backend.id;
      backend.inflight++;
      route.scheduler.loadChanged?.(backend);
      let result: number | Failure;
      try {
        result = await this.#attempt(backend, fresh);
      } finally {
        backend.inflight--;
        route.scheduler.loadChanged?.(backend);
      }
      if (typeof result === "number") return result;
      if (this.#reqFailed) { // the client went away, or sent a broken or oversized body
        const e = this.#reqError;
        return e instanceof HttpError ? await this.#fail(e.status, e.message, true) : CLOSE;
      }
      if (result.stale && !fresh) {
        fresh = true;
        continue;
      }
      ctx.health.failure(backend, result.message);
      fresh = false;
      if (result.retryable && retries < ctx.retries) {
        retries++;
        (tried ??= []).push(backend);
        const next = untried(route, tried);
        if (next !== undefined) {
          backend = next;
          continue;
        }
      }
      return this.#fail(result.status, result.message, !this.#reqDone || hasBody);
    }
  }

  async #attempt(backend: Backend, fresh: boolean): Promise<number | Failure> {
    const ctx = this.#ctx;
    const req = this.#req;
    const pool = ctx.pool(backend);
    let bc: BackendConn;
    try {
      // the signal only matters when a connection has to be opened
      const got = pool.acquire(fresh, fresh || pool.idle === 0 ? this.#signal : undefined);
      bc = got instanceof Promise ? await got : got; // an idle connection: no wait at all
    } catch (e) {
      const status = e instanceof ConnectError && e.timedOut ? 504 : 502;
      return failure(status, (e as Error).message, true, false);
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
    if (req.framing.kind === "none") {
      try {
        await bc.writer.flush();
      } catch (e) {
        pool.release(bc, false);
        return failure(502, `write to ${backend.id} failed: ${(e as Error).message}`, true, reused);
      }
    } else this.#startRequestBody(bc);

    let head: ResponseHead;
    try {
      head = await this.#readResponseHead(bc);
    } catch (e) {
      pool.release(bc, false);
      if (this.#timedOut) {
        return failure(
          504,
          `${backend.id} sent no response within timeouts.response`,
          false,
          false,
        );
      }
      const nothing = bc.reader.buffered === 0 && !(e instanceof HttpError);
      const safe = nothing && req.framing.kind === "none" && IDEMPOTENT.has(req.head.method);
      const why = e instanceof HttpError
        ? e.message
        : `${backend.id} closed or reset before answering`;
      return failure(502, why, safe, nothing && reused && req.framing.kind === "none");
    }
    return this.#relayResponse(bc, head, backend);
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

  // The response head, parsed in place in the backend reader's buffer: valid until
  // that reader reads again.
  async #readResponseHead(bc: BackendConn): Promise<ResponseHead> {
    const head = FREE_HEADS.pop() ?? new ResponseHead();
    for (;;) {
      // wait for the first bytes with a bare read, then the head is usually complete
      if (bc.reader.buffered === 0 && !(await bc.reader.fill())) throw new Error("closed");
      const r = readHead(bc.reader, this.#client.headLimits, true);
      const end = typeof r === "number" ? r : await r;
      if (end === -1) throw new Error("closed");
      const start = bc.reader.start;
      parseResponse(head, bc.reader.buf, start, end);
      bc.reader.consume(end - start);
      if (head.status >= 200 || head.status === 101) return head;
      if (this.#req.head.minor === 1) { // interim (100 Continue, 103 Early Hints)
        this.#client.writer.writeBytes(head.buf, start, end);
        await this.#client.writer.flush();
      }
    }
  }

  async #relayResponse(
    bc: BackendConn,
    head: ResponseHead,
    backend: Backend,
  ): Promise<number | Failure> {
    const ctx = this.#ctx;
    const req = this.#req;
    const client = this.#client;
    const pool = ctx.pool(backend);
    let framing: Framing;
    try {
      framing = responseFraming(head, req.head.method);
      if (head.status === 101 && req.upgrade === undefined) {
        throw new HttpError(502, "Backend switched protocols unasked");
      }
    } catch (e) {
      pool.release(bc, false);
      return failure(502, (e as Error).message, false, false);
    }
    const upgrade = head.status === 101;
    const backendKeeps = framing.kind !== "close" && keepsAlive(head);
    const dechunk = framing.kind === "chunked" && req.head.minor === 0;
    const close = !req.keepAlive || framing.kind === "close" || dechunk || ctx.closing;
    this.#inBody = true;
    this.deadline = ctx.watchdog.now + ctx.timeouts.body_idle;
    const before = client.writer.written;
    writeResponseHead(client.writer, head, {
      framing,
      chunked: framing.kind === "chunked" && !dechunk,
      close,
      clientMinor: req.head.minor,
      upgrade,
    });
    this.#rec.status = head.status;
    if (FREE_HEADS.length < MAX_FREE_HEADS) FREE_HEADS.push(head); // its bytes are about to go
    try {
      if (upgrade) {
        await this.#tunnel(bc);
        pool.release(bc, false);
        return CLOSE;
      }
      await relayBody(bc.reader, client.writer, framing, dechunk ? DECHUNK : FROM_BACKEND);
      await client.writer.flush();
    } catch {
      this.#abort(new Error("response relay failed"));
      client.writer.discard();
      pool.release(bc, false);
      return CLOSE;
    } finally {
      this.#rec.bytesOut = client.writer.written - before;
    }
    if (!this.#reqDone && this.#reqSettled) await settleSoon(this.#reqSettled);
    pool.release(bc, backendKeeps && this.#reqDone);
    ctx.health.success(backend);
    return close || !this.#reqDone ? CLOSE : KEEP;
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

  async #fail(status: number, message: string, close: boolean): Promise<number> {
    const keep = await answer(this.#client, this.#rec, status, message, {
      close: close || !this.#req.keepAlive,
      headOnly: this.#req.head.method === "HEAD",
    });
    return keep ? KEEP : CLOSE;
  }
}

// The scheduler's next pick among backends that have not failed this request yet:
// the tried ones are skipped like unhealthy ones for this one pick (no await in between,
// so no other request sees it), since a heavy backend can come up many times in a row.
function untried(route: Route, tried: Backend[]): Backend | undefined {
  const healthy = tried.map((b) => b.healthy);
  for (const b of tried) b.healthy = false;
  try {
    return route.scheduler.next();
  } finally {
    tried.forEach((b, i) => b.healthy = healthy[i]!);
  }
}

function failure(status: number, message: string, retryable: boolean, stale: boolean): Failure {
  return { status, message, retryable, stale };
}

// A request body whose last bytes were written as the response finished settles
// at once; one the backend never read (an early answer) does not: give up on it.
async function settleSoon(p: Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise<void>((r) => timer = setTimeout(r, 50))]);
  clearTimeout(timer);
}
