import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { Pool } from "../src/upstream/pool.ts";
import { PassiveHealth } from "../src/upstream/health/passive.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { DEFAULTS } from "../src/config/config.ts";
import { BufReader, BufWriter } from "../src/http1/io.ts";
import { requestFraming } from "../src/http1/body.ts";
import { parseRequestHead } from "../src/http1/parse.ts";
import type { ClientSide, Request } from "../src/proxy/client.ts";
import type { ExchangeRecord, ProxyContext, Route } from "../src/proxy/context.ts";
import { forward } from "../src/proxy/exchange.ts";
import { writeFieldsResponseHead, writeResponseHead } from "../src/proxy/forwarded.ts";
import { simpleResponse } from "../src/http1/status.ts";
import { Router } from "../src/proxy/router.ts";
import { Watchdog } from "../src/timer/watchdog.ts";
import { FakeConn } from "./_fake_conn.ts";

/** What a fake backend connection does with each request head it receives. */
type Script = (conn: FakeConn, request: string, backend: Backend) => void;
/** A connect that never finishes: it times out after the rig's connectTimeout. */
const HANGS = "hangs";

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const answer = (response: string): Script => (conn) => conn.feed(response);
/** Closes without a word, as a backend whose keep-alive timeout just ran out. */
const hangUp: Script = (conn) => conn.end();

/**
 * An exchange over in-memory connections: backends answer per `scripts` (one
 * script per connection opened to that backend, in order; the last one repeats).
 */
class Rig implements AsyncDisposable {
  readonly backends: Backend[];
  readonly route: Route;
  readonly pools = new Map<Backend, Pool>();
  readonly opened = new Map<Backend, FakeConn[]>();
  readonly health = new PassiveHealth({ failures: 1, backoff: 60_000 });
  readonly ctx: ProxyContext;
  readonly #ac = new AbortController();

