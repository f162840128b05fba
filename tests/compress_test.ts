/**
 * `compress`, end to end: what curl, Python's gzip and brotli modules and a raw
 * socket get from a route that compresses, over HTTP/1.1 and HTTP/2, and what
 * passes untouched (already encoded, small, ranges, gRPC, HEAD, no-transform).
 */
import { assert, assertEquals, assertLess, assertMatch, assertStringIncludes } from "@std/assert";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { delay, forEachHead, RawClient, rawServer, startBalancer, writeAllText } from "./_http.ts";
import { startLbProcess } from "./_process.ts";
import { runCli } from "./_process.ts";
import { runGrpcio, startGrpcioServer } from "./_grpcio.ts";
import { startH2Echo } from "./_h2_echo.ts";
import { type ConfigError, parseConfig } from "../src/config/config.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, with python3-brotli
const enc = new TextEncoder();
const dec = new TextDecoder();
const MIB = 1024 * 1024;
const B64 = enc.encode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

/** `n` bytes of text: numbered lines of words (compressible, and any shift shows). */
function page(n: number): string {
  let s = "";
  for (let i = 0; s.length < n; i++) {
    s += `line ${i}: the quick brown fox jumps over the lazy dog ${i * 7919 % 1000}\n`;
  }
  return s.slice(0, n);
}

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/**
 * The backend: answers by path, keep-alive, counting its connections.
 *
 * | path | answer |
 * |---|---|
 * | `/text/N` | `text/html; charset=utf-8`, N bytes of {@linkcode page}, Content-Length, a strong ETag, `Vary: Origin` |
 * | `/chunked/N` | the same text, chunked in 1000-byte chunks, with a trailer-less end |
 * | `/type/T/N` | N bytes of page with Content-Type T (`_` for `/`) |
 * | `/encoded` | 4000 bytes already gzipped by the backend (`Content-Encoding: gzip`) |
 * | `/notransform` | 4000 bytes of text with `Cache-Control: public, no-transform` |
 * | `/range` | 206 for a Range request (bytes 0-99), else 200 with 4000 bytes |
 * | `/nocontent` | 204 |
 */
function siteBackend() {
  const gz = zlib.gzipSync(enc.encode(page(4000)));
  return rawServer((conn, read) =>
    forEachHead(read, (head) => {
      const path = head.split(" ")[1]!;
      const parts = path.split("/");
      const send = (status: string, fields: string[], body: Uint8Array | string = "") => {
        const b = typeof body === "string" ? enc.encode(body) : body;
        const text = `HTTP/1.1 ${status}\r\n${fields.map((f) => f + "\r\n").join("")}` +
          `content-length: ${b.length}\r\n\r\n`;
        const all = new Uint8Array(text.length + b.length);
        all.set(enc.encode(text));
        all.set(b, text.length);
        return writeAllText(conn, head.startsWith("HEAD") ? all.subarray(0, text.length) : all);
      };
      if (parts[1] === "text") {
        return send("200 OK", [
          "Content-Type: text/html; charset=utf-8",
          'ETag: "v1"',
          "Vary: Origin",
          "Accept-Ranges: bytes",
        ], page(Number(parts[2])));
      }
      if (parts[1] === "type") {
        return send(
          "200 OK",
          [`Content-Type: ${parts[2]!.replace("_", "/")}`],
          page(Number(parts[3])),
        );
      }
      if (parts[1] === "chunked") {
        const body = page(Number(parts[2]));
        let out =
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (let i = 0; i < body.length; i += 1000) {
          const c = body.slice(i, i + 1000);
          out += `${c.length.toString(16)}\r\n${c}\r\n`;
        }
        return writeAllText(conn, out + "0\r\n\r\n");
      }
      if (path === "/encoded") {
        return send("200 OK", ["Content-Type: text/html", "Content-Encoding: gzip"], gz);
      }
      if (path === "/notransform") {
        return send(
          "200 OK",
          ["Content-Type: text/html", "Cache-Control: public, no-transform"],
          page(4000),
        );
      }
      if (path === "/range") {
        if (/\r\nrange:/i.test(head)) {
          return send("206 Partial Content", [
            "Content-Type: text/html",
            "Content-Range: bytes 0-99/4000",
          ], page(100));
        }
        return send("200 OK", ["Content-Type: text/html"], page(4000));
      }
      if (path === "/nocontent") return writeAllText(conn, "HTTP/1.1 204 No Content\r\n\r\n");
      return send("404 Not Found", ["Content-Type: text/plain"], "no\n");
    })
  );
}

