/**
 * The real client address behind an L4 balancer: `listen.proxy_protocol` with
 * HAProxy in front (`send-proxy`, `send-proxy-v2`, LOCAL health checks), clients
 * with their own source addresses in 127.0.0.0/8 (`curl --interface`), and raw
 * sockets for the parser's edge cases; what the backend receives in
 * X-Forwarded-For, what the access log says, and what is closed, logged and counted.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import type { Logger } from "../src/observe/log.ts";
import type { ExchangeRecord } from "../src/proxy/context.ts";
import { renderMetrics } from "../src/admin/prometheus.ts";
import { buildStatus } from "../src/admin/status.ts";
import { startLbProcess } from "./_process.ts";
import {
  delay,
  forEachHead,
  freePort,
  type RawServer,
  rawServer,
  until,
  writeAllText,
} from "./_http.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A backend answering each request with the X-Forwarded-For it got (`-` when none) and the path. */
function xffEcho(): RawServer & { seen: string[] } {
  const seen: string[] = [];
  const server = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      const xff = /\r\nx-forwarded-for: ([^\r]*)/i.exec(head)?.[1] ?? "-";
      const path = head.split(" ")[1];
      seen.push(`${path} ${xff}`);
      const body = `${xff}\n`;
      return writeAllText(
        conn,
        `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
    })
  );
  return Object.assign(server, { seen });
}

interface Edge extends AsyncDisposable {
  lb: Balancer;
  port: number;
  lines: string[];
  records: ExchangeRecord[];
  backend: RawServer & { seen: string[] };
}

/** A balancer on 127.0.0.1 (listen `extra` lines added) with one route to an echo backend. */
async function startEdge(listen: string, routeExtra = "", http = "127.0.0.1:0"): Promise<Edge> {
  const backend = xffEcho();
  const lines: string[] = [];
  const records: ExchangeRecord[] = [];
  const logger: Logger = {
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    access: (r) => records.push({ ...r }),
    close() {},
  };
  const yaml = `
listen: { http: "${http}", ${listen} }
routes:
  - { name: app, backends: [{ address: 127.0.0.1:${backend.port} }]${routeExtra} }
`;
  const lb = await Balancer.start(parseConfig(yaml, "edge.yaml"), { logger });
  const close = async () => {
    await lb.close();
    await backend.close();
  };
  return {
    lb,
    port: lb.addrs.http!.port,
    lines,
    records,
    backend,
    [Symbol.asyncDispose]: close,
  };
}

/** curl from `source` (an address in 127.0.0.0/8, or ::1) to `url`; the body, or undefined on failure. */
async function curl(url: string, source: string, ...args: string[]): Promise<string | undefined> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", "--interface", source, ...args, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return out.success ? dec.decode(out.stdout) : undefined;
}

/** HAProxy in `mode tcp` with one frontend per `servers` entry; `await using` stops it. */
async function startHaproxy(
  frontends: Array<{ bind: string; server: string }>,
): Promise<AsyncDisposable & { ports: number[] }> {
  const dir = await Deno.makeTempDir({ prefix: "unload-haproxy-" });
  const ports = frontends.map(() => freePort());
  const cfg = [
    "global",
    "  maxconn 200",
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 30s",
    "  timeout server 30s",
    ...frontends.flatMap((f, i) => [
      `frontend fe${i}`,
      `  bind ${f.bind}:${ports[i]}`,
      `  default_backend be${i}`,
      `backend be${i}`,
      `  ${f.server}`,
    ]),
  ].join("\n") + "\n";
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, cfg);
  const child = new Deno.Command("haproxy", {
    args: ["-db", "-f", `${dir}/haproxy.cfg`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // ready when every frontend accepts
  for (const [i, port] of ports.entries()) {
    const hostname = frontends[i]!.bind.replace(/^\[|\]$/g, "");
    for (let tries = 0;; tries++) {
      try {
        (await Deno.connect({ hostname, port })).close();
        break;
      } catch (e) {
        if (tries > 200) throw new Error(`haproxy did not listen on ${port}: ${e}`);
        await delay(50);
      }
    }
  }
  return {
    ports,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.stderr.cancel();
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Sends `bytes` on a fresh connection from 127.0.0.1 and returns all it got back before the close. */
async function rawExchange(port: number, ...chunks: Array<string | Uint8Array>): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (const c of chunks) {
      await writeAllText(conn, c);
      await delay(20); // separate reads on the other side (not needed for correctness)
    }
    let out = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        break; // reset
      }
      if (n === null) break;
      out += dec.decode(buf.subarray(0, n));
      if (/\r\n\r\n[\s\S]*\n$/.test(out) && out.includes("content-length")) break;
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** A PROXY v2 header: `command` 0 (LOCAL) or 1 (PROXY), `family` byte, then the address block and TLVs. */
function v2(command: number, family: number, block: number[], tlvs: number[] = []): Uint8Array {
  const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  const len = block.length + tlvs.length;
  return new Uint8Array([...sig, 0x20 | command, family, len >> 8, len & 0xff, ...block, ...tlvs]);
}

const GET = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

Deno.test("behind HAProxy send-proxy and send-proxy-v2: the backend's X-Forwarded-For and the access log name each curl client's own source address", async () => {
  await using edge = await startEdge("proxy_protocol: true, trusted_proxies: [127.0.0.2/32]");
  await using ha = await startHaproxy([
    { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy source 127.0.0.2` },
    { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy-v2 source 127.0.0.2` },
    { bind: "[::1]", server: `server u 127.0.0.1:${edge.port} send-proxy-v2 source 127.0.0.2` },
  ]);
  const [v1Port, v2Port, v6Port] = ha.ports;
  assertEquals(await curl(`http://127.0.0.1:${v1Port}/v1`, "127.0.0.5"), "127.0.0.5\n");
  assertEquals(await curl(`http://127.0.0.1:${v2Port}/v2`, "127.0.0.6"), "127.0.0.6\n");
  assertEquals(await curl(`http://[::1]:${v6Port}/v6`, "::1", "-g"), "::1\n");
  // an X-Forwarded-For the client sent is kept, and the real client appended (the
  // balancer in front is no HTTP hop)
  assertEquals(
    await curl(`http://127.0.0.1:${v2Port}/kept`, "127.0.0.7", "-H", "X-Forwarded-For: 192.0.2.1"),
    "192.0.2.1, 127.0.0.7\n",
  );
  await until("four access lines", () => edge.records.length >= 4);
  const clients = Object.fromEntries(edge.records.map((r) => [r.path, r.client]));
  assertEquals(clients, {
    "/v1": "127.0.0.5",
    "/v2": "127.0.0.6",
    "/v6": "::1",
    "/kept": "127.0.0.7",
  });
});

