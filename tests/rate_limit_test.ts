/**
 * `rate_limit` end to end: what the client gets (429, Retry-After, RateLimit
 * fields, gRPC RESOURCE_EXHAUSTED) and what reaches the backend, over HTTP/1.1
 * (raw sockets), HTTP/2 (curl) and gRPC (grpcio); the local buckets' bound; and
 * a Redis store (Debian redis-server, started here) shared by three balancer
 * processes, failing open (or closed) when Redis dies or stalls.
 */
import { configErrors } from "./_config_errors.ts";
import { redisCli, startRedis } from "./_redis.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import {
  freePort,
  RawClient,
  recordingBackend,
  startBalancer,
  startLoggedBalancer,
  until,
} from "./_http.ts";
import { runCli, startLbProcess } from "./_process.ts";
import { runGrpcio, startGrpcioServer } from "./_grpcio.ts";
import { parseConfig } from "../src/config/config.ts";

async function curl(args: string[]): Promise<string> {
  const r = await new Deno.Command("curl", { args: ["-sS", "--max-time", "20", ...args] })
    .output();
  return new TextDecoder().decode(r.stdout);
}

const localRoutes = (port: number) => `
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: login
    path: /login
    backends: [{ address: 127.0.0.1:${port} }]
    rate_limit: { rate: 1/h, burst: 3 }
  - name: api
    path: /api/
    backends: [{ address: 127.0.0.1:${port} }]
    rate_limit: { rate: 1/h, burst: 2, key: "header:X-User" }
  - name: session
    path: /s/
    backends: [{ address: 127.0.0.1:${port} }]
    rate_limit: { rate: 1/h, burst: 1, key: "cookie:sid", max_keys: 10 }
  - name: plain
    backends: [{ address: 127.0.0.1:${port} }]
`;

Deno.test("rate_limit: past the burst a client gets 429 with Retry-After and RateLimit fields; only the burst reaches the backend (HTTP/1.1)", async () => {
  await using backend = recordingBackend();
  await using lb = await startBalancer(localRoutes(backend.port));
  using c = await RawClient.connect(lb.port);
  const statuses: number[] = [];
  let refused;
  for (let i = 0; i < 5; i++) {
    const res = await c.get("/login");
    statuses.push(res.status);
    if (res.status === 429) refused = res;
  }
  assertEquals(statuses, [200, 200, 200, 429, 429]);
  assert(refused !== undefined);
  const retry = Number(refused.headers.get("retry-after"));
  assert(retry > 3000 && retry <= 3600, `Retry-After ${retry}`);
  assertEquals(refused.headers.get("ratelimit-policy"), '"default";q=3;w=10800');
  assertEquals(refused.headers.get("ratelimit"), `"default";r=0;t=${retry}`);
  assertStringIncludes(refused.body, "429 Too Many Requests: rate limit 1/h (burst 3)");
  assertEquals(backend.heads.length, 3, "the refused requests never reached the backend");
  // a route without rate_limit is not counted
  for (let i = 0; i < 5; i++) assertEquals((await c.get("/other")).status, 200);
});

Deno.test("rate_limit: key header:X-User gives each user a bucket, over HTTP/2 (curl); a request without the header counts by address", async () => {
  await using backend = recordingBackend();
  await using lb = await startBalancer(localRoutes(backend.port));
  const code = (user?: string) =>
    curl([
      "--http2-prior-knowledge",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      ...(user ? ["-H", `X-User: ${user}`] : []),
      `http://127.0.0.1:${lb.port}/api/x`,
    ]);
  const ann = [await code("ann"), await code("ann"), await code("ann")];
  assertEquals(ann, ["200", "200", "429"]);
  assertEquals([await code("bob"), await code("bob"), await code("bob")], ["200", "200", "429"]);
  assertEquals([await code(), await code(), await code()], ["200", "200", "429"]);
  assertEquals(backend.heads.length, 6);
  const head = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-o",
    "/dev/null",
    "-H",
    "X-User: ann",
    `http://127.0.0.1:${lb.port}/api/x`,
  ]);
  assertMatch(head, /^HTTP\/2 429/);
  assertMatch(head, /\nretry-after: \d+\r/);
  assertStringIncludes(head, 'ratelimit-policy: "default";q=2;w=7200');
});