const config = (port: number, extra = "") => `
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: site
    host: app.test
    backends: [{ address: 127.0.0.1:${port} }]
    headers: { response: { set: { X-Frame-Options: DENY } } }
    compress: true
  - name: plain
    host: plain.test
    backends: [{ address: 127.0.0.1:${port} }]
${extra}`;

/** curl, keeping the response head and the body bytes as they came (de-chunked). */
async function curl(
  port: number,
  path: string,
  args: string[] = [],
): Promise<{ head: string; body: Uint8Array; headers: Map<string, string> }> {
  const dir = await Deno.makeTempDir({ prefix: "unload-compress-" });
  try {
    const r = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--max-time",
        "60",
        "-D",
        `${dir}/head`,
        "-o",
        `${dir}/body`,
        ...(args.some((a) => a.startsWith("Host:")) ? [] : ["-H", "Host: app.test"]),
        ...args,
        `http://127.0.0.1:${port}${path}`,
      ],
    }).output();
    assertEquals(r.code, 0, dec.decode(r.stderr));
    const head = await Deno.readTextFile(`${dir}/head`);
    const headers = new Map<string, string>();
    for (const l of head.split("\r\n").slice(1)) {
      const i = l.indexOf(":");
      if (i > 0) headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
    }
    return { head, body: await Deno.readFile(`${dir}/body`), headers };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Python's `gzip` or `brotli` module decodes `body`: the sha256 and length of what it got. */
async function pythonDecode(coding: "gzip" | "br", body: Uint8Array): Promise<string> {
  const code = coding === "gzip"
    ? "import gzip,sys,hashlib; d=gzip.decompress(sys.stdin.buffer.read())"
    : "import brotli,sys,hashlib; d=brotli.decompress(sys.stdin.buffer.read())";
  const child = new Deno.Command(PYTHON, {
    args: ["-c", `${code}; print(hashlib.sha256(d).hexdigest(), len(d))`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(body);
  await w.close();
  const out = await child.output();
  assertEquals(out.code, 0, dec.decode(out.stderr));
  return dec.decode(out.stdout).trim();
}

Deno.test("compress: curl --compressed gets gzip holding exactly the backend's bytes, chunked, with Vary and a weak ETag", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  const r = await curl(lb.port, "/text/100000", ["--compressed", "-H", "Accept-Encoding: gzip"]);
  assertEquals(dec.decode(r.body), page(100000));
  assertEquals(r.headers.get("content-encoding"), "gzip");
  assertEquals(r.headers.get("transfer-encoding"), "chunked");
  assertEquals(r.headers.get("content-length"), undefined);
  assertEquals(r.headers.get("vary"), "Origin, Accept-Encoding");
  assertEquals(r.headers.get("etag"), 'W/"v1"');
  assertEquals(r.headers.get("accept-ranges"), undefined);
  assertEquals(r.headers.get("x-frame-options"), "DENY", "response headers ran first");
  // the same path on a route without compress is untouched
  const plain = await curl(lb.port, "/text/100000", [
    "-H",
    "Host: plain.test",
    "-H",
    "Accept-Encoding: gzip",
  ]);
  assertEquals(dec.decode(plain.body), page(100000));
  assertEquals(plain.headers.get("content-length"), "100000");
  assertEquals(plain.headers.get("content-encoding"), undefined);
  assertEquals(plain.headers.get("etag"), '"v1"');
});

Deno.test("compress: Python's gzip and brotli modules decode the exact bytes, for a Content-Length and a chunked backend body", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  for (const coding of ["gzip", "br"] as const) {
    for (const path of ["/text/300000", "/chunked/300000"]) {
      const r = await curl(lb.port, path, ["-H", `Accept-Encoding: ${coding}`]);
      assertEquals(r.headers.get("content-encoding"), coding, path);
      assertLess(r.body.length, 300000 / 3, `${coding} ${path}: compressed`);
      assertEquals(await pythonDecode(coding, r.body), `${sha(page(300000))} 300000`);
    }
  }
  // zstd, where the client asks for it: curl decodes it (twice: the second reuses the coder)
  for (const n of [300000, 7000]) {
    const z = await curl(lb.port, `/text/${n}`, ["--compressed", "-H", "Accept-Encoding: zstd"]);
    assertEquals(z.headers.get("content-encoding"), "zstd");
    assertEquals(dec.decode(z.body), page(n));
  }
});

Deno.test("compress: the coding follows Accept-Encoding q-values (q=0 excludes, *, identity), br > zstd > gzip when equal", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  using c = await RawClient.connect(lb.port);
  const cases: [string | undefined, string | undefined][] = [
    ["gzip, deflate, br, zstd", "br"],
    ["gzip, zstd", "zstd"],
    ["gzip;q=1.0, br;q=0.5", "gzip"],
    ["br;q=0, *", "zstd"],
    ["*;q=0.1, gzip;q=0, zstd;q=0", "br"],
    ["x-gzip", "gzip"],
    ["gzip;q=0", undefined],
    ["deflate", undefined],
    ["identity", undefined],
    ["gzip;q=0.5, identity;q=1", undefined],
    ["*;q=0", undefined],
    ["", undefined],
    [undefined, undefined],
  ];
  for (const [ae, want] of cases) {
    const line = ae === undefined ? "" : `Accept-Encoding: ${ae}\r\n`;
    const res = await c.request(`GET /text/5000 HTTP/1.1\r\nHost: app.test\r\n${line}\r\n`);
    assertEquals(res.headers.get("content-encoding"), want, `Accept-Encoding: ${ae}`);
    // every answer says it varies, compressed or not (a cache must keep them apart)
    assertEquals(res.headers.get("vary"), "Origin, Accept-Encoding", `Accept-Encoding: ${ae}`);
    if (want === undefined) {
      assertEquals(res.headers.get("content-length"), "5000");
      assertEquals(res.body, page(5000));
    }
  }
});

