/**
 * The admin listener: `/metrics` (checked by `promtool`), `/status`, the dashboard
 * page, 404/405, and `POST /reload`.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { Metrics } from "../src/admin/metrics.ts";
import { expectedShares } from "../src/scheduler/create.ts";
import type { Status } from "../src/admin/status.ts";
import { TextFormat } from "../src/admin/_text_format.ts";
import { createBackend } from "../src/upstream/backend.ts";
import { Balancer } from "../src/server/balancer.ts";
import { loadConfig } from "../src/config/config.ts";
import { startDnsServer } from "../src/cli/demo/dns_server.ts";
import type { ExchangeRecord } from "../src/proxy/context.ts";
import { createLogger } from "../src/observe/log.ts";
import { delay, keepAliveBackend, RawClient } from "./_http.ts";

const CI = Deno.env.get("CI") === "true";
const SRV = "_http._tcp.app.test";
const SEED = [["b1", 0, 30], ["b2", 0, 20], ["b3", 10, 40]] as const;

function findPromtool(): string | undefined {
  const override = Deno.env.get("PROMTOOL");
  const path = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/promtool`);
  for (const candidate of override ? [override] : ["/usr/bin/promtool", ...path]) {
    try {
      if (Deno.statSync(candidate).isFile) return candidate;
    } catch { /* next */ }
  }
  return undefined;
}

