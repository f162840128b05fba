import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { CONNECTION, HOST, latin1 as decodeHead, TRANSFER_ENCODING } from "../src/http1/fields.ts";
import { HttpError, readHead } from "../src/http1/head.ts";
import { parseRequestHead, parseResponseHead } from "../src/http1/parse.ts";
import { BufReader, type ByteConn } from "../src/http1/io.ts";

const enc = new TextEncoder();

/** A connection that yields `chunks` one per read, then EOF. */
function fakeConn(chunks: (string | Uint8Array)[]): ByteConn & { reads: number } {
  const queue = chunks.map((c) => typeof c === "string" ? enc.encode(c) : c);
  return {
    reads: 0,
    read(p: Uint8Array): Promise<number | null> {
      this.reads++;
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      const n = Math.min(p.length, next.length);
      p.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return Promise.resolve(n);
    },
    write(p: Uint8Array): Promise<number> {
      return Promise.resolve(p.length);
    },
  };
}

function status(fn: () => unknown): number {
  return assertThrows(fn, HttpError).status;
}

async function rejectStatus(p: number | Promise<unknown>): Promise<number> {
  return (await assertRejects(() => Promise.resolve(p), HttpError)).status;
}

// ---------------------------------------------------------------- parseRequestHead

Deno.test("parseRequestHead reads method, target, version and fields in arrival order", () => {
  const h = parseRequestHead(
    "POST /a?b=1 HTTP/1.1\r\nHost: x.test\r\nX-Multi: 1\r\nx-multi: 2\r\nEmpty:\r\n\r\n",
  );
  assertEquals(h.method, "POST");
  assertEquals(h.target, "/a?b=1");
  assertEquals(h.minor, 1);
  assertEquals(h.names, ["host", "x-multi", "x-multi", "empty"]);
  assertEquals(h.rawNames, ["Host", "X-Multi", "x-multi", "Empty"]);
  assertEquals(h.values, ["x.test", "1", "2", ""]);
});

Deno.test("parseRequestHead accepts HTTP/1.0 as minor 0", () => {
  assertEquals(parseRequestHead("GET / HTTP/1.0\r\n\r\n").minor, 0);
});

Deno.test("parseRequestHead trims optional whitespace around field values but keeps inner spaces", () => {
  const h = parseRequestHead("GET / HTTP/1.1\r\nA: \t a  b \t\r\nB:c\r\n\r\n");
  assertEquals(h.values, ["a  b", "c"]);
});

Deno.test("parseRequestHead keeps obs-text (bytes >= 0x80) in field values", () => {
  const h = parseRequestHead("GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n");
  assertEquals(h.values[0], "caf\xe9");
});

Deno.test("parseRequestHead rejects whitespace before the colon with 400", () => {
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nHost : a\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n")), 400);
});

Deno.test("parseRequestHead rejects invalid bytes in a field name with 400", () => {
  for (const name of ["X(a)", "X\x00A", "X@", "X/Y", "X\x7fY", "X\xe9", '"X"', "X{}"]) {
    assertEquals(status(() => parseRequestHead(`GET / HTTP/1.1\r\n${name}: v\r\n\r\n`)), 400, name);
  }
});

Deno.test("parseRequestHead rejects an empty field name or a line without a colon with 400", () => {
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\n: v\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nNoColon\r\n\r\n")), 400);
});

Deno.test("parseRequestHead rejects NUL, bare CR, other controls and DEL in a field value with 400", () => {
  for (const v of ["a\x00b", "a\rb", "a\x01b", "a\x7fb", "a\x1bb"]) {
    assertEquals(status(() => parseRequestHead(`GET / HTTP/1.1\r\nX: ${v}\r\n\r\n`)), 400, v);
  }
});

Deno.test("parseRequestHead accepts a horizontal tab inside a field value", () => {
  assertEquals(parseRequestHead("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n").values[0], "a\tb");
});

Deno.test("parseRequestHead rejects bare LF line endings with 400", () => {
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\nHost: a\n\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\n\n")), 400);
});

Deno.test("parseRequestHead rejects obsolete line folding with 400", () => {
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GET / HTTP/1.1\r\n Host: a\r\n\r\n")), 400);
});

Deno.test("parseRequestHead rejects a malformed request line with 400", () => {
  for (
    const line of [
      "GET /",
      "GET  / HTTP/1.1",
      "GET / HTTP/1.1 ",
      " GET / HTTP/1.1",
      "GET / x HTTP/1.1",
      "GET\t/\tHTTP/1.1",
      "/ HTTP/1.1",
      "",
    ]
  ) {
    assertEquals(status(() => parseRequestHead(`${line}\r\nHost: a\r\n\r\n`)), 400, line);
  }
});

