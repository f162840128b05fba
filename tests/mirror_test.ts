/**
 * The `mirror` policy end to end, over real sockets: what the mirror gets
 * (the request the main backend got), what the client gets (the main
 * backend's answer, never delayed or failed by the mirror), sampling, the body
 * limit, and what /metrics counts.
 */
import { configErrors } from "./_config_errors.ts";
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  freePort,
  RawClient,
  rawServer,
  startBalancer,
  type TestBalancer,
  writeAllText,
} from "./_http.ts";
import { runCli } from "./_process.ts";
import { runGrpcio, startGrpcioServer } from "./_grpcio.ts";
import { startDnsmasq } from "./_dnsmasq.ts";
import type { Status } from "../src/admin/status.ts";
import { createLogger } from "../src/observe/log.ts";

const dec = new TextDecoder();

/** One request as a backend read it: its head, and its body decoded from its framing. */
interface Got {
  head: string;
  body: string;
}

/**
 * A backend that reads whole requests (Content-Length or chunked bodies) and
 * keeps them; it answers each with `name` in an `x-backend` header, unless
 * `stall` is set: then it reads and never answers.
 */
function recorder(name: string, options: { stall?: boolean } = {}) {
  const got: Got[] = [];
  const server = rawServer(async (conn, read) => {
    let buf = new Uint8Array(0);
    const more = async () => {
      const chunk = await read();
      if (chunk === null) return false;
      const next = new Uint8Array(buf.length + chunk.length);
      next.set(buf);
      next.set(chunk, buf.length);
      buf = next;
      return true;
    };
    const take = async (n: number) => {
      while (buf.length < n) if (!(await more())) throw new Error("closed");
      const out = buf.slice(0, n);
      buf = buf.slice(n);
      return out;
    };
    const line = async () => {
      for (;;) {
        const i = buf.indexOf(10);
        if (i !== -1) return dec.decode(await take(i + 1)).trimEnd();
        if (!(await more())) throw new Error("closed");
      }
    };
    for (;;) {
      const lines: string[] = [];
      for (let l = await line().catch(() => null); l !== ""; l = await line()) {
        if (l === null) return;
        lines.push(l);
      }
      const head = lines.join("\r\n");
      const field = (n: string) =>
        lines.find((l) => l.toLowerCase().startsWith(`${n}:`))?.slice(n.length + 1).trim();
      let body = "";
      if (field("transfer-encoding") === "chunked") {
        for (;;) {
          const size = parseInt(await line(), 16);
          if (size === 0) {
            await line();
            break;
          }
          body += dec.decode(await take(size));
          await line();
        }
      } else body = dec.decode(await take(Number(field("content-length") ?? 0)));
      got.push({ head, body });
      if (options.stall) continue; // reads on, never answers
      const text = `${name} ${body.length}\n`;
      await writeAllText(
        conn,
        `HTTP/1.1 200 OK\r\ncontent-length: ${text.length}\r\nx-backend: ${name}\r\n\r\n${text}`,
      );
    }
  });
  return Object.assign(server, { got });
}

