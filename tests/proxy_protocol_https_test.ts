/**
 * PROXY protocol in on `listen.https`: the header read before TLS (a plain TCP
 * hop in front of an internal `Deno.listenTls`), behind HAProxy in `mode tcp`
 * with `send-proxy-v2` / `send-proxy`, curl clients on their own 127.0.0.x
 * addresses; what the backend sees in X-Forwarded-For, what the access log
 * says, and what is closed, logged and counted.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import type { Logger } from "../src/observe/log.ts";
import type { ExchangeRecord } from "../src/proxy/context.ts";
import { makeCa } from "./_certs.ts";
import { forEachHead, freePort, rawServer, until, writeAllText } from "./_http.ts";
import { startHaproxy } from "./_haproxy.ts";

const dec = new TextDecoder();

/** curl from `source` to `https://app.test:port/path` through 127.0.0.1; the body, or undefined. */
async function curl(
  port: number,
  source: string,
  ca: string,
  ...args: string[]
): Promise<string | undefined> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "10",
      "--interface",
      source,
      "--cacert",
      ca,
      "--resolve",
      `app.test:${port}:127.0.0.1`,
      ...args,
      `https://app.test:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return out.success ? dec.decode(out.stdout) : undefined;
}

/**
 * HAProxy `mode tcp` in front of `target`, one frontend per `server` line tail;
 * `idle` is its client and server timeout.
 */
function l4(
  target: number,
  servers: string[],
  idle = "30s",
): Promise<AsyncDisposable & { ports: number[] }> {
  const ports = servers.map(() => freePort());
  const cfg = [
    "global",
    "  maxconn 200",
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    `  timeout client ${idle}`,
    `  timeout server ${idle}`,
    ...servers.flatMap((server, i) => [
      `listen l${i}`,
      `  bind 127.0.0.1:${ports[i]}`,
      `  server u 127.0.0.1:${target} ${server}`,
    ]),
  ].join("\n") + "\n";
  return startHaproxy(cfg, ports.map((port) => ({ hostname: "127.0.0.1", port })))
    .then((h) => Object.assign(h, { ports }));
}

Deno.test("listen.https with proxy_protocol behind HAProxy (send-proxy-v2, send-proxy): each curl client's own address reaches the backend's X-Forwarded-For and the access log, over HTTP/1.1 and h2; an untrusted peer and a header-less connection are closed, logged and counted", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("app", { serial: 0x51, names: ["app.test"] });
  const backend = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      const body = /\r\nx-forwarded-for: ([^\r]*)/i.exec(head)?.[1] ?? "-";
      return writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    })
  );
  const lines: string[] = [];
  const records: ExchangeRecord[] = [];
  const logger: Logger = {
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    access: (r) => records.push({ ...r }),
    close() {},
  };
  const lb = await Balancer.start(
    parseConfig(
      `
listen: { https: 127.0.0.1:0, proxy_protocol: true, trusted_proxies: [127.0.0.2/32] }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
      "edge.yaml",
    ),
    { logger },
  );
  try {
    const port = lb.addrs.https!.port;
    await using ha = await l4(port, [
      "send-proxy-v2 source 127.0.0.2",
      "send-proxy source 127.0.0.2",
      "source 127.0.0.2", // trusted, but no header
    ]);
    const [v2, v1, bare] = ha.ports as [number, number, number];
    assertEquals(await curl(v2, "127.0.0.5", ca.ca, "--http1.1"), "127.0.0.5");
    assertEquals(await curl(v2, "127.0.0.6", ca.ca, "--http2"), "127.0.0.6");
    assertEquals(await curl(v1, "127.0.0.7", ca.ca, "--http1.1"), "127.0.0.7");
    await until("three access lines", () => records.length >= 3);
    assertEquals(
      records.map((r) => [r.proto, r.client, r.status]).sort(),
      [["h2", "127.0.0.6", 200], ["http/1.1", "127.0.0.5", 200], ["http/1.1", "127.0.0.7", 200]],
    );
    // trusted peer, no header: its ClientHello is not a PROXY header
    assertEquals(await curl(bare, "127.0.0.8", ca.ca), undefined);
    // not a trusted peer (127.0.0.1, straight to the port): closed before TLS
    assertEquals(await curl(port, "127.0.0.1", ca.ca), undefined);
    // (HAProxy's readiness check through the bare frontend may add one `closed`)
    await until(
      "two refusals",
      () => lb.proxyRefused.missing === 1 && lb.proxyRefused.untrusted === 1,
    );
    const refusals = lines.filter((l) => l.startsWith("warn proxy protocol: closed"));
    assert(refusals.some((l) => l.includes("from 127.0.0.2 (missing)")), refusals.join("\n"));
    assert(refusals.some((l) => l.includes("from 127.0.0.1 (untrusted)")), refusals.join("\n"));
    assertEquals(records.length, 3, "nothing served to the refused connections");
  } finally {
    await lb.close();
    await backend.close();
  }
});