Deno.test("hash on client_ip keys on the PROXY-carried client: one client always lands on one backend, whichever L4 hop it came through", async () => {
  const others = [xffEcho(), xffEcho(), xffEcho()];
  const backends = others.map((b) => `{ address: 127.0.0.1:${b.port} }`).join(", ");
  await using edge = await startEdge(
    "proxy_protocol: true, trusted_proxies: [127.0.0.2/32]",
    `, scheduler: hash, hash_key: client_ip }\n  - { name: h, host: h.test, scheduler: hash, backends: [${backends}]`,
  );
  try {
    await using ha = await startHaproxy([
      { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy source 127.0.0.2` },
      {
        bind: "127.0.0.1",
        server: `server u 127.0.0.1:${edge.port} send-proxy-v2 source 127.0.0.2`,
      },
    ]);
    // 12 clients over 3 backends: all on one would be a 1 in 177,147 chance
    const sources = Array.from({ length: 12 }, (_, i) => `127.0.0.${20 + i}`);
    for (let round = 0; round < 2; round++) {
      for (const port of ha.ports) {
        for (const src of sources) {
          const body = await curl(`http://127.0.0.1:${port}/${src}`, src, "-H", "Host: h.test");
          assertEquals(body, `${src}\n`);
        }
      }
    }
    await until("48 access lines", () => edge.records.length >= 48);
    const where = new Map<string, Set<string>>();
    for (const r of edge.records) {
      assertEquals(r.client, r.path.slice(1));
      where.set(r.client, (where.get(r.client) ?? new Set()).add(r.backend));
    }
    assertEquals(where.size, 12);
    for (const [client, set] of where) assertEquals(set.size, 1, `${client} went to ${[...set]}`);
    // different clients spread: had the balancer's address been hashed, all would share one
    const all = new Set([...where.values()].flatMap((s) => [...s]));
    assert(all.size > 1, `12 clients all hashed to ${[...all]}`);
  } finally {
    for (const b of others) await b.close();
  }
});

