/**
 * `tcp:` routes (issue 24, DESIGN.md "Edge"): whole connections carried to backends
 * with Debian redis-server and redis-cli, netcat-openbsd clients from several
 * 127.0.0.x sources, half-close, backpressure, retries, health, idle timeout and the
 * access log and metrics.
 */
import { assert, assertEquals, assertLess, assertMatch, assertStringIncludes } from "@std/assert";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import { renderMetrics } from "../src/admin/prometheus.ts";
import { buildStatus } from "../src/admin/status.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { staticBackends } from "../src/upstream/discovery/static.ts";
import { freePort } from "./_http.ts";
import { launchChromium } from "./_chromium.ts";
import { namedTcpBackend, nc, readAll, tcpBackend, tcpLogger, until, writeAll } from "./_tcp.ts";
import { redisCli, startRedis } from "./_redis.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A balancer started from `yaml` with a {@linkcode tcpLogger}; `await using` closes it. */
async function startTcp(yaml: string) {
  const logger = tcpLogger();
  const lb = await Balancer.start(parseConfig(yaml, "test.yaml"), { logger });
  return Object.assign(lb, {
    logger,
    /** The bound port of the tcp route `name`. */
    portOf: (name: string) => lb.tcpAddrs().get(name)!.port,
    [Symbol.asyncDispose]: () => lb.close(),
  });
}

Deno.test("tcp route: redis-cli SET and GET through unload reach Debian redis-server", async () => {
  await using redis = await startRedis();
  await using lb = await startTcp(`
tcp:
  - { name: kv, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:${redis.port} }] }
`);
  const port = lb.portOf("kv");
  assertEquals(await redisCli(port, "SET", "greeting", "hello through unload"), "OK");
  assertEquals(await redisCli(port, "GET", "greeting"), "hello through unload");
  // the value really is in redis, asked directly
  assertEquals(await redisCli(redis.port, "GET", "greeting"), "hello through unload");
  await until(() => lb.logger.records.length === 2, "two connection records");
  for (const r of lb.logger.records) {
    assertEquals([r.route, r.backend, r.end], ["kv", `127.0.0.1:${redis.port}`, "closed"]);
  }
});

