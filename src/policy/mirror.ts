/**
 * The `mirror` policy: a copy of each sampled request (the head the backend
 * gets, and a body up to `max_body`) goes to other backends, and their answer
 * is read and discarded, as nginx's `mirror` and Traefik's Mirroring do. The
 * real exchange never waits on a copy: a copy is only started once the
 * request was read, goes through a bounded queue (`queue` copies outstanding;
 * past it, copies are dropped and counted), and each copy has its own
 * `timeout` and its own connection pools, so a slow or dead mirror never
 * holds a connection the route's backends need.
 *
 * @module
 */
import type { MirrorConfig } from "../config/policy.ts";
import type { PolicyStep } from "./policy.ts";
import type { CopyOffer, RequestCopy } from "./policy.ts";
import { type Backend, backendKey } from "../upstream/backend.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import { type AddressFamily, SrvWatcher } from "../upstream/discovery/srv.ts";
import { BackendConn, Pool } from "../upstream/pool.ts";
import { beginRequest, endRequest } from "../upstream/backend_state.ts";
import { createScheduler } from "../scheduler/create.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { readHead } from "../http1/head.ts";
import { parseResponse, ResponseHead } from "../http1/parse.ts";
import { ChunkedParser, CHUNKS_DONE, type Framing, responseFraming } from "../http1/body.ts";
import { keepsAlive } from "../http1/fields.ts";
import type { BufReader } from "../http1/io.ts";

/**
 * What became of a request on a mirrored route, as counted by route in
 * `unload_mirror_copies_total{result}`: `mirrored` (the mirror answered),
 * `failed` (it could not be reached, broke off, or ran past `timeout`),
 * `dropped` (the queue was full), `too_large` (a body over `max_body`),
 * `incomplete` (the client's body never ended), `stream` (a gRPC call or an
 * upgrade: not copied), `not_sampled` (left out by `percent`).
 */
export type MirrorResult =
  | "mirrored"
  | "failed"
  | "dropped"
  | "too_large"
  | "incomplete"
  | "stream"
  | "not_sampled";

/** Where the mirror step counts its copies and finds its SRV name. */
export interface MirrorContext {
  /** The route's name. */
  route: string;
  /** Counts what became of one request (see {@linkcode MirrorResult}). */
  onMirror?: ((route: string, result: MirrorResult) => void) | undefined;
  /**
   * How SRV names are looked up; without it (`explain`), a mirror's `srv` is
   * not looked up and copies find no backend.
   */
  dns?: {
    nameserver?: { hostname: string; port: number } | undefined;
    refresh: number;
    family: AddressFamily;
  } | undefined;
  /** A warning line (a mirror's SRV lookup failed). */
  log?: { warn(message: string): void } | undefined;
}

// The answer's head may be this large at most.
const ANSWER_LIMITS = { maxHead: 64 * 1024 };
const OPEN = 0;
const DONE = 1;

/**
 * The `mirror` step of a route.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { mirrorStep } from "./mirror.ts";
 * const seen: string[] = [];
 * const step = mirrorStep({
 *   backends: [{ address: "127.0.0.1:9" }], scheduler: "srv", percent: 0,
 *   max_body: 1024, queue: 8, timeout: 1000,
 * }, { route: "app", onMirror: (_, result) => seen.push(result) });
 * const offer = { method: "GET", head: () => "", bodyLength: 0, stream: false };
 * assertEquals(step.onCopy!(offer), undefined);
 * assertEquals(seen, ["not_sampled"]);
 * assertEquals(step.summary, "copy to 127.0.0.1:9, 0 % of requests, bodies up to 1 KiB; queue 8, timeout 1s");
 * step.close!();
 * ```
 *
 * @param config The route's `mirror`.
 * @param context Where copies are counted, how SRV names are looked up.
 * @returns The step.
 */
export function mirrorStep(config: MirrorConfig, context: MirrorContext): PolicyStep {
  return new Mirror(config, context);
}

class Mirror implements PolicyStep {
  readonly name = "mirror";
  readonly summary: string;
  /** Largest body copied, in bytes. */
  readonly maxBody: number;
  readonly #config: MirrorConfig;
  readonly #context: MirrorContext;
  readonly #scheduler: Scheduler;
  readonly #pools = new Map<string, Pool>();
  readonly #ac = new AbortController();
  readonly #sending = new Set<Sending>(); // copies on the wire, stopped by close()
  #outstanding = 0;
  #closed = false;
  #srv: SrvWatcher | undefined; // looks the mirror's SRV name up, until close()
  /** Settles once the SRV name's first lookup is done (at once for static backends). */
  readonly ready: Promise<void>;

