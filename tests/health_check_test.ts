/**
 * Active health checks (issue #6): probes over real sockets, the fall/rise counts,
 * one timer for every backend, discovery changes, the interplay with passive
 * ejection, and the balancer following `health:` through start, traffic and reload.
 */
import { assert, assertEquals, assertGreater, assertLess, assertMatch } from "@std/assert";
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { parseConfig } from "../src/config/config.ts";
import { PassiveHealth } from "../src/upstream/health/passive.ts";
import { HealthChecker, probe } from "../src/upstream/health/active.ts";
import { delay, freePort, rawServer, writeAllText } from "./_http.ts";

import { type HealthBackend, healthBackend, until } from "./_health.ts";

Deno.test("probe sends GET <path> with Host and Connection: close on a fresh connection; 2xx/3xx pass", async () => {
  const b = healthBackend("b");
  try {
    const r = await probe(b.backend, { path: "/healthz", timeout: 1000 });
    assertEquals([r.ok, r.status], [true, 200]);
    const lines = b.lastProbe.split("\r\n");
    assertEquals(lines[0], "GET /healthz HTTP/1.1");
    assert(lines.includes(`Host: 127.0.0.1:${b.port}`), b.lastProbe);
    assert(lines.includes("Connection: close"), b.lastProbe);
    b.status = 302;
    assertEquals((await probe(b.backend, { path: "/healthz", timeout: 1000 })).ok, true);
    b.status = 404;
    const bad = await probe(b.backend, { path: "/healthz", timeout: 1000 });
    assertEquals([bad.ok, bad.status, bad.reason], [false, 404, "GET /healthz answered 404"]);
    b.status = 503;
    assertEquals((await probe(b.backend, { path: "/healthz", timeout: 1000 })).ok, false);
    assertEquals(b.accepted, 4, "one connection per probe");
  } finally {
    await b.close();
  }
});

Deno.test("probe uses the SRV target name with the port as Host", async () => {
  const b = healthBackend("b");
  try {
    const srv = createBackend({ hostname: "127.0.0.1", port: b.port, name: "b1.unload.test" });
    assert((await probe(srv, { path: "/healthz", timeout: 1000 })).ok);
    assert(b.lastProbe.includes(`\r\nHost: b1.unload.test:${b.port}\r\n`), b.lastProbe);
  } finally {
    await b.close();
  }
});

Deno.test("probe fails on refused, silent (bounded by timeout), garbage and early close", async () => {
  const refused = createBackend({ hostname: "127.0.0.1", port: freePort() });
  const r1 = await probe(refused, { path: "/", timeout: 1000 });
  assertEquals(r1.ok, false);
  assertMatch(r1.reason, /^connect: /);

  const silent = rawServer(async (_conn, read) => {
    while ((await read()) !== null);
  });
  const garbage = rawServer(async (conn, read) => {
    await read();
    await writeAllText(conn, "SSH-2.0-OpenSSH_9.6\r\n");
  });
  const early = rawServer(async (_conn, read) => {
    await read();
  });
  try {
    const t0 = performance.now();
    const r2 = await probe(createBackend({ hostname: "127.0.0.1", port: silent.port }), {
      path: "/",
      timeout: 300,
    });
    const took = performance.now() - t0;
    assertEquals(r2.ok, false);
    assertMatch(r2.reason, /timed out after 300ms/);
    assert(took >= 250 && took < 1000, `took ${took}ms`);
    await until(() => silent.open === 0, 500, "the timed-out probe's connection is closed");

    const r3 = await probe(createBackend({ hostname: "127.0.0.1", port: garbage.port }), {
      path: "/",
      timeout: 1000,
    });
    assertEquals(r3.ok, false);
    assertMatch(r3.reason, /^malformed response: .*"SSH-2.0-OpenSSH_9.6"$/);

    const r4 = await probe(createBackend({ hostname: "127.0.0.1", port: early.port }), {
      path: "/",
      timeout: 1000,
    });
    assertEquals([r4.ok, r4.reason], [false, "closed before a status line"]);
  } finally {
    await Promise.all([silent.close(), garbage.close(), early.close()]);
  }
});

Deno.test("checker: down after `fall` consecutive failures, up after 2 consecutive passes", async () => {
  const b = healthBackend("b");
  const ac = new AbortController();
  const changes: string[] = [];
  const checker = new HealthChecker({
    path: "/healthz",
    interval: 20,
    timeout: 500,
    fall: 3,
    backends: () => [b.backend],
    signal: ac.signal,
    onChange: (x, up, why) => changes.push(`${x.id} ${up ? "up" : "down"}: ${why}`),
  });
  try {
    await until(() => checker.rounds >= 3, 2000, "3 rounds");
    assert(b.backend.healthy);
    b.status = 500;
    const failedFrom = b.probes;
    await until(() => !b.backend.healthy, 2000, "down");
    assertEquals(b.probes - failedFrom, 3, "down at the third failed probe, not before");
    assertEquals(changes, [`${b.backend.id} down: GET /healthz answered 500`]);
    // one pass is not enough; a failure in between starts the count over
    b.status = 200;
    let from = b.probes;
    await until(() => b.probes >= from + 1, 2000, "one pass");
    b.status = 500;
    await until(() => b.probes >= from + 3, 2000, "more failures");
    assert(!b.backend.healthy, "back up after a single pass");
    b.status = 200;
    from = b.probes;
    await until(() => b.backend.healthy, 2000, "up");
    assertEquals(b.probes - from, 2, "up at the second consecutive pass");
    assertEquals(changes[1], `${b.backend.id} up: 2 consecutive checks passed`);
  } finally {
    ac.abort();
    await checker.closed;
    await b.close();
  }
});

