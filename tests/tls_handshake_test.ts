/**
 * TLS handshakes that never finish, on both ends: clients of `listen.https` that
 * send nothing (or 3 bytes of a ClientHello), and a TLS backend that accepts and
 * never answers. Deno 2.9 cannot release such a socket before the peer leaves
 * (docs/tls.md); the balancer counts them (`unload_tls_handshakes_stalled`, the
 * dashboard), warns when they pile up, and closes each once its peer is gone.
 *
 * Sockets are counted with `ss` on the balancer's side of each connection.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { makeCa } from "./_certs.ts";
import {
  captureLogger,
  delay,
  keepAliveBackend,
  RawClient,
  startBalancer,
  until,
} from "./_http.ts";
import { findChromium, launchChromium } from "./_chromium.ts";
import type { Status } from "../src/admin/status.ts";

const dec = new TextDecoder();
const ca = await makeCa();
const cert = await ca.issue("server", { serial: 0x2601 });
/** The first bytes of a TLS ClientHello record: type handshake, version 3.1. */
const HELLO_START = new Uint8Array([0x16, 0x03, 0x01]);

/** ESTABLISHED TCP sockets whose local (`sport`) or remote (`dport`) port is `port`. */
async function established(side: "sport" | "dport", port: number): Promise<number> {
  const out = await new Deno.Command("ss", {
    args: ["-Htn", "state", "established", `( ${side} = :${port} )`],
    stdout: "piped",
  }).output();
  return dec.decode(out.stdout).split("\n").filter((l) => l.trim() !== "").length;
}

/** True once the peer closed `conn` (a read ends or fails). */
async function closedByPeer(conn: Deno.Conn, ms: number): Promise<boolean> {
  const read = conn.read(new Uint8Array(64)).then((n) => n === null, () => true);
  const timer = delay(ms).then(() => false);
  return await Promise.race([read, timer]);
}

Deno.test("listen.https: handshakes that send nothing or 3 bytes of a ClientHello count as stalled past timeouts.head until their client leaves; a warning names the cause; a real client is served meanwhile", async () => {
  await using backend = keepAliveBackend("app");
  const logger = captureLogger();
  await using lb = await startBalancer(
    `
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
admin: { listen: 127.0.0.1:0 }
timeouts: { head: 300ms }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
    { logger },
  );
  const port = lb.addrs.https!.port;
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  const stalledSample = async () =>
    /unload_tls_handshakes_stalled\{side="client"\} (\d+)/.exec(
      await (await fetch(`${admin}/metrics`)).text(),
    )?.[1];
  const silent: Deno.Conn[] = [];
  const hello: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 50; i++) {
      silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.write(HELLO_START);
      hello.push(c);
    }
    await until("100 stalled handshakes", () => lb.tlsStalls.stalled.client === 100);
    assertEquals(lb.tlsStalls.timedOut.client, 100);
    assertEquals(await stalledSample(), "100", "/metrics shows them");
    const status = await (await fetch(`${admin}/status`)).json() as Status;
    assertEquals(status.tls.stalled, { client: 100, backend: 0 }, "/status (the dashboard) too");
    const warning = logger.lines.find((l) => l.includes("stuck in a TLS handshake"));
    assert(warning, "a warning when they pile up: " + logger.lines.join("\n"));
    assertStringIncludes(warning, "warn tls: 100 client connections to listen.https");
    assertStringIncludes(
      warning,
      "Deno cannot close a socket whose TLS handshake has not finished",
    );
    assertStringIncludes(warning, "docs/tls.md");

    // The runtime keeps every socket (docs/tls.md). If this fails, Deno now releases them:
    // close stalled handshakes at the deadline instead of counting them.
    assertEquals(await established("sport", port), 100, "the balancer's sockets are all open");
    assertEquals(await closedByPeer(silent[0]!, 200), false, "and the client sees no EOF");

    // A real client is served meanwhile.
    const out = await new Deno.Command("curl", {
      args: ["-sS", "--cacert", ca.ca, `https://127.0.0.1:${port}/x`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(dec.decode(out.stderr), "");
    assertStringIncludes(dec.decode(out.stdout), "app");

    // Clients that leave take their socket with them, and the count follows.
    for (const c of silent.splice(0)) c.close();
    await until("50 left", () => lb.tlsStalls.stalled.client === 50);
    for (const c of hello.splice(0)) c.close();
    await until("none left", () => lb.tlsStalls.stalled.client === 0);
    await until("no socket left", async () => await established("sport", port) === 0);
    assertEquals(await stalledSample(), "0");
    assertEquals(lb.tlsStalls.timedOut.client, 100, "the counter keeps its total");
  } finally {
    for (const c of [...silent, ...hello]) c.close();
  }
});

