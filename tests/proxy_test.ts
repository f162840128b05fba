import { assert, assertEquals, assertLess, assertMatch, assertStringIncludes } from "@std/assert";
import {
  captureLogger,
  delay,
  forEachHead,
  keepAliveBackend,
  proxyTo,
  RawClient,
  rawServer,
  startBalancer,
  writeAllText,
} from "./_http.ts";
import type { ExchangeRecord } from "../src/observe/exchange_record.ts";

const dec = new TextDecoder();

Deno.test("proxy routes by Host (exact and wildcard) and by longest path prefix", async () => {
  await using web = keepAliveBackend("web");
  await using api = keepAliveBackend("api");
  await using wild = keepAliveBackend("wild");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - { name: web, backends: [{ address: 127.0.0.1:${web.port} }] }
  - { name: api, host: app.test, path: /api, backends: [{ address: 127.0.0.1:${api.port} }] }
  - { name: wild, host: "*.example.test", backends: [{ address: 127.0.0.1:${wild.port} }] }
  - { name: only-app, host: app.test, path: /only, backends: [{ address: 127.0.0.1:${api.port} }] }
`);
  using c = await RawClient.connect(lb.port);
  const get = async (host: string, path: string) =>
    (await c.request(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)).body.trim();
  assertEquals(await get("app.test", "/api/users"), "api /api/users");
  assertEquals(await get("APP.test:8080", "/api"), "api /api");
  assertEquals(await get("other.test", "/api/users"), "web /api/users");
  assertEquals(await get("app.test", "/"), "web /");
  assertEquals(await get("a.example.test", "/x"), "wild /x");
  assertEquals(await get("example.test", "/x"), "web /x");
});

Deno.test("proxy answers 404 with a plain-text body when no route matches", async () => {
  await using b = keepAliveBackend("b");
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes: [{ name: app, host: app.test, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  using c = await RawClient.connect(lb.port);
  const res = await c.request("GET /x HTTP/1.1\r\nHost: nope.test\r\n\r\n");
  assertEquals(res.status, 404);
  assertEquals(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assertStringIncludes(res.body, "no route for nope.test/x");
  // the connection stays usable
  assertEquals((await c.request("GET /y HTTP/1.1\r\nHost: app.test\r\n\r\n")).body, "b /y\n");
});

Deno.test("proxy reuses backend connections for 1000 sequential requests on one client connection", async () => {
  await using b = keepAliveBackend("b");
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  for (let i = 0; i < 1000; i++) {
    const res = await c.request(`GET /n${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assertEquals(res.body, `b /n${i}\n`);
  }
  assertEquals(b.accepted, 1, "backend connections accepted");
});

Deno.test("proxy keeps every connection a burst needed: rounds of 150 concurrent requests reuse them", async () => {
  await using b = keepAliveBackend("b");
  await using proxied = await proxyTo(b);
  const { lb } = proxied;
  const clients = await Promise.all(Array.from({ length: 150 }, () => RawClient.connect(lb.port)));
  for (let round = 0; round < 3; round++) {
    const bodies = await Promise.all(
      clients.map(async (c, i) =>
        (await c.request(`GET /${round}/${i} HTTP/1.1\r\nHost: a\r\n\r\n`)).body
      ),
    );
    assertEquals(bodies[149], `b /${round}/149\n`);
  }
  // at most one connection per request in flight, opened in the first round only
  assert(b.accepted <= 150, `backend connections accepted: ${b.accepted}`);
  for (const c of clients) c.close();
});