Deno.test("compress: already encoded, small, non-text, no-transform, range/206, HEAD and 204 answers pass untouched", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  const ae = ["-H", "Accept-Encoding: gzip, br"];
  const encoded = await curl(lb.port, "/encoded", ae);
  assertEquals(encoded.headers.get("content-encoding"), "gzip");
  assertEquals(encoded.headers.get("content-length"), String(encoded.body.length));
  assertEquals(await pythonDecode("gzip", encoded.body), `${sha(page(4000))} 4000`);

  const small = await curl(lb.port, "/text/1023", ae);
  assertEquals([small.headers.get("content-encoding"), small.headers.get("content-length")], [
    undefined,
    "1023",
  ]);
  assertEquals(small.headers.get("vary"), "Origin", "not compressible: no Vary added");
  assertEquals(dec.decode(small.body), page(1023));
  const atMin = await curl(lb.port, "/text/1024", ae);
  assertEquals(atMin.headers.get("content-encoding"), "br", "min_size itself is compressed");

  const png = await curl(lb.port, "/type/image_png/50000", ae);
  assertEquals(png.headers.get("content-encoding"), undefined);
  assertEquals(png.body.length, 50000);
  const json = await curl(lb.port, "/type/application_problem+json/50000", ae);
  assertEquals(json.headers.get("content-encoding"), "br", "application/*+json is in the defaults");

  const nt = await curl(lb.port, "/notransform", ae);
  assertEquals([nt.headers.get("content-encoding"), nt.body.length], [undefined, 4000]);

  const ranged = await curl(lb.port, "/range", [...ae, "-H", "Range: bytes=0-99"]);
  assert(ranged.head.startsWith("HTTP/1.1 206"), ranged.head);
  assertEquals([ranged.headers.get("content-encoding"), dec.decode(ranged.body)], [
    undefined,
    page(100),
  ]);

  using c = await RawClient.connect(lb.port);
  const head = await c.request(
    "HEAD /text/5000 HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n",
    "HEAD",
  );
  assertEquals([head.status, head.headers.get("content-length")], [200, "5000"]);
  assertEquals(head.headers.get("content-encoding"), undefined);
  const none = await c.request(
    "GET /nocontent HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n",
  );
  assertEquals([none.status, none.headers.get("content-encoding")], [204, undefined]);
  // and the connection still works after them
  const after = await c.request("GET /text/2000 HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(after.body, page(2000));
});

