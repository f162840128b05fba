/**
 * Issue #6, acceptance: slowloris, a backend dying under load, graceful shutdown,
 * reload by SIGHUP, and a WebSocket through the balancer. Real sockets on
 * 127.0.0.1, the balancer as a process where signals are involved.
 */
import { assert, assertEquals, assertGreater, assertLess, assertStringIncludes } from "@std/assert";
import { startBackendProcess } from "./_backend_process.ts";
import {
  delay,
  keepAliveBackend,
  RawClient,
  rawServer,
  startBalancer,
  startLoggedBalancer,
  writeAllText,
} from "./_http.ts";
import { startLbProcess } from "./_process.ts";
import { within } from "../src/_async.ts";

const enc = new TextEncoder();

/** The soft limit on open files; raised (up to the hard limit) when below `want`. */
async function ensureOpenFiles(want: number): Promise<number> {
  const limits = await Deno.readTextFile("/proc/self/limits");
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(limits)!;
  const soft = m[1] === "unlimited" ? Infinity : Number(m[1]);
  if (soft >= want) return soft;
  const hard = m[2] === "unlimited" ? want : Math.min(want, Number(m[2]));
  // children (the balancer process) inherit the raised limit
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(Deno.pid), `--nofile=${hard}:${m[2]}`],
  }).output();
  assert(out.success, `prlimit failed: ${new TextDecoder().decode(out.stderr)}`);
  return hard;
}

