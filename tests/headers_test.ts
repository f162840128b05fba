import { assert, assertEquals } from "@std/assert";
import { type Framing } from "../src/http1/body.ts";
import { parseRequestHead, parseResponseHead } from "../src/http1/parse.ts";
import {
  type ForwardInfo,
  forwardRequestHead,
  forwardResponseHead,
  type ResponseInfo,
} from "../src/proxy/forwarded.ts";

const NONE: Framing = { kind: "none", length: 0 };

function fwdReq(text: string, info: Partial<ForwardInfo> = {}): string[] {
  const head = parseRequestHead(text);
  const out = forwardRequestHead(head, {
    clientIp: "10.0.0.9",
    proto: "http",
    host: "app.test",
    framing: NONE,
    upgrade: undefined,
    ...info,
  });
  assert(out.endsWith("\r\n\r\n"), "a head ends with an empty line");
  return out.slice(0, -4).split("\r\n");
}

function fwdRes(text: string, info: Partial<ResponseInfo> = {}): string[] {
  const head = parseResponseHead(text);
  const out = forwardResponseHead(head, {
    framing: NONE,
    chunked: false,
    close: false,
    clientMinor: 1,
    upgrade: false,
    ...info,
  });
  assert(out.endsWith("\r\n\r\n"), "a head ends with an empty line");
  return out.slice(0, -4).split("\r\n");
}

function names(lines: string[]): string[] {
  return lines.slice(1).map((l) => l.slice(0, l.indexOf(":")).toLowerCase());
}

function field(lines: string[], name: string): string[] {
  return lines.slice(1)
    .filter((l) => l.toLowerCase().startsWith(`${name}:`))
    .map((l) => l.slice(name.length + 1).trim());
}

// ---------------------------------------------------------------- forwardRequestHead

Deno.test("forwardRequestHead sends HTTP/1.1 with method, target and end-to-end fields as received", () => {
  const lines = fwdReq(
    "PUT /a?b=c HTTP/1.0\r\nHost: app.test\r\nX-Case: Kept\r\nAccept: */*\r\n\r\n",
  );
  assertEquals(lines[0], "PUT /a?b=c HTTP/1.1");
  assert(lines.includes("Host: app.test"));
  assert(lines.includes("X-Case: Kept"));
  assert(lines.includes("Accept: */*"));
});

Deno.test("forwardRequestHead removes every hop-by-hop field", () => {
  const lines = fwdReq(
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\n" +
      "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\nX-Keep: 1\r\n\r\n",
  );
  for (const n of ["connection", "keep-alive", "proxy-connection", "te", "upgrade"]) {
    assertEquals(field(lines, n), [], `${n} must not be forwarded`);
  }
  assertEquals(field(lines, "x-keep"), ["1"]);
});

Deno.test("forwardRequestHead removes the fields named in Connection, in any case", () => {
  const lines = fwdReq(
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Secret, x-other\r\nconnection: X-Third\r\n" +
      "X-Secret: 1\r\nX-OTHER: 2\r\nx-third: 3\r\nX-Public: 4\r\n\r\n",
  );
  assertEquals(names(lines).filter((n) => n.startsWith("x-") && !n.startsWith("x-forwarded")), [
    "x-public",
  ]);
});

Deno.test("forwardRequestHead drops X-Forwarded-For and Via values the Connection field names", () => {
  const lines = fwdReq(
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: via, x-forwarded-for\r\n" +
      "Via: 1.1 p\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
  );
  assertEquals(field(lines, "x-forwarded-for"), ["10.0.0.9"]);
  assertEquals(field(lines, "via"), ["1.1 unload"]);
});

Deno.test("forwardRequestHead never removes Host, Content-Length or Transfer-Encoding because Connection names them", () => {
  const cl = fwdReq(
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nConnection: host, content-length\r\n\r\n",
    { framing: { kind: "length", length: 5 } },
  );
  assertEquals(field(cl, "host"), ["app.test"]);
  assertEquals(field(cl, "content-length"), ["5"]);
  const te = fwdReq(
    "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n" +
      "Connection: Transfer-Encoding, Host\r\n\r\n",
    { framing: { kind: "chunked", length: 0 } },
  );
  assertEquals(field(te, "host"), ["app.test"]);
  assertEquals(field(te, "transfer-encoding"), ["chunked"]);
});

Deno.test("forwardRequestHead writes exactly one framing field from the validated framing", () => {
  const cl = fwdReq(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
    {
      framing: { kind: "length", length: 5 },
    },
  );
  assertEquals(field(cl, "content-length"), ["5"]);
  assertEquals(field(cl, "transfer-encoding"), []);
  const te = fwdReq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", {
    framing: { kind: "chunked", length: 0 },
  });
  assertEquals(field(te, "transfer-encoding"), ["chunked"]);
  assertEquals(field(te, "content-length"), []);
  const none = fwdReq("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  assertEquals(field(none, "content-length"), []);
});