  constructor(
    scripts: Record<string, Array<Script | typeof HANGS> | "refuse">,
    options: { retries?: number; loadCheck?: (b: Backend) => void; connectTimeout?: number } = {},
  ) {
    const names = Object.keys(scripts);
    this.backends = names.map((name, i) =>
      createBackend({ hostname: "127.0.0.1", port: 9001 + i, name })
    );
    this.route = {
      name: "app",
      scheduler: createScheduler("round_robin", this.backends),
      timeouts: DEFAULTS.timeouts,
    };
    const connect = (b: Backend, signal: AbortSignal): Promise<FakeConn> => {
      const plan = scripts[b.name]!;
      if (plan === "refuse") {
        return Promise.reject(new Deno.errors.ConnectionRefused("Connection refused"));
      }
      const list = this.opened.get(b) ?? [];
      this.opened.set(b, list);
      const script = plan[Math.min(list.length, plan.length - 1)]!;
      if (script === HANGS) {
        list.push(new FakeConn()); // counted as opened: the next connect takes the next plan
        return new Promise((_, reject) =>
          signal.addEventListener("abort", () => reject(signal.reason))
        );
      }
      const conn = new FakeConn({
        onWrite: (c) => { // a request head is complete: answer it
          const text = c.text();
          if (!text.includes("\r\n\r\n")) return;
          c.clearWritten();
          options.loadCheck?.(b);
          script(c, text, b);
        },
      });
      list.push(conn);
      return Promise.resolve(conn);
    };
    this.ctx = {
      router: new Router<Route>(),
      pool: (b) => {
        let pool = this.pools.get(b);
        if (pool === undefined) {
          pool = new Pool(b, {
            maxIdle: 8,
            maxConns: 8,
            idleTimeout: 60_000,
            connectTimeout: options.connectTimeout ?? 60_000,
            connect,
          });
          this.pools.set(b, pool);
        }
        return pool;
      },
      timeouts: DEFAULTS.timeouts,
      limits: DEFAULTS.limits,
      retries: options.retries ?? 1,
      proto: "http",
      watchdog: new Watchdog({ signal: this.#ac.signal }),
      health: this.health,
      sessions: new Set(),
      closing: false,
      h2c: false,
      h2pool: () => {
        throw new Error("no HTTP/2 backends here");
      },
      h2: { connections: 0, streams: 0, closed: {} },
    };
  }

  backend(name: string): Backend {
    return this.backends.find((b) => b.name === name)!;
  }

  /** Sends one request through `forward`; resolves to the client's side of it. */
  async send(head: string, body?: { feed: string; end?: boolean }) {
    const conn = new FakeConn();
    if (body !== undefined) conn.feed(body.feed);
    if (body?.end) conn.end();
    const client: ClientSide = {
      reader: new BufReader(conn),
      writer: new BufWriter(conn),
      headLimits: { maxHead: 65_536, maxLine: 8192 },
      close: () => conn.close(),
      watch: () => {},
      http2: false,
      sendHead(head, info) {
        writeResponseHead(this.writer, head, info);
      },
      sendSimple(status, message, options) {
        this.writer.writeString(simpleResponse(status, message, options));
      },
      finish: () => undefined,
      sendFields(status, fields, info) {
        writeFieldsResponseHead(this.writer, status, fields, info);
      },
    };
    const parsed = parseRequestHead(head);
    const req: Request = {
      head: parsed,
      framing: requestFraming(parsed),
      host: "app.test",
      path: "/",
      keepAlive: true,
      upgrade: undefined,
    };
    const rec: ExchangeRecord = {
      time: Date.now(),
      client: "192.0.2.1",
      proto: "http/1.1",
      method: parsed.method,
      host: "app.test",
      path: "/",
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      duration: 0,
      route: "app",
      backend: "",
    };
    const again = await forward(client, req, this.route, this.ctx, rec);
    return { again, text: conn.text(), rec, conn };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#ac.abort();
    this.health.close();
    for (const p of this.pools.values()) p.drain();
    await Promise.resolve();
  }
}

const GET = "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";

Deno.test("exchange relays the response and keeps the backend connection for the next request", async () => {
  await using rig = new Rig({ a: [answer(OK)] });
  const a = rig.backend("a");
  const { again, text, rec } = await rig.send(GET);
  assert(again);
  assertStringIncludes(text, "HTTP/1.1 200 OK\r\n");
  assert(text.endsWith("\r\n\r\nhello"));
  assertEquals([rec.status, rec.backend], [200, a.id]);
  assertEquals(rig.pools.get(a)!.idle, 1);
  const second = await rig.send(GET);
  assert(second.again);
  assertEquals(rig.opened.get(a)!.length, 1, "the pooled connection was not reused");
});

Deno.test("exchange retries a stale pooled connection once, on a fresh one to the same backend", async () => {
  // The first connection answers once, then hangs up on the next request.
  let served = 0;
  const onceThenHangUp: Script = (c, r, b) =>
    served++ === 0 ? answer(OK)(c, r, b) : hangUp(c, r, b);
  await using rig = new Rig({ a: [onceThenHangUp, answer(OK)], b: [answer(OK)] });
  const a = rig.backend("a");
  await rig.send(GET); // to a: leaves its connection idle in the pool
  await rig.send(GET); // to b (round robin)
  const { text, rec } = await rig.send(GET); // to a again: its pooled connection is stale
  assertStringIncludes(text, "200 OK");
  assertEquals(rec.backend, a.id);
  assertEquals(rig.opened.get(a)!.length, 2);
  assert(rig.opened.get(a)![0]!.closed, "the stale connection was not closed");
  assert(a.healthy, "a stale pooled connection counted against the backend's health");
});

Deno.test("exchange does not retry a fresh connection's failure on the same backend", async () => {
  await using rig = new Rig({ a: [hangUp] }, { retries: 0 });
  const a = rig.backend("a");
  const { text, rec } = await rig.send(GET);
  assertStringIncludes(text, "HTTP/1.1 502 ");
  assertEquals(rec.status, 502);
  assertEquals(rig.opened.get(a)!.length, 1);
  assert(!a.healthy, "the failure was not counted against the backend (failures: 1)");
});

Deno.test("exchange moves a retryable failure to the next backend", async () => {
  await using rig = new Rig({ a: "refuse", b: [answer(OK)] });
  const [a, b] = [rig.backend("a"), rig.backend("b")];
  const { text, rec } = await rig.send(GET);
  assertStringIncludes(text, "200 OK");
  assertEquals(rec.backend, b.id);
  assert(!a.healthy && b.healthy);
});

Deno.test("exchange moves an idempotent request to the next backend when one hangs up", async () => {
  await using rig = new Rig({ a: [hangUp], b: [answer(OK)] });
  const { text, rec } = await rig.send(GET);
  assertStringIncludes(text, "200 OK");
  assertEquals(rec.backend, rig.backend("b").id);
});

Deno.test("exchange does not resend a request with a body to another backend", async () => {
  await using rig = new Rig({ a: [hangUp], b: [answer(OK)] });
  const post = "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\n";
  const { text, again } = await rig.send(post, { feed: "hello" });
  assertStringIncludes(text, "HTTP/1.1 502 ");
  assert(!again, "the client connection is kept after a 502 with an unread body");
  assertEquals(rig.opened.get(rig.backend("b")), undefined);
});

Deno.test("exchange: a connect timeout counts against a backend that answered nothing meanwhile", async () => {
  await using rig = new Rig({ a: [HANGS] }, { retries: 0, connectTimeout: 30 });
  const a = rig.backend("a");
  const { text } = await rig.send(GET);
  assertStringIncludes(text, "HTTP/1.1 504 ");
  assert(!a.healthy, "a backend whose connects time out and that serves nothing stays in");
});

Deno.test("exchange: a connect that times out while the backend serves others is tried once more, and ejects nothing", async () => {
  // connection 1 hangs in connect; connection 2, opened meanwhile, answers; the
  // timed-out request then gets connection 3
  const close = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
  await using rig = new Rig({ a: [HANGS, answer(close), answer(OK)] }, {
    retries: 0,
    connectTimeout: 30,
  });
  const a = rig.backend("a");
  const waiting = rig.send(GET);
  const served = await rig.send(GET);
  assertStringIncludes(served.text, "200 OK");
  const { text, rec } = await waiting;
  assertStringIncludes(text, "HTTP/1.1 200 OK", "the timed-out request was not tried again");
  assertEquals(rec.backend, a.id);
  assertEquals(rig.opened.get(a)!.length, 3);
  assert(a.healthy, "the backend was ejected although it answered during the wait");
});

Deno.test("exchange: a connect timeout is tried again only once", async () => {
  const close = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
  await using rig = new Rig({ a: [HANGS, answer(close), HANGS] }, {
    retries: 0,
    connectTimeout: 30,
  });
  const a = rig.backend("a");
  const waiting = rig.send(GET);
  await rig.send(GET);
  const { text } = await waiting;
  assertStringIncludes(text, "HTTP/1.1 504 ", "the second timeout is answered");
  assertEquals(rig.opened.get(a)!.length, 3, "one retry, not more");
  assert(!a.healthy, "nothing answered during the second wait: that timeout counts");
});

Deno.test("exchange answers 502 once the retries are used up", async () => {
  await using rig = new Rig({ a: "refuse", b: "refuse", c: [answer(OK)] }, { retries: 1 });
  const { text } = await rig.send(GET);
  assertStringIncludes(text, "HTTP/1.1 502 ");
  assertEquals(rig.opened.get(rig.backend("c")), undefined);
});

Deno.test("exchange holds the backend's load during the attempt and ends it on every path", async () => {
  const seen: number[] = [];
  const loadCheck = (b: Backend) => seen.push(b.inflight);
  const midBody: Script = (c) => {
    c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
    c.end();
  };
  const cases: Array<Record<string, Script[] | "refuse">> = [
    { a: [answer(OK)] }, // success
    { a: [hangUp] }, // no response
    { a: "refuse" }, // no connection
    { a: [midBody] }, // response cut short
    { a: [answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")] }, // bad head
  ];
  for (const scripts of cases) {
    await using rig = new Rig(scripts, { retries: 0, loadCheck });
    await rig.send(GET);
    assertEquals(rig.backend("a").inflight, 0, JSON.stringify(Object.keys(scripts)));
  }
  assertEquals(seen, [1, 1, 1, 1], "the load was not held while the backend had the request");
});

Deno.test("exchange ends the load of every backend a retried request went through", async () => {
  await using rig = new Rig({ a: [hangUp], b: [answer(OK)] });
  await rig.send(GET);
  assertEquals(rig.backends.map((b) => b.inflight), [0, 0]);
});

Deno.test("exchange closes both connections when the backend closes mid-body", async () => {
  const midBody: Script = (c) => {
    c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
    c.end();
  };
  await using rig = new Rig({ a: [midBody] });
  const a = rig.backend("a");
  const { again, conn, text } = await rig.send(GET);
  assert(!again);
  assert(conn.closed, "the client connection was left open after a cut-short body");
  assert(rig.opened.get(a)![0]!.closed, "the backend connection was kept");
  assertEquals(rig.pools.get(a)!.idle, 0);
  assertStringIncludes(text, "200 OK");
});

Deno.test("exchange stops and closes the backend connection when the client closes mid-body", async () => {
  const waitForBody: Script = () => {}; // reads the request, never answers
  await using rig = new Rig({ a: [waitForBody] });
  const a = rig.backend("a");
  const post = "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\n";
  const { again } = await rig.send(post, { feed: "12345", end: true });
  assert(!again);
  assert(rig.opened.get(a)![0]!.closed, "the backend connection outlived the client");
  assertEquals(a.inflight, 0);
  assert(a.healthy, "a client's failure counted against the backend");
});