Deno.test("rate_limit: a gRPC client past the limit gets RESOURCE_EXHAUSTED (grpcio)", async () => {
  await using server = await startGrpcioServer();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${server.port} }]
    rate_limit: { rate: 1/h, burst: 2 }
`);
  const s = await runGrpcio({ port: lb.port, mode: "unary", calls: 5 });
  assertEquals(s.codes, { OK: 2, RESOURCE_EXHAUSTED: 3 });
  assertStringIncludes(s.details.RESOURCE_EXHAUSTED ?? "", "429 Too Many Requests");
  assertEquals((await server.stats()).Unary, 2);
});

Deno.test("rate_limit: local buckets stay under max_keys: a flood of new keys evicts the least recently used", async () => {
  await using backend = recordingBackend();
  await using lb = await startBalancer(localRoutes(backend.port));
  using c = await RawClient.connect(lb.port);
  const get = (sid: string) =>
    c.request(`GET /s/ HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; sid=${sid}\r\n\r\n`);
  assertEquals((await get("ann")).status, 200);
  assertEquals((await get("ann")).status, 429);
  // nine more keys: ann's bucket is still among the 10 kept
  for (let i = 0; i < 9; i++) assertEquals((await get(`k${i}`)).status, 200);
  assertEquals((await get("ann")).status, 429);
  // a flood of 50 new keys: only 10 buckets are kept, ann's (least recently used) is gone
  for (let i = 0; i < 50; i++) assertEquals((await get(`flood${i}`)).status, 200);
  assertEquals((await get("ann")).status, 200, "ann's bucket was evicted, so it starts full");
});

Deno.test("rate_limit: store redis:// shares one budget across three balancer processes (Debian redis-server): burst in all, not three times it", async () => {
  await using redis = await startRedis();
  await using backend = recordingBackend();
  const yaml = `
listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:$ADMIN }
routes:
  - name: api
    backends: [{ address: 127.0.0.1:${backend.port} }]
    rate_limit: { rate: 1/h, burst: 5, store: "redis://127.0.0.1:${redis.port}", timeout: 2s }
`;
  await using a = await startLbProcess(yaml);
  await using b = await startLbProcess(yaml);
  await using c = await startLbProcess(yaml);
  const statuses: number[] = [];
  for (let round = 0; round < 4; round++) {
    for (const lb of [a, b, c]) {
      using client = await RawClient.connect(lb.port);
      statuses.push((await client.get("/x")).status);
    }
  }
  assertEquals(statuses.filter((s) => s === 200).length, 5, statuses.join(" "));
  assertEquals(statuses.filter((s) => s === 429).length, 7, statuses.join(" "));
  assertEquals(backend.heads.length, 5, "the fleet let 5 through in all");
  // one round trip per decision: an EVALSHA each, and the script loaded once per connection
  const stats = await redisCli(redis.port, "INFO", "commandstats");
  assertMatch(stats, /cmdstat_evalsha:calls=12,/);
  assertMatch(stats, /cmdstat_script\|load:calls=3,|cmdstat_script:calls=3,/);
  assert(!/cmdstat_eval:/.test(stats), "the script was never sent again");
  // the bucket's key expires once it would be full again (5 tokens at 1/h: 5 h, plus a second)
  const ttl = Number(await redisCli(redis.port, "PTTL", "unload:rl:api:client_ip 127.0.0.1"));
  assert(ttl > 4 * 3600_000 && ttl <= 5 * 3600_000 + 1000, `PTTL ${ttl}`);

  // Redis dies: each instance fails open (on_store_error: allow) with a log line and a count
  await redis.kill();
  for (const lb of [a, b, c]) {
    using client = await RawClient.connect(lb.port);
    assertEquals((await client.get("/x")).status, 200);
  }
  assertEquals(backend.heads.length, 8);
  for (const lb of [a, b, c]) {
    await until("the store failure is logged", () =>
      lb.stderrSoFar().includes(
        `route api: rate_limit store redis://127.0.0.1:${redis.port} failed`,
      ));
    assertStringIncludes(lb.stderrSoFar(), "requests pass unlimited (on_store_error: allow)");
    const metrics = await (await fetch(`http://127.0.0.1:${lb.adminPort}/metrics`)).text();
    assertMatch(
      metrics,
      /unload_rate_limit_store_errors_total\{route="api",outcome="allow"\} [1-9]/,
    );
  }
});