Deno.test("listen.https: a handshake that finishes within timeouts.head is served and never counted", async () => {
  await using backend = keepAliveBackend("app");
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
timeouts: { head: 10s }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const port = lb.addrs.https!.port;
  const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca.caPem] });
  try {
    await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    assertStringIncludes(dec.decode(buf.subarray(0, n ?? 0)), "HTTP/1.1 200");
  } finally {
    conn.close();
  }
  assertEquals(lb.tlsStalls.timedOut, { client: 0, backend: 0 });
});

Deno.test("routes[].tls: a backend that accepts and never answers the handshake gets 504 within timeouts.connect; its socket counts as stalled until the backend closes it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const backendPort = listener.addr.port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c); // reads nothing, answers nothing
  })();
  const logger = captureLogger();
  await using lb = await startBalancer(
    `
listen: { http: 127.0.0.1:0 }
timeouts: { connect: 300ms }
retry: { attempts: 0 }
routes: [{ name: app, tls: true, ca: ${ca.ca}, backends: [{ address: 127.0.0.1:${backendPort} }] }]
`,
    { logger },
  );
  try {
    using c = await RawClient.connect(lb.addrs.http!.port);
    const res = await c.request("GET / HTTP/1.1\r\nHost: app\r\n\r\n");
    assertEquals(res.status, 504, "timeouts.connect bounds the handshake");
    assertEquals(lb.tlsStalls.stalled.backend, 1);
    assertEquals(lb.tlsStalls.timedOut.backend, 1);
    // The runtime keeps the socket until the backend closes it (docs/tls.md).
    assertEquals(await established("dport", backendPort), 1, "the balancer's socket stays open");
    for (const b of held.splice(0)) b.close();
    await until("the stalled handshake to end", () => lb.tlsStalls.stalled.backend === 0);
    await until("the socket to go", async () => await established("dport", backendPort) === 0);
  } finally {
    for (const b of held) b.close();
    listener.close();
    await accepting;
  }
});

Deno.test("routes[].tls: active health checks of a backend that never answers the handshake mark it down; each probe's socket counts as stalled until the backend closes them", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const backendPort = listener.addr.port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 100ms, timeout: 200ms, failures: 2 }
routes: [{ name: app, tls: true, ca: ${ca.ca}, backends: [{ address: 127.0.0.1:${backendPort} }] }]
`);
  try {
    const backend = () => lb.routes[0]!.scheduler.backends[0]!;
    await until("the backend to go down", () => !backend().healthy);
    await until("two stalled probes", () => lb.tlsStalls.stalled.backend >= 2);
    const stalled = lb.tlsStalls.stalled.backend; // a probe in progress may add one socket
    const open = await established("dport", backendPort);
    assert(open >= stalled, `${open} sockets open for ${stalled} stalled handshakes`);
    for (const b of held.splice(0)) b.close();
    listener.close();
    await accepting;
    await until("none stalled", () => lb.tlsStalls.stalled.backend === 0);
    await until("no socket left", async () => await established("dport", backendPort) === 0);
  } finally {
    for (const b of held) b.close();
    try {
      listener.close();
    } catch { /* closed above */ }
    await accepting;
  }
});

Deno.test({
  name:
    "dashboard in headless chromium: stalled TLS handshakes show in the header and as an alert, and go when their clients leave",
  // without chromium the test is skipped locally, and fails under CI=true (launch throws)
  ignore: Deno.env.get("CI") !== "true" && findChromium() === undefined,
  async fn() {
    await using backend = keepAliveBackend("app");
    await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
admin: { listen: 127.0.0.1:0 }
timeouts: { head: 300ms }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
    const port = lb.addrs.https!.port;
    const clients: Deno.Conn[] = [];
    await using browser = await launchChromium();
    const page = browser.page;
    const shown = () =>
      page.evaluate<[string, string]>(
        `[document.getElementById("tls-stalled").textContent,
          [...document.querySelectorAll(".alert")].map((a) => a.textContent).join("\\n")]`,
      );
    try {
      for (let i = 0; i < 3; i++) clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await page.goto(`http://127.0.0.1:${lb.addrs.admin!.port}/`);
      let last: [string, string] = ["", ""];
      await until(
        "the header to show 3",
        async () => (last = await shown())[0] === "3 client, 0 backend",
      )
        .catch((e) => {
          throw new Error(`${e.message}: ${JSON.stringify(last)}`);
        });
      assertStringIncludes(last[1], "Sockets stuck in a TLS handshake: 3 from clients");
      for (const c of clients.splice(0)) c.close();
      await until(
        "the header to show 0",
        async () => (last = await shown())[0] === "0 client, 0 backend",
      );
      assert(!last[1].includes("TLS handshake"), last[1]);
      assertEquals(page.errors, []);
    } finally {
      for (const c of clients) c.close();
    }
  },
});

Deno.test("tls handshake test CA cleanup", async () => {
  await ca.remove();
});
