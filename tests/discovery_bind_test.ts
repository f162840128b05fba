import { assert, assertEquals, assertRejects } from "@std/assert";
import { resolveSrv, SrvWatcher } from "../src/upstream/discovery/srv.ts";
import type { Backend } from "../src/upstream/backend.ts";
import { type BindZone, startBind } from "./_bind.ts";
import {
  keepAliveBackend,
  RawClient,
  type RawServer,
  startBalancer,
  startLoggedBalancer,
} from "./_http.ts";

function ids(backends: readonly Backend[]): string[] {
  return backends.map((b) => b.id);
}

/** Polls `predicate` every 20 ms until true; fails after `ms` (a bound, not a measurement). */
async function waitFor(what: string, ms: number, predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A backend named `name` on `hostname`:`port` (0: any free port). */
function backendOn(name: string, hostname: string, port = 0): RawServer {
  return keepAliveBackend(name, { listener: Deno.listen({ hostname, port }) });
}

Deno.test("BIND: a Kubernetes headless Service gives one backend per pod", async () => {
  const zone: BindZone = {
    origin: "cluster.local",
    ttl: 5,
    records: [1, 2, 3].flatMap((i) => [
      `_http._tcp.web.default.svc SRV 0 33 8080 127-0-0-1${i}.web.default.svc.cluster.local.`,
      `127-0-0-1${i}.web.default.svc A 127.0.0.1${i}`,
      `web.default.svc A 127.0.0.1${i}`,
    ]),
  };
  await using dns = await startBind([zone]);
  const backends = await resolveSrv("_http._tcp.web.default.svc.cluster.local", {
    nameServer: dns.nameServer,
  });
  assertEquals(ids(backends), ["127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"]);
  assertEquals(backends.map((b) => b.name), [
    "127-0-0-11.web.default.svc.cluster.local",
    "127-0-0-12.web.default.svc.cluster.local",
    "127-0-0-13.web.default.svc.cluster.local",
  ]);
  assert(backends.every((b) => b.weight === 33 && b.priority === 0));
});

Deno.test("BIND: a Consul service with per-node targets and TTL 0", async () => {
  const zone: BindZone = {
    origin: "consul",
    ttl: 0,
    records: [
      "_api._tcp.service SRV 1 1 9101 7f000015.addr.dc1.consul.",
      "_api._tcp.service SRV 1 1 9102 node1.node.dc1.consul.",
      "7f000015.addr.dc1 A 127.0.0.21",
      "node1.node.dc1 A 127.0.0.22",
    ],
  };
  await using dns = await startBind([zone]);
  const backends = await resolveSrv("_api._tcp.service.consul", { nameServer: dns.nameServer });
  assertEquals(ids(backends), ["127.0.0.21:9101", "127.0.0.22:9102"]);
  assertEquals(backends.map((b) => b.name), ["7f000015.addr.dc1.consul", "node1.node.dc1.consul"]);
  assert(backends.every((b) => b.weight === 1 && b.priority === 1));
});

Deno.test("BIND: 250 targets do not fit a UDP answer; the TCP retry brings them all", async () => {
  const records: string[] = [];
  for (let i = 0; i < 250; i++) {
    records.push(`_http._tcp.many SRV 0 1 ${10000 + i} t${i}.app.test.`);
    records.push(`t${i} A 127.0.1.${i + 1}`);
  }
  await using dns = await startBind([{ origin: "app.test", records }]);
  const backends = await resolveSrv("_http._tcp.many.app.test", { nameServer: dns.nameServer });
  assertEquals(backends.length, 250);
  assertEquals(new Set(ids(backends)).size, 250);
  const asked = dns.queries("_http._tcp.many.app.test", "SRV");
  assert(asked.some((q) => !q.tcp), "asked over UDP first");
  assert(asked.some((q) => q.tcp), "then over TCP, after the truncated UDP answer");
});

Deno.test("BIND: a CNAME target is followed; a target '.' means no service", async () => {
  const zone: BindZone = {
    origin: "app.test",
    records: [
      "_http._tcp.alias SRV 0 10 9201 alias.app.test.",
      "alias CNAME real",
      "real A 127.0.0.31",
      "_http._tcp.none SRV 0 0 0 .",
    ],
  };
  await using dns = await startBind([zone]);
  const backends = await resolveSrv("_http._tcp.alias.app.test", { nameServer: dns.nameServer });
  assertEquals(ids(backends), ["127.0.0.31:9201"]);
  assertEquals(backends[0]!.name, "alias.app.test");
  await assertRejects(
    () => resolveSrv("_http._tcp.none.app.test", { nameServer: dns.nameServer }),
    Error,
    `service is not available (target ".")`,
  );
});

Deno.test("BIND: dns.family picks A, AAAA or both; both share the target's weight", async () => {
  const zone: BindZone = {
    origin: "app.test",
    records: [
      "_http._tcp.dual SRV 0 10 9301 dual.app.test.",
      "_http._tcp.dual SRV 0 10 9302 v4only.app.test.",
      "dual A 127.0.0.41",
      "dual AAAA ::1",
      "v4only A 127.0.0.42",
    ],
  };
  await using dns = await startBind([zone]);
  const name = "_http._tcp.dual.app.test";
  const nameServer = dns.nameServer;
  const weights = (bs: Backend[]) => bs.map((b) => `${b.id} w${b.weight}`);
  assertEquals(weights(await resolveSrv(name, { nameServer })), [
    "127.0.0.41:9301 w10",
    "[::1]:9301 w10",
    "127.0.0.42:9302 w20",
  ]);
  assertEquals(weights(await resolveSrv(name, { nameServer, family: "ipv4" })), [
    "127.0.0.41:9301 w10",
    "127.0.0.42:9302 w10",
  ]);
  assertEquals(weights(await resolveSrv(name, { nameServer, family: "ipv6" })), [
    "[::1]:9301 w10",
  ]);
});

Deno.test("BIND: SERVFAIL and a target without address keep the last good set, stale", async () => {
  const good: BindZone = {
    origin: "app.test",
    records: ["_http._tcp.web SRV 0 10 9401 w1.app.test.", "w1 A 127.0.0.51"],
  };
  await using dns = await startBind([good]);
  const controller = new AbortController();
  const errors: string[] = [];
  const updates: Backend[][] = [];
  const watcher = new SrvWatcher({
    name: "_http._tcp.web.app.test",
    nameServer: dns.nameServer,
    refresh: 200,
    signal: controller.signal,
    onUpdate: (b) => updates.push(b),
    onError: (e) => errors.push(e.message),
  });
  try {
    await watcher.ready;
    const kept = watcher.state.backends;
    assertEquals(ids(kept), ["127.0.0.51:9401"]);
    // a zone that does not load: BIND answers SERVFAIL
    await dns.restart([{ ...good, records: [...good.records, "broken SRV not numbers"] }]);
    await waitFor("a failed lookup", 5_000, () => watcher.state.stale);
    assert(watcher.state.backends === kept, "the last good set is kept");
    assert(
      errors.some((e) => e.startsWith("SRV lookup _http._tcp.web.app.test failed:")),
      errors.join(),
    );
    // the target lost its address
    await dns.restart([{ ...good, records: ["_http._tcp.web SRV 0 10 9401 w1.app.test."] }]);
    const before = errors.length;
    await waitFor("a lookup finding no address", 5_000, () => errors.length > before);
    assert(errors.at(-1)!.endsWith("no address records for w1.app.test"), errors.at(-1));
    assertEquals(watcher.state.stale, true);
    assert(watcher.state.backends === kept);
    await dns.restart([good]);
    await waitFor("recovery", 5_000, () => !watcher.state.stale);
    assertEquals(updates.length, 1, "recovering to the same set is no change");
  } finally {
    controller.abort();
    await watcher.closed;
  }
});

Deno.test("BIND + balancer: a weight-1 target and a weight-3 target with two addresses get 1:3", async () => {
  const t1 = backendOn("t1", "127.0.0.61");
  const t2v4 = backendOn("t2", "127.0.0.62");
  const t2v6 = backendOn("t2", "::1", t2v4.port);
  await using dns = await startBind([{
    origin: "app.test",
    records: [
      `_http._tcp.web SRV 0 1 ${t1.port} t1.app.test.`,
      `_http._tcp.web SRV 0 3 ${t2v4.port} t2.app.test.`,
      "t1 A 127.0.0.61",
      "t2 A 127.0.0.62",
      "t2 AAAA ::1",
    ],
  }]);
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 1h }
routes: [{ name: app, srv: _http._tcp.web.app.test }]
`);
  const client = await RawClient.connect(lb.port);
  try {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 80; i++) {
      const res = await client.get("/");
      assertEquals(res.status, 200);
      const b = res.headers.get("x-backend")!;
      counts[b] = (counts[b] ?? 0) + 1;
    }
    assertEquals(counts, { t1: 20, t2: 60 });
    assert(t2v6.accepted > 0 && t2v4.accepted > 0, "both of t2's addresses served");
  } finally {
    client.close();
    await lb.close();
    await Promise.all([t1.close(), t2v4.close(), t2v6.close()]);
  }
});

Deno.test("BIND + balancer: an address that refuses is set aside for its sibling, no 502, no flapping", async () => {
  const v4 = backendOn("v4", "127.0.0.71");
  const port = v4.port; // nothing listens on [::1]:port until the end
  await using dns = await startBind([{
    origin: "app.test",
    records: [`_http._tcp.web SRV 0 5 ${port} t.app.test.`, "t A 127.0.0.71", "t AAAA ::1"],
  }]);
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 150ms }
routes: [{ name: app, srv: _http._tcp.web.app.test }]
`);
  const client = await RawClient.connect(lb.port);
  let v6: RawServer | undefined;
  try {
    for (let i = 0; i < 20; i++) {
      const res = await client.get("/");
      assertEquals(res.status, 200, res.body);
      assertEquals(res.headers.get("x-backend"), "v4");
    }
    const srv = lb.routes[0]!.srv!;
    assertEquals(srv.state.aside, [`[::1]:${port}`]);
    const lookups = srv.state.lookups;
    await waitFor("three more lookups", 10_000, () => srv.state.lookups >= lookups + 3);
    for (let i = 0; i < 20; i++) assertEquals((await client.get("/")).status, 200);
    const aside = lb.lines.filter((l) => l.includes("set aside"));
    assertEquals(aside.length, 1, lb.lines.join("\n"));
    assert(!lb.lines.some((l) => /ejected|back in use|down:/.test(l)), lb.lines.join("\n"));
    // once [::1] listens, a probe connects and it is back with its share
    v6 = backendOn("v6", "::1", port);
    await waitFor("::1 back in use", 10_000, () => srv.state.aside.length === 0);
    assert(lb.lines.some((l) => l.includes(`[::1]:${port} back in use`)));
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add((await client.get("/")).headers.get("x-backend")!);
    assertEquals([...seen].sort(), ["v4", "v6"]);
  } finally {
    client.close();
    await lb.close();
    await v4.close();
    await v6?.close();
  }
});