/** Backends b1..b3 behind the demo DNS server, a static route, and admin; config in a file. */
async function setup() {
  const backends = SEED.map(([name]) => keepAliveBackend(name));
  const other = keepAliveBackend("other");
  const dnsStop = new AbortController();
  const dns = await startDnsServer({
    records: {
      srv: SEED.map(([name, priority, weight], i) => ({
        name: SRV,
        target: `${name}.unload.test`,
        port: backends[i]!.port,
        priority,
        weight,
      })),
      a: SEED.map(([name]) => ({ name: `${name}.unload.test`, address: "127.0.0.1" })),
    },
    signal: dnsStop.signal,
  });
  const dir = await Deno.makeTempDir({ prefix: "unload-admin-" });
  const file = `${dir}/unload.yaml`;
  const yaml = (extra = "") => `
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 300ms }
routes:
  - { name: app, host: app.test, srv: ${SRV} }
  - { name: other, host: other.test, path: /api, backends: [{ address: 127.0.0.1:${other.port} }] }
${extra}`;
  await Deno.writeTextFile(file, yaml());
  const lb = await Balancer.start(await loadConfig(file), {
    logger: createLogger({ access: "off", quiet: true }),
  });
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  const client = await RawClient.connect(lb.addrs.http!.port);
  const get = async (host: string, path = "/") =>
    await client.request(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  return {
    lb,
    dns,
    dnsStop,
    file,
    yaml,
    admin,
    backends,
    get,
    status: async () => await (await fetch(`${admin}/status`)).json() as Status,
    metrics: async () => await (await fetch(`${admin}/metrics`)).text(),
    async close() {
      client.close();
      await lb.close();
      dnsStop.abort();
      await dns.closed;
      await Promise.all([...backends, other].map((b) => b.close()));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** 9 requests to app (b1 b2 b1 b2 b1 b3 b3 b3 b3), 2 to other, 1 without a route. */
async function traffic(t: Awaited<ReturnType<typeof setup>>) {
  for (let i = 0; i < 9; i++) assertEquals((await t.get("app.test")).status, 200);
  for (let i = 0; i < 2; i++) assertEquals((await t.get("other.test", "/api/x")).status, 200);
  assertEquals((await t.get("nowhere.test")).status, 404);
}

Deno.test({
  name: "admin /metrics passes promtool check metrics and counts by route, backend and status",
  // without promtool the test is skipped locally, and fails under CI=true
  ignore: !CI && findPromtool() === undefined,
  async fn() {
    const promtool = findPromtool();
    assert(promtool, "promtool is required in CI: apt-get install -y prometheus");
    const t = await setup();
    try {
      await traffic(t);
      const res = await fetch(`${t.admin}/metrics`);
      assertEquals(res.status, 200);
      assertMatch(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      const check = new Deno.Command(promtool, {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = check.stdin.getWriter();
      await w.write(new TextEncoder().encode(text));
      await w.close();
      const out = await check.output();
      const dec = new TextDecoder();
      assertEquals(out.code, 0, `${dec.decode(out.stdout)}${dec.decode(out.stderr)}\n${text}`);

      const [p1, p2, p3] = t.backends.map((b) => `127.0.0.1:${b.port}`);
      for (const [port, n] of [[p1, 3], [p2, 2], [p3, 4]] as const) {
        assertStringIncludes(
          text,
          `unload_requests_total{route="app",backend="${port}",code="2xx"} ${n}\n`,
        );
      }
      assertStringIncludes(text, `unload_requests_total{route="",backend="",code="4xx"} 1\n`);
      assertStringIncludes(text, `unload_request_duration_seconds_count{route="app"} 9\n`);
      assertStringIncludes(
        text,
        `unload_request_duration_seconds_bucket{route="other",le="+Inf"} 2\n`,
      );
      assertStringIncludes(text, `unload_backend_up{backend="${p1}",name="b1.unload.test"} 1\n`);
      assertStringIncludes(text, `unload_backend_weight{route="app",backend="${p3}"} 40\n`);
      assertStringIncludes(text, `unload_pool_connections{backend="${p1}",state="idle"} 1\n`);
      assertStringIncludes(text, `unload_pool_connections{backend="${p1}",state="active"} 0\n`);
      assertStringIncludes(text, `unload_srv_stale{route="app",name="${SRV}"} 0\n`);
      assertMatch(text, /unload_srv_last_success_age_seconds\{route="app",name="[^"]+"\} [\d.]+\n/);
      assertStringIncludes(text, `unload_config_reloads_total{result="failed"} 0\n`);
      assertStringIncludes(text, "# TYPE unload_internal_errors_total counter\n");
      assertStringIncludes(text, "\nunload_internal_errors_total 0\n");
    } finally {
      await t.close();
    }
  },
});

Deno.test("admin /status reports routes, backends, shares, pools, SRV freshness after traffic", async () => {
  const t = await setup();
  try {
    await traffic(t);
    const res = await fetch(`${t.admin}/status`);
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("cache-control"), "no-store");
    const s = await res.json() as Status;
    assertEquals(s.requests, 12);
    assert(s.uptime >= 0 && s.now >= s.started);
    assertEquals(s.reloads, { ok: 0, failed: 0, last: null });
    assertEquals(s.exhausted, {});
    assertEquals(s.internalErrors, 0);
    assertEquals(s.workers, 1);
    assertEquals(s.routes.map((r) => [r.name, r.host, r.path, r.scheduler, r.requests]), [
      ["app", "app.test", "/", "srv", 9],
      ["other", "other.test", "/api", "srv", 2],
    ]);
    const app = s.routes[0]!;
    assertEquals(app.srv?.name, SRV);
    assertEquals(app.srv?.stale, false);
    assertEquals(app.srv?.lastError, null);
    assert(typeof app.srv?.lastSuccess === "number" && app.srv.lastSuccess <= s.now);
    assertEquals(app.status, { "2xx": 9 });
    assertEquals(app.latency.counts.at(-1), 9);
    assertEquals(
      app.backends.map((b) => [b.name, b.priority, b.weight, b.healthy, b.inflight, b.requests]),
      [
        ["b1.unload.test", 0, 30, true, 0, 3],
        ["b2.unload.test", 0, 20, true, 0, 2],
        ["b3.unload.test", 10, 40, true, 0, 4],
      ],
    );
    assertEquals(app.backends.map((b) => Math.round(b.share * 900)), [300, 200, 400]);
    for (const b of app.backends) {
      assertEquals(b.id, `127.0.0.1:${t.backends[app.backends.indexOf(b)]!.port}`);
      assertEquals(b.pool.active, 0);
      assertEquals(b.pool.idle, 1, JSON.stringify(b.pool)); // one client, keep-alive: reused
      assertEquals(b.pool.opened, 1);
      assertEquals(b.status, { "2xx": b.requests });
    }
    assertEquals(s.routes[1]!.srv, null);
  } finally {
    await t.close();
  }
});

Deno.test("admin /status and /metrics report an SRV name as stale once its DNS server is gone", async () => {
  const t = await setup();
  try {
    t.dnsStop.abort();
    await t.dns.closed;
    let s: Status;
    for (let i = 0;; i++) {
      s = await t.status();
      if (s.routes[0]!.srv!.stale) break;
      assert(i < 50, "never went stale");
      await delay(100);
    }
    const srv = s.routes[0]!.srv!;
    assert(srv.failures >= 1 && srv.lookups > srv.failures);
    assertMatch(srv.lastError!, /SRV lookup _http\._tcp\.app\.test failed/);
    assertEquals((await t.get("app.test")).status, 200, "the last good set keeps serving");
    const text = await t.metrics();
    assertStringIncludes(text, `unload_srv_stale{route="app",name="${SRV}"} 1\n`);
    assertMatch(text, /unload_srv_lookup_failures_total\{route="app",name="[^"]+"\} [1-9]/);
  } finally {
    await t.close();
  }
});

Deno.test("admin answers 404 for unknown paths and 405 for wrong methods", async () => {
  const t = await setup();
  try {
    for (const path of ["/nope", "/metrics/x", "/status.json", "/demo/backends/b1/stop"]) {
      const res = await fetch(`${t.admin}${path}`, {
        method: path.startsWith("/demo") ? "POST" : "GET",
      });
      assertEquals(res.status, 404, path);
      assertEquals(await res.text(), "not found\n");
    }
    const post = await fetch(`${t.admin}/metrics`, { method: "POST" });
    assertEquals(post.status, 405);
    assertEquals(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    const get = await fetch(`${t.admin}/reload`);
    assertEquals(get.status, 405);
    assertEquals(get.headers.get("allow"), "POST");
    await get.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("admin GET / serves the dashboard as one self-contained page", async () => {
  const t = await setup();
  try {
    const res = await fetch(`${t.admin}/`);
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
    const html = await res.text();
    assertStringIncludes(html, "<title>unload dashboard</title>");
    assertStringIncludes(html, 'fetch("status"');
    assert(!/\b(src|href)="?(https?:)?\/\//i.test(html), "no external resources");
    assert(!/<script[^>]+src=/i.test(html) && !/<link[^>]+stylesheet/i.test(html));
  } finally {
    await t.close();
  }
});

Deno.test("admin POST /reload: a broken config answers 400 and the old routes keep serving", async () => {
  const t = await setup();
  try {
    await Deno.writeTextFile(t.file, t.yaml("routes_typo: 1\n"));
    const bad = await fetch(`${t.admin}/reload`, { method: "POST" });
    assertEquals(bad.status, 400);
    const body = await bad.json();
    assertEquals(body.ok, false);
    assertStringIncludes(body.error, "routes_typo");
    assertEquals((await t.get("app.test")).status, 200);
    assertEquals((await t.get("other.test", "/api")).status, 200);
    const s = await t.status();
    assertEquals([s.reloads.ok, s.reloads.failed, s.reloads.last?.ok], [0, 1, false]);
    assertStringIncludes(s.reloads.last!.error!, "routes_typo");
    assertStringIncludes(await t.metrics(), `unload_config_reloads_total{result="failed"} 1\n`);

    // a good config is applied, and the counters say so
    await Deno.writeTextFile(t.file, t.yaml().replace("path: /api", "path: /v2"));
    const good = await fetch(`${t.admin}/reload`, { method: "POST" });
    assertEquals([good.status, await good.json()], [200, { ok: true }]);
    assertEquals((await t.get("other.test", "/v2/x")).status, 200);
    assertEquals((await t.get("other.test", "/api")).status, 404);
    const after = await t.status();
    assertEquals([after.reloads.ok, after.reloads.failed, after.reloads.last?.ok], [1, 1, true]);
    assertEquals(after.routes[1]!.path, "/v2");
    assertStringIncludes(await t.metrics(), `unload_config_last_reload_successful 1\n`);
  } finally {
    await t.close();
  }
});

function record(over: Partial<ExchangeRecord>): ExchangeRecord {
  return {
    time: 0,
    client: "127.0.0.1",
    proto: "http/1.1",
    method: "GET",
    host: "app.test",
    path: "/",
    status: 200,
    bytesIn: 0,
    bytesOut: 100,
    duration: 1,
    route: "app",
    backend: "b",
    ...over,
  };
}

Deno.test("metrics histogram: a duration on a bucket bound counts in that bucket (le)", () => {
  const m = new Metrics();
  for (const duration of [0.5, 0.6, 1, 10_000, 20_000]) m.observe(record({ duration }));
  const s = m.route("app")!;
  assertEquals([...s.buckets.slice(0, 3)], [1, 2, 0]);
  assertEquals([s.buckets.at(-2), s.buckets.at(-1)], [1, 1]); // le=10 and +Inf
  assertEquals(s.count, 5);
  assertEquals(Math.round(s.sum * 1000), 30_002);
});

Deno.test("metrics count status classes, and exchanges that ended with no status as none", () => {
  const m = new Metrics();
  for (const status of [200, 204, 301, 404, 502, 503, 0, 999]) m.observe(record({ status }));
  assertEquals([...m.route("app")!.codes("b")], [2, 0, 2, 1, 1, 2]);
  assertEquals(m.requests, 8);
});

Deno.test("metrics: internal errors counted in workers add up in the combined snapshot", () => {
  const worker = new Metrics();
  worker.internalErrors = 2;
  const main = new Metrics();
  main.internalErrors = 1;
  main.add(worker.snapshot());
  assertEquals(main.internalErrors, 3);
});

Deno.test("prometheus text format escapes label values", () => {
  const out = new TextFormat();
  out.family("x_total", "counter", "Help with a \\ backslash.");
  out.sample("x_total", { a: 'q"uote', b: "back\\slash", c: "new\nline" }, 1.5);
  assertEquals(
    out.toString(),
    '# HELP x_total Help with a \\\\ backslash.\n# TYPE x_total counter\nx_total{a="q\\"uote",b="back\\\\slash",c="new\\nline"} 1.5\n',
  );
});

Deno.test("status expected shares follow the scheduler mode", () => {
  const bs = ([[0, 30], [0, 20], [10, 40]] as const).map(([priority, weight], i) =>
    createBackend({ hostname: "127.0.0.1", port: 9001 + i, priority, weight })
  );
  const round = (xs: number[]) => xs.map((x) => Math.round(x * 1000) / 1000);
  assertEquals(round(expectedShares("srv", bs)), [0.333, 0.222, 0.444]);
  assertEquals(round(expectedShares("rfc2782", bs)), [0.6, 0.4, 0]);
  assertEquals(round(expectedShares("round_robin", bs)), [0.333, 0.333, 0.333]);
  assertEquals(expectedShares("srv", []), []);
  // a group whose weights are all 0 counts each member as 1, as the schedulers do
  const zeros = ([[0, 0], [0, 0], [10, 40]] as const).map(([priority, weight], i) =>
    createBackend({ hostname: "127.0.0.1", port: 9001 + i, priority, weight })
  );
  assertEquals(expectedShares("srv", zeros), [1 / 42, 1 / 42, 40 / 42]);
});