Deno.test("rate_limit: a stalled Redis (SIGSTOP) costs a request the timeout, then it passes; on_store_error: deny answers 503 instead", async () => {
  await using redis = await startRedis();
  await using backend = recordingBackend();
  const route = (name: string, onError: string) => `
  - name: ${name}
    path: /${name}
    backends: [{ address: 127.0.0.1:${backend.port} }]
    rate_limit: { rate: 1/h, burst: 100, store: "redis://127.0.0.1:${redis.port}", timeout: 1s, on_store_error: ${onError} }`;
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes:${route("open", "allow")}${route("closed", "deny")}
`);
  using c = await RawClient.connect(lb.port);
  assertEquals((await c.get("/open")).status, 200);
  assertEquals((await c.get("/closed")).status, 200);
  Deno.kill(redis.pid, "SIGSTOP");
  try {
    assertEquals((await c.get("/open")).status, 200);
    const denied = await c.get("/closed");
    assertEquals(denied.status, 503);
    assertEquals(denied.headers.get("retry-after"), "1");
  } finally {
    Deno.kill(redis.pid, "SIGCONT");
  }
  assert(
    lb.lines.some((l) =>
      l.startsWith("warn route open: rate_limit store") && l.includes("no reply")
    ),
    lb.lines.join("\n"),
  );
  assert(lb.lines.some((l) => l.includes("requests get 503 (on_store_error: deny)")));
  const metrics = await (await fetch(`http://127.0.0.1:${lb.addrs.admin!.port}/metrics`)).text();
  assertStringIncludes(
    metrics,
    'unload_rate_limit_store_errors_total{route="open",outcome="allow"} 1',
  );
  assertStringIncludes(
    metrics,
    'unload_rate_limit_store_errors_total{route="closed",outcome="deny"} 1',
  );
  // Redis answers again: decisions come from it once more
  await until("redis answers again", async () => {
    assertEquals((await c.get("/open")).status, 200);
    return lb.lines.some((l) =>
      l.includes("route open: rate_limit store") && l.includes("answers again")
    );
  });
});

Deno.test("rate_limit: a reload keeps a Redis budget (the keys are in Redis) and closes the old connection", async () => {
  await using redis = await startRedis();
  await using backend = recordingBackend();
  const yaml = (burst: number) => `
listen: { http: 127.0.0.1:0 }
routes:
  - name: api
    backends: [{ address: 127.0.0.1:${backend.port} }]
    rate_limit: { rate: 1/h, burst: ${burst}, store: "redis://127.0.0.1:${redis.port}", timeout: 2s }
`;
  await using lb = await startLoggedBalancer(yaml(3));
  using c = await RawClient.connect(lb.port);
  assertEquals([(await c.get("/")).status, (await c.get("/")).status], [200, 200]);
  const clients = async () => {
    const out = await new Deno.Command("redis-cli", {
      args: ["-p", String(redis.port), "CLIENT", "LIST"],
    }).output();
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.includes("cmd="))
      .length;
  };
  assertEquals(await clients(), 2, "the balancer's connection and redis-cli's");
  assert((await lb.reload(parseConfig(yaml(3), "test.yaml"))).ok);
  // the same bucket: one token left of 3, though the route was built anew
  assertEquals([(await c.get("/")).status, (await c.get("/")).status], [200, 429]);
  assertEquals(backend.heads.length, 3);
  await until("the old connection is closed", async () => await clients() === 2);
  assert(!lb.lines.some((l) => l.startsWith("warn")), lb.lines.join("\n"));
});