  constructor(config: MirrorConfig, context: MirrorContext) {
    this.#config = config;
    this.#context = context;
    this.maxBody = config.max_body;
    const found = config.backends ? staticBackends(config.backends) : [];
    this.#scheduler = createScheduler(config.scheduler, found);
    const where = config.srv ?? found.map((b) => b.id).join(", ");
    this.summary = `copy to ${where}, ${config.percent} % of requests, bodies up to ${
      size(config.max_body)
    }; queue ${config.queue}, timeout ${seconds(config.timeout)}`;
    if (config.srv !== undefined && context.dns !== undefined) this.#watch(config.srv);
    this.ready = this.#srv?.ready ?? Promise.resolve();
  }

  /** `explain`: what would happen to this request (nothing is copied). */
  onRequest(_req: unknown, notes?: string[]): undefined {
    if (notes === undefined) return undefined;
    const pick = this.#scheduler.next();
    const to = pick?.id ??
      (this.#config.srv ? `the addresses of ${this.#config.srv}` : "no backend");
    notes.push(
      `mirror: would copy the request as forwarded to ${to}, sampled ${this.#config.percent} %` +
        ` (a body over ${size(this.#config.max_body)} is not copied; the answer is discarded)`,
    );
    return undefined;
  }

  onCopy(offer: CopyOffer): RequestCopy | undefined {
    const config = this.#config;
    const p = config.percent;
    if (p < 100 && (p <= 0 || Math.random() * 100 >= p)) return this.#count("not_sampled");
    if (offer.stream) return this.#count("stream");
    if (offer.bodyLength > config.max_body) return this.#count("too_large");
    if (this.#outstanding >= config.queue || this.#closed) return this.#count("dropped");
    this.#outstanding++;
    return new Copy(this, offer.method, offer.head(), offer.bodyLength < 0);
  }

  /** Stops the SRV lookups and closes the mirror's connections (copies under way fail). */
  close(): void {
    this.#closed = true;
    this.#ac.abort();
    for (const s of this.#sending) stop(s);
    for (const pool of this.#pools.values()) pool.drain();
    this.#pools.clear();
  }

  /** A copy that will not be sent: its slot is free. */
  settle(result: MirrorResult): void {
    this.#outstanding--;
    this.#count(result);
  }

  #count(result: MirrorResult): undefined {
    this.#context.onMirror?.(this.#context.route, result);
    return undefined;
  }

  /** Sends one copy, reads the answer and discards it; counts what became of it. */
  async send(method: string, head: string, body: Uint8Array[]): Promise<void> {
    const backend = this.#closed ? undefined : this.#scheduler.next();
    if (backend === undefined) return this.settle("failed");
    const pool = this.#pool(backend);
    const held: Sending = { ac: new AbortController() };
    const ac = held.ac;
    const timer = setTimeout(() => stop(held), this.#config.timeout);
    this.#sending.add(held);
    let result: MirrorResult = "failed";
    beginRequest(backend);
    try {
      const got = pool.acquire(false, ac);
      const bc = held.conn = got instanceof Promise ? await got : got;
      if (ac.signal.aborted) bc.close();
      const reusable = await exchange(bc, method, head, body);
      pool.release(bc, reusable && !ac.signal.aborted);
      result = "mirrored";
    } catch {
      if (held.conn !== undefined) pool.release(held.conn, false);
    } finally {
      clearTimeout(timer);
      this.#sending.delete(held);
      endRequest(backend);
      this.settle(result);
    }
  }

  #pool(backend: Backend): Pool {
    const key = backendKey(backend);
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      const queue = this.#config.queue;
      pool = new Pool(backend, {
        maxIdle: queue,
        maxConns: queue, // one per outstanding copy: never waited for
        idleTimeout: 15_000,
        connectTimeout: this.#config.timeout,
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  #watch(name: string): void {
    const dns = this.#context.dns!;
    const ns = dns.nameserver;
    this.#srv = new SrvWatcher({
      name,
      ...(ns ? { nameServer: { ipAddr: ns.hostname, port: ns.port } } : {}),
      refresh: dns.refresh,
      family: dns.family,
      signal: this.#ac.signal,
      onUpdate: (found) => {
        this.#scheduler.update(found);
        const keep = new Set(found.map(backendKey));
        for (const [key, pool] of this.#pools) {
          if (!keep.has(key)) {
            pool.drain();
            this.#pools.delete(key);
          }
        }
      },
      onError: (e) => this.#context.log?.warn(`route ${this.#context.route}: mirror: ${e.message}`),
    });
  }
}

/** A copy on the wire: its connection once it has one, and what stops it. */
interface Sending {
  conn?: BackendConn;
  readonly ac: AbortController;
}

// Stops a copy on the wire (its timeout, or the route's end): a connect is aborted,
// a write or read in progress unblocked.
function stop(s: Sending): void {
  s.ac.abort(new Error("mirror stopped"));
  s.conn?.close();
}

/** A copy being made: the body is kept (up to `max_body`) until it ends. */
class Copy implements RequestCopy {
  readonly #mirror: Mirror;
  readonly #method: string;
  readonly #head: string;
  readonly #framed: boolean; // the head still needs its Content-Length and blank line
  #chunks: Uint8Array[] = [];
  #length = 0;
  #state = OPEN;

  constructor(mirror: Mirror, method: string, head: string, unframed: boolean) {
    this.#mirror = mirror;
    this.#method = method;
    this.#head = head;
    this.#framed = !unframed;
  }

  push(buf: Uint8Array, start: number, end: number): void {
    if (this.#state !== OPEN || end <= start) return;
    const n = end - start;
    if (this.#length + n > this.#mirror.maxBody) {
      this.#give("too_large");
      return;
    }
    this.#chunks.push(buf.slice(start, end));
    this.#length += n;
  }

  end(): void {
    if (this.#state !== OPEN) return;
    this.#state = DONE;
    const chunks = this.#chunks;
    this.#chunks = [];
    const head = this.#framed ? this.#head : `${this.#head}content-length: ${this.#length}\r\n\r\n`;
    this.#mirror.send(this.#method, head, chunks);
  }

  abandon(): void {
    if (this.#state === OPEN) this.#give("incomplete");
  }

  #give(result: MirrorResult): void {
    this.#state = DONE;
    this.#chunks = [];
    this.#mirror.settle(result);
  }
}

/**
 * Writes the copy on `bc` and reads the answer to its end.
 *
 * @returns true when the connection can carry another copy.
 */
async function exchange(
  bc: BackendConn,
  method: string,
  head: string,
  body: Uint8Array[],
): Promise<boolean> {
  const w = bc.writer;
  w.writeString(head);
  for (const chunk of body) {
    const p = w.write(chunk);
    if (p !== undefined) await p;
  }
  await w.flush();
  const reader = bc.reader;
  let res: ResponseHead;
  do { // past interim answers (100 Continue)
    if (reader.buffered === 0 && !(await reader.fill())) throw new Error("closed");
    const r = readHead(reader, ANSWER_LIMITS, true);
    const end = typeof r === "number" ? r : await r;
    if (end === -1) throw new Error("closed");
    res = parseResponse(new ResponseHead(), reader.buf, reader.start, end);
    reader.consume(end - reader.start);
  } while (res.status < 200);
  const framing = responseFraming(res, method);
  const keep = framing.kind !== "close" && keepsAlive(res);
  await discard(reader, framing);
  return keep;
}

/** Reads a body framed by `framing` from `reader` and throws it away. */
async function discard(reader: BufReader, framing: Framing): Promise<void> {
  if (framing.kind === "none") return;
  if (framing.kind === "length") {
    let left = framing.length;
    while (left > 0) {
      if (reader.buffered === 0 && !(await reader.fill())) throw new Error("closed");
      const n = Math.min(left, reader.buffered);
      reader.consume(n);
      left -= n;
    }
    return;
  }
  if (framing.kind === "close") {
    for (;;) {
      reader.consume(reader.buffered);
      if (!(await reader.fill())) return;
    }
  }
  const parser = new ChunkedParser(502);
  for (;;) {
    if (parser.inData) {
      if (reader.buffered === 0 && !(await reader.fill())) throw new Error("closed");
      const n = Math.min(parser.remaining, reader.buffered);
      reader.consume(n);
      parser.remaining -= n;
      if (parser.remaining === 0) parser.dataDone();
      continue;
    }
    const pos = parser.framing(reader.buf, reader.start, reader.end);
    reader.consume(pos - reader.start);
    if (parser.state === CHUNKS_DONE) return;
    if (!parser.inData && !(await reader.fill())) throw new Error("closed");
  }
}

function size(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / 1024 / 1024} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
