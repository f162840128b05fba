import { assert, assertEquals } from "@std/assert";
import { type DnsmasqRecords, startDnsmasq } from "./_dnsmasq.ts";
import {
  delay,
  keepAliveBackend,
  RawClient,
  type RawServer,
  startBalancer,
  startLoggedBalancer,
} from "./_http.ts";

const NAME = "_http._tcp.app.test";
const REFRESH = 500;

type Row = readonly [string, number, number];
const SEED: Row[] = [["b1", 0, 30], ["b2", 0, 20], ["b3", 10, 40]];

function seedRecords(ports: number[], table: Row[] = SEED) {
  const records: DnsmasqRecords = { srv: [], hosts: [] };
  table.forEach(([name, priority, weight], i) => {
    records.srv.push({
      name: NAME,
      target: `${name}.unload.test`,
      port: ports[i]!,
      priority,
      weight,
    });
    records.hosts.push({ name: `${name}.unload.test`, address: "127.0.0.1" });
  });
  return records;
}

async function setup(scheduler = "srv", extra = 0) {
  const backends: RawServer[] = [];
  for (const n of ["b1", "b2", "b3", "b4"].slice(0, 3 + extra)) backends.push(keepAliveBackend(n));
  const dns = await startDnsmasq(seedRecords(backends.map((b) => b.port)));
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: ${REFRESH}ms }
scheduler: ${scheduler}
routes: [{ name: app, srv: ${NAME} }]
`);
  const client = await RawClient.connect(lb.port);
  const pick = async () => {
    const res = await client.request("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assertEquals(res.status, 200, res.body);
    return res.headers.get("x-backend")!;
  };
  const count = async (n: number) => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const b = await pick();
      counts[b] = (counts[b] ?? 0) + 1;
    }
    return counts;
  };
  const close = async () => {
    client.close();
    await lb.close();
    await dns.stop();
    await Promise.all(backends.map((b) => b.close()));
  };
  return { backends, dns, lb, pick, count, close };
}

Deno.test("srv discovery through dnsmasq: the first 9 requests follow b1 b2 b1 b2 b1 b3 b3 b3 b3", async () => {
  const t = await setup();
  try {
    const order = [];
    for (let i = 0; i < 9; i++) order.push(await t.pick());
    assertEquals(order.join(" "), "b1 b2 b1 b2 b1 b3 b3 b3 b3");
  } finally {
    await t.close();
  }
});

Deno.test("srv mode splits 9000 requests exactly 3000/2000/4000", async () => {
  const t = await setup();
  try {
    assertEquals(await t.count(9000), { b1: 3000, b2: 2000, b3: 4000 });
  } finally {
    await t.close();
  }
});

Deno.test("rfc2782 mode sends 9000 requests to priority 0 only, 5400/3600 by weight", async () => {
  const t = await setup("rfc2782");
  try {
    assertEquals(await t.count(9000), { b1: 5400, b2: 3600 });
  } finally {
    await t.close();
  }
});

Deno.test("a target removed from DNS gets no new request within refresh + 1 s", async () => {
  const t = await setup();
  try {
    await t.count(9);
    const ports = t.backends.map((b) => b.port);
    await t.dns.restart(seedRecords([ports[0]!, ports[2]!], [["b1", 0, 30], ["b3", 10, 40]]));
    await delay(REFRESH + 1000);
    const before = t.backends[1]!.received;
    const counts = await t.count(700);
    assertEquals(counts.b2, undefined);
    assertEquals(t.backends[1]!.received, before, "b2 received bytes after removal");
    assertEquals(counts, { b1: 300, b3: 400 });
    assertEquals(t.backends[1]!.open, 0, "b2's pooled connections are closed");
  } finally {
    await t.close();
  }
});

Deno.test("after dnsmasq dies, 1000 more requests all succeed on the last good set, reported stale", async () => {
  const t = await setup();
  try {
    await t.count(9);
    await t.dns.stop();
    await delay(REFRESH * 3);
    const counts = await t.count(1000); // pick() asserts 200 for each
    assertEquals(counts.b1! + counts.b2! + counts.b3!, 1000);
    const state = t.lb.srvStates().get("app")!;
    assert(state.stale, "the route's SRV state is stale");
    assert(state.failures > 0);
    assertEquals(state.backends.length, 3);
  } finally {
    await t.close();
  }
});

Deno.test("a target added to DNS gets traffic after the next refresh", async () => {
  const t = await setup("srv", 1);
  try {
    assertEquals(Object.keys(await t.count(90)).sort(), ["b1", "b2", "b3"]);
    const ports = t.backends.map((b) => b.port);
    await t.dns.restart(
      seedRecords(ports, [["b1", 0, 30], ["b2", 0, 20], ["b3", 10, 40], ["b4", 10, 10]]),
    );
    await delay(REFRESH + 1000);
    const counts = await t.count(100);
    assertEquals(counts, { b1: 30, b2: 20, b3: 40, b4: 10 });
  } finally {
    await t.close();
  }
});

Deno.test('an SRV name that never resolved logs that it has no backends yet, not a kept "last good set"; one that did says how many it keeps', async () => {
  await using b1 = keepAliveBackend("b1");
  const dns = await startDnsmasq(seedRecords([b1.port], [["b1", 0, 10]]));
  try {
    await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: ${REFRESH}ms }
routes:
  - { name: app, srv: ${NAME} }
  - { name: never, path: /never, srv: _http._tcp.missing.test, optional: true }
`);
    const warned = (what: string) =>
      lb.lines.some((l) => l.startsWith("warn ") && l.includes(what));
    for (let i = 0; i < 100 && !warned("route never:"); i++) await delay(50);
    const never = lb.lines.filter((l) => l.includes("route never:"));
    assert(
      never.some((l) => l.includes("no backends until _http._tcp.missing.test resolves")),
      never.join("\n"),
    );
    assert(!never.some((l) => l.includes("last good set")), never.join("\n"));
    await dns.stop(); // app did resolve: its one backend is kept
    for (let i = 0; i < 100 && !warned("route app:"); i++) await delay(50);
    const app = lb.lines.filter((l) => l.startsWith("warn ") && l.includes("route app:"));
    assert(
      app.some((l) => l.includes("keeping the last good set (1 backend, stale)")),
      app.join("\n"),
    );
  } finally {
    await dns.stop();
  }
});