Deno.test("compress: an HTTP/1.1 client's keep-alive connection and the pooled backend connection are reused after a compressed chunked answer", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  using c = await RawClient.connect(lb.port);
  for (let i = 0; i < 3; i++) {
    await c.send(`GET /chunked/20000 HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n`);
    // read the chunked body as bytes, then gunzip it
    const res = await readBinary(c.conn);
    assertEquals(res.headers.get("content-encoding"), "gzip");
    assertEquals(dec.decode(zlib.gunzipSync(res.body)), page(20000));
  }
  const last = await c.request("GET /text/100 HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(last.body, page(100));
  assertEquals(backend.accepted, 1, "one backend connection served all four");
});

Deno.test("compress: an HTTP/2 client (curl --http2-prior-knowledge) gets br or gzip DATA without content-length", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  for (const coding of ["br", "gzip"]) {
    const r = await curl(lb.port, "/text/200000", [
      "--http2-prior-knowledge",
      "--compressed",
      "-H",
      `Accept-Encoding: ${coding}`,
    ]);
    assert(r.head.startsWith("HTTP/2 200"), r.head);
    assertEquals(r.headers.get("content-encoding"), coding);
    assertEquals(r.headers.get("content-length"), undefined);
    assertEquals(r.headers.get("vary"), "Origin, Accept-Encoding");
    assertEquals(dec.decode(r.body), page(200000));
  }
  const small = await curl(lb.port, "/text/500", ["--http2-prior-knowledge", "--compressed"]);
  assertEquals([small.headers.get("content-encoding"), dec.decode(small.body)], [
    undefined,
    page(500),
  ]);
});

Deno.test("compress: an HTTP/2 backend's answer is compressed for an HTTP/1.1 client, its trailers kept; an HTTP/1.0 client gets the body until close", async () => {
  await using h2 = startH2Echo();
  await using backend = siteBackend();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: h2
    host: h2.test
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${h2.port} }]
    compress: true
  - name: site
    host: app.test
    backends: [{ address: 127.0.0.1:${backend.port} }]
    compress: true
`);
  // the echo answers a JSON summary of the request: padded past min_size, it is compressed
  const json = await curl(lb.port, "/summary", [
    "-H",
    "Host: h2.test",
    "-H",
    `X-Pad: ${"p".repeat(3000)}`,
    "-H",
    "Accept-Encoding: gzip",
  ]);
  assertEquals(json.headers.get("content-encoding"), "gzip");
  assertEquals(json.headers.get("transfer-encoding"), "chunked");
  const summary = JSON.parse(dec.decode(zlib.gunzipSync(json.body)));
  assertEquals([summary.path, summary.fields.includes("p".repeat(3000))], ["/summary", true]);
  // a body of unknown length with trailers: compressed, the trailers after the last chunk
  using c = await RawClient.connect(lb.port);
  await c.send("GET /trailers HTTP/1.1\r\nHost: h2.test\r\nAccept-Encoding: br\r\n\r\n");
  const r = chunkReader(c.conn);
  assertStringIncludes((await r.head()).toLowerCase(), "content-encoding: br");
  const parts: number[] = [];
  for (let p = await r.next(); p !== null; p = await r.next()) parts.push(...p);
  assertEquals(dec.decode(zlib.brotliDecompressSync(new Uint8Array(parts))), "body\n");
  assertEquals(r.rest(), "x-checksum: abc\r\n\r\n");

  // HTTP/1.0: no chunked coding, the end of the body is the end of the connection
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await writeAllText(
    conn,
    "GET /text/50000 HTTP/1.0\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n",
  );
  const all: number[] = [];
  const buf = new Uint8Array(65536);
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
    all.push(...buf.subarray(0, n));
  }
  conn.close();
  const bytes = new Uint8Array(all);
  const end = dec.decode(bytes).indexOf("\r\n\r\n");
  const head = dec.decode(bytes.subarray(0, end)).toLowerCase();
  assertStringIncludes(head, "content-encoding: gzip");
  assert(!head.includes("transfer-encoding") && !head.includes("content-length"), head);
  assertEquals(dec.decode(zlib.gunzipSync(bytes.subarray(end + 4))), page(50000));
});

Deno.test("compress: gRPC calls through a compress route reach grpcio untouched", async () => {
  await using backend = await startGrpcioServer({ name: "g" });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    compress: { types: [text/*, application/*+json], min_size: 0 }
`);
  const unary = await runGrpcio({ port: lb.port, mode: "unary", calls: 5 });
  assertEquals([unary.codes, unary.names], [{ OK: 5 }, { g: 5 }]);
  const stream = await runGrpcio({ port: lb.port, mode: "stream", messages: 300 });
  assertEquals([stream.codes, stream.messages, stream.last], [{ OK: 1 }, 300, "message 299"]);
});

