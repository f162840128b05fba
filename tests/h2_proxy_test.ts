/**
 * HTTP/2 clients through the real balancer to HTTP/1.1 backends: h2c with prior
 * knowledge and ALPN h2 over TLS, the same routing and scheduling as HTTP/1.1,
 * the balancer's own error answers as h2 responses, malformed requests stopped
 * at the edge, and the access log's protocol field.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { makeCa } from "./_certs.ts";
import { freePort, RawClient, rawServer, startBalancer, writeAllText } from "./_http.ts";
import { startOrigin } from "./_h1_origin.ts";
import { createLogger } from "../src/observe/log.ts";
import { type H2Outcome, h2ScenarioArgs, runH2Scenario } from "./_h2_scenario.ts";
import { ErrorCode } from "../src/h2/frame.ts";
import { parseConfig } from "../src/config/config.ts";
import http2 from "node:http2";

const dec = new TextDecoder();
const ca = await makeCa();
const cert = await ca.issue("server", { serial: 0x2001, names: ["app.test", "127.0.0.1"] });

async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command("curl", {
    args: ["-sS", ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

/** A balancer in this process with h2c on, one route to the backend on `port`. */
function h2cBalancer(port: number) {
  return startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${port} }] }]
`);
}

/** The value of `name` in a request head (lowercased names), or undefined. */
function field(head: string, name: string): string | undefined {
  for (const line of head.split("\r\n").slice(1)) {
    const i = line.indexOf(":");
    if (line.slice(0, i).toLowerCase() === name) return line.slice(i + 1).trim();
  }
  return undefined;
}

Deno.test("h2 proxy: curl h2c with prior knowledge and h2 over TLS reach an HTTP/1.1 backend with forwarded headers; HTTP/1.1 works on the same ports", async () => {
  await using b = startOrigin("b1");
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0, https: 127.0.0.1:0, h2c: true }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  try {
    const http = lb.addrs.http!.port;
    const https = lb.addrs.https!.port;
    const w = ["-w", "\n%{http_version}"];

    const h2c = await curl([
      "--http2-prior-knowledge",
      ...w,
      "-H",
      "X-Forwarded-For: 10.9.9.9",
      `http://127.0.0.1:${http}/plain?q=1`,
    ]);
    assertEquals(h2c.code, 0, h2c.err);
    assertEquals(h2c.out, "b1 /plain?q=1\n\n2");
    const head = b.heads.at(-1)!;
    assertEquals(head.split("\r\n")[0], "GET /plain?q=1 HTTP/1.1");
    assertEquals(field(head, "host"), `127.0.0.1:${http}`);
    assertEquals(field(head, "x-forwarded-for"), "10.9.9.9, 127.0.0.1");
    assertEquals(field(head, "x-forwarded-proto"), "http");
    assertEquals(field(head, "x-forwarded-host"), `127.0.0.1:${http}`);
    assertEquals(field(head, "via"), "2 unload"); // RFC 9110 §7.6.3: the protocol received

    const tls = await curl(["--http2", "-k", ...w, `https://127.0.0.1:${https}/secure`]);
    assertEquals(tls.code, 0, tls.err);
    assertEquals(tls.out, "b1 /secure\n\n2");
    const head2 = b.heads.at(-1)!;
    assertEquals(field(head2, "x-forwarded-proto"), "https");
    assertEquals(field(head2, "x-forwarded-for"), "127.0.0.1");
    assertEquals(field(head2, "x-forwarded-host"), `127.0.0.1:${https}`);
    assertEquals(field(head2, "via"), "2 unload");

    const h1 = await curl(["--http1.1", ...w, `http://127.0.0.1:${http}/one`]);
    assertEquals(h1.out, "b1 /one\n\n1.1");
    assertEquals(field(b.heads.at(-1)!, "via"), "1.1 unload");
    const h1tls = await curl(["--http1.1", "-k", ...w, `https://127.0.0.1:${https}/two`]);
    assertEquals(h1tls.out, "b1 /two\n\n1.1");
    assertEquals(b.heads.length, 4);
  } finally {
    await lb.close();
  }
});