Deno.test("proxy answers pipelined requests in order", async () => {
  await using b = keepAliveBackend("b");
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  await c.send(
    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  assertEquals((await c.read()).body, "b /1\n");
  assertEquals((await c.read()).body, "b /2\n");
  const last = await c.read();
  assertEquals(last.body, "b /3\n");
  assertEquals(last.headers.get("connection"), "close");
  assert(await c.closed());
});

Deno.test("proxy adds X-Forwarded-* and Via and strips hop-by-hop headers both ways", async () => {
  let seen = "";
  await using b = rawServer(async (conn, read) => {
    const chunk = await read();
    seen = dec.decode(chunk!);
    await writeAllText(
      conn,
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\n\r\nok",
    );
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  const res = await c.request(
    "GET /p?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Private\r\nX-Private: no\r\n" +
      "Keep-Alive: 300\r\nX-Forwarded-For: 10.1.1.1\r\nTE: trailers\r\nUser-Agent: t\r\n\r\n",
  );
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("via"), "1.1 unload");
  assertEquals(res.headers.has("x-secret"), false);
  assertEquals(res.headers.has("keep-alive"), false);
  const lines = seen.toLowerCase().split("\r\n");
  assertEquals(lines[0], "get /p?q=1 http/1.1");
  assert(lines.includes("host: app.test"));
  assert(lines.includes("user-agent: t"));
  assert(lines.includes("x-forwarded-for: 10.1.1.1, 127.0.0.1"));
  assert(lines.includes("x-forwarded-proto: http"));
  assert(lines.includes("x-forwarded-host: app.test"));
  assert(lines.includes("via: 1.1 unload"));
  for (const h of ["x-private", "keep-alive", "te", "connection"]) {
    assert(!lines.some((l) => l.startsWith(`${h}:`)), `${h} must not reach the backend`);
  }
});

Deno.test("proxy relays a chunked request and a chunked response intact", async () => {
  let received = "";
  await using b = rawServer(async (conn, read) => {
    let all = "";
    while (!all.includes("0\r\n\r\n")) {
      const chunk = await read();
      if (chunk === null) return;
      all += dec.decode(chunk);
    }
    received = all;
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
    await delay(20);
    await writeAllText(conn, "7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n");
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  await c.send("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n");
  await delay(20);
  const res = await c.request("5\r\npedia\r\n0\r\n\r\n");
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("transfer-encoding"), "chunked");
  assertEquals(res.body, "hello, world");
  assertStringIncludes(received, "transfer-encoding: chunked\r\n");
  assert(received.endsWith("\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), received);
});

Deno.test("proxy relays Expect: 100-continue and HEAD/204/304 responses without a body", async () => {
  await using b = rawServer(async (conn, read) => {
    let all = "";
    for (;;) {
      const chunk = await read();
      if (chunk === null) return;
      all += dec.decode(chunk);
      if (all.includes("Expect: 100-continue") && !all.includes("\r\n\r\nhello")) {
        if (all.endsWith("\r\n\r\n")) await writeAllText(conn, "HTTP/1.1 100 Continue\r\n\r\n");
        continue;
      }
      if (all.includes("\r\n\r\nhello")) {
        await writeAllText(conn, "HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\nyes");
        all = "";
      } else if (all.startsWith("HEAD")) {
        await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
        all = "";
      } else if (all.includes("/204")) {
        await writeAllText(conn, "HTTP/1.1 204 No Content\r\n\r\n");
        all = "";
      } else if (all.includes("/304")) {
        await writeAllText(conn, "HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n");
        all = "";
      }
    }
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  const interim = await c.request(
    "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
  );
  assertEquals(interim.status, 100);
  const final = await c.request("hello");
  assertEquals([final.status, final.body], [201, "yes"]);
  const head = await c.request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD");
  assertEquals([head.status, head.headers.get("content-length")], [200, "1000"]);
  assertEquals((await c.request("GET /204 HTTP/1.1\r\nHost: a\r\n\r\n")).status, 204);
  const nm = await c.request("GET /304 HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals([nm.status, nm.headers.get("etag")], [304, "x"]);
  // still in sync after bodiless responses
  assertEquals((await c.request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD")).status, 200);
});

Deno.test("proxy answers 502 when the backend refuses, and 503 when a route has no healthy backend; the client gets a generic text, the log gets the address and the OS error", async () => {
  await using dead = rawServer(async () => {});
  const port = dead.port;
  await dead.close(); // nothing listens there any more
  const records: ExchangeRecord[] = [];
  const logger = { ...captureLogger(), access: (r: ExchangeRecord) => records.push({ ...r }) };
  await using lb = await startBalancer(
    `
listen: { http: 127.0.0.1:0 }
health: { failures: 1, backoff: 60s }
retry: { attempts: 0 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${port} }] }]
`,
    { logger },
  );
  using c = await RawClient.connect(lb.port);
  const res = await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals(res.status, 502);
  assertEquals(res.body, "502 Bad Gateway: no valid response from the backend\n");
  const res2 = await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals(res2.status, 503);
  assertEquals(res2.body, "503 Service Unavailable: no backend is available\n");
  for (const body of [res.body, res2.body]) {
    assert(!body.includes(String(port)) && !body.includes("os error"), body);
  }
  // the detail is the operator's: in the access log record (and so in the JSON line)
  assertMatch(records[0]?.error ?? "", new RegExp(`127\\.0\\.0\\.1:${port}.*os error 111`));
  assertStringIncludes(records[1]?.error ?? "", "no healthy backend for route app");
  assert(logger.lines.some((l) => l.includes(`127.0.0.1:${port}`)), logger.lines.join("\n"));
});

Deno.test("proxy answers 504 when the backend is slower than timeouts.response", async () => {
  await using slow = rawServer(async (_conn, read) => {
    await read();
    await read(); // never answers; returns when the balancer gives up and closes
  });
  await using proxied = await proxyTo(slow, { config: "timeouts: { response: 300ms }" });
  const { c } = proxied;
  const res = await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals(res.status, 504);
  assertEquals(res.body, "504 Gateway Timeout: the backend did not answer in time\n");
  await delay(100);
  assertEquals(slow.open, 0, "the backend connection is closed");
});

Deno.test("proxy retries a request once on a fresh connection when a pooled one went stale", async () => {
  let served = 0;
  await using b = rawServer(async (conn, read) => {
    const chunk = await read();
    if (chunk === null) return;
    served++;
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    await delay(50); // then close: the pooled connection is stale now
  });
  await using proxied = await proxyTo(b, { config: "retry: { attempts: 0 }" });
  const { c } = proxied;
  assertEquals((await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).status, 200);
  await delay(200);
  assertEquals((await c.request("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).status, 200);
  assertEquals([served, b.accepted], [2, 2]);
});

Deno.test("proxy closes the backend connection within 1 s when the client disconnects mid-body", async () => {
  await using b = rawServer(async (_conn, read) => {
    while ((await read()) !== null);
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  await c.send(
    "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + "x".repeat(5000),
  );
  for (let i = 0; i < 50 && b.received < 5000; i++) await delay(20);
  assertEquals(b.open, 1);
  c.close();
  await delay(1000);
  assertEquals(b.open, 0, "backend connections still open 1 s after the client left");
});

Deno.test("proxy closes the backend connection when the client disconnects mid-response", async () => {
  await using b = rawServer(async (conn, read) => {
    await read();
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n");
    const chunk = new Uint8Array(65536);
    for (let i = 0; i < 1600; i++) await writeAllText(conn, chunk);
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  await c.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
  await c.conn.read(new Uint8Array(65536));
  c.close();
  await delay(1000);
  assertEquals(b.open, 0);
});

Deno.test("proxy keeps an HTTP/1.0 client's keep-alive and dechunks a chunked response for it", async () => {
  await using b = rawServer(async (conn, read) => {
    for (;;) {
      const chunk = await read();
      if (chunk === null) return;
      await writeAllText(
        conn,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      );
    }
  });
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  const res = await c.request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assertEquals(res.body, "abc");
  assertEquals(res.headers.has("transfer-encoding"), false);
  assertLess(res.head.indexOf("HTTP/1.1 200"), 1);
});

Deno.test("proxy gives a keep-alive connection timeouts.idle between requests and timeouts.head once one begins", async () => {
  await using b = keepAliveBackend("b");
  await using proxied = await proxyTo(b, { config: "timeouts: { head: 300ms, idle: 5s }" });
  const { c } = proxied;
  assertEquals((await c.request("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")).body, "b /1\n");
  await delay(600); // idle longer than the head timeout: still open
  assertEquals((await c.request("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")).body, "b /2\n");
  await c.send("GET /3 HT"); // a request begins and stalls
  assert(await c.closed(1500), "closed at the head timeout, not the idle one");
});

// A backend answering each request with its head, exactly as received, as the body.
function headEchoBackend() {
  return rawServer((conn, read) =>
    forEachHead(read, (head) => {
      const body = `${head}\r\n\r\n`;
      return writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    })
  );
}

Deno.test("proxy forwards each head's own fields when heads of different sizes follow on one connection", async () => {
  await using proxied = await proxyTo(headEchoBackend());
  const { c } = proxied;
  const big = `x-big: ${"b".repeat(12_000)}`; // larger than a reused head buffer keeps
  const sent = [
    "GET /1 HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nAccept: */*\r\nX-Two:  two  \r\n\r\n",
    "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    `GET /3 HTTP/1.1\r\nHost: a\r\n${big}\r\n\r\n`,
    "POST /4 HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nX-Four: 4\r\n\r\nok",
  ];
  const got = [];
  for (const s of sent) got.push((await c.request(s)).body);
  assertEquals(
    got[0]!.split("\r\n").slice(0, 5),
    ["GET /1 HTTP/1.1", "Host: a", "X-One: 1", "Accept: */*", "X-Two:  two  "],
    "field lines are copied byte for byte",
  );
  assertEquals(got[1]!.split("\r\n").slice(0, 3), [
    "GET /2 HTTP/1.1",
    "Host: a",
    "x-forwarded-for: 127.0.0.1",
  ]);
  assert(
    !got[1]!.includes("X-One") && !got[1]!.includes("X-Two"),
    "nothing left from the first head",
  );
  assertStringIncludes(got[2]!, `\r\n${big}\r\n`);
  assertEquals(got[3]!.split("\r\n").slice(0, 4), [
    "POST /4 HTTP/1.1",
    "host: a",
    "X-Four: 4",
    "content-length: 2",
  ]);
  assert(!got[3]!.includes("x-big"), "nothing left from the large head");
});

Deno.test("proxy rewrites Host to an absolute-form target's authority, keeping the field's spelling", async () => {
  await using proxied = await proxyTo(headEchoBackend());
  const { c } = proxied;
  const res = await c.request("GET http://app.test:81/p?q HTTP/1.1\r\nHOST:  other.test\r\n\r\n");
  assertEquals(res.body.split("\r\n").slice(0, 2), [
    "GET http://app.test:81/p?q HTTP/1.1",
    "HOST:  app.test:81",
  ]);
  assertStringIncludes(res.body, "\r\nx-forwarded-host: app.test:81\r\n");
});

Deno.test("proxy relays a status line without a reason phrase with its separating space", async () => {
  await using b = rawServer((conn, read) =>
    forEachHead(read, () => writeAllText(conn, "HTTP/1.1 299\r\ncontent-length: 2\r\n\r\nok"))
  );
  await using proxied = await proxyTo(b);
  const { c } = proxied;
  await c.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const res = await c.read();
  assertEquals(res.status, 299);
  assertEquals(res.body, "ok");
});
