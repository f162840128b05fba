/**
 * Traffic policy per route (allow/deny, redirect, rewrite, headers), end to end:
 * what the client gets and what the backend gets, over HTTP/1.1 (raw sockets),
 * HTTP/2 (curl) and gRPC (grpcio).
 */
import { configErrors } from "./_config_errors.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { captureLogger, RawClient, recordingBackend, startBalancer } from "./_http.ts";
import { runGrpcio } from "./_grpcio.ts";
import { runCli } from "./_process.ts";
import { startH2Echo } from "./_h2_echo.ts";
import { startDnsmasq } from "./_dnsmasq.ts";
import { createLogger } from "../src/observe/log.ts";
import type { Status } from "../src/admin/status.ts";

function lines(head: string): string[] {
  return head.split("\r\n");
}

async function curl(args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("curl", { args: ["-sS", "--max-time", "20", ...args] })
    .output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout) };
}

const routes = (port: number) => `
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: api
    host: app.test
    path: /api/
    backends: [{ address: 127.0.0.1:${port} }]
    rewrite: { strip_prefix: /api }
    headers:
      request: { set: { X-Env: prod }, add: { X-Tag: a }, remove: [X-Debug] }
      response: { set: { Strict-Transport-Security: "max-age=63072000" }, remove: [X-Powered-By] }
  - name: v1
    host: app.test
    path: /v1/
    backends: [{ address: 127.0.0.1:${port} }]
    rewrite: { regex: "^/v1/(.*)$", replace: "/v2/$1" }
  - name: pre
    host: app.test
    path: /pre/
    backends: [{ address: 127.0.0.1:${port} }]
    rewrite: { prefix: /base }
  - name: office
    host: app.test
    path: /admin
    backends: [{ address: 127.0.0.1:${port} }]
    allow: [10.0.0.0/8, "2001:db8::/32"]
  - name: open-but-local-denied
    host: app.test
    path: /blocked
    backends: [{ address: 127.0.0.1:${port} }]
    allow: [127.0.0.0/8]
    deny: [127.0.0.1/32]
  - name: local
    host: app.test
    path: /local
    backends: [{ address: 127.0.0.1:${port} }]
    allow: ["::1", 127.0.0.0/8]
  - name: old
    host: old.test
    redirect: { to: "https://new.test{uri}", code: 308 }
  - name: plain
    host: app.test
    backends: [{ address: 127.0.0.1:${port} }]
`;

/** The policy tests' backend answer: the target in the body, an X-Powered-By to remove. */
function policyAnswer(head: string): string {
  const body = `ok ${head.split(" ")[1]}\n`;
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nX-Powered-By: php\r\n` +
    `x-keep: 1\r\n\r\n${body}`;
}

Deno.test("policy: strip_prefix, request and response headers reach the backend and the client over HTTP/1.1", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(routes(backend.port));
  using c = await RawClient.connect(lb.port);
  const res = await c.request(
    "GET /api/users?id=7 HTTP/1.1\r\nHost: app.test\r\nX-Debug: 1\r\nX-Env: dev\r\nX-Tag: z\r\n\r\n",
  );
  assertEquals(res.status, 200);
  assertEquals(res.body, "ok /users?id=7\n");
  assertEquals(res.headers.get("strict-transport-security"), "max-age=63072000");
  assertEquals(res.headers.get("x-powered-by"), undefined);
  assertEquals(res.headers.get("x-keep"), "1");
  const got = lines(backend.heads[0]!);
  assertEquals(got[0], "GET /users?id=7 HTTP/1.1");
  assert(got.includes("X-Forwarded-Prefix: /api"), got.join("\n"));
  assert(got.includes("X-Env: prod"), got.join("\n"));
  assert(!got.some((l) => /^x-env: dev/i.test(l)), got.join("\n"));
  assert(got.includes("X-Tag: z") && got.includes("X-Tag: a"), got.join("\n"));
  assert(!got.some((l) => /^x-debug/i.test(l)), got.join("\n"));
  assert(got.includes("Host: app.test"), got.join("\n"));
  assert(got.some((l) => l.startsWith("x-forwarded-for: 127.0.0.1")), got.join("\n"));
});

Deno.test("policy: a regex rewrite and a prefix rewrite keep the query; a route without policy is untouched", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(routes(backend.port));
  using c = await RawClient.connect(lb.port);
  assertEquals((await c.get("/v1/items/3?x=1")).body, "ok /v2/items/3?x=1\n");
  assertEquals((await c.get("/pre/a?b")).body, "ok /base/pre/a?b\n");
  const plain = await c.get("/other?q=1");
  assertEquals(plain.body, "ok /other?q=1\n");
  assertEquals(plain.headers.get("x-powered-by"), "php");
  assert(!backend.heads[2]!.includes("X-Forwarded-Prefix"));
});

Deno.test("policy: allow and deny answer 403 to the peer's address, deny wins; nothing reaches the backend", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(routes(backend.port));
  using c = await RawClient.connect(lb.port);
  const office = await c.get("/admin");
  assertEquals(office.status, 403);
  assertEquals(office.body, "403 Forbidden: access from 127.0.0.1 is not allowed\n");
  const denied = await c.get("/blocked");
  assertEquals(denied.status, 403);
  const local = await c.get("/local");
  assertEquals(local.status, 200);
  assertEquals(backend.heads.length, 1, "only the allowed request reached the backend");
});

Deno.test("policy: allow and deny match an IPv6 peer against v6 blocks", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(routes(backend.port).replace("127.0.0.1:0", '"[::1]:0"'));
  const code = async (path: string) =>
    (await curl([
      "-g",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      "Host: app.test",
      `http://[::1]:${lb.port}${path}`,
    ])).out;
  assertEquals(await code("/admin"), "403"); // ::1 is not in 10.0.0.0/8 or 2001:db8::/32
  assertEquals(await code("/local"), "200"); // ::1 is allowed there
  assertEquals(await code("/blocked"), "403"); // ::1 is in no allow block (127.0.0.0/8 is v4)
  assertEquals(backend.heads.length, 1);
});

