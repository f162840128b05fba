/**
 * `scheduler: hash` through the real balancer: requests with the same key reach
 * the same backend, whatever connection they come on; keyless requests follow
 * the weighted order; a backend marked down moves only its own keys.
 */
import { assert, assertEquals, assertNotEquals } from "@std/assert";
import { keepAliveBackend, RawClient, type RawServer, startBalancer } from "./_http.ts";
import { createBackend } from "../src/upstream/backend.ts";
import { markDown, markUp } from "../src/upstream/backend_state.ts";
import { HashScheduler } from "../src/scheduler/hash.ts";

interface Fleet extends AsyncDisposable {
  lb: Awaited<ReturnType<typeof startBalancer>>;
  backends: RawServer[];
  c: RawClient;
  /** Name of the backend that answered `GET /` with these extra header lines. */
  get(fields?: string): Promise<string>;
}

async function fleet(hashKey: string, extra = ""): Promise<Fleet> {
  const backends = ["b0", "b1", "b2", "b3"].map((name) => keepAliveBackend(name));
  const list = backends.map((b) => `{ address: 127.0.0.1:${b.port} }`).join(", ");
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
limits: { max_head: 96KiB }
${extra}
routes:
  - name: app
    scheduler: hash
    hash_key: ${hashKey}
    backends: [${list}]
`);
  const c = await RawClient.connect(lb.port);
  return {
    lb,
    backends,
    c,
    async get(fields = "") {
      const res = await c.request(`GET / HTTP/1.1\r\nHost: app.test\r\n${fields}\r\n`);
      assertEquals(res.status, 200, res.body);
      return res.headers.get("x-backend")!;
    },
    async [Symbol.asyncDispose]() {
      c.close();
      await lb.close();
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

/** Which of `f`'s backends another instance, built from the same set in another order, picks for `key`. */
function elsewhere(f: Fleet, key: string): string {
  const ids = f.backends.map((b, i) => [`b${i}`, b.port] as const).reverse();
  const s = new HashScheduler(
    ids.map(([name, port]) => createBackend({ hostname: "127.0.0.1", port, name })),
  );
  return s.next(undefined, key)!.name;
}

Deno.test("hash route sends each x-user to one backend, the one every instance picks", async () => {
  await using f = await fleet("header:x-user");
  const alice = await f.get("X-User: alice\r\n");
  assertEquals(alice, elsewhere(f, "alice"));
  for (let i = 0; i < 5; i++) {
    const other = await RawClient.connect(f.lb.port);
    try {
      const res = await other.request("GET /x HTTP/1.1\r\nHost: a\r\nx-user: alice\r\n\r\n");
      assertEquals(res.headers.get("x-backend"), alice, "another connection, the same backend");
    } finally {
      other.close();
    }
  }
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const got = await f.get(`x-user: user-${i}\r\n`);
    assertEquals(got, elsewhere(f, `user-${i}`));
    seen.add(got);
  }
  assertEquals(seen.size, 4, "different users spread over every backend");
});

Deno.test("hash route without the key header falls back to the weighted order", async () => {
  await using f = await fleet("header:x-user");
  const order = [];
  for (let i = 0; i < 8; i++) order.push(await f.get());
  assertEquals(new Set(order.slice(0, 4)).size, 4, order.join(" "));
  assertEquals(order.slice(4), order.slice(0, 4), "equal weights: each in turn");
});

Deno.test("hash route hashes a huge key header by its first 1 KiB, without error", async () => {
  await using f = await fleet("header:x-user");
  const prefix = "k".repeat(1024);
  const huge = await f.get(`x-user: ${prefix}${"z".repeat(60_000)}\r\n`);
  assertEquals(huge, await f.get(`x-user: ${prefix}other-tail\r\n`));
  assertEquals(huge, elsewhere(f, prefix));
});

Deno.test("hash route on a cookie sends each session to one backend", async () => {
  await using f = await fleet("cookie:sid");
  const s1 = await f.get("Cookie: theme=dark; sid=s1\r\n");
  assertEquals(s1, elsewhere(f, "s1"));
  assertEquals(await f.get("Cookie: sid=s1; lang=fr\r\n"), s1, "other cookies do not matter");
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) seen.add(await f.get(`Cookie: sid=session-${i}\r\n`));
  assertEquals(seen.size, 4);
});

Deno.test("hash route on client_ip sends every connection from one address to one backend", async () => {
  await using f = await fleet("client_ip");
  const first = await f.get();
  assertEquals(first, elsewhere(f, "127.0.0.1"));
  for (let i = 0; i < 5; i++) {
    const c = await RawClient.connect(f.lb.port);
    try {
      const res = await c.request("GET / HTTP/1.1\r\nHost: a\r\nx-user: other\r\n\r\n");
      assertEquals(res.headers.get("x-backend"), first);
    } finally {
      c.close();
    }
  }
});

Deno.test("hash route moves only a down backend's keys, and they come back when it returns", async () => {
  await using f = await fleet("header:x-user", "health: { failures: 100 }");
  const users = Array.from({ length: 120 }, (_, i) => `user-${i}`);
  const map = async () => {
    const out = [];
    for (const u of users) out.push(await f.get(`x-user: ${u}\r\n`));
    return out;
  };
  const before = await map();
  const port = f.backends[Number(before[0]!.slice(1))]!.port;
  const victim = f.lb.routes[0]!.scheduler.backends.find((b) => b.port === port)!;
  markDown(victim);
  const during = await map();
  let movedKeys = 0;
  users.forEach((u, i) => {
    if (before[i] === before[0]) {
      assertNotEquals(during[i], before[0], u);
      movedKeys++;
    } else assertEquals(during[i], before[i], `${u} stays where it was`);
  });
  assert(movedKeys > 10, `keys of the down backend: ${movedKeys}`);
  markUp(victim);
  assertEquals(await map(), before);
});