Deno.test("rate_limit: a Redis that is not there at all fails open with one log line per outage", async () => {
  await using backend = recordingBackend();
  const port = freePort();
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: api
    backends: [{ address: 127.0.0.1:${backend.port} }]
    rate_limit: { rate: 1/h, burst: 1, store: "redis://127.0.0.1:${port}", timeout: 5s }
`);
  using c = await RawClient.connect(lb.port);
  for (let i = 0; i < 5; i++) assertEquals((await c.get("/")).status, 200);
  assertEquals(backend.heads.length, 5);
  const warned = lb.lines.filter((l) => l.includes("rate_limit store"));
  assertEquals(warned.length, 1, warned.join("\n"));
  assertStringIncludes(warned[0]!, `cannot connect to redis 127.0.0.1:${port}`);
});

Deno.test("rate_limit: `main.ts explain` shows the bucket and how full it is, and for Redis that it would ask the store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-explain-rl-" });
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      file,
      `listen: { http: 127.0.0.1:0 }
routes:
  - name: api
    path: /api/
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { rate: 100/s, burst: 200, key: "header:X-User" }
    rewrite: { strip_prefix: /api }
  - name: fleet
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { rate: 10/m, store: "redis://127.0.0.1:1" }
`,
    );
    const local = await runCli([
      "explain",
      "--config",
      file,
      "-H",
      "X-User: ann",
      "GET",
      "http://a.test/api/x",
    ]);
    assertEquals(local.code, 0, local.stderr);
    const steps = local.stdout.split("\n").map((l) => l.trim());
    const rl = steps.findIndex((l) => l.startsWith("rate_limit:"));
    assertEquals(
      steps[rl],
      "rate_limit: bucket header:x-user ann: 200 of 200 tokens (100/s; explain's own buckets start full, the running balancer's are its own): passes",
    );
    assert(steps[rl + 1]!.startsWith("rewrite:"), "rate_limit runs before rewrite");
    const fleet = await runCli([
      "explain",
      "--config",
      file,
      "--client",
      "10.0.0.7",
      "GET",
      "http://a.test/",
    ]);
    assertStringIncludes(
      fleet.stdout,
      "rate_limit: bucket client_ip 10.0.0.7 is kept in redis://127.0.0.1:1 (10/m, burst 10, shared by every instance): the balancer would ask it (explain does not)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rate_limit: config mistakes are file:line errors", () => {
  const yaml = `listen: { http: 127.0.0.1:0 }
routes:
  - name: a
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { rate: 10/d }
  - name: b
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { rate: 1/s, key: "query:x", store: "memcached://x:1", burst: 0 }
  - name: c
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { rate: 1/s, on_store_error: deny, per: 1 }
  - name: d
    backends: [{ address: 127.0.0.1:9 }]
    rate_limit: { burst: 5 }
`;
  const { has } = configErrors(yaml);
  has(
    "unload.yaml:5: routes[0].rate_limit.rate:",
    'must be N/s, N/m or N/h with N > 0 (e.g. 100/s): received "10/d"',
  );
  has("unload.yaml:8: routes[1].rate_limit.key:", "must be client_ip, header:NAME or cookie:NAME");
  has("unload.yaml:8: routes[1].rate_limit.store:", "must be local or redis://host:port");
  has("unload.yaml:8: routes[1].rate_limit.burst:", "must be an integer 1..");
  has("unload.yaml:11: routes[2].rate_limit.on_store_error:", "only applies with store: redis://");
  has("unload.yaml:11: routes[2].rate_limit.per:", "unknown key");
  has("unload.yaml:14: routes[3].rate_limit:", "needs rate");
});
