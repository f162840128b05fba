/**
 * Health checks per route in each backend's protocol, through the balancer (issue #19):
 * real gRPC servers (grpc-js and grpcio) serving grpc.health.v1.Health/Check beside
 * HTTP/1.1 backends, HTTP/2 path probes over h2c and TLS, two routes checking one
 * address differently, a soak of gRPC calls with checks on, and `workers: 2`.
 */
import { assert, assertEquals } from "@std/assert";
import * as grpc from "npm:@grpc/grpc-js@1.14.3";
import { Buffer } from "node:buffer";
import type { Backend } from "../src/upstream/backend.ts";
import { unwatchBackend, watchBackend } from "../src/upstream/backend_state.ts";
import { RawClient, startLoggedBalancer } from "./_http.ts";
import { type GrpcServer, SERVICE, startGrpcServer } from "./_grpc.ts";
import { type GrpcioServer, runGrpcio, startGrpcioServer } from "./_grpcio.ts";
import { makeCa } from "./_certs.ts";
import { startH2Origin, tlsFront } from "./_h2_health_origin.ts";
import { healthBackend, until } from "./_health.ts";
import { startLbProcess } from "./_process.ts";

const Client = grpc.makeGenericClientConstructor(SERVICE, "Test");
type AnyClient = InstanceType<typeof Client> & Record<string, CallableFunction>;

/** A grpc-js client of the balancer; `authority` picks a route by host. */
function client(port: number, authority?: string): AnyClient & Disposable {
  const options = authority ? { "grpc.default_authority": authority } : {};
  const c = new Client(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
    options,
  ) as AnyClient;
  return Object.assign(c, { [Symbol.dispose]: () => c.close() });
}

function unary(c: AnyClient, text: string): Promise<string> {
  return new Promise((resolve, reject) =>
    c.Unary!(
      Buffer.from(text),
      (e: grpc.ServiceError | null, v: Buffer) => e ? reject(e) : resolve(v.toString()),
    )
  );
}

/** Who answered each of `n` unary calls (the `NAME` before `: hello`). */
async function answeredBy(c: AnyClient, n: number): Promise<string[]> {
  const who: string[] = [];
  for (let i = 0; i < n; i++) who.push((await unary(c, `call ${i}`)).split(":")[0]!);
  return who;
}

/** A gRPC backend of either implementation, with its health switch and check counter. */
interface HealthServer extends AsyncDisposable {
  port: number;
  setHealth(answer: "SERVING" | "NOT_SERVING", service?: string): Promise<void>;
  /** Health/Check calls received so far. */
  checks(): Promise<number>;
}

async function grpcJs(name: string): Promise<HealthServer> {
  const s: GrpcServer = await startGrpcServer({ name });
  return {
    port: s.port,
    setHealth: (answer, service) => Promise.resolve(s.setHealth(answer, service)),
    checks: () => Promise.resolve([...s.checks.values()].reduce((a, n) => a + n, 0)),
    [Symbol.asyncDispose]: () => s[Symbol.asyncDispose](),
  };
}

async function grpcio(name: string): Promise<HealthServer> {
  const s: GrpcioServer = await startGrpcioServer({ name });
  return {
    port: s.port,
    setHealth: (answer, service) => s.setHealth(answer, service),
    checks: async () => (await s.stats()).Check ?? 0,
    [Symbol.asyncDispose]: () => s[Symbol.asyncDispose](),
  };
}

/** Asserts `lo <= n <= hi`. */
function between(n: number, lo: number, hi: number, what: string): void {
  assert(n >= lo && n <= hi, `${what}: ${n}, expected ${lo}..${hi}`);
}