Deno.test("policy: a redirect route answers with its code and Location from {uri}, without backends", async () => {
  await using lb = await startBalancer(routes(1));
  using c = await RawClient.connect(lb.port);
  const res = await c.request("GET /a/b?c=1 HTTP/1.1\r\nHost: old.test:8080\r\n\r\n");
  assertEquals(res.status, 308);
  assertEquals(res.headers.get("location"), "https://new.test/a/b?c=1");
  const head = await c.request("HEAD /x HTTP/1.1\r\nHost: old.test\r\n\r\n", "HEAD");
  assertEquals(head.status, 308);
  assertEquals(head.body, "");
});

Deno.test("policy: HTTP/2 clients get the same rewrite, headers, 403 and redirect (curl)", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(routes(backend.port));
  const base = `http://127.0.0.1:${lb.port}`;
  const ok = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "Host: app.test",
    "-H",
    "X-Debug: 1",
    `${base}/api/users?id=7`,
  ]);
  assertEquals(ok.code, 0);
  assertMatch(ok.out, /^HTTP\/2 200/);
  assertStringIncludes(ok.out, "strict-transport-security: max-age=63072000");
  assert(!/x-powered-by/i.test(ok.out), ok.out);
  assertStringIncludes(ok.out, "ok /users?id=7");
  const got = backend.heads[0]!;
  assertMatch(got, /^GET \/users\?id=7 HTTP\/1\.1/);
  assertStringIncludes(got, "X-Forwarded-Prefix: /api");
  assertStringIncludes(got, "X-Env: prod");
  assert(!/x-debug/i.test(got), got);
  const denied = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "Host: app.test",
    `${base}/admin`,
  ]);
  assertMatch(denied.out, /^HTTP\/2 403/);
  const moved = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "Host: old.test",
    `${base}/p?q`,
  ]);
  assertMatch(moved.out, /^HTTP\/2 308/);
  assertStringIncludes(moved.out, "location: https://new.test/p?q");
});

