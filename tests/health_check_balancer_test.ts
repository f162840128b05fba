/**
 * The balancer following `health:` through start, traffic and reload, and SRV
 * updates (issue #6).
 */
import { assert, assertEquals, assertLess, assertMatch } from "@std/assert";
import { parseConfig } from "../src/config/config.ts";
import { delay, RawClient, rawServer, startLoggedBalancer, writeAllText } from "./_http.ts";
import { type DnsmasqRecords, startDnsmasq } from "./_dnsmasq.ts";

import { healthBackend, until } from "./_health.ts";

const dec = new TextDecoder();

Deno.test("balancer: an unhealthy backend is taken out and brought back by the active check, logged", async () => {
  await using good = healthBackend("good");
  await using sick = healthBackend("sick", 503);
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 500ms, failures: 2 }
scheduler: round_robin
routes: [{ name: app, backends: [{ address: 127.0.0.1:${good.port} }, { address: 127.0.0.1:${sick.port} }] }]
`);
  using c = await RawClient.connect(lb.port);
  try {
    const sickB = () => lb.routes[0]!.scheduler.backends.find((x) => x.port === sick.port)!;
    await until(() => !sickB().healthy, 2000, "sick down");
    for (let i = 0; i < 10; i++) {
      const res = await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      assertEquals(res.headers.get("x-backend"), "good");
    }
    sick.status = 204;
    await until(() => sickB().healthy, 2000, "sick up");
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      seen.add((await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).headers.get("x-backend")!);
    }
    assertEquals([...seen].sort(), ["good", "sick"]);
    const id = `127.0.0.1:${sick.port}`;
    assert(
      lb.lines.includes(`warn backend ${id} down: GET /healthz answered 503`),
      lb.lines.join("\n"),
    );
    assert(lb.lines.includes(`info backend ${id} up`), lb.lines.join("\n"));
    assert(!lb.lines.some((l) => l.includes(good.port.toString()) && l.includes("down")));
  } finally {
    c.close();
    await lb.close();
    await Promise.all([good.close(), sick.close()]);
  }
});

Deno.test("balancer: health.rise sets how many passed probes bring a backend back", async () => {
  await using b = healthBackend("b", 503);
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 100ms, timeout: 500ms, failures: 1, rise: 4 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  try {
    const backend = lb.routes[0]!.scheduler.backends[0]!;
    await until(() => !backend.healthy, 2000, "down");
    const from = b.probes;
    b.status = 200;
    await until(() => backend.healthy, 3000, "up");
    assertEquals(b.probes - from, 4, "up at the fourth passed probe");
  } finally {
    await lb.close();
    await b.close();
  }
});

Deno.test("balancer: the active check takes out and brings back every route's record of a shared address", async () => {
  await using shared = healthBackend("shared", 503);
  await using other = healthBackend("other");
  // two routes give the same address different weights: two backend records, one probe
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 500ms, failures: 2 }
routes:
  - name: a
    path: /a
    backends: [{ address: 127.0.0.1:${shared.port}, weight: 1 }]
  - name: b
    path: /b
    backends: [{ address: 127.0.0.1:${shared.port}, weight: 5 }, { address: 127.0.0.1:${other.port} }]
`);
  try {
    const records = () =>
      lb.routes.map((r) => r.scheduler.backends.find((x) => x.port === shared.port)!);
    assertEquals(new Set(records()).size, 2);
    await until(() => records().every((b) => !b.healthy), 2000, "both records down");
    shared.status = 204;
    await until(() => records().every((b) => b.healthy), 2000, "both records up");
  } finally {
    await lb.close();
    await Promise.all([shared.close(), other.close()]);
  }
});