Deno.test("h2 proxy: with listen.h2c off, an HTTP/2 preface on listen.http gets 505 and a close, not HTTP/2", async () => {
  await using b = startOrigin("b1");
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  const c = await RawClient.connect(lb.port);
  try {
    // the preface, then a SETTINGS frame, as an h2c client sends them
    const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const settings = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    await c.send(preface);
    await c.send(settings);
    const res = await c.read();
    assertEquals(res.status, 505); // "PRI * HTTP/2.0" read as an HTTP/1.x request line
    assertStringIncludes(res.body, "listen.h2c: true", "the answer says how to turn h2c on");
    assert(await c.closed(), "the connection is closed after the 505");
    const out = await curl(["--http2-prior-knowledge", `http://127.0.0.1:${lb.port}/`]);
    assert(out.code !== 0, `curl got an HTTP/2 answer: ${out.out}`);
    assertEquals(b.heads.length, 0, "nothing reached the backend");
  } finally {
    c.close();
    await lb.close();
  }
});

Deno.test("h2 proxy: routes by host and path, and one h2 connection's sequential streams follow the seed order b1 b2 b1 b2 b1 b3 b3 b3 b3", async () => {
  await using b1 = startOrigin("b1");
  await using b2 = startOrigin("b2");
  await using b3 = startOrigin("b3");
  await using api = startOrigin("api");
  await using other = startOrigin("other");
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: weighted
    host: app.test
    backends:
      - { address: 127.0.0.1:${b1.port}, priority: 0, weight: 30 }
      - { address: 127.0.0.1:${b2.port}, priority: 0, weight: 20 }
      - { address: 127.0.0.1:${b3.port}, priority: 10, weight: 40 }
  - { name: api, host: app.test, path: /api, backends: [{ address: 127.0.0.1:${api.port} }] }
  - { name: other, host: other.test, backends: [{ address: 127.0.0.1:${other.port} }] }
`);
  try {
    // 9 to the weighted route, an /api request after each, one stream after the other
    const items: string[] = [];
    for (let i = 0; i < 9; i++) items.push(`app.test/w${i}`, `app.test/api/${i}`);
    const out = await runH2Scenario(lb.port, "sequential", { path: items.join(",") });
    assertEquals(out.goaway, null);
    const bodies = items.map((_, i) => out.body[String(2 * i + 1)]);
    const weighted = bodies.filter((_, i) => i % 2 === 0).map((t) => t?.split(" ")[0]);
    assertEquals(weighted, ["b1", "b2", "b1", "b2", "b1", "b3", "b3", "b3", "b3"]);
    const apis = bodies.filter((_, i) => i % 2 === 1);
    assertEquals(apis, [...Array(9).keys()].map((i) => `api /api/${i}\n`));
    assertEquals(Object.values(out.status), Array(18).fill(200));
    assertEquals(b1.heads.length + b2.heads.length + b3.heads.length, 9);
    // by host: curl turns Host into :authority
    const o = await curl([
      "--http2-prior-knowledge",
      "-H",
      "Host: other.test",
      "-w",
      "\n%{http_version}",
      `http://127.0.0.1:${lb.port}/x`,
    ]);
    assertEquals(o.out, "other /x\n\n2");
    assertEquals(field(other.heads[0]!, "host"), "other.test");
  } finally {
    await lb.close();
  }
});