/** Waits (bounded: 500 × 20 ms) until `done()` holds. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 20));
  assert(done(), `timed out waiting: ${what}`);
}

function mirrorCounts(lb: TestBalancer, route: string): Record<string, number> {
  return Object.fromEntries(lb.metrics.route(route)?.mirror ?? []);
}

// Heads as sets of lines (a copy of a chunked body states its length instead).
function lines(head: string): string[] {
  return head.split("\r\n").sort();
}

Deno.test("mirror: the mirror gets the request the main backend got (method, rewritten target, headers, body) and the client gets the main backend's answer", async () => {
  await using main = recorder("main");
  await using copy = recorder("mirror");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: shop
    backends: [{ address: 127.0.0.1:${main.port} }]
    rewrite: { strip_prefix: /api }
    headers: { request: { set: { X-Env: prod }, remove: [X-Debug] } }
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }], percent: 100 }
`);
  using c = await RawClient.connect(lb.port);
  const res = await c.request(
    "POST /api/cart?id=7 HTTP/1.1\r\nHost: shop.test\r\nX-Debug: 1\r\nX-Custom: a\r\n" +
      "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
  );
  assertEquals([res.status, res.headers.get("x-backend"), res.body], [200, "main", "main 11\n"]);
  const get = await c.get("/api/list");
  assertEquals(get.headers.get("x-backend"), "main");
  // a chunked body: the copy is sent with its length once it has ended
  const chunked = await c.request(
    "PUT /api/doc HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n",
  );
  assertEquals(chunked.body, "main 8\n");
  // counted once the mirror's answer was read (after the mirror got the copy)
  await until(() => mirrorCounts(lb, "shop").mirrored === 3, "three copies answered");
  const [post, list, put] = copy.got;
  assertEquals(post, main.got[0]);
  assertStringIncludes(post!.head, "POST /cart?id=7 HTTP/1.1\r\n");
  assertStringIncludes(post!.head, "\r\nHost: shop.test\r\n"); // the original host, as nginx keeps it
  assertStringIncludes(post!.head, "\r\nX-Env: prod");
  assert(!post!.head.includes("X-Debug"), post!.head);
  assertEquals(list, main.got[1]);
  assertEquals(put!.body, "abcdefgh");
  assertEquals(put!.body, main.got[2]!.body);
  assertEquals(
    lines(put!.head).filter((l) => !l.startsWith("content-length")),
    lines(main.got[2]!.head).filter((l) => !l.startsWith("transfer-encoding")),
  );
  assertStringIncludes(put!.head, "\r\ncontent-length: 8");
  assertEquals(mirrorCounts(lb, "shop"), { mirrored: 3 });

  // an HTTP/2 client is mirrored alike (curl, cleartext HTTP/2 with prior knowledge)
  const curl = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "20",
      "--http2-prior-knowledge",
      "-H",
      "X-Custom: h2",
      "--data-binary",
      "from curl",
      `http://127.0.0.1:${lb.port}/api/h2`,
    ],
  }).output();
  assertEquals(dec.decode(curl.stdout), "main 9\n");
  await until(() => copy.got.length === 4, "the HTTP/2 request's copy");
  assertEquals(lines(copy.got[3]!.head), lines(main.got[3]!.head));
  assertEquals(copy.got[3]!.body, "from curl");
  assertStringIncludes(copy.got[3]!.head, "via: 2 unload");
});

Deno.test("mirror: a mirror that holds every connection without answering, or is down, never delays or fails the client; the excess is dropped and counted", async () => {
  await using main = recorder("main");
  await using stalled = recorder("stalled", { stall: true });
  const down = freePort(); // nothing listens there
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: stalled
    path: /s/
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${stalled.port} }], queue: 4, timeout: 10m }
  - name: down
    path: /d/
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${down} }] }
`);
  using c = await RawClient.connect(lb.port);
  const n = 20;
  for (let i = 0; i < n; i++) {
    const body = `body ${i}`;
    const res = await c.request(
      `POST /s/${i} HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    assertEquals([res.status, res.body], [200, `main ${body.length}\n`]);
  }
  // four copies hold their slot (the mirror never answers them): the other sixteen were dropped
  await until(() => stalled.got.length === 4, "the four queued copies to arrive");
  assertEquals(mirrorCounts(lb, "stalled"), { dropped: n - 4 });
  assertEquals(stalled.open, 4);
  for (let i = 0; i < n; i++) assertEquals((await c.get(`/d/${i}`)).status, 200);
  await until(() => (mirrorCounts(lb, "down").failed ?? 0) === n, "the down mirror's failures");
  assertEquals(main.got.length, 2 * n);
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  assertStringIncludes(metrics, `unload_mirror_copies_total{route="stalled",result="dropped"} 16`);
  assertStringIncludes(metrics, `unload_mirror_copies_total{route="down",result="failed"} 20`);
});

Deno.test("mirror: percent samples the traffic: 0 copies none, 100 all, 50 about half of 400", async () => {
  await using main = recorder("main");
  await using copy = recorder("mirror");
  const route = (name: string, percent: number) => `
  - name: p${name}
    path: /p${name}/
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }], percent: ${percent}, queue: 1000 }`;
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:${route("0", 0)}${route("100", 100)}${route("50", 50)}${route("half", 0.5)}
`);
  using c = await RawClient.connect(lb.port);
  for (let i = 0; i < 50; i++) await c.get(`/p0/${i}`);
  for (let i = 0; i < 50; i++) await c.get(`/p100/${i}`);
  for (let i = 0; i < 400; i++) await c.get(`/p50/${i}`);
  await until(() => {
    const half = mirrorCounts(lb, "p50");
    return mirrorCounts(lb, "p100").mirrored === 50 &&
      (half.mirrored ?? 0) + (half.not_sampled ?? 0) === 400 &&
      copy.got.length === 50 + (half.mirrored ?? 0);
  }, "every copy answered");
  assertEquals(mirrorCounts(lb, "p0"), { not_sampled: 50 });
  assertEquals(mirrorCounts(lb, "p100"), { mirrored: 50 });
  const { mirrored = 0, not_sampled = 0 } = mirrorCounts(lb, "p50");
  assertEquals(mirrored + not_sampled, 400);
  assert(mirrored > 120 && mirrored < 280, `50 % of 400 mirrored ${mirrored}`);
  assertEquals(copy.got.filter((g) => g.head.includes(" /p0/")).length, 0);
  assertEquals(copy.got.filter((g) => g.head.includes(" /p100/")).length, 50);
});

Deno.test("mirror: a body over max_body is not mirrored (counted too_large), with or without a Content-Length; the main backend gets it whole", async () => {
  await using main = recorder("main");
  await using copy = recorder("mirror");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: up
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }], max_body: 1KiB }
`);
  using c = await RawClient.connect(lb.port);
  const big = "x".repeat(2048);
  const sized = await c.request(
    `POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${big.length}\r\n\r\n${big}`,
  );
  assertEquals(sized.body, "main 2048\n");
  const chunk = "y".repeat(600);
  const chunked = await c.request(
    "POST /chunked HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`,
  );
  assertEquals(chunked.body, "main 1200\n");
  const exact = "z".repeat(1024);
  await c.request(
    `POST /exact HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${exact.length}\r\n\r\n${exact}`,
  );
  await until(() => mirrorCounts(lb, "up").mirrored === 1, "the copy of the body at the limit");
  assertEquals(copy.got[0]!.body, exact);
  assertEquals(mirrorCounts(lb, "up"), { too_large: 2, mirrored: 1 });
  assertEquals(main.got.map((g) => g.body.length), [2048, 1200, 1024]);
});

Deno.test("mirror: config mistakes are file:line errors; /status and explain show the step", async () => {
  const yaml = `listen: { http: 127.0.0.1:0 }
routes:
  - name: a
    backends: [{ address: 127.0.0.1:9 }]
    mirror: { percent: 50 }
  - name: b
    backends: [{ address: 127.0.0.1:9 }]
    mirror: { backends: [{ address: 127.0.0.1:0 }], percent: 150, queue: 0, max_body: lots }
  - name: c
    backends: [{ address: 127.0.0.1:9 }]
    mirror: { srv: _http._tcp.m.test, backends: [{ address: 127.0.0.1:9 }] }
`;
  const { has } = configErrors(yaml);
  has("unload.yaml:5: routes[0].mirror:", "needs exactly one of srv");
  has("unload.yaml:8: routes[1].mirror.percent:", "must be a number 0..100");
  has("unload.yaml:8: routes[1].mirror.queue:", "must be an integer 1..100000");
  has("unload.yaml:8: routes[1].mirror.max_body:", "must be a size");
  has("unload.yaml:8: routes[1].mirror.backends[0].address:", "port must be 1..65535");
  has("unload.yaml:11: routes[2].mirror:", "needs exactly one of srv");

  await using main = recorder("main");
  await using copy = recorder("mirror");
  const good = `listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: shop
    backends: [{ address: 127.0.0.1:${main.port} }]
    rewrite: { prefix: /v2 }
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }], percent: 12.5 }
`;
  await using lb = await startBalancer(good);
  const status = await (await fetch(`http://127.0.0.1:${lb.addrs.admin!.port}/status`))
    .json() as Status;
  const shop = status.routes.find((r) => r.name === "shop")!;
  const summary = `copy to 127.0.0.1:${copy.port}, 12.5 % of requests, bodies up to 1 MiB; ` +
    "queue 64, timeout 5s";
  assertEquals(shop.policies, ["rewrite: add prefix /v2", `mirror: ${summary}`]);
  assertEquals(shop.policySteps, [
    { name: "rewrite", summary: "add prefix /v2" },
    { name: "mirror", summary },
  ]);
  const dir = await Deno.makeTempDir({ prefix: "unload-mirror-" });
  try {
    await Deno.writeTextFile(`${dir}/unload.yaml`, good);
    const out = await runCli(["explain", "--config", `${dir}/unload.yaml`, "GET", "http://a/x"]);
    assertEquals(out.code, 0, out.stderr);
    assertStringIncludes(
      out.stdout,
      `mirror: would copy the request as forwarded to 127.0.0.1:${copy.port}, sampled 12.5 %`,
    );
    assertEquals(copy.accepted, 0, "explain sends nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log file: `policy` names the step that answered (allow 403, redirect, rate_limit 429); a mirrored request is logged once, as the backend answered it", async () => {
  await using main = recorder("main");
  await using copy = recorder("mirror");
  const dir = await Deno.makeTempDir({ prefix: "unload-mirror-log-" });
  const file = `${dir}/access.log`;
  try {
    const logger = createLogger({ access: file, quiet: true });
    await using lb = await startBalancer(
      `
listen: { http: 127.0.0.1:0 }
routes:
  - name: office
    host: office.test
    backends: [{ address: 127.0.0.1:${main.port} }]
    allow: [10.0.0.0/8]
  - name: old
    host: old.test
    redirect: { to: "https://new.test{uri}", code: 301 }
  - name: login
    host: login.test
    backends: [{ address: 127.0.0.1:${main.port} }]
    rate_limit: { rate: 1/h, burst: 1 }
  - name: shop
    host: shop.test
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }] }
`,
      { logger },
    );
    using c = await RawClient.connect(lb.port);
    const send = (host: string) => c.request(`GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assertEquals((await send("office.test")).status, 403);
    assertEquals((await send("old.test")).status, 301);
    assertEquals((await send("login.test")).status, 200);
    assertEquals((await send("login.test")).status, 429);
    assertEquals((await send("shop.test")).status, 200);
    await until(() => copy.got.length === 1, "the copy");
    let lines: Record<string, unknown>[] = [];
    await until(() => {
      try {
        lines = Deno.readTextFileSync(file).trim().split("\n").filter((l) => l !== "")
          .map((l) => JSON.parse(l));
      } catch { /* not written yet */ }
      return lines.length === 5;
    }, "five access log lines");
    assertEquals(lines.map((l) => [l.route, l.status, l.policy]), [
      ["office", 403, "allow"],
      ["old", 301, "redirect"],
      ["login", 200, undefined],
      ["login", 429, "rate_limit"],
      ["shop", 200, undefined],
    ]);
    assertEquals(lines[4]!.backend, `127.0.0.1:${main.port}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mirror: gRPC calls are not mirrored (counted stream); the call is served as without a mirror (grpcio)", async () => {
  await using backend = await startGrpcioServer({ name: "b1" });
  await using copy = recorder("mirror");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${copy.port} }] }
`);
  const s = await runGrpcio({ port: lb.port, mode: "unary", calls: 3 });
  assertEquals(s.codes, { OK: 3 });
  assertEquals(mirrorCounts(lb, "grpc"), { stream: 3 });
  assertEquals(copy.accepted, 0);
});

