/**
 * TLS on `tcp:` routes (issue 24, DESIGN.md "Edge"): passthrough by the
 * ClientHello's server name (`sni:`) to nginx TLS servers with their own
 * certificates from a test CA, checked with `openssl s_client` and `curl`; and
 * termination (`tls: { cert, key }`) in front of Debian redis-server, driven with
 * `redis-cli --tls`; and TLS to backends (`backend_tls: true`, with `client_cert`
 * for nginx's `ssl_verify_client on`).
 *
 * @module
 */
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import { renderMetrics } from "../src/admin/prometheus.ts";
import { buildStatus } from "../src/admin/status.ts";
import { freePort } from "./_http.ts";
import { installCert, type IssuedCert, makeCa, servedSerial, type TestCa } from "./_certs.ts";
import { readAll, tcpLogger, until, writeAll } from "./_tcp.ts";
import { redisCli, startRedis } from "./_redis.ts";
import { startNginx as startOneNginx } from "./_nginx.ts";

import { X509Certificate } from "node:crypto";

const dec = new TextDecoder();
const enc = new TextEncoder();

/**
 * A balancer started from `yaml` with a {@linkcode tcpLogger}; `await using` closes it.
 * Given a function, `yaml(port)` names a free port (`port` on the result), tried again
 * with another when something took it first.
 */
async function startTcp(yaml: string | ((port: number) => string)) {
  const logger = tcpLogger();
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const text = typeof yaml === "string" ? yaml : yaml(port);
    let lb: Balancer;
    try {
      lb = await Balancer.start(parseConfig(text, "test.yaml"), { logger });
    } catch (e) {
      if (attempt < 3 && (e as Error).message.includes("address already in use")) continue;
      throw e;
    }
    return Object.assign(lb, {
      logger,
      port,
      portOf: (name: string) => lb.tcpAddrs().get(name)!.port,
      metric: (line: string) => renderMetrics(lb).split("\n").find((l) => l.startsWith(line)),
      [Symbol.asyncDispose]: () => lb.close(),
    });
  }
}

/**
 * nginx (Debian's, HTTP with ssl) serving one TLS server per certificate, each on
 * its own port and answering its name to `GET /`; `await using` stops it.
 */
async function startNginx(
  servers: Array<{ name: string; cert: IssuedCert }>,
): Promise<AsyncDisposable & { ports: number[] }> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startNginxOnce(servers);
    } catch (e) {
      // a port found free was taken before nginx bound it: again, with others
      if (attempt < 3 && (e as Error).message.includes("Address already in use")) continue;
      throw e;
    }
  }
}

