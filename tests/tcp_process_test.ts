/**
 * `tcp:` routes in a real `main.ts run` process and with real discovery: a Redis
 * found through an SRV record served by dnsmasq, and the drain on SIGTERM (stop
 * accepting, let open connections finish within `timeouts.drain`, then close them).
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { startDnsmasq } from "./_dnsmasq.ts";
import { startLbProcess } from "./_process.ts";
import { readAll, tcpBackend, tcpLogger, until, writeAll } from "./_tcp.ts";
import { redisCli, startRedis } from "./_redis.ts";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import { delay, freePort } from "./_http.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Echoes every byte back until the client's end of stream. */
function echoBackend() {
  return tcpBackend(async (conn) => {
    const buf = new Uint8Array(16 * 1024);
    for (let n; (n = await conn.read(buf)) !== null;) await writeAll(conn, buf.subarray(0, n));
  });
}

/** Reads from `conn` until `n` bytes came. */
async function readN(conn: Deno.Conn, n: number): Promise<string> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) break;
    got += r;
  }
  return dec.decode(buf.subarray(0, got));
}

/** Waits until nothing accepts on 127.0.0.1:`port` any more. */
async function untilRefused(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    } catch {
      return;
    }
    await delay(20);
  }
  throw new Error(`port ${port} still accepts`);
}

Deno.test("tcp route: a Redis found through an SRV record (dnsmasq) serves redis-cli through unload", async () => {
  await using redis = await startRedis();
  const dns = await startDnsmasq({
    srv: [{
      name: "_redis._tcp.kv.test",
      target: "r1.kv.test",
      port: redis.port,
      priority: 0,
      weight: 10,
    }],
    hosts: [{ name: "r1.kv.test", address: "127.0.0.1" }],
  });
  try {
    const logger = tcpLogger();
    await using lb = Object.assign(
      await Balancer.start(
        parseConfig(
          `
dns: { nameserver: 127.0.0.1:${dns.port} }
tcp: [{ name: kv, listen: 127.0.0.1:0, srv: _redis._tcp.kv.test, scheduler: least_conn }]
`,
          "test.yaml",
        ),
        { logger },
      ),
      { [Symbol.asyncDispose]: () => lb.close() },
    );
    const port = lb.tcpAddrs().get("kv")!.port;
    assertEquals(await redisCli(port, "SET", "db", "found by SRV"), "OK");
    assertEquals(await redisCli(port, "GET", "db"), "found by SRV");
    assertEquals(lb.tcpRoutes[0]!.scheduler.backends.map((b) => b.name), ["r1.kv.test"]);
    assertEquals(lb.srvStates().get("kv")?.name, "_redis._tcp.kv.test");
    await until(() => logger.records.length === 2, "two records");
    assert(logger.records.every((r) => r.backend === `127.0.0.1:${redis.port}`));
  } finally {
    await dns.stop();
  }
});

Deno.test("tcp route: on SIGTERM unload stops accepting, an open connection keeps flowing to its end, and the process exits 0", async () => {
  await using backend = echoBackend();
  await using lb = await startLbProcess(`
log: { access: stdout }
timeouts: { drain: 1h }
tcp: [{ name: echo, listen: 127.0.0.1:$PORT, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await writeAll(c, enc.encode("before\n"));
  assertEquals(await readN(c, 7), "before\n");
  const stopped = lb.stop("SIGTERM");
  await untilRefused(lb.port);
  await writeAll(c, enc.encode("during the drain\n"));
  assertEquals(await readN(c, 17), "during the drain\n");
  await c.closeWrite();
  assertEquals((await readAll(c)).length, 0);
  c.close();
  const { code, stdout } = await stopped;
  assertEquals(code, 0);
  const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
  const mine = lines.filter((l) => l.bytes_in === 24);
  assertEquals(mine.map((l) => [l.route, l.end, l.bytes_out]), [["echo", "closed", 24]]);
});

Deno.test("tcp route: a connection still open when timeouts.drain runs out is closed and logged as drain", async () => {
  await using backend = echoBackend();
  await using lb = await startLbProcess(`
log: { access: stdout }
timeouts: { drain: 300ms }
tcp: [{ name: echo, listen: 127.0.0.1:$PORT, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await writeAll(c, enc.encode("held open\n"));
  assertEquals(await readN(c, 10), "held open\n");
  const stopped = lb.stop("SIGTERM");
  assertEquals((await readAll(c)).length, 0); // unload closes it once the drain time is up
  c.close();
  const { code, stdout, stderr } = await stopped;
  assertEquals(code, 0);
  assertStringIncludes(stderr, "drain timeout reached");
  const line = stdout.trim().split("\n").map((l) => JSON.parse(l)).find((l) => l.bytes_in === 10);
  assertEquals([line?.route, line?.end], ["echo", "drain"]);
});

Deno.test("tcp route: SIGHUP re-reads the file: a route added there starts listening, one removed stops", async () => {
  await using backend = echoBackend();
  const other = freePort();
  const route = (name: string, port: string | number) =>
    `  - { name: ${name}, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${backend.port} }] }\n`;
  await using lb = await startLbProcess(`reload: { watch: false }\ntcp:\n${route("a", "$PORT")}`);
  const file = `${lb.dir}/unload.yaml`;
  await Deno.writeTextFile(file, `reload: { watch: false }\ntcp:\n${route("b", other)}`);
  Deno.kill(lb.pid, "SIGHUP");
  const c = await untilAccepts(other);
  await writeAll(c, enc.encode("via b"));
  await c.closeWrite();
  assertEquals(dec.decode(await readAll(c)), "via b");
  c.close();
  await untilRefused(lb.port);
  assertStringIncludes(lb.stderrSoFar(), "config reloaded from");
});

/** Connects to 127.0.0.1:`port` once something accepts there. */
async function untilAccepts(port: number): Promise<Deno.Conn> {
  for (let i = 0; i < 300; i++) {
    try {
      return await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      await delay(20);
    }
  }
  throw new Error(`nothing accepts on ${port}`);
}
