/**
 * PROXY protocol out (`routes[].proxy_protocol: v1 | v2`): HAProxy as the
 * backend (`bind ... accept-proxy`, answering with the source and destination
 * the header gave it), clients from their own addresses in 127.0.0.0/8 (and
 * ::1) on keep-alive connections taking turns, HTTP/1.1 and h2c backends, and
 * the LOCAL header of health probes.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { parseConfig } from "../src/config/config.ts";
import { renderMetrics } from "../src/admin/prometheus.ts";
import { freePort, startBalancer, type TestBalancer, until } from "./_http.ts";
import { startHaproxy } from "./_haproxy.ts";
import { makeCa } from "./_certs.ts";
import { type H2Outcome, h2ScenarioArgs } from "./_h2_scenario.ts";

const dec = new TextDecoder();

/** HAProxy answering every request with `src:src_port dst:dst_port` as its PROXY header gave them. */
function echoSource(port: number, bind: string): Promise<AsyncDisposable> {
  const cfg = [
    "global",
    "  maxconn 200",
    "defaults",
    "  mode http",
    "  timeout connect 5s",
    "  timeout client 30s",
    "  timeout server 30s",
    "  timeout http-keep-alive 30s",
    "frontend echo",
    `  bind 127.0.0.1:${port} accept-proxy${bind}`,
    '  http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port]"',
  ].join("\n") + "\n";
  return startHaproxy(cfg, [{ hostname: "127.0.0.1", port }]);
}

/** A balancer on `listen` with one route (`extra` YAML inside it) to 127.0.0.1:`port`. */
function balancer(
  port: number,
  extra: string,
  listen = "http: 127.0.0.1:0",
): Promise<TestBalancer> {
  return startBalancer(`
listen: { ${listen} }
routes:
  - { name: app, backends: [{ address: 127.0.0.1:${port} }], ${extra} }
`);
}

/** The keep-alive clients of _keepalive_clients.py: lines `source:port status body`. */
async function takeTurns(port: number, rounds: number, ...sources: string[]): Promise<string[]> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [
      new URL("./_keepalive_clients.py", import.meta.url).pathname,
      String(port),
      String(rounds),
      "127.0.0.1",
      ...sources,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, dec.decode(out.stderr));
  return dec.decode(out.stdout).trim().split("\n");
}

// Each line's client (`source:port`) must be what the backend saw, and the
// destination the balancer's own listen address.
function assertOwnAddresses(lines: string[], lbPort: number): void {
  for (const line of lines) {
    const [client, status, seen, dest] = line.split(" ");
    assertEquals(status, "200", line);
    assertEquals(seen, client, `the backend saw another client: ${line}`);
    assertEquals(dest, `127.0.0.1:${lbPort}`, line);
  }
}

for (const version of ["v1", "v2"] as const) {
  Deno.test(`proxy_protocol ${version}: two keep-alive clients taking turns each get their own address and port at the HAProxy backend, on one backend connection each`, async () => {
    const port = freePort();
    await using _backend = await echoSource(port, "");
    await using lb = await balancer(port, `proxy_protocol: ${version}`);
    const lines = await takeTurns(lb.port, 4, "127.0.0.5", "127.0.0.6");
    assertEquals(lines.length, 8);
    assertEquals(lines.filter((l) => l.startsWith("127.0.0.5:")).length, 4);
    assertOwnAddresses(lines, lb.port);
    // the connections are private to each client connection, and reused by it
    await until("both client connections closed", () => lb.privateCounts.opened === 2);
    assertEquals(lb.privateCounts, { opened: 2, reused: 6 });
    const metrics = renderMetrics(lb);
    assertMatch(metrics, /\nunload_private_pool_connections_opened_total 2\n/);
    assertMatch(metrics, /\nunload_private_pool_reuses_total 6\n/);
  });
}

Deno.test("proxy_protocol v2 to an h2c backend (HAProxy proto h2): the multiplexed connection is per client connection too", async () => {
  const port = freePort();
  await using _backend = await echoSource(port, " proto h2");
  await using lb = await balancer(port, "proxy_protocol: v2, backend_protocol: h2c");
  const lines = await takeTurns(lb.port, 3, "127.0.0.7", "127.0.0.8");
  assertEquals(lines.length, 6);
  assertOwnAddresses(lines, lb.port);
  await until("both client connections closed", () => lb.privateCounts.opened === 2);
  assertEquals(lb.privateCounts, { opened: 2, reused: 4 });
});

Deno.test("an HTTP/2 client's streams share its private connection; another h2 client gets its own", async () => {
  const port = freePort();
  await using _backend = await echoSource(port, "");
  await using lb = await balancer(
    port,
    "proxy_protocol: v1",
    "http: 127.0.0.1:0, h2c: true",
  );
  // three GETs one after the other on streams 1, 3, 5 of one connection
  const streams = async (source: string) => {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: h2ScenarioArgs(lb.port, "sequential", { path: "a.test/1,a.test/2,a.test/3" }),
      env: { H2_SOURCE: source },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, dec.decode(out.stderr));
    return JSON.parse(dec.decode(out.stdout)) as H2Outcome;
  };
  const [a, b] = await Promise.all([streams("127.0.0.9"), streams("127.0.0.10")]);
  for (const [source, outcome] of [["127.0.0.9", a], ["127.0.0.10", b]] as const) {
    assertEquals(outcome.status, { 1: 200, 3: 200, 5: 200 });
    const seen = new Set(Object.values(outcome.body));
    assertEquals(seen.size, 1, "one client port on the three streams");
    assertMatch(
      [...seen][0]!,
      new RegExp(`^${source.replaceAll(".", "\\.")}:\\d+ 127\\.0\\.0\\.1:${lb.port}$`),
    );
  }
  await until("both client connections closed", () => lb.privateCounts.opened === 2);
  assertEquals(lb.privateCounts, { opened: 2, reused: 4 });
});

