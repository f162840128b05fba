import { assert, assertEquals, assertRejects } from "@std/assert";
import { createBackend } from "../src/upstream/backend.ts";
import { type BackendConn, ConnectError, Pool } from "../src/upstream/pool.ts";
import { FakeConn } from "./_fake_conn.ts";

/** A pool whose connections are fakes, each kept in `conns` in the order opened. */
function fakePool(options: { maxConns?: number; refuse?: boolean } = {}) {
  const conns: FakeConn[] = [];
  const pool = new Pool(createBackend({ hostname: "127.0.0.1", port: 9001 }), {
    maxIdle: 8,
    maxConns: options.maxConns ?? 8,
    idleTimeout: 60_000,
    connectTimeout: 60_000,
    connect: () => {
      if (options.refuse) return Promise.reject(new Deno.errors.ConnectionRefused("refused"));
      const c = new FakeConn();
      conns.push(c);
      return Promise.resolve(c);
    },
  });
  return { pool, conns };
}

async function acquire(pool: Pool, options: { fresh?: boolean } = {}): Promise<BackendConn> {
  return await pool.acquire(options.fresh ?? false);
}

/** Lets pending promise reactions run (the idle read's end), without waiting on time. */
async function settle(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await Promise.resolve();
}

Deno.test("pool hands out again a connection released after a clean framed response", async () => {
  const { pool, conns } = fakePool();
  const first = await acquire(pool);
  pool.release(first, true);
  assertEquals(pool.idle, 1);
  const second = await acquire(pool);
  assert(second === first, "a new connection was opened");
  assertEquals([second.uses, pool.opened, pool.reused, conns.length], [1, 1, 1, 1]);
  assert(!conns[0]!.closed);
});

Deno.test("pool closes a connection released after a failed response and opens a new one", async () => {
  const { pool, conns } = fakePool();
  const first = await acquire(pool);
  pool.release(first, false);
  assert(conns[0]!.closed && first.closed);
  assertEquals(pool.idle, 0);
  const second = await acquire(pool);
  assert(second !== first);
  assertEquals([second.uses, pool.opened], [0, 2]);
});

Deno.test("pool does not keep a connection with unread response bytes", async () => {
  const { pool, conns } = fakePool();
  const c = await acquire(pool);
  conns[0]!.feed("extra bytes after the response");
  await c.reader.fill();
  pool.release(c, true);
  assert(c.closed, "a connection with bytes nobody asked for was kept");
  assertEquals(pool.idle, 0);
});

Deno.test("pool drops an idle connection the backend closed instead of handing it out", async () => {
  const { pool, conns } = fakePool();
  const c = await acquire(pool);
  pool.release(c, true);
  conns[0]!.end(); // the backend's keep-alive timeout
  await settle(() => c.closed);
  assert(c.closed, "the idle read did not notice the close");
  assertEquals(pool.idle, 0);
  const next = await acquire(pool);
  assert(next !== c);
  assertEquals(pool.opened, 2);
});

Deno.test("pool drops an idle connection the backend sent unasked bytes on", async () => {
  const { pool, conns } = fakePool();
  const c = await acquire(pool);
  pool.release(c, true);
  conns[0]!.feed("HTTP/1.1 408 Request Timeout\r\n\r\n");
  await settle(() => c.closed);
  assert(c.closed);
  assertEquals(pool.idle, 0);
});

Deno.test("pool skips idle connections when asked for a fresh one", async () => {
  const { pool } = fakePool();
  const idle = await acquire(pool);
  pool.release(idle, true);
  const fresh = await acquire(pool, { fresh: true });
  assert(fresh !== idle);
  assertEquals([pool.idle, pool.active, fresh.uses], [1, 1, 0]);
});

Deno.test("pool at its bound closes an idle connection to open a new one", async () => {
  const { pool, conns } = fakePool({ maxConns: 1 });
  const c = await acquire(pool);
  pool.release(c, true);
  const fresh = await acquire(pool, { fresh: true });
  assert(conns[0]!.closed && !conns[1]!.closed && fresh !== c);
  assertEquals(pool.active, 1);
});

Deno.test("pool at its bound makes a caller wait for a released connection", async () => {
  const { pool } = fakePool({ maxConns: 1 });
  const busy = await acquire(pool);
  let got: BackendConn | undefined;
  const waiting = acquire(pool, { fresh: true }).then((c) => got = c);
  await settle(() => got !== undefined);
  assertEquals(got, undefined);
  pool.release(busy, false);
  await waiting;
  assert(got !== undefined && got !== busy);
});

Deno.test("pool at its bound hands a waiting caller the connection released, without reconnecting", async () => {
  const { pool, conns } = fakePool({ maxConns: 2 });
  const a = await acquire(pool);
  const b = await acquire(pool);
  const waiting = [acquire(pool), acquire(pool), acquire(pool)];
  pool.release(a, true);
  assert((await waiting[0]!) === a, "the first waiter reuses the released connection");
  pool.release(b, true);
  assert((await waiting[1]!) === b);
  pool.release(a, true);
  assert((await waiting[2]!) === a);
  assertEquals(conns.length, 2, "no connection was opened beyond the bound");
  assert(conns.every((c) => !c.closed), "none was closed to make room");
  assertEquals([pool.opened, pool.reused], [2, 3]);
});

Deno.test("pool reports a refused connect as ConnectError and frees its slot", async () => {
  const { pool } = fakePool({ maxConns: 1, refuse: true });
  await assertRejects(() => acquire(pool), ConnectError, "Connect to 127.0.0.1:9001 failed");
  await assertRejects(() => acquire(pool), ConnectError); // not stuck waiting for the slot
  assertEquals(pool.active, 0);
});

Deno.test("pool closes busy connections on release once draining", async () => {
  const { pool } = fakePool();
  const idle = await acquire(pool);
  const busy = await acquire(pool, { fresh: true });
  pool.release(idle, true);
  pool.drain();
  assert(idle.closed);
  pool.release(busy, true);
  assert(busy.closed);
  await settle(() => false); // the closed idle connection's read ends: not counted again
  assertEquals([pool.idle, pool.active], [0, 0]);
});