Deno.test("HAProxy's LOCAL health checks (send-proxy-v2 + check) are served as the peer", async () => {
  await using edge = await startEdge("proxy_protocol: true, trusted_proxies: [127.0.0.2/32]");
  await using _ha = await startHaproxy([{
    bind: "127.0.0.1",
    server: `option httpchk GET /health\n  server u 127.0.0.1:${edge.port} send-proxy-v2 ` +
      `source 127.0.0.2 check check-send-proxy inter 100`,
  }]);
  await until(
    "a health check through",
    () => edge.backend.seen.some((s) => s.startsWith("/health ")),
  );
  const check = edge.backend.seen.find((s) => s.startsWith("/health "))!;
  assertEquals(check, "/health 127.0.0.2");
  assert(!edge.lines.some((l) => l.includes("proxy protocol")), edge.lines.join("\n"));
});

Deno.test("a peer outside trusted_proxies is closed before anything is read, logged and counted, whatever header it sends", async () => {
  await using edge = await startEdge("proxy_protocol: true, trusted_proxies: [127.0.0.2/32]");
  // a client straight to the balancer (not through the L4 balancer), claiming to be someone
  assertEquals(
    await rawExchange(edge.port, "PROXY TCP4 198.51.100.1 127.0.0.1 4000 80\r\n" + GET),
    "",
  );
  assertEquals(await curl(`http://127.0.0.1:${edge.port}/`, "127.0.0.9"), undefined);
  await until("two log lines", () => edge.lines.filter((l) => l.includes("untrusted")).length >= 2);
  const lines = edge.lines.filter((l) => l.includes("proxy protocol"));
  assertMatch(
    lines[0]!,
    /^warn proxy protocol: closed a connection from 127\.0\.0\.1 \(untrusted\)/,
  );
  assertMatch(lines[1]!, /from 127\.0\.0\.9 \(untrusted\)/);
  assertEquals(edge.backend.seen, []);
  assertEquals(edge.records, []);
  assertMatch(
    renderMetrics(edge.lb),
    /unload_proxy_protocol_refused_total\{reason="untrusted"\} 2\n/,
  );
  assertEquals(buildStatus(edge.lb).clientAddress, {
    proxyProtocol: true,
    trustedProxies: ["127.0.0.2/32"],
    refused: { untrusted: 2 },
  });
});