for (const version of ["v1", "v2"] as const) {
  Deno.test(`proxy_protocol ${version} from an IPv6 client: the backend is told ::1 and the listener's IPv6 address`, async () => {
    const port = freePort();
    await using _backend = await echoSource(port, "");
    await using lb = await balancer(port, `proxy_protocol: ${version}`, 'http: "[::1]:0"');
    const out = await new Deno.Command("curl", {
      args: ["-sS", "--interface", "::1", "-w", " %{local_port}", `http://[::1]:${lb.port}/`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, dec.decode(out.stderr));
    const [seen, dest, localPort] = dec.decode(out.stdout).trim().split(" ");
    assertEquals(seen, `::1:${localPort}`);
    assertEquals(dest, `::1:${lb.port}`);
  });
}

Deno.test("proxy_protocol behind a trusted proxy: the client named by X-Forwarded-For is the one in the header (port 0: unknown)", async () => {
  const port = freePort();
  await using _backend = await echoSource(port, "");
  await using lb = await balancer(
    port,
    "proxy_protocol: v2",
    "http: 127.0.0.1:0, trusted_proxies: [127.0.0.11/32]",
  );
  const curl = async (source: string) => {
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--interface",
        source,
        "-H",
        "X-Forwarded-For: 198.51.100.7",
        `http://127.0.0.1:${lb.port}/`,
      ],
      stdout: "piped",
    }).output();
    return dec.decode(out.stdout);
  };
  // HAProxy prints port 0 as nothing
  assertMatch(
    await curl("127.0.0.11"),
    new RegExp(`^198\\.51\\.100\\.7:0? 127\\.0\\.0\\.1:${lb.port}$`),
  );
  assertMatch(await curl("127.0.0.12"), /^127\.0\.0\.12:\d+ /); // untrusted: its header is not believed
});

for (const version of ["v1", "v2"] as const) {
  Deno.test(`health probes to a proxy_protocol ${version} route send the header naming nobody: an accept-proxy backend answers them`, async () => {
    const port = freePort();
    await using _backend = await echoSource(port, "");
    await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 5s, failures: 1 }
routes:
  - { name: with, path: /with, proxy_protocol: ${version}, backends: [{ address: 127.0.0.1:${port} }] }
  - { name: without, path: /without, backends: [{ address: 127.0.0.1:${port} }] }
`);
    const probed = (i: number) => lb.lastProbe(lb.routes[i]!.scheduler.backends[0]!);
    await until("both routes probed", () => probed(0) !== undefined && probed(1) !== undefined);
    assert(lb.routes[0]!.scheduler.backends[0]!.healthy, "the LOCAL header is accepted");
    // the same backend without a header: HAProxy refuses the probe's connection
    await until(
      "the route without the header is down",
      () => !lb.routes[1]!.scheduler.backends[0]!.healthy,
    );
  });
}

Deno.test("routes[].proxy_protocol is v1 or v2, with the file and line of a wrong value", () => {
  const yaml = (v: string) => `
listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    proxy_protocol: ${v}
    backends: [{ address: 127.0.0.1:9 }]
`;
  assertEquals(parseConfig(yaml("v2"), "u.yaml").routes[0]!.proxy_protocol, "v2");
  assertThrows(
    () => parseConfig(yaml("v3"), "u.yaml"),
    Error,
    'u.yaml:5: routes[0].proxy_protocol: must be one of v1, v2: received "v3"',
  );
});

Deno.test("PROXY in, PROXY out: behind HAProxy send-proxy-v2, the backend's header names the client and the address it connected to at the L4 balancer", async () => {
  const port = freePort();
  await using _backend = await echoSource(port, "");
  await using lb = await balancer(
    port,
    "proxy_protocol: v1",
    "http: 127.0.0.1:0, proxy_protocol: true, trusted_proxies: [127.0.0.2/32]",
  );
  const front = freePort();
  await using _l4 = await startHaproxy(
    [
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 30s",
      "  timeout server 30s",
      "listen l4",
      `  bind 127.0.0.1:${front}`,
      `  server u 127.0.0.1:${lb.port} send-proxy-v2 source 127.0.0.2`,
    ].join("\n") + "\n",
    [{ hostname: "127.0.0.1", port: front }],
  );
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--interface",
      "127.0.0.13",
      "-w",
      " %{local_port}",
      `http://127.0.0.1:${front}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, dec.decode(out.stderr));
  const [seen, dest, localPort] = dec.decode(out.stdout).split(" ");
  assertEquals(seen, `127.0.0.13:${localPort}`);
  assertEquals(dest, `127.0.0.1:${front}`); // HAProxy's frontend, not unload's port
});

Deno.test("proxy_protocol v2 to a TLS backend: the header goes before the handshake (HAProxy accept-proxy ssl)", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("backend", { serial: 0x71, names: ["backend.test"] });
  const pem = `${ca.dir}/haproxy.pem`;
  await Deno.writeTextFile(
    pem,
    (await Deno.readTextFile(cert.cert)) + (await Deno.readTextFile(cert.key)),
  );
  const port = freePort();
  await using _backend = await echoSource(port, ` ssl crt ${pem}`);
  await using lb = await balancer(
    port,
    `proxy_protocol: v2, tls: true, ca: ${ca.ca}, server_name: backend.test`,
  );
  const lines = await takeTurns(lb.port, 2, "127.0.0.14", "127.0.0.15");
  assertEquals(lines.length, 4);
  assertOwnAddresses(lines, lb.port);
});