async function startNginxOnce(servers: Array<{ name: string; cert: IssuedCert }>) {
  const dir = await Deno.makeTempDir({ prefix: "unload-nginx-" });
  const ports = servers.map(() => freePort());
  const blocks = servers.map(({ name, cert }, i) =>
    `  server {\n    listen 127.0.0.1:${ports[i]} ssl;\n` +
    `    ssl_certificate ${cert.cert};\n    ssl_certificate_key ${cert.key};\n` +
    `    location / { return 200 "${name}\\n"; }\n  }\n`
  ).join("");
  const temps = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((t) => `  ${t}_temp_path ${dir}/${t};\n`).join("");
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `daemon off;\nmaster_process off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\n` +
      `events { worker_connections 64; }\n` +
      `http {\n  access_log off;\n${temps}${blocks}}\n`,
  );
  const child = new Deno.Command("nginx", {
    args: ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/error.log`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => (exited = true, s));
  for (const port of ports) {
    for (let up = false; !up;) {
      if (exited) {
        const err = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
        await child.stderr.cancel().catch(() => {});
        await Deno.remove(dir, { recursive: true });
        throw new Error(`nginx did not start: ${err}`);
      }
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        up = true;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  const stop = async () => {
    if (!exited) child.kill("SIGKILL");
    await status;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  return { ports, [Symbol.asyncDispose]: stop };
}

/** `curl --cacert CA --resolve NAME:PORT:127.0.0.1 https://NAME:PORT/`: its body, or its error. */
async function curl(ca: TestCa, name: string, port: number): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "20",
      "--cacert",
      ca.ca,
      "--resolve",
      `${name}:${port}:127.0.0.1`,
      `https://${name}:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return out.success ? dec.decode(out.stdout) : `curl failed: ${dec.decode(out.stderr)}`;
}

/** The nginx servers, their certificates and the CA that signed them. */
async function backends() {
  const ca = await makeCa();
  const a = await ca.issue("a", { serial: 0xa1, names: ["a.test"] });
  const b = await ca.issue("b", { serial: 0xb2, names: ["b.test", "*.b.test"] });
  const d = await ca.issue("d", { serial: 0xd3, names: ["default.test"] });
  const nginx = await startNginx([
    { name: "a", cert: a },
    { name: "b", cert: b },
    { name: "default", cert: d },
  ]);
  const [pa, pb, pd] = nginx.ports as [number, number, number];
  return {
    ca,
    a,
    b,
    d,
    nginx,
    pa,
    pb,
    pd,
    async [Symbol.asyncDispose]() {
      await nginx[Symbol.asyncDispose]();
      await ca.remove();
    },
  };
}

Deno.test("sni passthrough: openssl and curl see each nginx backend's own certificate through one unload address, by server name", async () => {
  await using be = await backends();
  await using lb = await startTcp((port) => `
tcp:
  - { name: a, listen: 127.0.0.1:${port}, sni: a.test, backends: [{ address: 127.0.0.1:${be.pa} }] }
  - { name: b, listen: 127.0.0.1:${port}, sni: "*.b.test", backends: [{ address: 127.0.0.1:${be.pb} }] }
  - { name: other, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${be.pd} }] }
`);
  const port = lb.port;
  // openssl s_client: the certificate the client is shown is the backend's
  assertEquals(await servedSerial(port, "a.test"), "A1");
  assertEquals(await servedSerial(port, "x.b.test"), "B2");
  assertEquals(await servedSerial(port, "deep.x.b.test"), "B2"); // *. takes deeper names too
  assertEquals(await servedSerial(port, "unknown.test"), "D3"); // the default route
  // a ClientHello over several TLS records (openssl -split_send_frag) is gathered whole; one
  // without a server name goes to the default route
  const serial = async (args: string) => {
    const out = await new Deno.Command("bash", {
      args: [
        "-c",
        `openssl s_client -connect 127.0.0.1:${port} ${args} </dev/null 2>/dev/null` +
        ` | openssl x509 -noout -serial`,
      ],
      stdout: "piped",
    }).output();
    return dec.decode(out.stdout).trim();
  };
  const split = "-tls1_2 -max_send_frag 512 -split_send_frag 64";
  assertEquals(await serial(`-servername a.test ${split}`), "serial=A1");
  assertEquals(await serial("-noservername"), "serial=D3");
  // curl verifies the backend's certificate for the name it asked, end to end
  assertEquals(await curl(be.ca, "a.test", port), "a\n");
  assertEquals(await curl(be.ca, "www.b.test", port), "b\n");
  assertEquals(await curl(be.ca, "default.test", port), "default\n");
  // each went to its route's backend, as the access log says
  await until(() => lb.logger.records.length === 9, "nine connection records");
  const seen = lb.logger.records.map((r) => `${r.route}→${r.backend.split(":")[1]}`).sort();
  assertEquals(
    seen,
    [
      `a→${be.pa}`,
      `a→${be.pa}`,
      `a→${be.pa}`,
      `b→${be.pb}`,
      `b→${be.pb}`,
      `b→${be.pb}`,
      `other→${be.pd}`,
      `other→${be.pd}`,
      `other→${be.pd}`,
    ].sort(),
  );
  for (const r of lb.logger.records) assert(r.bytesIn > 0 && r.bytesOut > 0, JSON.stringify(r));
});

Deno.test("sni passthrough: a client that sends no TLS, one that asks for a name no route has (no default), and one that sends nothing are closed, logged and counted", async () => {
  await using be = await backends();
  await using lb = await startTcp((port) => `