Deno.test("from a trusted peer, a connection without a PROXY header, with a malformed one or one over the limit is closed, logged and counted by reason", async () => {
  await using edge = await startEdge(
    "proxy_protocol: true, trusted_proxies: [127.0.0.0/30, '::1/128']",
  );
  const cases: Array<[string, string | Uint8Array]> = [
    ["missing", GET],
    ["malformed", "PROXY TCP4 198.51.100.1 nope 4000 80\r\n" + GET],
    ["malformed", "PROXY TCP4 198.51.100.1 127.0.0.1 4000 80\n" + GET], // no CR
    ["malformed", "PROXY TCP4 ::1 127.0.0.1 4000 80\r\n" + GET], // family mismatch
    ["malformed", "PROXY TCP4 198.51.100.1 127.0.0.1 70000 80\r\n" + GET],
    ["too_large", "PROXY TCP4 " + "1".repeat(120) + "\r\n"],
    ["malformed", v2(1, 0x11, [1, 2, 3, 4])], // address block too short
    ["malformed", v2(2, 0x11, new Array(12).fill(0))], // no such command
    // a v2 prefix announcing 65535 bytes, over limits.max_head (16 KiB): refused at once
    ["too_large", new Uint8Array([...v2(1, 0x11, []).slice(0, 14), 0xff, 0xff])],
    [
      "missing",
      new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]),
    ],
    ["closed", "PROXY TCP4 198.51.100.1"],
  ];
  for (const [, bytes] of cases) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: edge.port });
    try {
      try {
        await writeAllText(conn, bytes);
      } catch { /* closed while writing */ }
      if (bytes === "PROXY TCP4 198.51.100.1") await conn.closeWrite();
      const got = await conn.read(new Uint8Array(100)).catch(() => null);
      assertEquals(got, null, `closed without an answer: ${dec.decode(enc.encode(String(bytes)))}`);
    } finally {
      conn.close();
    }
  }
  await until(
    "a log line per case",
    () => edge.lines.filter((l) => l.includes("proxy protocol")).length >= cases.length,
  );
  const reasons = edge.lines.filter((l) => l.includes("proxy protocol")).map((l) =>
    /\((\w+)\)/.exec(l)![1]
  );
  assertEquals(reasons, cases.map(([r]) => r));
  const metrics = renderMetrics(edge.lb);
  assertMatch(metrics, /unload_proxy_protocol_refused_total\{reason="malformed"\} 6\n/);
  assertMatch(metrics, /unload_proxy_protocol_refused_total\{reason="missing"\} 2\n/);
  assertMatch(metrics, /unload_proxy_protocol_refused_total\{reason="too_large"\} 2\n/);
  assertMatch(metrics, /unload_proxy_protocol_refused_total\{reason="closed"\} 1\n/);
  assertEquals(edge.backend.seen, []);
});

Deno.test("raw PROXY headers: v1 and v2 split across reads, TLVs skipped, TCP6, UNKNOWN and LOCAL served as the peer, the request after the header kept", async () => {
  await using edge = await startEdge("proxy_protocol: true, trusted_proxies: [127.0.0.1/32]");
  const v6 = [
    0x20,
    0x01,
    0x0d,
    0xb8,
    ...new Array(11).fill(0),
    0x07,
    ...new Array(16).fill(0),
    0x10,
    0x00,
    0,
    80,
  ];
  const tlvs = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x01, 0x00]; // ALPN "h2", NOOP
  const v2v4 = v2(1, 0x11, [203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0, 80], tlvs);
  const answers = [
    // v1, split in the middle of the line, then the request in the same read as the CRLF
    await rawExchange(edge.port, "PROXY TCP4 203.0.", "113.7 127.0.0.1 51234 80\r\n" + GET),
    // v1 TCP6
    await rawExchange(edge.port, "PROXY TCP6 2001:DB8::0:7 ::1 51234 80\r\n" + GET),
    // v2 byte by byte for the signature, then the rest with the request
    await rawExchange(edge.port, v2v4.slice(0, 5), v2v4.slice(5, 14), v2v4.slice(14), GET),
    // v2 TCP6
    await rawExchange(edge.port, v2(1, 0x21, v6), GET),
    // v2 with 3000 bytes of TLVs (more than the first read buffer) and the request in one write
    await rawExchange(
      edge.port,
      new Uint8Array([
        ...v2(1, 0x11, [192, 0, 2, 33, 127, 0, 0, 1, 0, 1, 0, 80], [
          0xe0,
          0x0b,
          0xb5,
          ...new Array(2997).fill(0x61),
        ]),
        ...enc.encode(GET),
      ]),
    ),
    // v2 IPv4-mapped IPv6 is the IPv4 client
    await rawExchange(
      edge.port,
      v2(1, 0x21, [
        ...new Array(10).fill(0),
        0xff,
        0xff,
        198,
        51,
        100,
        4,
        ...new Array(16).fill(0),
        0,
        1,
        0,
        80,
      ]),
      GET,
    ),
    // LOCAL (with an address block, which is ignored), UNKNOWN, and v2 UNSPEC: the peer
    await rawExchange(edge.port, v2(0, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]), GET),
    await rawExchange(edge.port, "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n" + GET),
    await rawExchange(edge.port, v2(1, 0x00, []), GET),
  ];
  const bodies = answers.map((a) => a.slice(a.indexOf("\r\n\r\n") + 4));
  assertEquals(bodies, [
    "203.0.113.7\n",
    "2001:db8::7\n",
    "203.0.113.9\n",
    "2001:db8::7\n",
    "192.0.2.33\n",
    "198.51.100.4\n",
    "127.0.0.1\n",
    "127.0.0.1\n",
    "127.0.0.1\n",
  ]);
  assert(!edge.lines.some((l) => l.includes("proxy protocol")), edge.lines.join("\n"));
});