/** Polls `cond` (which may be async) every 20 ms until it holds; fails after `ms`. */
async function eventually(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function status(adminPort: number) {
  const res = await fetch(`http://127.0.0.1:${adminPort}/status`);
  return await res.json();
}

function record(
  lb: { routes: readonly { scheduler: { backends: readonly Backend[] } }[] },
  route: number,
  port: number,
): Backend {
  return lb.routes[route]!.scheduler.backends.find((b) => b.port === port)!;
}

Deno.test("a gRPC route with gRPC health checks beside a web route with HTTP/1.1 checks: both stay up, calls succeed, /status shows each probe", async () => {
  await using web = healthBackend("web");
  await using js = await grpcJs("js");
  await using py = await grpcio("py");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 10s, failures: 2 }
routes:
  - name: web
    path: /web
    backends: [{ address: 127.0.0.1:${web.port} }]
  - name: grpc
    path: /t.Test/
    backend_protocol: h2c
    health: { grpc: true }
    scheduler: round_robin
    backends: [{ address: 127.0.0.1:${js.port} }, { address: 127.0.0.1:${py.port} }]
`);
  await eventually(
    async () => web.probes >= 3 && await js.checks() >= 3 && await py.checks() >= 3,
    10_000,
    "three rounds of checks of every backend",
  );
  assert(lb.routes.every((r) => r.scheduler.backends.every((b) => b.healthy)), lb.lines.join("\n"));
  assert(!lb.lines.some((l) => l.includes(" down")), lb.lines.join("\n"));
  using c = client(lb.port);
  assertEquals(new Set(await answeredBy(c, 10)), new Set(["js", "py"]));
  const run = await runGrpcio({
    port: lb.port,
    mode: "unary",
    calls: 200,
    channels: 2,
    concurrency: 10,
  });
  assertEquals(run.codes, { OK: 200 });
  using http = await RawClient.connect(lb.port);
  const res = await http.request("GET /web HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals([res.status, res.headers.get("x-backend")], [200, "web"]);
  assert(web.lastProbe.startsWith("GET /healthz HTTP/1.1\r\n"), web.lastProbe);

  const st = await status(lb.addrs.admin!.port);
  const [webStatus, grpcStatus] = st.routes;
  assertEquals(webStatus.probe, {
    protocol: "http1",
    check: "GET /healthz",
    path: "/healthz",
    grpc_service: null,
    interval: 50,
    timeout: 10000,
    failures: 2,
    rise: 2,
  });
  assertEquals(webStatus.backends[0].probe.ok, true);
  assertEquals(webStatus.backends[0].probe.reason, "GET /healthz answered 200");
  assertEquals(grpcStatus.probe.protocol, "h2c");
  assertEquals(grpcStatus.probe.check, "grpc.health.v1.Health/Check");
  assertEquals([grpcStatus.probe.path, grpcStatus.probe.grpc_service], [null, ""]);
  for (const b of grpcStatus.backends) {
    assertEquals([b.healthy, b.probe.ok, b.probe.reason], [
      true,
      true,
      "gRPC health check answered SERVING",
    ]);
  }
});

for (const [kind, start] of [["grpc-js", grpcJs], ["grpcio", grpcio]] as const) {
  Deno.test(`a ${kind} backend switched to NOT_SERVING goes down after \`failures\` checks with no traffic, comes back after \`rise\` passes; calls keep succeeding on the other`, async () => {
    await using a = await startGrpcServer({ name: "a" }); // in-process: its checks count rounds
    await using b = await start("b");
    const FAILURES = 3;
    const RISE = 2;
    await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: grpc
    backend_protocol: h2c
    scheduler: round_robin
    health: { grpc: true, interval: 100ms, timeout: 10s, failures: ${FAILURES}, rise: ${RISE} }
    backends: [{ address: 127.0.0.1:${a.port} }, { address: 127.0.0.1:${b.port} }]
`);
    const rec = () => record(lb, 0, b.port);
    const id = `127.0.0.1:${b.port}`;
    await eventually(async () => await b.checks() >= 1, 10_000, "b checked");
    assert(rec().healthy);
    // Rounds of checks are counted by a's checks (a is probed in every round, like b),
    // read at the very moment b's state changes: no timing is involved.
    const rounds = () => a.checks.get("") ?? 0;
    let from = 0;
    let roundsToChange = -1;
    const watcher = { healthChanged: () => roundsToChange = rounds() - from };
    watchBackend(rec(), watcher);

    // down: after `failures` rounds answered NOT_SERVING (a round under way at the
    // switch may add one; a's check of the last round may not have arrived yet)
    const before = await b.checks();
    from = rounds();
    await b.setHealth("NOT_SERVING");
    await until(() => !rec().healthy, 15_000, "b down");
    between(roundsToChange, FAILURES - 1, FAILURES + 1, "rounds from the switch until down");
    assert((await b.checks()) - before >= FAILURES, "b answered NOT_SERVING `failures` times");
    assert(
      lb.lines.includes(`warn backend ${id} down: gRPC health check answered NOT_SERVING`),
      lb.lines.join("\n"),
    );
    const down = (await status(lb.addrs.admin!.port)).routes[0].backends.find((x: { id: string }) =>
      x.id === id
    );
    assertEquals([down.healthy, down.probe.ok, down.probe.reason], [
      false,
      false,
      "gRPC health check answered NOT_SERVING",
    ]);

    // meanwhile every call succeeds, on a
    using c = client(lb.port);
    assertEquals(new Set(await answeredBy(c, 20)), new Set(["a"]));

    // up: after `rise` rounds answered SERVING
    const again = await b.checks();
    from = rounds();
    await b.setHealth("SERVING");
    await until(() => rec().healthy, 15_000, "b up");
    between(roundsToChange, RISE - 1, RISE + 1, "rounds from the switch until up");
    assert((await b.checks()) - again >= RISE, "b answered SERVING `rise` times");
    assertEquals(lb.lines.filter((l) => l.includes(id)).at(-1), `info backend ${id} up`);
    unwatchBackend(rec(), watcher);
    assertEquals(new Set(await answeredBy(c, 10)), new Set(["a", "b"]));
  });
}

Deno.test("an h2c route checked with a plain path gets HTTP/2 probes, an h2 route gets them over TLS (ALPN h2); a failing one is left out", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("server", { serial: 31 });
  await using clear = await startH2Origin("clear");
  await using secure = await startH2Origin("secure");
  await using front = tlsFront(secure.port, cert);
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 10s, failures: 2 }
routes:
  - name: clear
    path: /clear
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${clear.port} }]
  - name: secure
    path: /secure
    backend_protocol: h2
    ca: ${ca.ca}
    server_name: app.test
    backends: [{ address: 127.0.0.1:${front.port} }]
`);
  await until(() => clear.probes().length >= 2 && secure.probes().length >= 2, 10_000, "probes");
  for (const p of [...clear.probes(), ...secure.probes()]) {
    assertEquals([p.httpVersion, p.method, p.userAgent], ["2.0", "GET", "unload-health-check"]);
  }
  assert(front.alpn.length >= 2 && front.alpn.every((x) => x === "h2"), String(front.alpn));
  using http = await RawClient.connect(lb.port);
  assertEquals((await http.request("GET /clear HTTP/1.1\r\nHost: a\r\n\r\n")).body, "clear /clear");
  assertEquals(
    (await http.request("GET /secure HTTP/1.1\r\nHost: a\r\n\r\n")).body,
    "secure /secure",
  );
  clear.status = 503;
  await until(() => !record(lb, 0, clear.port).healthy, 10_000, "clear down");
  assert(
    lb.lines.includes(
      `warn backend 127.0.0.1:${clear.port} down: GET /healthz answered 503 over h2c`,
    ),
    lb.lines.join("\n"),
  );
  assertEquals((await http.request("GET /clear HTTP/1.1\r\nHost: a\r\n\r\n")).status, 503);
  assert(record(lb, 1, front.port).healthy);
});