Deno.test("h2 proxy: no route 404, no backend 503, refused 502, too slow 504, each an h2 response with a short text body", async () => {
  const dead = rawServer(async () => {});
  const deadPort = dead.port;
  await dead.close();
  await using slow = startOrigin("slow"); // /hold never answers here
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
timeouts: { response: 400ms }
health: { failures: 1, backoff: 60s }
retry: { attempts: 0 }
routes:
  - { name: down, host: down.test, backends: [{ address: 127.0.0.1:${deadPort} }] }
  - { name: slow, host: slow.test, backends: [{ address: 127.0.0.1:${slow.port} }] }
`);
  try {
    const get = async (host: string, path = "/") => {
      const r = await curl([
        "--http2-prior-knowledge",
        "-H",
        `Host: ${host}`,
        "-D",
        "-",
        "-w",
        "\n%{http_version} %{http_code}",
        `http://127.0.0.1:${lb.port}${path}`,
      ]);
      assertEquals(r.code, 0, r.err);
      const [head, rest] = r.out.split("\r\n\r\n") as [string, string];
      const nl = rest.lastIndexOf("\n");
      return { head, body: rest.slice(0, nl), tail: rest.slice(nl + 1) };
    };
    const notFound = await get("nope.test", "/x");
    assertEquals(notFound.tail, "2 404");
    assertEquals(notFound.body, "404 Not Found: no route for nope.test/x\n");
    assertStringIncludes(notFound.head, "content-type: text/plain; charset=utf-8");
    const refused = await get("down.test");
    assertEquals(refused.tail, "2 502");
    assertEquals(refused.body, "502 Bad Gateway: no valid response from the backend\n");
    const none = await get("down.test");
    assertEquals(none.tail, "2 503");
    assertEquals(none.body, "503 Service Unavailable: no backend is available\n");
    const late = await get("slow.test", "/hold");
    assertEquals(late.tail, "2 504");
    assertEquals(late.body, "504 Gateway Timeout: the backend did not answer in time\n");
    assertEquals(slow.heads.length, 1);
  } finally {
    await lb.close();
  }
});

Deno.test("h2 proxy: malformed h2 requests never reach the backend; a good one on the same connection does", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  try {
    // uppercase name, connection, te: gzip, no :path, :status, pseudo after regular,
    // padded value, "*", duplicate :method, transfer-encoding, empty :path, NUL
    const out = await runH2Scenario(lb.port, "malformed");
    for (let i = 0; i < 12; i++) {
      assertEquals(out.rst[String(2 * i + 1)], ErrorCode.PROTOCOL_ERROR, `case ${i}`);
    }
    assertEquals(out.status["25"], 501); // CONNECT
    assertEquals(out.status["99"], 200);
    assertEquals(out.body["99"], "b1 /\n");
    assertEquals(b.heads.length, 1, "only the good request reached the backend");
    for (const name of ["content_length_over_batch", "content_length_under_batch"]) {
      const o = await runH2Scenario(lb.port, name, { path: "/hash" });
      assertEquals(o.rst["1"], ErrorCode.PROTOCOL_ERROR, name);
      assertEquals(o.ping_acks, 1, `${name}: the connection goes on`);
    }
    assertEquals(b.heads.length, 1, "content-length mismatches never reached the backend");
  } finally {
    await lb.close();
  }
});