Deno.test("a PROXY header that never completes is closed at timeouts.head and counted as timeout", async () => {
  const backend = xffEcho();
  const lines: string[] = [];
  const logger: Logger = {
    info() {},
    warn: (m) => lines.push(m),
    error() {},
    access() {},
    close() {},
  };
  const lb = await Balancer.start(
    parseConfig(
      `listen: { http: 127.0.0.1:0, proxy_protocol: true, trusted_proxies: [127.0.0.1] }
timeouts: { head: 300ms }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
      "t.yaml",
    ),
    { logger },
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.addrs.http!.port });
    await writeAllText(conn, "PROXY TCP4 ");
    assertEquals(await conn.read(new Uint8Array(10)).catch(() => null), null);
    conn.close();
    await until("the log line", () => lines.length > 0);
    assertMatch(lines[0]!, /from 127\.0\.0\.1 \(timeout\)/);
  } finally {
    await lb.close();
    await backend.close();
  }
});

Deno.test("allow/deny test the PROXY-carried client: behind HAProxy, 127.0.0.5 is denied and 127.0.0.6 passes, and neither is the balancer's address", async () => {
  await using edge = await startEdge(
    "proxy_protocol: true, trusted_proxies: [127.0.0.2/32]",
    ", deny: [127.0.0.5/32] }\n  - { name: office, host: office.test, allow: [127.0.0.2/32], backends: [{ address: 127.0.0.1:1 }]",
  );
  await using ha = await startHaproxy([
    { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy-v2 source 127.0.0.2` },
  ]);
  const url = `http://127.0.0.1:${ha.ports[0]}/`;
  const status = async (src: string, ...args: string[]) =>
    await curl(url, src, "-o", "/dev/null", "-w", "%{http_code}", ...args);
  assertEquals(await status("127.0.0.5"), "403");
  assertEquals(await status("127.0.0.6"), "200");
  // allowed only from the L4 balancer's own address: no client is it
  assertEquals(await status("127.0.0.6", "-H", "Host: office.test"), "403");
  assertEquals(edge.backend.seen, ["/ 127.0.0.6"]);
});

Deno.test("trusted X-Forwarded-For: from a trusted peer the client is the right-most untrusted address (real_ip_recursive), and the peer is what gets appended", async () => {
  await using edge = await startEdge(
    "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8, '2001:db8::/32']",
  );
  const cases: Array<[string[], string, string]> = [
    // [X-Forwarded-For fields sent], client in the access log, X-Forwarded-For at the backend
    [["198.51.100.9, 10.0.0.2"], "198.51.100.9", "198.51.100.9, 10.0.0.2, 127.0.0.1"],
    [
      ["192.0.2.1, 198.51.100.9, 10.0.0.2"],
      "198.51.100.9",
      "192.0.2.1, 198.51.100.9, 10.0.0.2, 127.0.0.1",
    ],
    [["10.1.1.1,10.0.0.2"], "10.1.1.1", "10.1.1.1,10.0.0.2, 127.0.0.1"], // all trusted: the left-most
    [["203.0.113.1, garbage, 10.0.0.3"], "10.0.0.3", "203.0.113.1, garbage, 10.0.0.3, 127.0.0.1"],
    [["192.0.2.50", "10.0.0.4"], "192.0.2.50", "192.0.2.50, 10.0.0.4, 127.0.0.1"], // two fields
    [["192.0.2.7, 2001:DB8::5"], "192.0.2.7", "192.0.2.7, 2001:DB8::5, 127.0.0.1"],
    [["2001:db8::5, 2001:0db9::1"], "2001:db9::1", "2001:db8::5, 2001:0db9::1, 127.0.0.1"],
    [[], "127.0.0.1", "127.0.0.1"],
  ];
  for (const [fields, ,] of cases) {
    const head = "GET /x HTTP/1.1\r\nHost: a\r\n" + fields.map((f) =>
      `X-Forwarded-For: ${f}\r\n`
    ).join("") +
      "Connection: close\r\n\r\n";
    await rawExchange(edge.port, head);
  }
  await until("an access line per case", () => edge.records.length >= cases.length);
  assertEquals(edge.records.map((r) => r.client), cases.map(([, c]) => c));
  // the hop that reached unload, when the client came from the header
  assertEquals(
    edge.records.map((r) => r.via),
    cases.map(([, c]) => c === "127.0.0.1" ? undefined : "127.0.0.1"),
  );
  assertEquals(edge.backend.seen, cases.map(([, , xff]) => `/x ${xff}`));
});