Deno.test("parseRequestHead rejects a method that is not a token with 400", () => {
  assertEquals(status(() => parseRequestHead("G(T / HTTP/1.1\r\n\r\n")), 400);
  assertEquals(status(() => parseRequestHead("GÉT / HTTP/1.1\r\n\r\n")), 400);
});

Deno.test("parseRequestHead rejects control, space-like and non-ASCII bytes in the target with 400", () => {
  for (const t of ["/a\x00", "/a\x7f", "/\xe9", "/a\x01b", "/a\rb"]) {
    assertEquals(
      status(() => parseRequestHead(`GET ${t} HTTP/1.1\r\n\r\n`)),
      400,
      JSON.stringify(t),
    );
  }
});

Deno.test("parseRequestHead answers 505 to a well-formed but unsupported version", () => {
  for (const v of ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/2.1"]) {
    assertEquals(status(() => parseRequestHead(`GET / ${v}\r\n\r\n`)), 505, v);
  }
  assertEquals(status(() => parseRequestHead("PRI * HTTP/2.0\r\n\r\n")), 505);
});

Deno.test("parseRequestHead reads a higher HTTP/1 minor version (HTTP/1.2 .. HTTP/1.9) as HTTP/1.1", () => {
  for (const v of ["HTTP/1.2", "HTTP/1.5", "HTTP/1.9"]) {
    assertEquals(parseRequestHead(`GET / ${v}\r\n\r\n`).minor, 1, v);
  }
  assertEquals(parseRequestHead("GET / HTTP/1.0\r\n\r\n").minor, 0);
});

Deno.test("parseRequestHead keeps a method's case: a lower-case method is an extension token", () => {
  for (const m of ["get", "Get", "purge", "M-SEARCH"]) {
    assertEquals(parseRequestHead(`${m} / HTTP/1.1\r\n\r\n`).method, m);
  }
});

Deno.test("parseRequestHead rejects a #fragment anywhere in the target with 400", () => {
  for (const t of ["/#", "/a#b", "/a?b=1#c", "http://h/x#y", "*#"]) {
    assertEquals(status(() => parseRequestHead(`OPTIONS ${t} HTTP/1.1\r\n\r\n`)), 400, t);
  }
});

Deno.test("parseRequestHead answers 400 to a garbage or wrongly cased version", () => {
  for (const v of ["HTTP/1", "HTTP/1.10", "http/1.1", "HTTP/1.x", "FOO", "HTTP/11", "HTTP /1.1"]) {
    assertEquals(status(() => parseRequestHead(`GET / ${v}\r\n\r\n`)), 400, v);
  }
});

Deno.test("parseRequestHead answers 414 to a request line longer than maxLine", () => {
  const target = "/" + "a".repeat(100);
  const text = `GET ${target} HTTP/1.1\r\n\r\n`;
  const lineLength = text.indexOf("\r\n");
  assertEquals(parseRequestHead(text, lineLength).target, target);
  assertEquals(status(() => parseRequestHead(text, lineLength - 1)), 414);
});

// ---------------------------------------------------------------- parseResponseHead

Deno.test("parseResponseHead reads version, status, reason and fields", () => {
  const h = parseResponseHead(
    "HTTP/1.0 404 Not Found Here\r\nContent-Length: 3\r\nX-A: b\r\n\r\n",
  );
  assertEquals([h.minor, h.status, h.reason], [0, 404, "Not Found Here"]);
  assertEquals(h.names, ["content-length", "x-a"]);
  assertEquals(h.values, ["3", "b"]);
});

Deno.test("parseResponseHead accepts an empty reason phrase with or without its space", () => {
  assertEquals(parseResponseHead("HTTP/1.1 200 \r\n\r\n").reason, "");
  assertEquals(parseResponseHead("HTTP/1.1 200\r\n\r\n").status, 200);
});

Deno.test("parseResponseHead reads a backend's HTTP/1.2 status line as HTTP/1.1", () => {
  const h = parseResponseHead("HTTP/1.2 200 OK\r\n\r\n");
  assertEquals([h.minor, h.status], [1, 200]);
});