Deno.test("forwardRequestHead appends the client IP to X-Forwarded-For, joining repeated fields", () => {
  assertEquals(field(fwdReq("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "x-forwarded-for"), ["10.0.0.9"]);
  const lines = fwdReq(
    "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nx-forwarded-for: 3.3.3.3\r\n\r\n",
  );
  assertEquals(field(lines, "x-forwarded-for"), ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"]);
});

Deno.test("forwardRequestHead replaces client-sent X-Forwarded-Proto and X-Forwarded-Host", () => {
  const lines = fwdReq(
    "GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\r\n",
    { proto: "http" },
  );
  assertEquals(field(lines, "x-forwarded-proto"), ["http"]);
  assertEquals(field(lines, "x-forwarded-host"), ["app.test"]);
});

Deno.test("forwardRequestHead appends to Via with the client's protocol version", () => {
  assertEquals(field(fwdReq("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "via"), ["1.1 unload"]);
  assertEquals(field(fwdReq("GET / HTTP/1.0\r\n\r\n", { host: "" }), "via"), ["1.0 unload"]);
  const lines = fwdReq("GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 cdn\r\nVia: 1.0 edge\r\n\r\n");
  assertEquals(field(lines, "via"), ["1.1 cdn, 1.0 edge, 1.1 unload"]);
});

Deno.test("forwardRequestHead adds a Host to an HTTP/1.0 request that had none", () => {
  const lines = fwdReq("GET / HTTP/1.0\r\n\r\n", { host: "app.test" });
  assertEquals(field(lines, "host"), ["app.test"]);
});

Deno.test("forwardRequestHead sends the absolute-form target's authority as Host, not the received Host", () => {
  // RFC 9112 §3.2.2: a proxy MUST replace the received Host with the target's host.
  const lines = fwdReq("GET http://app.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n", {
    host: "app.test",
  });
  assertEquals(field(lines, "host"), ["app.test"]);
  assertEquals(field(lines, "x-forwarded-host"), ["app.test"]);
});

Deno.test("forwardRequestHead keeps Upgrade and Connection: upgrade only for an upgrade", () => {
  const text = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
  const up = fwdReq(text, { upgrade: "websocket" });
  assertEquals(field(up, "connection"), ["upgrade"]);
  assertEquals(field(up, "upgrade"), ["websocket"]);
  const plain = fwdReq(text);
  assertEquals([field(plain, "connection"), field(plain, "upgrade")], [[], []]);
});

// ---------------------------------------------------------------- forwardResponseHead

Deno.test("forwardResponseHead sends HTTP/1.1 with status, reason and end-to-end fields", () => {
  const lines = fwdRes(
    "HTTP/1.0 201 Made It\r\nX-A: b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
  );
  assertEquals(lines[0], "HTTP/1.1 201 Made It");
  assertEquals(field(lines, "set-cookie"), ["a=1", "b=2"]);
  assertEquals(field(lines, "x-a"), ["b"]);
});

Deno.test("forwardResponseHead removes hop-by-hop fields and those named in Connection", () => {
  const lines = fwdRes(
    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n" +
      "X-Secret: s\r\nTE: x\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nX-Public: p\r\n\r\n",
  );
  assertEquals(names(lines), ["x-public", "via"]);
});

Deno.test("forwardResponseHead drops Via values the Connection field names", () => {
  const lines = fwdRes("HTTP/1.1 200 OK\r\nConnection: Via\r\nVia: 1.1 b\r\n\r\n");
  assertEquals(field(lines, "via"), ["1.1 unload"]);
});

Deno.test("forwardResponseHead never removes Content-Length because Connection names it", () => {
  const lines = fwdRes(
    "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n",
    {
      framing: { kind: "length", length: 2 },
    },
  );
  assertEquals(field(lines, "content-length"), ["2"]);
});

Deno.test("forwardResponseHead writes the framing field: length, chunked, or none when dechunking", () => {
  const len = fwdRes("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", {
    framing: { kind: "length", length: 3 },
  });
  assertEquals(field(len, "content-length"), ["3"]);
  const chunked = { kind: "chunked", length: 0 } as const;
  const te = fwdRes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", {
    framing: chunked,
    chunked: true,
  });
  assertEquals(field(te, "transfer-encoding"), ["chunked"]);
  const dechunked = fwdRes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", {
    framing: chunked,
    chunked: false,
    close: true,
    clientMinor: 0,
  });
  assertEquals([field(dechunked, "transfer-encoding"), field(dechunked, "content-length")], [
    [],
    [],
  ]);
});

Deno.test("forwardResponseHead keeps the advertised Content-Length of a HEAD or 304 answer, not of a 204", () => {
  const head = fwdRes("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
  assertEquals(field(head, "content-length"), ["1000"]);
  const notModified = fwdRes("HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n");
  assertEquals(field(notModified, "content-length"), ["1000"]);
  const noContent = fwdRes("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
  assertEquals(field(noContent, "content-length"), []);
});

Deno.test("forwardResponseHead says close, keep-alive for HTTP/1.0 clients, or upgrade", () => {
  assertEquals(field(fwdRes("HTTP/1.1 200 OK\r\n\r\n", { close: true }), "connection"), ["close"]);
  assertEquals(field(fwdRes("HTTP/1.1 200 OK\r\n\r\n"), "connection"), []);
  assertEquals(field(fwdRes("HTTP/1.1 200 OK\r\n\r\n", { clientMinor: 0 }), "connection"), [
    "keep-alive",
  ]);
  const up = fwdRes(
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    { upgrade: true },
  );
  assertEquals([field(up, "connection"), field(up, "upgrade")], [["upgrade"], ["websocket"]]);
});

Deno.test("forwardResponseHead appends to the backend's Via with the backend's version", () => {
  assertEquals(field(fwdRes("HTTP/1.0 200 OK\r\n\r\n"), "via"), ["1.0 unload"]);
  assertEquals(field(fwdRes("HTTP/1.1 200 OK\r\nVia: 1.1 app\r\n\r\n"), "via"), [
    "1.1 app, 1.1 unload",
  ]);
});