Deno.test("policy: a gRPC client refused by allow gets PERMISSION_DENIED (grpcio)", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    allow: [10.0.0.0/8]
`);
  const s = await runGrpcio({ port: lb.port, mode: "unary", calls: 1 });
  assertEquals(s.codes, { PERMISSION_DENIED: 1 });
  assertStringIncludes(s.details.PERMISSION_DENIED ?? "", "403 Forbidden");
  assertEquals(backend.heads.length, 0);
});

Deno.test("policy: the access log says which policy answered and what target the backend got", async () => {
  await using backend = recordingBackend(policyAnswer);
  const records: string[] = [];
  const base = createLogger({ access: "off", quiet: true });
  const logger = {
    ...captureLogger(),
    access: (r: Parameters<typeof base.access>[0]) => void records.push(JSON.stringify(r)),
  };
  await using lb = await startBalancer(routes(backend.port), { logger });
  using c = await RawClient.connect(lb.port);
  await c.get("/admin");
  await c.get("/api/x?y");
  await c.request("GET / HTTP/1.1\r\nHost: old.test\r\n\r\n");
  for (let i = 0; i < 100 && records.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  const [denied, rewritten, moved] = records.map((r) => JSON.parse(r));
  assertEquals([denied.policy, denied.status, denied.route], ["allow", 403, "office"]);
  assertEquals([rewritten.path, rewritten.target, rewritten.policy], [
    "/api/x?y",
    "/x?y",
    undefined,
  ]);
  assertEquals([moved.policy, moved.status], ["redirect", 308]);
});

Deno.test("policy: config mistakes are file:line errors (bad regex, bad CIDR, framing headers, redirect with backends, bad compress)", () => {
  const yaml = `listen: { http: 127.0.0.1:0 }
routes:
  - name: a
    backends: [{ address: 127.0.0.1:9 }]
    rewrite: { regex: "^/(unclosed", replace: /x }
  - name: b
    backends: [{ address: 127.0.0.1:9 }]
    allow: [10.0.0.0/33, not-an-ip]
  - name: c
    backends: [{ address: 127.0.0.1:9 }]
    headers: { request: { set: { Content-Length: "5" } }, response: { add: { Transfer-Encoding: chunked } } }
  - name: d
    backends: [{ address: 127.0.0.1:9 }]
    redirect: { to: "https://x{nope}", code: 200 }
  - name: e
    backends: [{ address: 127.0.0.1:9 }]
    compress: { types: [nope] }
`;
  const { has } = configErrors(yaml);
  has("unload.yaml:5: routes[0].rewrite.regex:", "invalid regular expression");
  has("unload.yaml:8: routes[1].allow[0]:", "prefix length");
  has("unload.yaml:8: routes[1].allow[1]:", "not an IP address");
  has("unload.yaml:11: routes[2].headers.request.set.Content-Length:", "cannot be changed");
  has("unload.yaml:11: routes[2].headers.response.add.Transfer-Encoding:", "cannot be changed");
  has("unload.yaml:14: routes[3].redirect", "a redirect route has no srv or backends");
  has("unload.yaml:14: routes[3].redirect.to:", "unknown placeholder {nope}");
  has("unload.yaml:14: routes[3].redirect.code:", "must be one of 301, 302, 303, 307, 308");
  has("unload.yaml:17: routes[4].compress.types[0]:", "must be a media type");
});

Deno.test("policy: /metrics counts policy answers by route, policy and code; /status lists each route's policies", async () => {
  await using backend = recordingBackend(policyAnswer);
  await using lb = await startBalancer(
    routes(backend.port).replace("routes:", "admin: { listen: 127.0.0.1:0 }\nroutes:"),
  );
  using c = await RawClient.connect(lb.port);
  await c.get("/admin");
  await c.get("/admin");
  await c.get("/blocked");
  await c.request("GET / HTTP/1.1\r\nHost: old.test\r\n\r\n");
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  let metrics = "";
  for (let i = 0; i < 100; i++) { // records are counted once each response is sent
    metrics = await (await fetch(`${admin}/metrics`)).text();
    if (metrics.includes('policy="redirect"')) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assertStringIncludes(
    metrics,
    'unload_policy_answers_total{route="office",policy="allow",code="403"} 2',
  );
  assertStringIncludes(
    metrics,
    'unload_policy_answers_total{route="open-but-local-denied",policy="deny",code="403"} 1',
  );
  assertStringIncludes(
    metrics,
    'unload_policy_answers_total{route="old",policy="redirect",code="308"} 1',
  );
  const status = await (await fetch(`${admin}/status`)).json() as Status;
  const api = status.routes.find((r) => r.name === "api")!;
  assertEquals(api.policies, [
    "rewrite: strip prefix /api",
    "headers: request remove x-debug, set X-Env: prod, add X-Tag: a; response remove x-powered-by, set Strict-Transport-Security: max-age=63072000",
  ]);
  const office = status.routes.find((r) => r.name === "office")!;
  assertEquals(office.policies, ["allow: allow only [10.0.0.0/8, 2001:db8::/32]"]);
  assertEquals(office.policyAnswers, { "allow 403": 2 });
  assertEquals(status.routes.find((r) => r.name === "plain")!.policies, []);
});

Deno.test("policy: `main.ts explain` prints the route, each step's decision, the backend's head and pick, and sends nothing", async () => {
  await using backend = recordingBackend(policyAnswer);
  const dir = await Deno.makeTempDir({ prefix: "unload-explain-" });
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(file, routes(backend.port));
    const allowed = await runCli([
      "explain",
      "--config",
      file,
      "--client",
      "10.1.2.3",
      "-H",
      "X-Debug: 1",
      "GET",
      "http://app.test/api/users?id=7",
    ]);
    assertEquals(allowed.code, 0, allowed.stderr);
    const out = allowed.stdout;
    assertStringIncludes(out, "route: api (host app.test, path /api/)");
    assertStringIncludes(
      out,
      "rewrite: /api/users → /users (strip prefix /api; X-Forwarded-Prefix: /api)",
    );
    assertStringIncludes(out, "headers: request remove x-debug, set X-Env: prod, add X-Tag: a");
    assertStringIncludes(
      out,
      "on the response to the client: headers: response remove x-powered-by",
    );
    assertStringIncludes(out, "  GET /users?id=7 HTTP/1.1\n  Host: app.test\n");
    assertStringIncludes(out, "  x-forwarded-for: 10.1.2.3\n");
    assert(!out.includes("X-Debug"), out);
    assertStringIncludes(
      out,
      `backend: 127.0.0.1:${backend.port} (scheduler srv over 1 backend static;`,
    );
    const denied = await runCli([
      "explain",
      "--config",
      file,
      "--client",
      "192.0.2.7",
      "GET",
      "http://app.test/admin",
    ]);
    assertStringIncludes(
      denied.stdout,
      "allow: client 192.0.2.7 is not in allow [10.0.0.0/8, 2001:db8::/32]: 403",
    );
    assertStringIncludes(denied.stdout, "answer: 403 Forbidden by allow");
    const moved = await runCli(["explain", "--config", file, "GET", "http://old.test/x?y=1"]);
    assertStringIncludes(
      moved.stdout,
      "answer: 308 Permanent Redirect by redirect: moved to https://new.test/x?y=1",
    );
    assertStringIncludes(moved.stdout, "location: https://new.test/x?y=1");
    const bad = await runCli(["explain", "--config", file, "GET"]);
    assertEquals(bad.code, 2);
    assertEquals(backend.accepted, 0, "explain sends nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy: an h2c backend gets the rewritten :path and edited fields; its response fields are edited too", async () => {
  await using echo = startH2Echo();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: h2
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${echo.port} }]
    rewrite: { regex: "^/old/(.*)$", replace: "/new/$1" }
    headers:
      request: { set: { X-Env: prod }, remove: [X-Debug] }
      response: { set: { X-Served: h2 }, remove: [Content-Type] }
`);
  using c = await RawClient.connect(lb.port);
  const res = await c.request(
    "GET /old/a?b=1 HTTP/1.1\r\nHost: app.test\r\nX-Debug: 1\r\nX-Env: dev\r\n\r\n",
  );
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("x-served"), "h2");
  assertEquals(res.headers.get("content-type"), undefined);
  const got = JSON.parse(res.body) as { path: string; fields: string[] };
  assertEquals(got.path, "/new/a?b=1");
  const fields = new Map<string, string[]>();
  for (let i = 0; i + 1 < got.fields.length; i += 2) {
    fields.set(got.fields[i]!, [...fields.get(got.fields[i]!) ?? [], got.fields[i + 1]!]);
  }
  assertEquals(fields.get("x-env"), ["prod"]);
  assertEquals(fields.get("x-debug"), undefined);
});