Deno.test("listen.https with proxy_protocol keeps the handshake timeout: a client behind HAProxy that sends nothing after the header is cut off at timeouts.head, and its stalled handshake ends with the hop", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("app", { serial: 0x52, names: ["app.test"] });
  const backend = rawServer((conn, read) =>
    forEachHead(read, () => writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
  );
  const lb = await Balancer.start(
    parseConfig(
      `
listen: { https: 127.0.0.1:0, proxy_protocol: true, trusted_proxies: [127.0.0.2/32] }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
timeouts: { head: 300ms }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
      "edge.yaml",
    ),
    { logger: { info() {}, warn() {}, error() {}, access() {}, close() {} } },
  );
  try {
    // HAProxy itself would wait an hour: only unload can end the connection
    await using ha = await l4(lb.addrs.https!.port, ["send-proxy-v2 source 127.0.0.2"], "1h");
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: ha.ports[0]! });
    // HAProxy sends the header at once; then nothing comes: unload closes the hop
    let closed = false;
    const read = silent.read(new Uint8Array(64)).catch(() => null).then((n) => closed = n === null);
    await until("the silent client's connection closed", () => closed);
    await read;
    silent.close();
    assertEquals(lb.tlsStalls.timedOut.client, 1);
    await until("the stalled handshake released", () => lb.tlsStalls.stalled.client === 0);
    assertEquals(await curl(ha.ports[0]!, "127.0.0.5", ca.ca), "ok"); // others are served
  } finally {
    await lb.close();
    await backend.close();
  }
});

Deno.test("listen.https with proxy_protocol serves tls.certificates by SNI through the hop: a.test and b.test each verify against their own certificate behind HAProxy", async () => {
  await using ca = await makeCa();
  const a = await ca.issue("a", { serial: 0x61, names: ["a.test"] });
  const b = await ca.issue("b", { serial: 0x62, names: ["b.test"] });
  const backend = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      const body = /\r\nx-forwarded-for: ([^\r]*)/i.exec(head)?.[1] ?? "-";
      return writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    })
  );
  const lb = await Balancer.start(
    parseConfig(
      `
listen: { https: 127.0.0.1:0, proxy_protocol: true, trusted_proxies: [127.0.0.2/32] }
tls:
  watch: false
  certificates:
    - { cert: ${a.cert}, key: ${a.key} }
    - { cert: ${b.cert}, key: ${b.key} }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
      "edge.yaml",
    ),
    { logger: { info() {}, warn() {}, error() {}, access() {}, close() {} } },
  );
  try {
    await using ha = await l4(lb.addrs.https!.port, ["send-proxy-v2 source 127.0.0.2"]);
    const port = ha.ports[0]!;
    for (const [name, source] of [["a.test", "127.0.0.5"], ["b.test", "127.0.0.6"]]) {
      const out = await new Deno.Command("curl", {
        args: [
          "-sS",
          "--interface",
          source!,
          "--cacert",
          ca.ca,
          "--resolve",
          `${name}:${port}:127.0.0.1`,
          `https://${name}:${port}/`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(dec.decode(out.stderr), "", name);
      assertEquals(dec.decode(out.stdout), source, name);
    }
  } finally {
    await lb.close();
    await backend.close();
  }
});