Deno.test("tcp route: half-close: the client's FIN reaches the backend, whose reply after EOF still reaches the client (nc -N)", async () => {
  // replies only once it has read the client's whole input, to its end of stream
  await using backend = tcpBackend(async (conn) => {
    const got = await readAll(conn);
    await writeAll(conn, enc.encode(`read ${got.length} bytes to EOF: ${dec.decode(got)}\n`));
  });
  await using lb = await startTcp(`
tcp: [{ name: echo, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const reply = "read 15 bytes to EOF: hello, then FIN\n";
  assertEquals(await nc(lb.portOf("echo"), "hello, then FIN"), reply);
  await until(() => lb.logger.records.length === 1, "a record");
  const r = lb.logger.records[0]!;
  assertEquals([r.bytesIn, r.bytesOut, r.end], [15, reply.length, "closed"]);
});

Deno.test("tcp route: half-close the other way: the backend's FIN reaches the client, which can still send", async () => {
  // says hello, shuts its write side, then reads the client's data and counts it in the log
  let read = "";
  await using backend = tcpBackend(async (conn) => {
    await writeAll(conn, enc.encode("hello\n"));
    await conn.closeWrite();
    read = dec.decode(await readAll(conn));
  });
  await using lb = await startTcp(`
tcp: [{ name: greet, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.portOf("greet") });
  assertEquals(dec.decode(await readAll(c)), "hello\n"); // read to the FIN unload passed on
  await writeAll(c, enc.encode("still talking"));
  await c.closeWrite();
  await until(() => lb.logger.records.length === 1, "a record");
  c.close();
  assertEquals(read, "still talking");
  assertEquals(lb.logger.records[0]!.end, "closed");
});

Deno.test("tcp route: a large transfer to a client that does not read holds the backend back (backpressure), then arrives whole", async () => {
  const total = 128 * 1024 * 1024; // far beyond the kernel's socket buffers on both sides
  const chunk = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
  let written = 0;
  await using backend = tcpBackend(async (conn) => {
    while (written < total) { // whole chunks: the stream repeats the chunk exactly
      for (let off = 0; off < chunk.length;) {
        const n = await conn.write(chunk.subarray(off));
        off += n;
        written += n;
      }
    }
  });
  await using lb = await startTcp(`
tcp: [{ name: bulk, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.portOf("bulk") });
  try {
    // wait until the backend's writes stall: nothing moves while the client reads nothing
    let last = -1;
    for (let still = 0; still < 5;) {
      await new Promise((r) => setTimeout(r, 100));
      still = written === last && written > 0 ? still + 1 : 0;
      last = written;
    }
    assertLess(
      written,
      total / 2,
      "the backend could not push the transfer past a non-reading client",
    );
    // unload holds at most one read buffer per direction of this connection
    assert(lb.bodyBuffers.largeBytes <= 2 * 256 * 1024, `${lb.bodyBuffers.largeBytes}`);
    let got = 0;
    let ok = true;
    const buf = new Uint8Array(256 * 1024);
    for (let n; (n = await c.read(buf)) !== null;) {
      for (let i = 0; i < n; i += 4099) ok &&= buf[i] === ((got + i) % (1024 * 1024)) % 251;
      got += n;
    }
    assertEquals([got, ok], [total, true]);
  } finally {
    c.close();
  }
  await until(() => lb.logger.records.length === 1, "a record");
  assertEquals(lb.logger.records[0]!.bytesOut, total);
});

Deno.test("tcp route: scheduler hash on client_ip sends each 127.0.0.x source to its backend, as the scheduler would (nc -s)", async () => {
  await using a = namedTcpBackend("a");
  await using b = namedTcpBackend("b");
  await using c = namedTcpBackend("c");
  const backends = [a, b, c].map((x) => ({ address: `127.0.0.1:${x.port}` }));
  await using lb = await startTcp(`
tcp:
  - name: sticky
    listen: 127.0.0.1:0
    scheduler: hash
    backends: ${JSON.stringify(backends)}
`);
  const names = new Map([[a.port, "a"], [b.port, "b"], [c.port, "c"]]);
  const reference = createScheduler("hash", staticBackends(backends));
  const seen = new Set<string>();
  for (let x = 2; x <= 9; x++) {
    const source = `127.0.0.${x}`;
    const expected = names.get(reference.next(undefined, source)!.port)!;
    for (let i = 0; i < 3; i++) {
      assertEquals(await nc(lb.portOf("sticky"), "", source), `${expected}\n`, source);
    }
    seen.add(expected);
  }
  assert(seen.size > 1, "the sources spread over more than one backend");
  await until(() => lb.logger.records.length === 24, "24 records");
  assertEquals(new Set(lb.logger.records.map((r) => r.client)).size, 8);
});

Deno.test("tcp route: a backend that refuses is retried on another at once, charged a failure and taken out", async () => {
  await using live = namedTcpBackend("live");
  const dead = freePort(); // nothing listens there
  await using lb = await startTcp(`
health: { failures: 2, backoff: 1h }
tcp:
  - name: app
    listen: 127.0.0.1:0
    scheduler: round_robin
    retries: 1
    backends: [{ address: 127.0.0.1:${dead} }, { address: 127.0.0.1:${live.port} }]
`);
  for (let i = 0; i < 6; i++) assertEquals(await nc(lb.portOf("app"), ""), "live\n");
  const deadB = lb.tcpRoutes[0]!.scheduler.backends.find((x) => x.port === dead)!;
  assertEquals(deadB.healthy, false);
  assert(
    lb.logger.lines.some((l) =>
      l.startsWith(`warn backend 127.0.0.1:${dead} ejected: 2 consecutive failures`)
    ),
    lb.logger.lines.join("\n"),
  );
  await until(() => lb.logger.records.length === 6, "6 records");
  assert(
    lb.logger.records.every((r) => r.end === "closed" && r.backend === `127.0.0.1:${live.port}`),
  );
  const status = buildStatus(lb);
  assertEquals(
    status.tcp[0]!.backends.map((x) => [x.id, x.healthy]),
    [[`127.0.0.1:${dead}`, false], [`127.0.0.1:${live.port}`, true]],
  );
});

Deno.test("tcp route: with no retries left a refused connect closes the client and logs connect_failed", async () => {
  const dead = freePort();
  await using lb = await startTcp(`
tcp: [{ name: app, listen: 127.0.0.1:0, retries: 0, backends: [{ address: 127.0.0.1:${dead} }] }]
`);
  assertEquals(await nc(lb.portOf("app"), "anyone?"), "");
  await until(() => lb.logger.records.length === 1, "a record");
  const r = lb.logger.records[0]!;
  assertEquals([r.backend, r.end], [`127.0.0.1:${dead}`, "connect_failed"]);
  assertMatch(r.error ?? "", /Connect to 127\.0\.0\.1:\d+ failed/);
});

Deno.test("tcp route: the active TCP connect check takes a dead backend out before any client comes", async () => {
  await using live = namedTcpBackend("live");
  const dead = freePort();
  await using lb = await startTcp(`
tcp:
  - name: app
    listen: 127.0.0.1:0
    health: { tcp: true, interval: 50ms, timeout: 500ms, failures: 1 }
    backends: [{ address: 127.0.0.1:${dead} }, { address: 127.0.0.1:${live.port} }]
`);
  const deadB = lb.tcpRoutes[0]!.scheduler.backends.find((x) => x.port === dead)!;
  await until(() => !deadB.healthy, "the dead backend down");
  assert(
    lb.logger.lines.some((l) => l.startsWith(`warn backend 127.0.0.1:${dead} down: connect:`)),
  );
  const status = buildStatus(lb);
  assertEquals(status.tcp[0]!.probe?.check, "TCP connect");
  const liveB = status.tcp[0]!.backends.find((x) => x.id === `127.0.0.1:${live.port}`)!;
  await until(() => lb.lastProbe(lb.tcpRoutes[0]!.scheduler.backends[1]!) !== undefined, "a probe");
  assertEquals(liveB.healthy, true);
  assertEquals(await nc(lb.portOf("app"), ""), "live\n");
});

Deno.test("tcp route: a connection on which nothing moves is closed after timeouts.idle, logged idle_timeout", async () => {
  await using backend = tcpBackend(async (conn) => void await readAll(conn));
  await using lb = await startTcp(`
tcp: [{ name: quiet, listen: 127.0.0.1:0, timeouts: { idle: 200ms }, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.portOf("quiet") });
  await writeAll(c, enc.encode("one line, then silence"));
  assertEquals((await readAll(c)).length, 0); // unload closes it
  c.close();
  await until(() => lb.logger.records.length === 1, "a record");
  assertEquals([lb.logger.records[0]!.end, lb.logger.records[0]!.bytesIn], ["idle_timeout", 22]);
});

Deno.test("tcp route: /metrics counts connections and bytes by route and backend", async () => {
  await using redis = await startRedis();
  await using lb = await startTcp(`
tcp: [{ name: kv, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:${redis.port} }] }]
`);
  const port = lb.portOf("kv");
  assertEquals(await redisCli(port, "SET", "k", "v"), "OK");
  assertEquals(await redisCli(port, "GET", "k"), "v");
  await until(() => lb.logger.records.length === 2, "two records");
  const bytesIn = lb.logger.records.reduce((n, r) => n + r.bytesIn, 0);
  const bytesOut = lb.logger.records.reduce((n, r) => n + r.bytesOut, 0);
  const text = renderMetrics(lb);
  const labels = `{route="kv",backend="127.0.0.1:${redis.port}"}`;
  assertStringIncludes(text, `unload_tcp_connections_total${labels} 2\n`);
  assertStringIncludes(text, `unload_tcp_connections_active${labels} 0\n`);
  assertStringIncludes(text, `unload_tcp_received_bytes_total${labels} ${bytesIn}\n`);
  assertStringIncludes(text, `unload_tcp_sent_bytes_total${labels} ${bytesOut}\n`);
  assertStringIncludes(text, `unload_tcp_connections_ended_total{route="kv",end="closed"} 2\n`);
  assertStringIncludes(
    text,
    `unload_backend_up{backend="127.0.0.1:${redis.port}",name="127.0.0.1:${redis.port}"} 1\n`,
  );
});

Deno.test("tcp route: a reload adds a route (its port accepts), and removes one (its port refuses, its open connection finishes)", async () => {
  await using one = namedTcpBackend("one");
  const held: string[] = [];
  await using two = tcpBackend(async (conn) => {
    held.push(dec.decode(await readAll(conn)));
    await writeAll(conn, enc.encode("two saw it\n"));
  });
  const portA = freePort();
  const portB = freePort();
  const yaml = (routes: string) => `reload: { watch: false }\ntcp:\n${routes}`;
  const routeA =
    `  - { name: a, listen: 127.0.0.1:${portA}, backends: [{ address: 127.0.0.1:${two.port} }] }\n`;
  const routeB =
    `  - { name: b, listen: 127.0.0.1:${portB}, backends: [{ address: 127.0.0.1:${one.port} }] }\n`;
  await using lb = await startTcp(yaml(routeA));
  // a connection through route a, left open across the reloads
  const open = await Deno.connect({ hostname: "127.0.0.1", port: portA });
  await writeAll(open, enc.encode("before "));
  assertEquals((await lb.reload(parseConfig(yaml(routeA + routeB), "test.yaml"))).ok, true);
  assertEquals(await nc(portB, ""), "one\n");
  assertEquals((await lb.reload(parseConfig(yaml(routeB), "test.yaml"))).ok, true);
  const refused = await Deno.connect({ hostname: "127.0.0.1", port: portA }).then(
    (c) => (c.close(), false),
    // refused, or reset while the old listener's last connection is still open
    (e) => e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.ConnectionReset,
  );
  assert(refused, "route a's port no longer accepts");
  await writeAll(open, enc.encode("and after"));
  await open.closeWrite();
  assertEquals(dec.decode(await readAll(open)), "two saw it\n");
  open.close();
  assertEquals(held, ["before and after"]);
  assertEquals(lb.tcpRoutes.map((r) => r.name), ["b"]);
});

Deno.test("tcp route: a reload that changes the backends sends new connections to the new set", async () => {
  await using first = namedTcpBackend("first");
  await using second = namedTcpBackend("second");
  const port = freePort();
  const yaml = (to: number) =>
    `reload: { watch: false }\ntcp: [{ name: r, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${to} }] }]\n`;
  await using lb = await startTcp(yaml(first.port));
  assertEquals(await nc(port, ""), "first\n");
  assertEquals((await lb.reload(parseConfig(yaml(second.port), "test.yaml"))).ok, true);
  assertEquals(await nc(port, ""), "second\n");
});

Deno.test("tcp route: a reload onto a port in use is refused and the running routes stay", async () => {
  await using one = namedTcpBackend("one");
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = freePort();
  const route =
    `  - { name: a, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${one.port} }] }\n`;
  const bad =
    `  - { name: b, listen: 127.0.0.1:${taken.addr.port}, backends: [{ address: 127.0.0.1:${one.port} }] }\n`;
  await using lb = await startTcp(`reload: { watch: false }\ntcp:\n${route}`);
  const result = await lb.reload(
    parseConfig(`reload: { watch: false }\ntcp:\n${route}${bad}`, "test.yaml"),
  );
  assertEquals(result.ok, false);
  assertStringIncludes(
    result.error ?? "",
    `tcp route b: listen 127.0.0.1:${taken.addr.port}: address already in use`,
  );
  assertEquals(await nc(port, ""), "one\n");
  assertEquals(lb.tcpRoutes.map((r) => r.name), ["a"]);
});

Deno.test("tcp route: the dashboard lists the tcp routes with each backend's state and connections (chromium)", async () => {
  await using live = namedTcpBackend("live");
  const dead = freePort();
  await using lb = await startTcp(`
admin: { listen: 127.0.0.1:0 }
health: { failures: 1, backoff: 1h }
tcp:
  - name: cache
    listen: 127.0.0.1:0
    scheduler: round_robin
    backends: [{ address: 127.0.0.1:${live.port} }, { address: 127.0.0.1:${dead} }]
`);
  for (let i = 0; i < 3; i++) assertEquals(await nc(lb.portOf("cache"), ""), "live\n");
  await using browser = await launchChromium();
  const page = browser.page;
  await page.goto(`http://127.0.0.1:${lb.addrs.admin!.port}/`);
  type Row = { id: string; healthy: string; text: string };
  let rows: Row[] = [];
  for (let i = 0; i < 100 && rows.length < 2; i++) {
    rows = await page.evaluate<Row[]>(
      `[...document.querySelectorAll('tr[data-tcp-backend][data-route="cache"]')].map((tr) => ({
        id: tr.dataset.tcpBackend, healthy: tr.dataset.healthy, text: tr.textContent }))`,
    );
    if (rows.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  assertEquals(rows.map((r) => [r.id, r.healthy]), [
    [`127.0.0.1:${live.port}`, "true"],
    [`127.0.0.1:${dead}`, "false"],
  ]);
  assertStringIncludes(rows[0]!.text, "up");
  assertStringIncludes(rows[1]!.text, "down");
  const route = await page.evaluate<string>(
    `document.querySelector('tr[data-tcp-route="cache"]').textContent`,
  );
  assertStringIncludes(route, "closed 3");
  assertEquals(page.errors, [], "no script errors in the page");
});

Deno.test("tcp route: a connect that times out (a backend whose accept queue is full) is retried on another and charged", async () => {
  // python3 listening with a backlog of 0: once one connection waits unaccepted, the
  // kernel drops further SYNs, so a connect there hangs until its timeout
  const stalled = new Deno.Command("python3", {
    args: [
      "-c",
      "import socket, sys\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(0)\n" +
      "print(s.getsockname()[1], flush=True)\nsys.stdin.read()",
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = stalled.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value!.trim());
  const filler = await Deno.connect({ hostname: "127.0.0.1", port }); // fills the queue
  try {
    await using live = namedTcpBackend("live");
    await using lb = await startTcp(`
health: { failures: 1, backoff: 1h }
tcp:
  - name: app
    listen: 127.0.0.1:0
    scheduler: round_robin
    timeouts: { connect: 300ms }
    backends: [{ address: 127.0.0.1:${port} }, { address: 127.0.0.1:${live.port} }]
`);
    for (let i = 0; i < 2; i++) assertEquals(await nc(lb.portOf("app"), ""), "live\n");
    const stuck = lb.tcpRoutes[0]!.scheduler.backends.find((b) => b.port === port)!;
    assertEquals(stuck.healthy, false);
    assert(
      lb.logger.lines.some((l) =>
        l.startsWith(`warn backend 127.0.0.1:${port} ejected:`) && l.includes("timed out")
      ),
      lb.logger.lines.join("\n"),
    );
  } finally {
    filler.close();
    await stalled.stdin.close();
    await stalled.status;
    await reader.cancel();
  }
});