Deno.test("gRPC checks of an h2 route go over TLS (ALPN h2) to a grpcio TLS backend, verified with the route's ca and server_name", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("server", { serial: 32 });
  await using tls = await startGrpcioServer({ name: "tls", tls: cert });
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: grpc
    backend_protocol: h2
    ca: ${ca.ca}
    server_name: app.test
    health: { grpc: true, interval: 50ms, timeout: 10s, failures: 1 }
    backends: [{ address: 127.0.0.1:${tls.port} }]
`);
  await eventually(async () => ((await tls.stats()).Check ?? 0) >= 3, 10_000, "three checks");
  assert(lb.routes[0]!.scheduler.backends[0]!.healthy, lb.lines.join("\n"));
  const st = await status(lb.addrs.admin!.port);
  assertEquals(st.routes[0].probe.protocol, "h2");
  assertEquals(st.routes[0].backends[0].probe.reason, "gRPC health check answered SERVING");
  const run = await runGrpcio({ port: lb.port, mode: "unary", calls: 50, concurrency: 5 });
  assertEquals([run.codes, run.names], [{ OK: 50 }, { tls: 50 }]);
  await tls.setHealth("NOT_SERVING");
  await until(() => !lb.routes[0]!.scheduler.backends[0]!.healthy, 10_000, "down over TLS too");
});

Deno.test("two routes naming one address with different checks: each is probed on its own, and the backend is left out only of the route whose check fails", async () => {
  await using shared = await grpcJs("shared");
  await using other = await grpcJs("other");
  await shared.setHealth("SERVING", "svc.a");
  await shared.setHealth("SERVING", "svc.b");
  await other.setHealth("SERVING", "svc.a");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
health: { grpc: true, interval: 50ms, timeout: 10s, failures: 1 }
routes:
  - name: a
    host: a.test
    backend_protocol: h2c
    scheduler: round_robin
    health: { grpc_service: svc.a }
    backends: [{ address: 127.0.0.1:${shared.port} }, { address: 127.0.0.1:${other.port} }]
  - name: b
    host: b.test
    backend_protocol: h2c
    health: { grpc_service: svc.b }
    backends: [{ address: 127.0.0.1:${shared.port} }]
`);
  const inA = () => record(lb, 0, shared.port);
  const inB = () => record(lb, 1, shared.port);
  assert(inA() !== inB(), "one record per route: their checks differ");
  await shared.setHealth("NOT_SERVING", "svc.a");
  await until(() => !inA().healthy, 10_000, "shared down in route a");
  const seen = await shared.checks();
  await eventually(async () => await shared.checks() >= seen + 4, 10_000, "more rounds");
  assert(inB().healthy, "still up in route b, whose check passes");
  using ca = client(lb.port, "a.test");
  using cb = client(lb.port, "b.test");
  assertEquals(new Set(await answeredBy(ca, 10)), new Set(["other"]));
  assertEquals(new Set(await answeredBy(cb, 5)), new Set(["shared"]));
  const admin = lb.addrs.admin!.port;
  const id = `127.0.0.1:${shared.port}`;
  const st = await status(admin);
  const probeOf = (route: number) =>
    st.routes[route].backends.find((b: { id: string }) => b.id === id);
  assertEquals([probeOf(0).healthy, probeOf(0).probe.reason], [
    false,
    'gRPC health check of "svc.a" answered NOT_SERVING',
  ]);
  assertEquals([probeOf(1).healthy, probeOf(1).probe.reason], [
    true,
    'gRPC health check of "svc.b" answered SERVING',
  ]);
  assertEquals(st.routes[0].probe.check, 'grpc.health.v1.Health/Check "svc.a"');
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  assert(metrics.includes(`unload_backend_up{backend="${id}",name="${id}"} 0\n`), metrics);
});