Deno.test("checker: one timer for all backends, follows the set it is given, stops on abort", async () => {
  const bs = [healthBackend("a"), healthBackend("b"), healthBackend("c")];
  const set: Backend[] = [bs[0]!.backend, bs[1]!.backend];
  const ac = new AbortController();
  const checker = new HealthChecker({
    path: "/healthz",
    interval: 100,
    timeout: 500,
    backends: () => set,
    signal: ac.signal,
  });
  try {
    await delay(450); // rounds at ~0, 100, 200, 300, 400 ms
    const [a, b, c] = bs as [HealthBackend, HealthBackend, HealthBackend];
    assertEquals(a.probes, b.probes, "every backend is probed in the same round");
    assert(a.probes >= 3 && a.probes <= 6, `probes in 450 ms at 100 ms: ${a.probes}`);
    assertEquals(c.probes, 0);
    // discovery: c joins, a leaves
    set.splice(0, 1, c.backend);
    const [a0, c0] = [a.probes, c.probes];
    await delay(250);
    assertGreater(c.probes, c0);
    assertLess(a.probes - a0, 2, "a removed backend is probed at most once more");
    ac.abort();
    await checker.closed;
    const after = bs.map((x) => x.probes);
    await delay(250);
    assertEquals(bs.map((x) => x.probes), after, "no probe after abort");
  } finally {
    ac.abort();
    await Promise.all(bs.map((x) => x.close()));
  }
});

Deno.test("checker: abort abandons a probe in progress at once", async () => {
  const silent = rawServer(async (_conn, read) => {
    while ((await read()) !== null);
  });
  const ac = new AbortController();
  const checker = new HealthChecker({
    path: "/",
    interval: 1000,
    timeout: 10_000,
    backends: () => [createBackend({ hostname: "127.0.0.1", port: silent.port })],
    signal: ac.signal,
  });
  await until(() => silent.open === 1, 1000, "a probe connected");
  const t0 = performance.now();
  ac.abort();
  await checker.closed;
  assertLess(performance.now() - t0, 200);
  await until(() => silent.open === 0, 500, "the probe's connection closed");
  await silent.close();
});

Deno.test("checker: a passively ejected backend needs 2 fresh passes; passive health has no back-off with active checks", async () => {
  const b = healthBackend("b");
  const passive = new PassiveHealth({ failures: 2, backoff: 50, activeChecks: true });
  const ac = new AbortController();
  const checker = new HealthChecker({
    path: "/healthz",
    interval: 60_000, // rounds: the first one at start, then only check()
    timeout: 500,
    backends: () => [b.backend],
    signal: ac.signal,
  });
  try {
    await until(() => checker.rounds === 1, 1000, "the first round");
    await checker.check();
    passive.failure(b.backend, "reset");
    passive.failure(b.backend, "reset");
    assert(!b.backend.healthy, "ejected by passive health");
    await delay(150); // three back-offs long: passive health does not bring it back
    assert(!b.backend.healthy, "back in rotation by the back-off");
    await checker.check();
    assert(!b.backend.healthy, "back after one pass (the passes before the ejection count)");
    await checker.check();
    assert(b.backend.healthy, "not back after 2 passes");
    assertEquals(b.probes, 4);
  } finally {
    ac.abort();
    await checker.closed;
    passive.close();
    await b.close();
  }
});

Deno.test("checker rejects a path that is not origin-form", () => {
  let threw = false;
  try {
    new HealthChecker({
      path: "/x y\r\nX: 1",
      interval: 1000,
      timeout: 100,
      backends: () => [],
      signal: AbortSignal.abort(),
    });
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
  let configError = "";
  try {
    parseConfig(
      `listen: { http: 127.0.0.1:0 }\nhealth: { path: "healthz", interval: 0s }\nroutes: [{ name: a, backends: [{ address: 127.0.0.1:1 }] }]\n`,
      "h.yaml",
    );
  } catch (e) {
    configError = (e as Error).message;
  }
  assertMatch(configError, /h\.yaml:2: health\.interval: must be more than 0ms/);
  assertMatch(configError, /h\.yaml:2: health\.path: must be a path like \/healthz/);
});