Deno.test("mirror: srv: copies go to the addresses a DNS SRV name gives (dnsmasq), spread by the mirror's scheduler; the balancer starts once that name was looked up", async () => {
  await using main = recorder("main");
  await using m1 = recorder("m1");
  await using m2 = recorder("m2");
  await using dns = await startDnsmasq({
    srv: [
      {
        name: "_http._tcp.shadow.test",
        target: "m1.shadow.test",
        port: m1.port,
        priority: 0,
        weight: 1,
      },
      {
        name: "_http._tcp.shadow.test",
        target: "m2.shadow.test",
        port: m2.port,
        priority: 0,
        weight: 1,
      },
    ],
    hosts: [
      { name: "m1.shadow.test", address: "127.0.0.1" },
      { name: "m2.shadow.test", address: "127.0.0.1" },
    ],
  });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port} }
routes:
  - name: shop
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { srv: _http._tcp.shadow.test, scheduler: round_robin }
`);
  using c = await RawClient.connect(lb.port);
  // the balancer starts once the mirror's first lookup is done, as a route's own SRV name
  for (let i = 0; i < 10; i++) assertEquals((await c.get(`/${i}`)).status, 200);
  await until(() => mirrorCounts(lb, "shop").mirrored === 10, "ten copies answered");
  assertEquals([m1.got.length, m2.got.length], [5, 5]);
  assertEquals(mirrorCounts(lb, "shop"), { mirrored: 10 });
});

Deno.test("mirror: a copy the mirror does not answer within mirror.timeout is closed and counted failed, and its slot takes copies again", async () => {
  await using main = recorder("main");
  await using stalled = recorder("stalled", { stall: true });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: slow
    backends: [{ address: 127.0.0.1:${main.port} }]
    mirror: { backends: [{ address: 127.0.0.1:${stalled.port} }], queue: 1, timeout: 200ms }
`);
  using c = await RawClient.connect(lb.port);
  assertEquals((await c.get("/first")).status, 200);
  await until(() => (mirrorCounts(lb, "slow").failed ?? 0) === 1, "the first copy to time out");
  await until(() => stalled.open === 0, "the mirror connection to be closed");
  assertEquals((await c.get("/second")).status, 200);
  await until(() => stalled.got.length === 2, "the second copy");
  assertEquals(stalled.got.map((g) => g.head.split(" ")[1]), ["/first", "/second"]);
  assertEquals(mirrorCounts(lb, "slow").dropped, undefined);
});
