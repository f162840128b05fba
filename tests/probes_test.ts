/**
 * `/healthz` and `/readyz` on the admin listener of a balancer run as a real
 * process: ready, not ready naming the route, `routes[].optional`, and draining.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import type { Status } from "../src/admin/status.ts";
import {
  delay,
  freePort,
  keepAliveBackend,
  RawClient,
  type RawResponse,
  rawServer,
  writeAllText,
} from "./_http.ts";
import { type LbProcess, startLbProcess } from "./_process.ts";

/** One request to the admin listener on a fresh connection (`connection: close`). */
async function admin(port: number, path: string, method = "GET"): Promise<RawResponse> {
  const c = await RawClient.connect(port);
  try {
    return await c.request(
      `${method} ${path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n`,
      method,
    );
  } finally {
    c.close();
  }
}

/** Waits until the admin listener accepts (it binds right after the HTTP listener). */
async function adminUp(port: number): Promise<void> {
  for (let i = 0;; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (i > 100) throw e;
      await delay(20);
    }
  }
}

/** Asks `path` until `done(response)`, at most `tries` times 50 ms apart; returns the last answer. */
async function poll(
  port: number,
  path: string,
  done: (r: RawResponse) => boolean,
  tries = 100,
): Promise<RawResponse> {
  let r = await admin(port, path);
  for (let i = 0; i < tries && !done(r); i++) {
    await delay(50);
    r = await admin(port, path);
  }
  return r;
}

/** Starts a balancer process with its admin on a free port. */
async function start(body: string): Promise<LbProcess & { admin: number }> {
  const lb = await startLbProcess(
    `listen: { http: 127.0.0.1:$PORT }\nadmin: { listen: 127.0.0.1:$ADMIN }\n${body}`,
  );
  await adminUp(lb.adminPort);
  return Object.assign(lb, { admin: lb.adminPort });
}

Deno.test("probes: /readyz and /healthz answer 200 ok with a live static backend; only GET and HEAD", async () => {
  const backend = keepAliveBackend("b");
  const lb = await start(
    `routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]\n`,
  );
  try {
    const ready = await admin(lb.admin, "/readyz");
    assertEquals([ready.status, ready.body], [200, "ok\n"]);
    assertEquals(ready.headers.get("cache-control"), "no-store");
    const live = await admin(lb.admin, "/healthz");
    assertEquals([live.status, live.body], [200, "ok\n"]);
    assertEquals((await admin(lb.admin, "/readyz", "HEAD")).status, 200);
    const post = await admin(lb.admin, "/healthz", "POST");
    assertEquals([post.status, post.headers.get("allow")], [405, "GET, HEAD"]);
  } finally {
    await lb.stop();
    await backend.close();
  }
});

// `app` has a live backend; `down`'s only backend is a port nobody listens on, which
// the active check (failures: 1) takes out.
const TWO_ROUTES = (live: number, dead: number, optional: string) => `
health: { path: /healthz, interval: 50ms, timeout: 500ms, failures: 1 }
routes:
  - { name: app, host: app.test, backends: [{ address: 127.0.0.1:${live} }] }
  - { name: down, host: down.test, backends: [{ address: 127.0.0.1:${dead} }]${optional} }
`;

Deno.test("probes: /readyz is 503 naming the route whose only backend is down, not the healthy one", async () => {
  const backend = keepAliveBackend("b");
  const lb = await start(TWO_ROUTES(backend.port, freePort(), ""));
  try {
    const r = await poll(lb.admin, "/readyz", (r) => r.status === 503);
    assertEquals(r.status, 503, r.body);
    assertEquals(r.body, "route down: no healthy backend (1 down)\n");
    // liveness does not follow the backends
    assertEquals((await admin(lb.admin, "/healthz")).status, 200);
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("probes: /readyz stays 200 while a route with optional: true has no healthy backend", async () => {
  const backend = keepAliveBackend("b");
  const lb = await start(TWO_ROUTES(backend.port, freePort(), ", optional: true"));
  try {
    // wait until the balancer itself says that backend is down, then ask for readiness
    const isDown = (r: RawResponse) =>
      r.status === 200 &&
      (JSON.parse(r.body) as Status).routes.find((x) => x.name === "down")?.backends[0]
          ?.healthy === false;
    const status = await poll(lb.admin, "/status", isDown);
    assert(isDown(status), `the down backend was never marked unhealthy: ${status.body}`);
    const r = await admin(lb.admin, "/readyz");
    assertEquals([r.status, r.body], [200, "ok\n"]);
  } finally {
    await lb.stop();
    await backend.close();
  }
});

Deno.test("probes: after SIGTERM /readyz is 503 draining and /healthz 200 while a request is in flight, until exit", async () => {
  let arrived!: () => void;
  const reached = new Promise<void>((r) => arrived = r);
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const backend = rawServer(async (conn, read) => {
    await read();
    arrived();
    await released;
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n");
  });
  const lb = await start(`
timeouts: { drain: 30s }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  let stopped = false;
  const c = await RawClient.connect(lb.port);
  try {
    const response = c.request("GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n");
    response.catch(() => {}); // awaited below; a failed assertion before that must not leak it
    await reached;
    assertEquals((await admin(lb.admin, "/readyz")).status, 200, "ready before the signal");
    lb.child.kill("SIGTERM");
    const r = await poll(lb.admin, "/readyz", (r) => r.status === 503);
    assertEquals([r.status, r.body], [503, "draining\n"]);
    const live = await admin(lb.admin, "/healthz");
    assertEquals([live.status, live.body], [200, "ok\n"]);
    // still draining: the request has not been answered, so the admin listener stays up
    assertEquals((await admin(lb.admin, "/readyz")).body, "draining\n");
    release();
    const res = await response;
    assertEquals([res.status, res.body], [200, "slow\n"]);
    c.close();
    const { code } = await lb.child.status;
    assertEquals(code, 0);
    stopped = true;
    const out = await lb.stop();
    assertStringIncludes(out.stderr, "shutting down");
    const refused = await Deno.connect({ hostname: "127.0.0.1", port: lb.admin }).then(
      (conn) => (conn.close(), false),
      (e) => e instanceof Deno.errors.ConnectionRefused,
    );
    assert(refused, "the admin listener is gone once the process exited");
  } finally {
    release();
    c.close();
    if (!stopped) await lb.stop("SIGKILL");
    await backend.close();
  }
});

Deno.test("config: routes[].optional must be true or false, reported with file and line", () => {
  const text =
    "listen: { http: 127.0.0.1:8080 }\nroutes:\n  - name: app\n    optional: yes please\n" +
    "    backends: [{ address: 127.0.0.1:9001 }]\n";
  const e = assertThrows(() => parseConfig(text, "u.yaml"), ConfigError);
  assertEquals(e.errors, ["u.yaml:4: routes[0].optional: must be true or false"]);
  const ok = parseConfig(text.replace("yes please", "true"), "u.yaml");
  assertEquals(ok.routes[0]?.optional, true);
  assertEquals(
    parseConfig(text.replace("    optional: yes please\n", ""), "u.yaml").routes[0]?.optional,
    undefined,
  );
});