Deno.test("parseResponseHead answers 502 to a malformed status line", () => {
  for (
    const line of [
      "HTTP/1.1 20 OK",
      "HTTP/1.1 2000 OK",
      "HTTP/1.1 099 OK",
      "HTTP/1.1 abc OK",
      "HTTP/1.1  200 OK",
      "HTTP/2 200 OK",
      "http/1.1 200 OK",
      "ICY 200 OK",
      "HTTP/1.1 200OK",
    ]
  ) {
    assertEquals(status(() => parseResponseHead(`${line}\r\n\r\n`)), 502, line);
  }
});

Deno.test("parseResponseHead answers 502 (never 400) to malformed fields and line endings", () => {
  for (
    const text of [
      "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
      "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n",
    ]
  ) {
    assertEquals(status(() => parseResponseHead(text)), 502, JSON.stringify(text));
  }
});

// ---------------------------------------------------------------- readHead

Deno.test("readHead returns the index just past the empty line of a head read in one chunk", async () => {
  const text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const r = new BufReader(fakeConn([text + "BODY"]));
  const end = await readHead(r, { maxHead: 1024 });
  assertEquals(end, text.length);
  assertEquals(decodeHead(r.buf, r.start, end), text);
});

Deno.test("readHead assembles a head split byte by byte across reads", async () => {
  const text = "GET /x HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
  const r = new BufReader(fakeConn([...text]), 64);
  const end = await readHead(r, { maxHead: 1024 });
  assertEquals(decodeHead(r.buf, r.start, end), text);
});

Deno.test("readHead finds a terminator split between reads at every position", async () => {
  const text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (let cut = 1; cut < text.length; cut++) {
    const r = new BufReader(fakeConn([text.slice(0, cut), text.slice(cut)]));
    const end = await readHead(r, { maxHead: 1024 });
    assertEquals(decodeHead(r.buf, r.start, end), text, `cut at ${cut}`);
  }
});

Deno.test("readHead skips empty lines before a request line", async () => {
  const text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const r = new BufReader(fakeConn(["\r\n\r\n", "\r", "\n" + text]));
  const end = await readHead(r, { maxHead: 1024 });
  assertEquals(decodeHead(r.buf, r.start, end), text);
});

Deno.test("readHead does not skip empty lines before a response's status line", async () => {
  const text = "\r\nHTTP/1.1 200 OK\r\n\r\n";
  const r = new BufReader(fakeConn([text]));
  const end = await readHead(r, { maxHead: 1024 }, true);
  assertEquals(decodeHead(r.buf, r.start, end), text);
  assertEquals(status(() => parseResponseHead(text)), 502);
});

Deno.test("readHead ends a head at a bare LF empty line so the parser can reject it", async () => {
  const r = new BufReader(fakeConn(["GET / HTTP/1.1\nHost: a\n\nX"]));
  const end = await readHead(r, { maxHead: 1024 });
  const text = decodeHead(r.buf, r.start, end);
  assertEquals(text, "GET / HTTP/1.1\nHost: a\n\n");
  assertEquals(status(() => parseRequestHead(text)), 400);
});

Deno.test("readHead leaves the bytes after the head (a pipelined request) buffered", async () => {
  const a = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const b = "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  const r = new BufReader(fakeConn([a + b]));
  const end1 = await readHead(r, { maxHead: 1024 });
  assertEquals(decodeHead(r.buf, r.start, end1), a);
  r.consume(end1 - r.start);
  const end2 = await readHead(r, { maxHead: 1024 });
  assertEquals(decodeHead(r.buf, r.start, end2), b);
});

Deno.test("readHead returns -1 when the peer closes before sending any byte", async () => {
  assertEquals(await readHead(new BufReader(fakeConn([])), { maxHead: 1024 }), -1);
  assertEquals(await readHead(new BufReader(fakeConn(["\r\n"])), { maxHead: 1024 }), -1);
});

Deno.test("readHead answers 400 when the peer closes in the middle of a head", async () => {
  const r = new BufReader(fakeConn(["GET / HTTP/1.1\r\nHost: a\r\n"]));
  assertEquals(await rejectStatus(readHead(r, { maxHead: 1024 })), 400);
});

Deno.test("readHead answers 431 to a head larger than maxHead that arrives in pieces", async () => {
  const line = "X-Pad: " + "p".repeat(90) + "\r\n";
  const chunks = ["GET / HTTP/1.1\r\n", ...Array(50).fill(line)];
  const r = new BufReader(fakeConn(chunks), 256);
  assertEquals(await rejectStatus(readHead(r, { maxHead: 1024, maxLine: 512 })), 431);
});