Deno.test("compress: an event stream is flushed per backend write, so each event arrives before the next is sent", async () => {
  let allowed = 0; // events the test has asked for after the first
  let wake: (() => void) | undefined;
  await using backend = rawServer(async (conn, read) => {
    await read();
    await writeAllText(
      conn,
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for (let i = 0; i < 3; i++) {
      const event = `data: event ${i}\n\n`;
      await writeAllText(conn, `${event.length.toString(16)}\r\n${event}\r\n`);
      while (allowed <= i) await new Promise<void>((r) => wake = r); // the test asks for the next
    }
    await writeAllText(conn, "0\r\n\r\n");
  });
  await using lb = await startBalancer(config(backend.port));
  using c = await RawClient.connect(lb.port);
  await c.send("GET /events HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n");
  const gunzip = zlib.createGunzip();
  let text = "";
  gunzip.on("data", (b: Uint8Array) => text += dec.decode(b));
  const chunks = chunkReader(c.conn);
  const head = await chunks.head();
  assertStringIncludes(head.toLowerCase(), "content-encoding: gzip");
  for (let i = 0; i < 3; i++) {
    while (!text.includes(`data: event ${i}\n\n`)) {
      // bounded: a balancer that held the event back would leave this read waiting forever
      const piece = await bounded(chunks.next(), `event ${i}`);
      assert(piece !== null, `the stream ended before event ${i}`);
      await new Promise<void>((r) => gunzip.write(piece, () => r()));
    }
    allowed++;
    wake?.();
  }
  assertEquals(text, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
});

Deno.test("compress: past max_active responses compressed at once, the next goes as it is (with Vary) until one ends", async () => {
  let release: (() => void) | undefined;
  const held = new Promise<void>((r) => release = r);
  await using backend = rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      if (head.startsWith("GET /hold")) {
        await writeAllText(
          conn,
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
            `1000\r\n${page(4096)}\r\n`,
        );
        await held;
        return writeAllText(conn, "0\r\n\r\n");
      }
      const body = page(5000);
      return writeAllText(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n${body}`,
      );
    })
  );
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: one
    backends: [{ address: 127.0.0.1:${backend.port} }]
    compress: { max_active: 1 }
`);
  const ask = "Host: a\r\nAccept-Encoding: gzip\r\n\r\n";
  using first = await RawClient.connect(lb.port);
  await first.send(`GET /hold HTTP/1.1\r\n${ask}`);
  const held1 = chunkReader(first.conn);
  assertStringIncludes((await held1.head()).toLowerCase(), "content-encoding: gzip");
  assert((await held1.next()) !== null, "the first piece arrives while the backend holds the rest");
  using second = await RawClient.connect(lb.port);
  const busy = await second.request(`GET /text HTTP/1.1\r\n${ask}`);
  assertEquals(busy.headers.get("content-encoding"), undefined, "one is being compressed already");
  assertEquals([busy.headers.get("vary"), busy.body], ["Accept-Encoding", page(5000)]);
  release!();
  while ((await held1.next()) !== null);
  // once the first response is over (and counted), the route compresses again
  const metrics = `http://127.0.0.1:${lb.addrs.admin!.port}/metrics`;
  for (let i = 0; i < 400; i++) {
    if ((await (await fetch(metrics)).text()).includes('encoding="gzip"} 1\n')) break;
    await delay(25);
  }
  const again = await second.request(`GET /text HTTP/1.1\r\n${ask}`);
  assertEquals(again.headers.get("content-encoding"), "gzip");
});

Deno.test("compress: a 64 MiB body is compressed as it streams: a client that stops reading holds the backend back, memory stays flat, every byte arrives", async () => {
  const size = 64 * MIB;
  const piece = 256 * 1024;
  const state = { sent: 0 };
  // base64 text of pseudo-random bytes: compresses to about 3/4, so the socket buffers
  // between a stalled client and the balancer hold only a few MiB of it
  const text = (i: number) => {
    const b = new Uint8Array(piece);
    let x = (i + 1) * 2654435761;
    for (let j = 0; j < b.length; j++) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      b[j] = B64[x & 63]!;
    }
    return b;
  };
  const expected = createHash("sha256");
  for (let i = 0; i < size / piece; i++) expected.update(text(i % 31));
  await using backend = rawServer(async (conn, read) => {
    await read();
    await writeAllText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\n\r\n`,
    );
    for (let i = 0; i < size / piece; i++) {
      const p = text(i % 31);
      await writeAllText(conn, p);
      state.sent += p.length;
    }
  });
  await using lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
routes:
  - name: big
    backends: [{ address: 127.0.0.1:${backend.port} }]
    compress: true
`);
  const base = lb.rss();
  let peak = base;
  const sampler = setInterval(() => peak = Math.max(peak, lb.rss()), 25);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    try {
      await writeAllText(conn, "GET /big HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n");
      const chunks = chunkReader(conn);
      assertStringIncludes((await chunks.head()).toLowerCase(), "content-encoding: gzip");
      // the client reads nothing more: the backend must stop well short of the end
      let sent = -1;
      for (let i = 0; i < 400; i++) {
        await delay(50);
        if (state.sent === sent && sent > 0) break;
        sent = state.sent;
      }
      assertLess(state.sent, size / 2, "the backend was held back while the client did not read");
      // now read it all, decoding as it comes
      const got = createHash("sha256");
      let length = 0;
      const gunzip = zlib.createGunzip();
      gunzip.on("data", (b: Uint8Array) => {
        got.update(b);
        length += b.length;
      });
      for (;;) {
        const p = await chunks.next();
        if (p === null) break;
        await new Promise<void>((r) => gunzip.write(p, () => r()));
      }
      await new Promise<void>((r) => gunzip.end(() => r()));
      assertEquals(length, size);
      assertEquals(got.digest("hex"), expected.digest("hex"));
    } finally {
      conn.close();
    }
  } finally {
    clearInterval(sampler);
  }
  assertLess(Math.max(peak, lb.rss()) - base, 24 * MIB, "RSS growth while compressing 64 MiB");
});

Deno.test("compress: /metrics and /status count compressed responses and bytes in and out by route and coding", async () => {
  await using backend = siteBackend();
  await using lb = await startBalancer(config(backend.port));
  await curl(lb.port, "/text/100000", ["-H", "Accept-Encoding: gzip"]);
  await curl(lb.port, "/text/100000", ["-H", "Accept-Encoding: gzip"]);
  await curl(lb.port, "/text/50000", ["-H", "Accept-Encoding: br"]);
  await curl(lb.port, "/text/50000", []);
  const text = await (await fetch(`http://127.0.0.1:${lb.addrs.admin!.port}/metrics`)).text();
  assertStringIncludes(text, 'unload_compressed_responses_total{route="site",encoding="gzip"} 2\n');
  assertStringIncludes(text, 'unload_compressed_responses_total{route="site",encoding="br"} 1\n');
  assertStringIncludes(
    text,
    'unload_compress_in_bytes_total{route="site",encoding="gzip"} 200000\n',
  );
  const out = Number(
    /unload_compress_out_bytes_total\{route="site",encoding="gzip"\} (\d+)/.exec(text)![1],
  );
  assert(out > 0 && out < 200000 / 3, `gzip out bytes ${out}`);
  const status = await (await fetch(`http://127.0.0.1:${lb.addrs.admin!.port}/status`)).json();
  const site = status.routes.find((r: { name: string }) => r.name === "site");
  assertEquals(site.compressed.gzip, { responses: 2, in: 200000, out });
  assertEquals(site.compressed.br.responses, 1);
  assertEquals(site.policySteps.at(-1).name, "compress");
});

Deno.test("compress: explain says which coding a request would get; config mistakes are file:line errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(file, config(9));
    const args = ["explain", "--config", file];
    const br = await runCli([
      ...args,
      "-H",
      "Accept-Encoding: gzip, br",
      "GET",
      "http://app.test/a",
    ]);
    assertEquals(br.code, 0, br.stderr);
    assertStringIncludes(
      br.stdout,
      'compress: Accept-Encoding "gzip, br": a compressible response is sent in br',
    );
    const none = await runCli([...args, "GET", "http://app.test/a"]);
    assertStringIncludes(
      none.stdout,
      "compress: no Accept-Encoding: the response is not compressed",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const bad = (yaml: string) => {
    try {
      parseConfig(yaml, "unload.yaml");
    } catch (e) {
      return (e as ConfigError).message;
    }
    throw new Error("no error");
  };
  const route = (c: string) => `
routes:
  - name: a
    backends: [{ address: 127.0.0.1:1 }]
    compress: ${c}
`;
  assertMatch(
    bad(route('"yes"')),
    /unload\.yaml:5: routes\[0\]\.compress: must be true, false or a mapping/,
  );
  assertMatch(
    bad(route("{ types: [text/html, nope] }")),
    /unload\.yaml:5: routes\[0\]\.compress\.types\[1\]: must be a media type/,
  );
  assertMatch(
    bad(route("{ types: [application/grpc] }")),
    /compress\.types\[0\]: gRPC is never compressed/,
  );
  assertMatch(
    bad(route("{ min_size: lots }")),
    /unload\.yaml:5: routes\[0\]\.compress\.min_size: must be a size/,
  );
  assertMatch(bad(route("{ level: 9 }")), /unload\.yaml:5: routes\[0\]\.compress/);
  assertMatch(bad(route("{ max_active: 0 }")), /routes\[0\]\.compress\.max_active:/);
});

/** `p`, or a failure naming `what` if it has not settled within 20 s (a hang guard, not a timing check). */
async function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting for ${what}`)), 20_000);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** A response read as bytes: head fields and the de-chunked body. */
async function readBinary(
  conn: Deno.Conn,
): Promise<{ headers: Map<string, string>; body: Uint8Array }> {
  const r = chunkReader(conn);
  const head = await r.head();
  const headers = new Map<string, string>();
  for (const l of head.split("\r\n").slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
  }
  const parts: Uint8Array[] = [];
  for (;;) {
    const p = await r.next();
    if (p === null) break;
    parts.push(p);
  }
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (body.set(p, at), at + p.length), 0);
  return { headers, body };
}

/**
 * Reads one chunked response from `conn`: `head()` first, then `next()` gives each
 * chunk's data as it arrives (null after the last chunk). Reads no further.
 */
function chunkReader(conn: Deno.Conn) {
  let buf = new Uint8Array(0);
  const more = async () => {
    const b = new Uint8Array(256 * 1024);
    const n = await conn.read(b);
    if (n === null) throw new Error("closed mid-response");
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(b.subarray(0, n), buf.length);
    buf = next;
  };
  const find = (s: string) => {
    outer: for (let i = 0; i + s.length <= buf.length; i++) {
      for (let j = 0; j < s.length; j++) if (buf[i + j] !== s.charCodeAt(j)) continue outer;
      return i;
    }
    return -1;
  };
  return {
    async head(): Promise<string> {
      let end;
      while ((end = find("\r\n\r\n")) === -1) await more();
      const head = dec.decode(buf.subarray(0, end));
      buf = buf.slice(end + 4);
      return head;
    },
    async next(): Promise<Uint8Array | null> {
      let end;
      while ((end = find("\r\n")) === -1) await more();
      const size = parseInt(dec.decode(buf.subarray(0, end)), 16);
      if (size === 0) { // the trailer section, up to its blank line, is kept for rest()
        while (find("\r\n\r\n") < end) await more();
        buf = buf.slice(end + 2);
        return null;
      }
      while (buf.length < end + 2 + size + 2) await more();
      const data = buf.slice(end + 2, end + 2 + size);
      buf = buf.slice(end + 2 + size + 2);
      return data;
    },
    /** What was read past the last chunk's size line: its trailers and the final CRLF. */
    rest(): string {
      return dec.decode(buf);
    },
  };
}