Deno.test("X-Forwarded-For from a peer outside trusted_proxies names nobody: the client is the peer, and the header is still appended to", async () => {
  await using edge = await startEdge("trusted_proxies: [127.0.0.2/32]");
  await rawExchange(
    edge.port,
    "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.9\r\nConnection: close\r\n\r\n",
  );
  await until("the access line", () => edge.records.length >= 1);
  assertEquals(edge.records[0]!.client, "127.0.0.1");
  assertEquals(edge.backend.seen, ["/x 198.51.100.9, 127.0.0.1"]);
});

Deno.test("PROXY then X-Forwarded-For: an HTTP proxy at a trusted address behind the L4 balancer passes on its client", async () => {
  await using edge = await startEdge(
    "proxy_protocol: true, trusted_proxies: [127.0.0.2/32, 127.0.0.8/32]",
  );
  await using ha = await startHaproxy([
    { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy source 127.0.0.2` },
  ]);
  const url = `http://127.0.0.1:${ha.ports[0]}/`;
  // 127.0.0.8 plays an HTTP proxy the operator trusts; 127.0.0.9 a client that makes up a header
  assertEquals(
    await curl(url, "127.0.0.8", "-H", "X-Forwarded-For: 192.0.2.1"),
    "192.0.2.1, 127.0.0.8\n",
  );
  assertEquals(
    await curl(url, "127.0.0.9", "-H", "X-Forwarded-For: 192.0.2.1"),
    "192.0.2.1, 127.0.0.9\n",
  );
  await until("two access lines", () => edge.records.length >= 2);
  assertEquals(edge.records.map((r) => r.client), ["192.0.2.1", "127.0.0.9"]);
});

Deno.test("config: listen.trusted_proxies and listen.proxy_protocol errors name the file and line", () => {
  const bad = (listen: string) => {
    const e = (() => {
      try {
        parseConfig(
          `listen:\n${listen}routes:\n  - { name: a, backends: [{ address: 127.0.0.1:1 }] }\n`,
          "u.yaml",
        );
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error("accepted");
    })();
    return e;
  };
  assertEquals(
    bad(
      "  http: 127.0.0.1:80\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n    - 2001:db8::/129\n    - nope\n",
    ),
    [
      'u.yaml:5: listen.trusted_proxies[1]: prefix length of "10.0.0.0/33" must be 0..32',
      'u.yaml:6: listen.trusted_proxies[2]: prefix length of "2001:db8::/129" must be 0..128',
      'u.yaml:7: listen.trusted_proxies[3]: not an IP address or CIDR block: "nope"',
    ].join("\n"),
  );
  assertEquals(
    bad("  http: 127.0.0.1:80\n  proxy_protocol: true\n"),
    "u.yaml:3: listen.proxy_protocol: needs listen.trusted_proxies (the balancers that send it)",
  );
  assertEquals(
    bad("  h2c: true\n  proxy_protocol: true\n  trusted_proxies: [10.0.0.0/8]\n")
      .split("\n").find((l) => l.includes("listen.proxy_protocol:")),
    "u.yaml:3: listen.proxy_protocol: needs listen.http or listen.https",
  );
  assertEquals(
    bad("  http: 127.0.0.1:80\n  proxy_protocol: yes please\n"),
    "u.yaml:3: listen.proxy_protocol: must be true or false",
  );
  const ok = parseConfig(
    "listen: { http: 127.0.0.1:80, proxy_protocol: true, trusted_proxies: [10.0.0.0/8, 'fd00::/8'] }\n" +
      "routes:\n  - { name: a, backends: [{ address: 127.0.0.1:1 }] }\n",
    "u.yaml",
  );
  assertEquals(ok.listen.trusted_proxies, ["10.0.0.0/8", "fd00::/8"]);
  assertEquals(ok.listen.proxy_protocol, true);
});

Deno.test("PROXY then h2c on the same port: an HTTP/2 prior-knowledge client behind HAProxy is its own address in X-Forwarded-For and the log", async () => {
  await using edge = await startEdge(
    "h2c: true, proxy_protocol: true, trusted_proxies: [127.0.0.2/32]",
  );
  await using ha = await startHaproxy([
    { bind: "127.0.0.1", server: `server u 127.0.0.1:${edge.port} send-proxy-v2 source 127.0.0.2` },
  ]);
  const url = `http://127.0.0.1:${ha.ports[0]}/h2`;
  assertEquals(await curl(url, "127.0.0.5", "--http2-prior-knowledge"), "127.0.0.5\n");
  assertEquals(await curl(url, "127.0.0.6"), "127.0.0.6\n"); // HTTP/1.1 on the same port
  await until("two access lines", () => edge.records.length >= 2);
  assertEquals(edge.records.map((r) => [r.proto, r.client]), [
    ["h2", "127.0.0.5"],
    ["http/1.1", "127.0.0.6"],
  ]);
});

Deno.test("a reload turns listen.proxy_protocol and trusted_proxies on and off on the same port", async () => {
  const port = freePort();
  await using edge = await startEdge("", "", `127.0.0.1:${port}`);
  const yaml = (listen: string) =>
    parseConfig(
      `listen: { http: "127.0.0.1:${port}"${listen} }\nroutes:\n  - { name: app, backends: [{ address: 127.0.0.1:${edge.backend.port} }] }\n`,
      "edge.yaml",
    );
  const body = (a: string) => a.slice(a.indexOf("\r\n\r\n") + 4);
  const xff =
    "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.3\r\nConnection: close\r\n\r\n";
  assertEquals(body(await rawExchange(port, GET)), "127.0.0.1\n");
  const r = await edge.lb.reload(yaml(", proxy_protocol: true, trusted_proxies: [127.0.0.1]"));
  assert(r.ok, JSON.stringify(r));
  assertEquals(await rawExchange(port, GET), "");
  assertEquals(
    body(await rawExchange(port, "PROXY TCP4 192.0.2.8 127.0.0.1 1 80\r\n" + GET)),
    "192.0.2.8\n",
  );
  assert((await edge.lb.reload(yaml(", trusted_proxies: [127.0.0.1]"))).ok);
  assertEquals(body(await rawExchange(port, xff)), "198.51.100.3, 127.0.0.1\n");
  await until("the access line", () => edge.records.length >= 3);
  assertEquals(edge.records.at(-1)!.client, "198.51.100.3");
  assert((await edge.lb.reload(yaml(""))).ok);
  assertEquals(body(await rawExchange(port, xff)), "198.51.100.3, 127.0.0.1\n");
  await until("the access line", () => edge.records.length >= 4);
  assertEquals(edge.records.at(-1)!.client, "127.0.0.1");
});

Deno.test("the access log line of a balancer process names the real client, and via the trusted proxy that reached it", async () => {
  await using backend = xffEcho();
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT, trusted_proxies: [127.0.0.1/32] }
log: { access: stdout }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  let stdout = "";
  try {
    await rawExchange(
      lb.port,
      "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.3\r\nConnection: close\r\n\r\n",
    );
    await rawExchange(lb.port, GET);
  } finally {
    stdout = (await lb.stop()).stdout;
  }
  const lines = stdout.trimEnd().split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  );
  assertEquals(lines.map((l) => [l.client, l.via]), [["198.51.100.3", "127.0.0.1"], [
    "127.0.0.1",
    undefined,
  ]]);
});