timeouts: { head: 300ms }
tcp:
  - { name: a, listen: 127.0.0.1:${port}, sni: a.test, backends: [{ address: 127.0.0.1:${be.pa} }] }
`);
  const port = lb.port;
  // plain HTTP: closed without a byte, and nothing reached nginx's route
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, enc.encode("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    assertEquals((await readAll(conn)).length, 0);
  }
  // an unknown name, and no default route: openssl gets no certificate
  await assertRejects(() => servedSerial(port, "zzz.test"), Error, "no certificate served");
  // silence: closed at timeouts.head
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    assertEquals((await readAll(conn)).length, 0);
  }
  await until(
    () => lb.logger.lines.filter((l) => l.startsWith("warn tcp")).length === 3,
    "3 warnings",
  );
  const warnings = lb.logger.lines.filter((l) => l.startsWith("warn tcp"));
  assertMatch(
    warnings[0]!,
    /^warn tcp 127\.0\.0\.1:\d+: closed a connection from 127\.0\.0\.1 \(not_tls\): the first byte 0x47 is not a TLS handshake record$/,
  );
  assertStringIncludes(
    warnings[1]!,
    '(no_route): no route for server name "zzz.test", and no default route',
  );
  assertStringIncludes(warnings[2]!, "(timeout): no whole ClientHello within timeouts.head");
  for (const reason of ["not_tls", "no_route", "timeout"]) {
    assertEquals(
      lb.metric(`unload_tcp_refused_total{listen="127.0.0.1:${port}",reason="${reason}"}`),
      `unload_tcp_refused_total{listen="127.0.0.1:${port}",reason="${reason}"} 1`,
    );
  }
  assertEquals(lb.logger.records, []); // none reached a route
  const status = buildStatus(lb).tcp[0]!;
  assertEquals([status.sni, status.tls, status.backendTls], ["a.test", null, false]);
  assertEquals(status.refused, { not_tls: 1, no_route: 1, timeout: 1 });
});

/** The first handshake record `openssl s_client ARGS` sends, captured on a plain socket. */
async function capturedHello(...args: string[]): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${listener.addr.port}`, ...args],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  using conn = await listener.accept();
  const buf = new Uint8Array(16384);
  let n = 0;
  while (n < 5 || n < 5 + ((buf[3]! << 8) | buf[4]!)) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) throw new Error("openssl left");
    n += got;
  }
  child.kill();
  await child.status;
  return buf.slice(0, n);
}

Deno.test("sni passthrough: a ClientHello written one byte at a time still reaches its route, and the backend answers it", async () => {
  await using be = await backends();
  await using lb = await startTcp((port) => `
tcp:
  - { name: a, listen: 127.0.0.1:${port}, sni: a.test, backends: [{ address: 127.0.0.1:${be.pa} }] }
  - { name: other, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${be.pd} }] }
`);
  const port = lb.port;
  const hello = await capturedHello("-servername", "a.test", "-tls1_2");
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  for (let i = 0; i < hello.length; i++) {
    await writeAll(conn, hello.subarray(i, i + 1));
    await new Promise((r) => setTimeout(r, 1));
  }
  // nginx answers with its ServerHello, and its certificate (TLS 1.2: in the clear)
  const reply = new Uint8Array(16384);
  let n = 0;
  const a = new Uint8Array(new X509Certificate(await Deno.readTextFile(be.a.cert)).raw);
  while (!contains(reply.subarray(0, n), a)) {
    const got = await conn.read(reply.subarray(n));
    if (got === null) break;
    n += got;
  }
  assertEquals([reply[0], reply[5]], [0x16, 2]); // a handshake record, a ServerHello
  assert(contains(reply.subarray(0, n), a), "nginx a's certificate came back");
  conn.close();
  await until(() => lb.logger.records.length === 1, "a record");
  assertEquals(lb.logger.records[0]!.route, "a");
  assertEquals(lb.logger.records[0]!.bytesIn, hello.length);
});