Deno.test("readHead answers 431 to a complete head larger than maxHead received in one read", async () => {
  const text = "GET / HTTP/1.1\r\n" + "X-Pad: " + "p".repeat(2000) + "\r\n\r\n";
  const r = new BufReader(fakeConn([text]), 16 * 1024);
  assertEquals(await rejectStatus(readHead(r, { maxHead: 1024, maxLine: 512 })), 431);
});

Deno.test("readHead accepts a head of exactly maxHead bytes", async () => {
  const base = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n";
  const text = base.replace("X-Pad: ", "X-Pad: " + "p".repeat(1024 - base.length));
  assertEquals(text.length, 1024);
  for (const size of [64, 16 * 1024]) {
    const r = new BufReader(fakeConn([text]), size);
    assertEquals(await readHead(r, { maxHead: 1024, maxLine: 512 }), 1024, `buffer ${size}`);
  }
});

Deno.test("readHead answers 414 when the request line alone is longer than maxLine and never ends", async () => {
  const r = new BufReader(fakeConn(["GET /" + "a".repeat(5000)]), 256);
  assertEquals(await rejectStatus(readHead(r, { maxHead: 2048, maxLine: 1024 })), 414);
});

Deno.test("readHead answers 414 rather than 431 when an over-long request line fills maxHead", async () => {
  const r = new BufReader(
    fakeConn(["GET /" + "a".repeat(1500) + " HTTP/1.1\r\nX: " + "b".repeat(2000)]),
  );
  assertEquals(await rejectStatus(readHead(r, { maxHead: 2048, maxLine: 1024 })), 414);
});

Deno.test("readHead grows a small read buffer up to maxHead", async () => {
  const text = "GET / HTTP/1.1\r\nX: " + "v".repeat(500) + "\r\n\r\n";
  const r = new BufReader(fakeConn([text]), 64);
  const end = await readHead(r, { maxHead: 4096 });
  assertEquals(decodeHead(r.buf, r.start, end), text);
  assert(r.buf.length >= text.length);
});

Deno.test("readHead answers 502 (not 431) to a response head over maxHead", async () => {
  const r = new BufReader(fakeConn(["HTTP/1.1 200 OK\r\nX: " + "v".repeat(3000)]));
  assertEquals(await rejectStatus(readHead(r, { maxHead: 1024 }, true)), 502);
});

// ---------------------------------------------------------------- decodeHead, fieldTokens

Deno.test("latin1 maps every byte to one Latin-1 code unit, short or long", () => {
  const bytes = new Uint8Array([0x41, 0xe9, 0xff, 0x80, 0x42]);
  assertEquals(decodeHead(bytes, 0, bytes.length), "A\xe9\xff\x80B");
  assertEquals(decodeHead(bytes, 0, 1), "A");
  const long = new Uint8Array(300).map((_, i) => i & 0xff);
  assertEquals(decodeHead(long, 0, 300), String.fromCharCode(...long));
  assertEquals(decodeHead(long, 0, 100), String.fromCharCode(...long.subarray(0, 100)));
});

Deno.test("tokens lower-cases, trims and drops empty tokens across repeated fields", () => {
  const h = parseRequestHead(
    "GET / HTTP/1.1\r\nConnection: Keep-Alive , ,X-A\r\nX: y\r\nconnection: UPGRADE\r\n\r\n",
  );
  assertEquals(h.tokens(CONNECTION), ["keep-alive", "x-a", "upgrade"]);
  assertEquals(h.connection, ["keep-alive", "x-a", "upgrade"]);
  assertEquals(h.tokens(TRANSFER_ENCODING), []);
});

Deno.test("connection tokens of a single usual value, in any case", () => {
  for (
    const [v, want] of [["keep-alive", ["keep-alive"]], ["CLOSE", ["close"]], ["Upgrade", [
      "upgrade",
    ]]]
  ) {
    assertEquals(parseRequestHead(`GET / HTTP/1.1\r\nConnection: ${v}\r\n\r\n`).connection, want);
  }
  assertEquals(parseRequestHead("GET / HTTP/1.1\r\n\r\n").connection, []);
});

Deno.test("known fields are recognised in any case; valueOf returns the first value or undefined", () => {
  const h = parseRequestHead("GET / HTTP/1.1\r\nhOsT: a\r\nHost: b\r\nX-Host: c\r\n\r\n");
  assertEquals(h.valueOf(HOST), "a");
  assertEquals(h.countOf(HOST), 2);
  assertEquals(h.valueOf(CONNECTION), undefined);
  assertEquals(h.names, ["host", "host", "x-host"]);
  assertEquals(h.rawNames, ["hOsT", "Host", "X-Host"]);
});