Deno.test("policy: `main.ts explain` on an SRV route looks the name up once (dnsmasq) and names the backend it would pick", async () => {
  await using dns = await startDnsmasq({
    srv: [
      {
        name: "_http._tcp.explain.test",
        target: "b1.explain.test",
        port: 9101,
        priority: 0,
        weight: 30,
      },
      {
        name: "_http._tcp.explain.test",
        target: "b2.explain.test",
        port: 9102,
        priority: 0,
        weight: 20,
      },
    ],
    hosts: [
      { name: "b1.explain.test", address: "127.0.0.1" },
      { name: "b2.explain.test", address: "127.0.0.1" },
    ],
  });
  const dir = await Deno.makeTempDir({ prefix: "unload-explain-" });
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      file,
      `listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port} }
routes:
  - name: svc
    srv: _http._tcp.explain.test
    rewrite: { prefix: /v2 }
`,
    );
    const r = await runCli(["explain", "--config", file, "GET", "http://svc.test/items"]);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "rewrite: /items → /v2/items (add prefix /v2)");
    assertStringIncludes(r.stdout, "  GET /v2/items HTTP/1.1\n");
    assertStringIncludes(
      r.stdout,
      "backend: 127.0.0.1:9101 (scheduler srv over 2 backends from _http._tcp.explain.test, looked up now;",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