/** Whether `needle` occurs in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("sni passthrough: a reload adds an sni route on the same address; the connections after it reach the new backend", async () => {
  await using be = await backends();
  let port = 0;
  const route = (name: string, sni: string, p: number) =>
    `  - { name: ${name}, listen: 127.0.0.1:${port}, sni: "${sni}", backends: [{ address: 127.0.0.1:${p} }] }\n`;
  const other = () =>
    `  - { name: other, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${be.pd} }] }\n`;
  await using lb = await startTcp((p) => {
    port = p;
    return `tcp:\n${route("a", "a.test", be.pa)}${other()}`;
  });
  assertEquals(await servedSerial(port, "b.test"), "D3"); // not there yet: the default
  const result = await lb.reload(
    parseConfig(
      `tcp:\n${route("a", "a.test", be.pa)}${route("b", "b.test", be.pb)}${other()}`,
      "t.yaml",
    ),
  );
  assertEquals(result.ok, true);
  assertEquals(await servedSerial(port, "b.test"), "B2");
  assertEquals(await servedSerial(port, "a.test"), "A1");
  assertEquals(lb.portOf("b"), port); // the same listener, kept
});

Deno.test("tls termination: redis-cli --tls talks to Debian redis-server through unload, which shows its own certificate", async () => {
  await using redis = await startRedis();
  await using ca = await makeCa();
  const r = await ca.issue("r", { serial: 0x7e, names: ["r.test"] });
  await using lb = await startTcp(`
tcp:
  - { name: kv, listen: 127.0.0.1:0, tls: { cert: ${r.cert}, key: ${r.key} }, backends: [{ address: 127.0.0.1:${redis.port} }] }
`);
  const port = lb.portOf("kv");
  const cli = (...args: string[]) =>
    redisCli(port, "--tls", "--cacert", ca.ca, "--sni", "r.test", ...args);
  assertEquals(await cli("SET", "greeting", "hello over TLS"), "OK");
  assertEquals(await cli("GET", "greeting"), "hello over TLS");
  assertEquals(await redisCli(redis.port, "GET", "greeting"), "hello over TLS"); // in redis, in the clear
  assertEquals(await servedSerial(port, "r.test"), "7E"); // unload's certificate
  // openssl s_client speaking RESP through it (-quiet waits for the server to close: QUIT)
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `printf 'PING\\r\\nQUIT\\r\\n' | openssl s_client -quiet -verify_return_error -CAfile ${ca.ca} ` +
      `-connect 127.0.0.1:${port} -servername r.test 2>/dev/null`,
    ],
    stdout: "piped",
  }).output();
  assertEquals(dec.decode(out.stdout), "+PONG\r\n+OK\r\n");
  await until(() => lb.logger.records.length >= 4, "four records");
  for (const rec of lb.logger.records) assertEquals(rec.route, "kv");
});

Deno.test("tls termination: a client without TLS fails its handshake and one that sends nothing runs out of timeouts.head; both are counted", async () => {
  await using redis = await startRedis();
  await using ca = await makeCa();
  const r = await ca.issue("r", { serial: 0x7f, names: ["r.test"] });
  await using lb = await startTcp(`
timeouts: { head: 300ms }
tcp:
  - { name: kv, listen: 127.0.0.1:0, tls: { cert: ${r.cert}, key: ${r.key} }, backends: [{ address: 127.0.0.1:${redis.port} }] }
`);
  const port = lb.portOf("kv");
  assertEquals(await redisCli(port, "PING"), ""); // plain RESP: no answer
  using silent = await Deno.connect({ hostname: "127.0.0.1", port });
  await until(() => lb.tlsStalls.timedOut.client === 1, "a handshake timed out");
  const key = `unload_tcp_refused_total{listen="127.0.0.1:0",reason=`;
  assertEquals(lb.metric(`${key}"tls_handshake"}`), `${key}"tls_handshake"} 1`);
  assertEquals(lb.metric(`${key}"timeout"}`), `${key}"timeout"} 1`);
  assertEquals(lb.logger.records, []);
  silent.close(); // the client leaves: the socket held for it goes
  await until(() => lb.tlsStalls.stalled.client === 0, "the stalled socket released");
});

Deno.test("tls termination: a certificate file that cannot be read stops the start, naming the route's key", async () => {
  const e = await assertRejects(() =>
    Balancer.start(
      parseConfig(
        "tcp:\n  - { name: kv, listen: 127.0.0.1:0, tls: { cert: /nonexistent/r.pem, key: /nonexistent/r.key }, backends: [{ address: 127.0.0.1:1 }] }\n",
        "t.yaml",
      ),
      { logger: tcpLogger() },
    )
  );
  assertStringIncludes(e.message, "tcp[0].tls.cert /nonexistent/r.pem: cannot read");
});

/** A plain HTTP/1.1 request written to a tcp route, and the whole answer. */
async function rawGet(port: number): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(
    conn,
    enc.encode("GET / HTTP/1.1\r\nHost: backend.test\r\nConnection: close\r\n\r\n"),
  );
  return dec.decode(await readAll(conn));
}