Deno.test("1000 slowloris connections do not starve normal clients and are closed at timeouts.head", async () => {
  const SLOW = 1000;
  const limit = await ensureOpenFiles(4 * SLOW);
  assert(limit >= 2 * SLOW + 200, `ulimit -n is ${limit}: too low for ${SLOW} connections`);
  await using backend = keepAliveBackend("b");
  await using lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
timeouts: { head: 2s }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const HEAD = enc.encode("GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: " + "a".repeat(64));
  const slow: Array<{ conn: Deno.TcpConn; opened: number; closed: number; sent: number }> = [];
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    // one more header byte every 400 ms on every connection still open; started
    // before the connections so that each one sends again well before its 2 s,
    // however long opening 1000 of them takes
    ticker = setInterval(() => {
      for (const s of slow) {
        if (s.closed !== 0 || s.sent >= HEAD.length) continue;
        s.conn.write(HEAD.subarray(s.sent, s.sent + 1)).catch(() => {});
        s.sent++;
      }
    }, 400);
    // open them 100 at a time, each sending its first byte at once
    for (let i = 0; i < SLOW; i += 100) {
      await Promise.all(Array.from({ length: 100 }, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
        const s = { conn, opened: performance.now(), closed: 0, sent: 1 };
        try {
          await conn.write(HEAD.subarray(0, 1));
        } finally {
          slow.push(s); // only now may the ticker write the next byte
        }
        conn.read(new Uint8Array(1024)).then(
          () => s.closed = performance.now(), // EOF (or an unexpected answer: closed is 0 → fails below)
          () => s.closed = performance.now(), // reset
        );
      }));
    }
    const attackStart = slow[0]!.opened;

    // 100 normal requests on fresh connections, 10 at a time, during the attack
    const statuses: number[] = [];
    await Promise.all(Array.from({ length: 10 }, async (_, w) => {
      for (let i = 0; i < 10; i++) {
        const c = await RawClient.connect(lb.port);
        try {
          const res = await c.request(`GET /n${w}-${i} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
          statuses.push(res.body === `b /n${w}-${i}\n` ? res.status : -res.status);
        } finally {
          c.close();
        }
      }
    }));
    const normalDone = performance.now();
    assertEquals(statuses.length, 100);
    assertEquals(statuses.filter((s) => s !== 200), [], "normal requests that failed");
    const firstClosed = Math.min(...slow.map((s) => s.closed || Infinity));
    assertLess(normalDone, firstClosed, "the normal requests finished while the attack was on");
    assertLess(normalDone - attackStart, 2000);

    // every slow connection is closed by the balancer at ~2 s (the watchdog ticks at 100 ms)
    const end = attackStart + 4000;
    while (slow.some((s) => s.closed === 0) && performance.now() < end) await delay(50);
    const open = slow.filter((s) => s.closed === 0).length;
    assertEquals(open, 0, "slowloris connections still open after 4 s");
    const lifetimes = slow.map((s) => s.closed - s.opened);
    assertGreater(Math.min(...lifetimes), 1900, "closed before timeouts.head");
    assertLess(Math.max(...lifetimes), 3000, "closed later than ~3 s");
    assertGreater(Math.min(...slow.map((s) => s.sent)), 1, "slow clients kept sending");
  } finally {
    clearInterval(ticker);
    for (const s of slow) {
      try {
        s.conn.close();
      } catch { /* closed */ }
    }
    const { code } = await lb.stop();
    assertEquals(code, 0);
    await backend.close();
  }
});

Deno.test("a backend killed under load: zero failed requests, it is ejected, and back after a restart", async () => {
  const procs = [
    await startBackendProcess("b1"),
    await startBackendProcess("b2"),
    await startBackendProcess("b3"),
  ];
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 200ms, timeout: 500ms, failures: 3 }
routes:
  - name: app
    backends: [${procs.map((p) => `{ address: 127.0.0.1:${p.port} }`).join(", ")}]
`);
  const victim = lb.routes[0]!.scheduler.backends.find((b) => b.port === procs[1]!.port)!;
  let stop = false;
  const failures: string[] = [];
  const served: Record<string, number> = {};
  let sinceRestart: Record<string, number> | undefined;
  const timeline: Array<[number, boolean]> = []; // (ms, victim healthy)
  const t0 = performance.now();
  const watch = setInterval(() => timeline.push([performance.now() - t0, victim.healthy]), 20);
  const client = async (id: number) => {
    let c = await RawClient.connect(lb.port);
    for (let i = 0; !stop; i++) {
      try {
        const res = await c.request(`GET /c${id}/${i} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
        const who = res.headers.get("x-backend") ?? "";
        if (res.status !== 200 || res.body !== `${who} /c${id}/${i}\n`) {
          failures.push(
            `${(performance.now() - t0).toFixed(0)}ms ${res.status} ${res.body.trim()}`,
          );
        }
        served[who] = (served[who] ?? 0) + 1;
        if (sinceRestart) sinceRestart[who] = (sinceRestart[who] ?? 0) + 1;
      } catch (e) {
        failures.push(`${(performance.now() - t0).toFixed(0)}ms ${(e as Error).message}`);
        c.close();
        c = await RawClient.connect(lb.port);
      }
    }
    c.close();
  };
  const load = Promise.all([0, 1, 2, 3].map(client));
  try {
    await delay(800);
    assertGreater(served.b2 ?? 0, 0, "b2 served before it died");
    await procs[1]!.kill();
    const killedAt = performance.now() - t0;
    await delay(1200);
    assert(!victim.healthy, "the killed backend is still in rotation 1.2 s after it died");
    procs[1] = await startBackendProcess("b2", victim.port);
    const restartedAt = performance.now() - t0;
    const end = performance.now() + 2000;
    while (!victim.healthy && performance.now() < end) await delay(20);
    assert(victim.healthy, "not back in rotation 2 s after the restart");
    sinceRestart = {};
    await delay(500);
    stop = true;
    await load;
    const ejectedAt = timeline.find(([t, up]) => t > killedAt && !up)?.[0];
    assert(ejectedAt !== undefined && ejectedAt - killedAt < 1000, `ejected at ${ejectedAt}ms`);
    const backAt = timeline.find(([t, up]) => t > restartedAt && up)?.[0];
    assert(backAt !== undefined, "back in rotation");
    assertGreater(sinceRestart.b2 ?? 0, 0, "b2 gets traffic again after its restart");
    assertGreater(Object.values(served).reduce((a, b) => a + b, 0), 500, "requests served");
    // Zero failed client requests across the kill (retries + passive health).
    assertEquals(failures, [], "client requests that failed");
  } finally {
    stop = true;
    clearInterval(watch);
    await load;
    await lb.close();
    await Promise.all(procs.map((p) => p.kill()));
  }
});

Deno.test("a retry goes to another backend even when the scheduler picks the dead one several times in a row", async () => {
  // The seed table: srv mode picks b3 four times in a row (b1 b2 b1 b2 b1 b3 b3 b3 b3).
  // b3 is dead and never ejected (failures: 100), so only the retry can save its requests.
  await using b1 = keepAliveBackend("b1");
  await using b2 = keepAliveBackend("b2");
  await using dead = rawServer(async () => {});
  const deadPort = dead.port;
  await dead.close();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
health: { failures: 100 }
retry: { attempts: 1 }
routes:
  - name: app
    backends:
      - { address: 127.0.0.1:${b1.port}, priority: 0, weight: 30 }
      - { address: 127.0.0.1:${b2.port}, priority: 0, weight: 20 }
      - { address: 127.0.0.1:${deadPort}, priority: 10, weight: 40 }
`);
  using c = await RawClient.connect(lb.port);
  try {
    const seen: string[] = [];
    for (let i = 0; i < 18; i++) {
      const res = await c.request("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
      seen.push(res.status === 200 ? res.headers.get("x-backend")! : String(res.status));
    }
    // The dead backend (weight 40, 4 picks in a row per round) must never answer: each
    // retry goes to a backend this request has not tried yet.
    assertEquals(seen.filter((s) => s !== "b1" && s !== "b2"), [], seen.join(" "));
  } finally {
    c.close();
    await lb.close();
    await Promise.all([b1.close(), b2.close()]);
  }
});

Deno.test("SIGTERM during a 5 s response: it completes intact, new connections are refused, exit 0", async () => {
  const PIECES = 10;
  const piece = "0123456789".repeat(100) + "\n"; // 1001 bytes
  await using backend = rawServer(async (conn, read) => {
    await read();
    await writeAllText(
      conn,
      `HTTP/1.1 200 OK\r\ncontent-length: ${PIECES * piece.length}\r\n\r\n`,
    );
    for (let i = 0; i < PIECES; i++) {
      await writeAllText(conn, piece);
      await delay(500);
    }
  });
  await using lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
timeouts: { drain: 10s }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  let stopped: { code: number; stderr: string } | undefined;
  try {
    const c = await RawClient.connect(lb.port);
    const t0 = performance.now();
    const response = c.request("GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n");
    let done = 0;
    response.then(() => done = performance.now(), () => done = performance.now());
    await delay(1000);
    lb.child.kill("SIGTERM");
    // new connections are refused from shortly after the signal, while the response goes on
    let refusedAt = 0;
    for (let i = 0; i < 50 && refusedAt === 0; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: lb.port })).close();
        await delay(20);
      } catch (e) {
        assert(e instanceof Deno.errors.ConnectionRefused, String(e));
        refusedAt = performance.now();
      }
    }
    assert(refusedAt !== 0, "new connections still accepted 1 s after SIGTERM");
    assertLess(refusedAt - t0, 2000);
    assertEquals(done, 0, "the response ended before new connections were refused");
    const res = await response;
    assertEquals(res.status, 200);
    assertEquals(res.body, piece.repeat(PIECES), "response body intact");
    assertGreater(done - t0, 4500);
    assert(await c.closed(1000), "the client connection is closed after the response");
    c.close();
    // it exits by itself once the response is done (a second SIGTERM would force it)
    const t1 = performance.now();
    const exited = await within(lb.child.status.then(() => true), 3000) ?? false;
    const exitTook = performance.now() - t1;
    stopped = await lb.stop();
    assert(exited, `still running 3 s after its last response ended: ${stopped.stderr}`);
    assertLess(exitTook, 1000, "exit after the last response");
    assertEquals(stopped.code, 0, stopped.stderr);
    assertStringIncludes(stopped.stderr, "shutting down");
  } finally {
    if (!stopped) await lb.stop("SIGKILL");
    await backend.close();
  }
});

Deno.test("shutdown past timeouts.drain closes the connections still waiting, logged", async () => {
  let held: Deno.Conn | undefined;
  await using backend = rawServer(async (conn, read) => {
    await read(); // never answers
    held = conn;
    await delay(1000);
  });
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
timeouts: { drain: 200ms }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  using c = await RawClient.connect(lb.port);
  try {
    await c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    for (let i = 0; i < 100 && held === undefined; i++) await delay(10);
    assert(held !== undefined, "the request reached the backend");
    await lb.close();
    assert(
      lb.lines.some((l) => l.startsWith("warn drain timeout reached")),
      lb.lines.join("\n"),
    );
    assert(await c.closed(2000), "the waiting client connection is closed");
  } finally {
    c.close();
    await backend.close();
  }
});

Deno.test("SIGHUP: a broken config is rejected with file:line and old routes serve; a good one applies without dropping a keep-alive client", async () => {
  await using a = keepAliveBackend("A");
  await using b = keepAliveBackend("B");
  const config = (port: number, body: string) =>
    // watching off: what applies here is the SIGHUP's doing
    `listen: { http: 127.0.0.1:${port} }\nreload: { watch: false }\nroutes:\n${body}`;
  await using lb = await startLbProcess(
    config(0, "").replace("127.0.0.1:0", "127.0.0.1:$PORT") +
      `  - { name: app, backends: [{ address: 127.0.0.1:${a.port} }] }\n`,
  );
  const file = `${lb.dir}/unload.yaml`;
  let stopped: { code: number; stderr: string } | undefined;
  using c = await RawClient.connect(lb.port);
  try {
    const get = async (client: RawClient) => {
      const res = await client.request("GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n");
      assertEquals(res.status, 200);
      return res.body.trim();
    };
    assertEquals(await get(c), "A /x");
    // broken: an unknown key on line 5
    await Deno.writeTextFile(
      file,
      config(
        lb.port,
        `  - name: app\n    backends: [{ address: 127.0.0.1:${b.port} }]\n    bogus: 1\n`,
      ),
    );
    lb.child.kill("SIGHUP");
    await delay(500);
    assertEquals(await get(c), "A /x", "old routes on the open connection");
    const fresh = await RawClient.connect(lb.port);
    assertEquals(await get(fresh), "A /x", "old routes on a new connection");
    fresh.close();
    // good: the route now goes to B
    await Deno.writeTextFile(
      file,
      config(lb.port, `  - { name: app, backends: [{ address: 127.0.0.1:${b.port} }] }\n`),
    );
    lb.child.kill("SIGHUP");
    let body = "";
    for (let i = 0; i < 50 && body !== "B /x"; i++) {
      body = await get(c); // throws if the connection was dropped
      if (body !== "B /x") await delay(50);
    }
    assertEquals(body, "B /x", "the new route on the same client connection");
    assertEquals(await get(c), "B /x");
    c.close();
    stopped = await lb.stop();
    assertEquals(stopped.code, 0);
    assertStringIncludes(stopped.stderr, "config reload rejected");
    assertStringIncludes(stopped.stderr, `${file}:6: routes[0].bogus: unknown key`);
    assertStringIncludes(stopped.stderr, `config reloaded from ${file}`);
  } finally {
    c.close();
    if (!stopped) await lb.stop("SIGKILL");
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("a WebSocket echo through the balancer exchanges 1000 messages and both sides close cleanly", async () => {
  let serverClose: CloseEvent | undefined;
  const serverClosed = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("no", { status: 400 });
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => socket.send(e.data);
    socket.onclose = (e) => {
      serverClose = e;
      serverClosed.resolve();
    };
    return response;
  });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes: [{ name: ws, backends: [{ address: 127.0.0.1:${server.addr.port} }] }]
`);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${lb.port}/`);
    const inbox: string[] = [];
    let wake: (() => void) | undefined;
    ws.onmessage = (e) => {
      inbox.push(e.data as string);
      wake?.();
    };
    const closed = new Promise<CloseEvent>((r) => ws.onclose = r);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new Error(`websocket error: ${(e as ErrorEvent).message}`));
    });
    for (let i = 0; i < 1000; i++) {
      const msg = `message ${i} ${"x".repeat(i % 200)}`;
      ws.send(msg);
      while (inbox.length === 0) await new Promise<void>((r) => wake = r);
      assertEquals(inbox.shift(), msg);
    }
    ws.close(1000, "done");
    const clientClose = await closed;
    await serverClosed.promise;
    assertEquals([clientClose.code, clientClose.reason, clientClose.wasClean], [
      1000,
      "done",
      true,
    ]);
    assertEquals([serverClose!.code, serverClose!.reason, serverClose!.wasClean], [
      1000,
      "done",
      true,
    ]);
  } finally {
    await lb.close();
    await server.shutdown();
  }
});