Deno.test("h2 proxy: DATA breaking content-length after the request left resets the stream, and the backend never gets a whole request", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  try {
    const head = b.nextHead();
    const child = new Deno.Command("/usr/bin/python3", {
      args: h2ScenarioArgs(lb.port, "content_length_over_late", { path: "/hash" }),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await head; // the head went to the backend: now the DATA that breaks content-length
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    await w.close();
    const result = await child.output();
    const o = JSON.parse(dec.decode(result.stdout)) as H2Outcome;
    assertEquals(o.rst["1"], ErrorCode.PROTOCOL_ERROR);
    assertEquals(o.ping_acks, 1);
    assertEquals(b.complete, 0, "the backend never got a complete request");
    const next = await curl(["--http2-prior-knowledge", `http://127.0.0.1:${lb.port}/after`]);
    assertEquals(next.out, "b1 /after\n");
  } finally {
    await lb.close();
  }
});

Deno.test("h2 proxy: a backend's 100 Continue reaches the h2 client as an interim HEADERS frame, and the body follows", async () => {
  let body = "";
  // answers 100 Continue to the head, then reads the 5-byte body before the final answer
  const b = rawServer(async (conn, read) => {
    let got = dec.decode((await read())!);
    while (!got.includes("\r\n\r\n")) got += dec.decode((await read())!);
    await writeAllText(conn, "HTTP/1.1 100 Continue\r\n\r\n");
    body = got.slice(got.indexOf("\r\n\r\n") + 4);
    while (body.length < 5) body += dec.decode((await read())!);
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ngot");
  });
  const lb = await h2cBalancer(b.port);
  try {
    // curl holds the body until it sees 100 (or the timeout, far away)
    const r = await curl([
      "-v",
      "--http2-prior-knowledge",
      "--expect100-timeout",
      "20",
      "-H",
      "Expect: 100-continue",
      "--data-binary",
      "hello",
      `http://127.0.0.1:${lb.port}/up`,
    ]);
    assertEquals(r.code, 0, r.err);
    assertStringIncludes(r.err, "< HTTP/2 100");
    assertEquals(r.out, "got");
    assertEquals(body, "hello");
  } finally {
    await lb.close();
    await b.close();
  }
});

Deno.test("h2 proxy: the access log says h2 for HTTP/2 requests (h2c and TLS) and http/1.1 for the others", async () => {
  await using b = startOrigin("b1");
  const dir = await Deno.makeTempDir({ prefix: "unload-h2-log-" });
  const file = `${dir}/access.log`;
  const lb = await startBalancer(
    `
listen: { http: 127.0.0.1:0, https: 127.0.0.1:0, h2c: true }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`,
    { logger: createLogger({ access: file, quiet: true }) },
  );
  try {
    const http = `http://127.0.0.1:${lb.addrs.http!.port}`;
    const https = `https://127.0.0.1:${lb.addrs.https!.port}`;
    assertEquals((await curl(["--http2-prior-knowledge", `${http}/a`])).out, "b1 /a\n");
    assertEquals((await curl(["--http2", "-k", `${https}/b`])).out, "b1 /b\n");
    assertEquals((await curl(["--http1.1", `${http}/c`])).out, "b1 /c\n");
    assertEquals((await curl(["--http1.1", "-k", `${https}/d`])).out, "b1 /d\n");
    assertEquals(
      (await curl(["--http2-prior-knowledge", `${http}/nowhere`, "-H", "Host: x"])).code,
      0,
    );
  } finally {
    await lb.close();
  }
  try {
    const lines = (await Deno.readTextFile(file)).trimEnd().split("\n").map((l) => JSON.parse(l));
    const seen = lines.map((l) => [l.path, l.proto, l.status, l.method]);
    seen.sort((x, y) => String(x[0]).localeCompare(String(y[0])));
    assertEquals(seen, [
      ["/a", "h2", 200, "GET"],
      ["/b", "h2", 200, "GET"],
      ["/c", "http/1.1", 200, "GET"],
      ["/d", "http/1.1", 200, "GET"],
      ["/nowhere", "h2", 200, "GET"],
    ]);
    const a = lines.find((l) => l.path === "/a");
    assertEquals([a.route, a.backend, a.bytes_out > 0], ["app", `127.0.0.1:${b.port}`, true]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 proxy: remove the test CA", async () => {
  await ca.remove();
});

Deno.test("a reload that moves listen.http sends GOAWAY to the HTTP/2 connections of the old listener", async () => {
  await using origin = startOrigin("b1");
  const route = `routes: [{ name: app, backends: [{ address: 127.0.0.1:${origin.port} }] }]`;
  await using lb = await startBalancer(`listen: { http: 127.0.0.1:0, h2c: true }\n${route}\n`);
  const session = http2.connect(`http://127.0.0.1:${lb.port}`);
  try {
    const goaway = new Promise<number>((resolve) =>
      session.on("goaway", (code: number) => resolve(code))
    );
    const first = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ":path": "/before" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
    });
    assertEquals(first, 200);
    const elsewhere = `listen: { http: 127.0.0.1:${freePort()}, h2c: true }\n${route}\n`;
    const moved = await lb.reload(parseConfig(elsewhere, "test.yaml"));
    assertEquals(moved, { ok: true });
    assertEquals(await goaway, ErrorCode.NO_ERROR);
  } finally {
    session.destroy();
  }
});

Deno.test("HTTP/2 streams lost with their client give their backend connections back (none leaks)", async () => {
  await using origin = startOrigin("b1");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${origin.port} }] }]