Deno.test("backend_tls: a plain TCP client reaches nginx over TLS with the route's client certificate (ssl_verify_client on), also behind tls: termination; without one nginx refuses it", async () => {
  await using ca = await makeCa();
  const server = await ca.issue("nginx", { serial: 0x51, names: ["backend.test"] });
  const client = await ca.issue("client", { serial: 0xc1, names: ["client.test"], client: true });
  const front = await ca.issue("front", { serial: 0xf1, names: ["front.test"] });
  await using nginx = await startOneNginx((port) => `
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${server.cert};
    ssl_certificate_key ${server.key};
    ssl_client_certificate ${ca.ca};
    ssl_verify_client on;
    location / { return 200 "verified $ssl_client_s_dn\\n"; }
  }`);
  const common = `backend_tls: true, ca: ${ca.ca}, server_name: backend.test`;
  await using lb = await startTcp(`
tcp:
  - { name: mtls, listen: 127.0.0.1:0, ${common}, client_cert: { cert: ${client.cert}, key: ${client.key} }, backends: [{ address: 127.0.0.1:${nginx.port} }] }
  - { name: nocert, listen: 127.0.0.1:0, ${common}, backends: [{ address: 127.0.0.1:${nginx.port} }] }
  - { name: wrongname, listen: 127.0.0.1:0, backend_tls: true, ca: ${ca.ca}, server_name: other.test, backends: [{ address: 127.0.0.1:${nginx.port} }] }
  - { name: both, listen: 127.0.0.1:0, tls: { cert: ${front.cert}, key: ${front.key} }, ${common}, client_cert: { cert: ${client.cert}, key: ${client.key} }, backends: [{ address: 127.0.0.1:${nginx.port} }] }
`);
  const ok = await rawGet(lb.portOf("mtls"));
  assertMatch(ok, /^HTTP\/1\.1 200 /);
  assertStringIncludes(ok, "verified CN=client.test");
  const refused = await rawGet(lb.portOf("nocert"));
  assertMatch(refused, /^HTTP\/1\.1 400 /);
  assertStringIncludes(refused, "No required SSL certificate was sent");
  // a certificate that is not for server_name: the connect fails, nothing reaches the client
  assertEquals(await rawGet(lb.portOf("wrongname")), "");
  // tls: and backend_tls: together: openssl to unload (its certificate), unload to nginx (mTLS)
  const both = await new Deno.Command("bash", {
    args: [
      "-c",
      `printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -quiet ` +
      `-verify_return_error -CAfile ${ca.ca} -connect 127.0.0.1:${lb.portOf("both")} ` +
      `-servername front.test 2>/dev/null`,
    ],
    stdout: "piped",
  }).output();
  assertStringIncludes(dec.decode(both.stdout), "verified CN=client.test");
  await until(() => lb.logger.records.length === 4, "four records");
  const byRoute = new Map(lb.logger.records.map((r) => [r.route, r]));
  assertEquals(byRoute.get("mtls")!.end, "closed");
  assertEquals(byRoute.get("wrongname")!.end, "connect_failed");
  assertStringIncludes(byRoute.get("wrongname")!.error!, "certificate");
});