Deno.test("soak: thousands of gRPC calls through unload with active gRPC checks every 20 ms, none failing for want of a healthy backend", async () => {
  await using js1 = await grpcJs("js1");
  await using js2 = await grpcJs("js2");
  await using py = await grpcio("py");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
health: { path: /healthz, interval: 20ms, timeout: 10s }
routes:
  - name: grpc
    backend_protocol: h2c
    health: { grpc: true }
    backends: [{ address: 127.0.0.1:${js1.port} }, { address: 127.0.0.1:${js2.port} }, { address: 127.0.0.1:${py.port} }]
`);
  const servers = [js1, js2, py];
  const before = await Promise.all(servers.map((s) => s.checks()));
  // grpc-js clients: grpcio's client sends a WINDOW_UPDATE of a few bytes per answer,
  // which unload's HTTP/2 flood guard counts, and it gets GOAWAY (see the report of #19)
  const CALLS = 4000;
  const IN_FLIGHT = 50;
  const clients = [client(lb.port), client(lb.port)];
  const failures = new Map<string, number>();
  const names = new Map<string, number>();
  let next = 0;
  try {
    await Promise.all(Array.from({ length: IN_FLIGHT }, async (_, w) => {
      const c = clients[w % clients.length]!;
      while (next < CALLS) {
        const i = next++;
        try {
          const name = (await unary(c, `soak ${i}`)).split(":")[0]!;
          names.set(name, (names.get(name) ?? 0) + 1);
        } catch (e) {
          const why = (e as Error).message;
          failures.set(why, (failures.get(why) ?? 0) + 1);
        }
      }
    }));
  } finally {
    for (const c of clients) c.close();
  }
  const after = await Promise.all(servers.map((s) => s.checks()));
  assertEquals(Object.fromEntries(failures), {}, "no call failed");
  assertEquals([...names.keys()].sort(), ["js1", "js2", "py"]);
  assertEquals([...names.values()].reduce((a, n) => a + n, 0), CALLS);
  after.forEach((n, i) => assert(n - before[i]! >= 2, "checks ran during the soak"));
  assert(!lb.lines.some((l) => l.includes(" down")), lb.lines.join("\n"));
});

Deno.test("workers: 2 — one gRPC check and one HTTP/1.1 probe per period for the process; a backend the main thread's check takes down is left out by every worker", async () => {
  await using good = await grpcJs("good");
  await using sick = await grpcJs("sick");
  await sick.setHealth("NOT_SERVING");
  await using web = healthBackend("web");
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT, h2c: true }
admin: { listen: 127.0.0.1:$ADMIN }
workers: 2
health: { path: /healthz, interval: 1h, timeout: 10s, failures: 1 }
routes:
  - name: web
    path: /web
    backends: [{ address: 127.0.0.1:${web.port} }]
  - name: grpc
    path: /t.Test/
    backend_protocol: h2c
    health: { grpc: true }
    backends: [{ address: 127.0.0.1:${good.port} }, { address: 127.0.0.1:${sick.port} }]
`);
  let out = { code: -1, stdout: "", stderr: "" };
  try {
    await eventually(
      async () => {
        const st = await status(lb.adminPort).catch(() => undefined);
        const b = st?.routes[1].backends.find((x: { id: string }) =>
          x.id.endsWith(`:${sick.port}`)
        );
        return b?.probe?.ok === false;
      },
      15_000,
      "sick checked and down",
    );
    // new channels (connections) land on both workers
    const run = await runGrpcio({
      port: lb.port,
      mode: "unary",
      calls: 400,
      channels: 16,
      concurrency: 5,
    });
    assertEquals(run.codes, { OK: 400 });
    assertEquals(run.names, { good: 400 }, "no call reached the backend that is down");
  } finally {
    out = await lb.stop();
  }
  assertEquals(out.code, 0, out.stderr);
  assert(out.stderr.includes("with 2 workers"), out.stderr);
  assertEquals(await good.checks(), 1, "one gRPC check, not two");
  assertEquals(await sick.checks(), 1, "one gRPC check, not two");
  assertEquals(web.probes, 1, "one HTTP/1.1 probe, not two");
});