`);
  const session = http2.connect(`http://127.0.0.1:${lb.port}`);
  for (let i = 0; i < 5; i++) session.request({ ":path": "/hold" }).on("error", () => {}).resume();
  while (origin.heads.length < 5) await new Promise((r) => setTimeout(r, 10)); // all five reached it
  session.destroy(); // the client goes away with its five streams open
  origin.release(); // then the backend answers them
  const pool = [...lb.pools.values()][0]!;
  for (let i = 0; i < 500 && pool.active > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assertEquals(pool.active, 0, "every backend connection was released");
  const after = await curl(["--http2-prior-knowledge", `http://127.0.0.1:${lb.port}/after`]);
  assertEquals(after.code, 0, after.err);
});

Deno.test("a chunked HTTP/1.1 answer's trailers reach an HTTP/2 client as trailers", async () => {
  await using b = rawServer(async (conn, read) => {
    let got = dec.decode((await read())!);
    while (!got.includes("\r\n\r\n")) got += dec.decode((await read())!);
    await writeAllText(
      conn,
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n" +
        "5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n",
    );
  });
  await using lb = await h2cBalancer(b.port);
  const session = http2.connect(`http://127.0.0.1:${lb.port}`);
  try {
    const { body, trailers } = await new Promise<{ body: string; trailers: string }>(
      (resolve, reject) => {
        const req = session.request({ ":path": "/t" });
        let body = "";
        let trailers = "";
        req.on("data", (c: Uint8Array) => body += dec.decode(c));
        req.on("trailers", (t) => trailers = String(t["x-sum"]));
        req.on("end", () => resolve({ body, trailers }));
        req.on("error", reject);
      },
    );
    assertEquals([body, trailers], ["hello", "42"]);
  } finally {
    session.destroy();
  }
});

Deno.test("an HTTP/2 client's te: trailers reaches an HTTP/2 backend, and never an HTTP/1.1 one", async () => {
  const seen: Array<string | undefined> = [];
  const h2Backend = http2.createServer();
  h2Backend.on("stream", (s: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    seen.push(headers["te"] as string | undefined);
    s.respond({ ":status": 200 });
    s.end("ok");
  });
  await new Promise<void>((r) => h2Backend.listen(0, "127.0.0.1", r));
  await using origin = startOrigin("b1");
  const h2Port = (h2Backend.address() as { port: number }).port;
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - { name: grpcish, path: /h2/, backend_protocol: h2c, backends: [{ address: 127.0.0.1:${h2Port} }] }
  - { name: plain, backends: [{ address: 127.0.0.1:${origin.port} }] }
`);
  const session = http2.connect(`http://127.0.0.1:${lb.port}`);
  const get = (path: string) =>
    new Promise<number>((resolve, reject) => {
      const req = session.request({ ":path": path, "te": "trailers" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
    });
  try {
    assertEquals([await get("/h2/x"), await get("/plain")], [200, 200]);
    assertEquals(seen, ["trailers"]);
    const head = origin.heads.at(-1)!;
    assertEquals(field(head, "te"), undefined, head);
  } finally {
    session.destroy();
    await new Promise<void>((r) => h2Backend.close(() => r()));
  }
});