Deno.test("backend_tls: ca, server_name and client_cert without it, and a client_cert that does not match, are refused with file and line", async () => {
  await using ca = await makeCa();
  const client = await ca.issue("client", { serial: 0xc1, names: ["client.test"], client: true });
  const other = await ca.issue("other", { serial: 0xc2, names: ["other.test"], client: true });
  const e = await assertRejects(() =>
    Promise.resolve().then(() =>
      parseConfig(
        "tcp:\n  - { name: a, listen: 127.0.0.1:0, ca: x.pem, server_name: a.test, backends: [{ address: 127.0.0.1:1 }] }\n",
        "t.yaml",
      )
    )
  );
  assertStringIncludes(e.message, "t.yaml:2: tcp[0].ca: only applies with backend_tls: true");
  assertStringIncludes(
    e.message,
    "t.yaml:2: tcp[0].server_name: only applies with backend_tls: true",
  );
  const start = await assertRejects(() =>
    Balancer.start(
      parseConfig(
        `tcp:\n  - name: a\n    listen: 127.0.0.1:0\n    backend_tls: true\n    client_cert: { cert: ${client.cert}, key: ${other.key} }\n    backends: [{ address: 127.0.0.1:1 }]\n`,
        "t.yaml",
      ),
      { logger: tcpLogger() },
    )
  );
  assertStringIncludes(start.message, "t.yaml:5: tcp[0].client_cert.key");
  assertStringIncludes(start.message, "does not match");
});

Deno.test("tls termination: a new certificate in the route's files is served to new clients without a restart", async () => {
  await using redis = await startRedis();
  await using ca = await makeCa();
  const first = await ca.issue("first", { serial: 0x101, names: ["r.test"] });
  const second = await ca.issue("second", { serial: 0x102, names: ["r.test"] });
  const files = { cert: `${ca.dir}/served.pem`, key: `${ca.dir}/served.key` };
  await installCert(first, files);
  await using lb = await startTcp(`
reload: { interval: 100ms }
tcp:
  - { name: kv, listen: 127.0.0.1:0, tls: { cert: ${files.cert}, key: ${files.key} }, backends: [{ address: 127.0.0.1:${redis.port} }] }
`);
  const port = lb.portOf("kv");
  assertEquals(await servedSerial(port, "r.test"), "101");
  await installCert(second, files);
  await until(
    () => lb.logger.lines.some((l) => l.includes("certificate reloaded from tcp[0].tls.cert")),
    "the reload logged",
  );
  assertEquals(await servedSerial(port, "r.test"), "102");
  assertEquals(lb.portOf("kv"), port);
  const cli = (...args: string[]) =>
    redisCli(port, "--tls", "--cacert", ca.ca, "--sni", "r.test", ...args);
  assertEquals(await cli("PING"), "PONG");
});

Deno.test("reload: a listen address cannot switch between plain TCP and tls termination in one reload; the running config stays", async () => {
  await using redis = await startRedis();
  await using ca = await makeCa();
  const r = await ca.issue("r", { serial: 0x7e, names: ["r.test"] });
  await using lb = await startTcp((port) =>
    `tcp:\n  - { name: kv, listen: 127.0.0.1:${port}, backends: [{ address: 127.0.0.1:${redis.port} }] }\n`
  );
  const port = lb.port;
  const result = await lb.reload(parseConfig(
    `tcp:\n  - { name: kv, listen: 127.0.0.1:${port}, tls: { cert: ${r.cert}, key: ${r.key} }, backends: [{ address: 127.0.0.1:${redis.port} }] }\n`,
    "t.yaml",
  ));
  assertEquals(result.ok, false);
  assertStringIncludes(
    (result as { error: string }).error,
    `tcp route kv: listen 127.0.0.1:${port}: switching an address between tls termination and plain TCP needs a restart`,
  );
  assertEquals(await redisCli(port, "PING"), "PONG"); // still plain
});