Deno.test("balancer: with active checks a passively ejected backend stays out past the back-off until the check passes", async () => {
  await using a = healthBackend("a");
  let broken = false; // real requests to "flaky" are reset while true
  const flakyHealth = { status: 200 };
  await using flaky = rawServer(async (conn, read) => {
    const chunk = await read();
    if (chunk === null) return;
    if (dec.decode(chunk).startsWith("GET /healthz ")) {
      await writeAllText(conn, `HTTP/1.1 ${flakyHealth.status} S\r\ncontent-length: 0\r\n\r\n`);
    } else if (!broken) {
      await writeAllText(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-backend: flaky\r\n\r\nflaky",
      );
    }
  });
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 100ms, timeout: 500ms, failures: 2, backoff: 50ms }
retry: { attempts: 0 }
scheduler: round_robin
routes: [{ name: app, backends: [{ address: 127.0.0.1:${flaky.port} }, { address: 127.0.0.1:${a.port} }] }]
`);
  try {
    const b = lb.routes[0]!.scheduler.backends.find((x) => x.port === flaky.port)!;
    broken = true;
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      const c = await RawClient.connect(lb.port);
      statuses.push(
        (await c.request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")).status,
      );
      c.close();
    }
    assertEquals(statuses.filter((s) => s === 502).length, 2, `statuses: ${statuses}`);
    assert(!b.healthy, "ejected by passive health after 2 failed exchanges");
    flakyHealth.status = 500;
    await delay(400); // eight back-offs long
    assert(!b.healthy, "back in rotation without a passing check");
    broken = false;
    flakyHealth.status = 200;
    await until(() => b.healthy, 2000, "up after passing checks");
    const id = `127.0.0.1:${flaky.port}`;
    const mine = lb.lines.filter((l) => l.includes(id));
    assertMatch(mine[0]!, /^warn backend .* ejected: 2 consecutive failures/);
    assertEquals(mine.at(-1), `info backend ${id} up`);
    assert(!mine.some((l) => l.includes("back-off over")), mine.join("\n"));
  } finally {
    await lb.close();
    await Promise.all([a.close(), flaky.close()]);
  }
});

Deno.test("balancer: reload turns active checks on and off; off hands the down backends to the back-off", async () => {
  await using a = healthBackend("a");
  await using sick = healthBackend("sick", 500);
  const yaml = (health: string) => `
listen: { http: 127.0.0.1:0 }
${health}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${a.port} }, { address: 127.0.0.1:${sick.port} }] }]
`;
  const lb = await startLoggedBalancer(yaml("health: { backoff: 200ms }"));
  try {
    const b = () => lb.routes[0]!.scheduler.backends.find((x) => x.port === sick.port)!;
    await delay(150);
    assertEquals(sick.probes, 0, "no probe without health.path");
    const on = yaml(
      "health: { path: /healthz, interval: 30ms, timeout: 500ms, failures: 1, backoff: 200ms }",
    );
    assert((await lb.reload(parseConfig(on, "test.yaml"))).ok);
    await until(() => !b().healthy, 1000, "down by the check");
    assert((await lb.reload(parseConfig(yaml("health: { backoff: 200ms }"), "test.yaml"))).ok);
    const probes = sick.probes;
    await until(() => b().healthy, 1000, "back after the back-off");
    assertLess(sick.probes - probes, 2, "checks stopped");
  } finally {
    await lb.close();
    await Promise.all([a.close(), sick.close()]);
  }
});

Deno.test("balancer: active checks follow SRV updates: a new target is probed (and taken out), a removed one no longer", async () => {
  const NAME = "_http._tcp.app.test";
  await using b1 = healthBackend("b1");
  await using b2 = healthBackend("b2", 500);
  const records = (ports: number[]): DnsmasqRecords => ({
    srv: ports.map((port, i) => ({
      name: NAME,
      target: `h${i + 1}.test`,
      port,
      priority: 0,
      weight: 10,
    })),
    hosts: ports.map((_, i) => ({ name: `h${i + 1}.test`, address: "127.0.0.1" })),
  });
  await using dns = await startDnsmasq(records([b1.port]));
  const lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 200ms }
health: { path: /healthz, interval: 50ms, timeout: 500ms, failures: 1 }
routes: [{ name: app, srv: ${NAME} }]
`);
  try {
    await until(() => b1.probes > 0, 2000, "b1 probed");
    assert(b1.lastProbe.includes(`\r\nHost: h1.test:${b1.port}\r\n`), b1.lastProbe);
    await dns.restart(records([b1.port, b2.port]));
    await until(() => lb.routes[0]!.scheduler.backends.length === 2, 3000, "b2 discovered");
    await until(() => b2.probes > 0, 2000, "b2 probed");
    const b2b = lb.routes[0]!.scheduler.backends.find((x) => x.port === b2.port)!;
    await until(() => !b2b.healthy, 2000, "b2 down");
    await dns.restart(records([b2.port]));
    await until(
      () => lb.routes[0]!.scheduler.backends.every((x) => x.port === b2.port),
      3000,
      "b1 removed",
    );
    const p1 = b1.probes;
    await delay(200);
    assertLess(b1.probes - p1, 2, "a removed backend is no longer probed");
  } finally {
    await lb.close();
    await dns.stop();
    await Promise.all([b1.close(), b2.close()]);
  }
});
