// The HTTP/2 client connection and pool against real servers: @grpc/grpc-js (./_grpc.ts)
// (unary, error status, server streaming, bidirectional echo, cancellation) and
// node:http2 (multiplexing, MAX_CONCURRENT_STREAMS, GOAWAY, large bodies, TLS).
import { assert, assertEquals, assertRejects } from "@std/assert";
import http2 from "node:http2";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { H2Pool } from "../src/upstream/h2_pool.ts";
import { ConnectError } from "../src/upstream/connect.ts";
import { loadUpstreamTls } from "../src/upstream/tls.ts";
import {
  H2ClientConnection,
  type H2ClientStream,
  type H2RequestHead,
  RefusedError,
} from "../src/h2/client.ts";
import { ErrorCode, Flag, FrameType } from "../src/h2/frame.ts";
import { HpackEncoder } from "../src/h2/hpack.ts";
import { makeCa } from "./_certs.ts";
import { FAIL_DETAILS, startGrpcServer } from "./_grpc.ts";

// ---- gRPC helpers ----

function grpcHead(path: string, port: number): H2RequestHead {
  return {
    method: "POST",
    scheme: "http",
    authority: `127.0.0.1:${port}`,
    path,
    fields: ["content-type", "application/grpc", "te", "trailers"],
    endStream: false,
  };
}

/** A length-prefixed gRPC message. */
function grpcMessage(text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

/** Reads gRPC messages off a response body. */
class GrpcReader {
  #buf = new Uint8Array(0);
  #ended = false;
  constructor(readonly stream: H2ClientStream) {}
  /** The next message as text, or null at the end of the body. */
  async next(): Promise<string | null> {
    for (;;) {
      if (this.#buf.length >= 5) {
        const n = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(1);
        if (this.#buf.length >= 5 + n) {
          const text = new TextDecoder().decode(this.#buf.subarray(5, 5 + n));
          this.#buf = this.#buf.slice(5 + n);
          return text;
        }
      }
      if (this.#ended) {
        assertEquals(this.#buf.length, 0, "a partial message at the end");
        return null;
      }
      const c = await this.stream.read();
      if (c === null) this.#ended = true;
      else {
        const next = new Uint8Array(this.#buf.length + c.length);
        next.set(this.#buf);
        next.set(c, this.#buf.length);
        this.#buf = next;
      }
    }
  }
}

function field(fields: readonly string[] | undefined, name: string): string | undefined {
  if (fields === undefined) return undefined;
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

async function connection(port: number): Promise<H2ClientConnection & AsyncDisposable> {
  const c = new H2ClientConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
  await c.start();
  return Object.assign(c, {
    [Symbol.asyncDispose]: async () => {
      c.close();
      await c.done;
    },
  });
}

// ---- node:http2 helpers ----

interface NodeServer extends AsyncDisposable {
  port: number;
  sessions: http2.ServerHttp2Session[];
}

async function nodeServer(
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  options: http2.ServerOptions = {},
): Promise<NodeServer> {
  const server = http2.createServer(options, handler);
  const sessions: http2.ServerHttp2Session[] = [];
  server.on("session", (s) => sessions.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    sessions,
    [Symbol.asyncDispose]: async () => {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

function pool(port: number, options: { maxConnections?: number } = {}): H2Pool & Disposable {
  const p = new H2Pool(createBackend({ hostname: "127.0.0.1", port }), {
    connectTimeout: 5000,
    ...options,
  });
  return Object.assign(p, { [Symbol.dispose]: () => p.close() });
}

function get(path: string): H2RequestHead {
  return { method: "GET", scheme: "http", authority: "test", path, fields: [], endStream: true };
}

async function readText(s: H2ClientStream): Promise<string> {
  let text = "";
  const dec = new TextDecoder();
  for (let c = await s.read(); c !== null; c = await s.read()) text += dec.decode(c);
  return text;
}

// ---- gRPC ----

Deno.test("h2 client makes a gRPC unary call: DATA with the answer, trailers with grpc-status 0", async () => {
  await using server = await startGrpcServer();
  await using h2 = await connection(server.port);
  const s = h2.request(grpcHead("/t.Test/Unary", server.port));
  await s.write(grpcMessage("world"));
  await s.end();
  const head = await s.response();
  assertEquals(head.status, 200);
  assert(field(head.fields, "content-type")?.startsWith("application/grpc"));
  const r = new GrpcReader(s);
  assertEquals(await r.next(), "hello world");
  assertEquals(await r.next(), null);
  assertEquals(field(s.trailers, "grpc-status"), "0");
});

Deno.test("h2 client sees a gRPC error status in trailers or a trailers-only response", async () => {
  await using server = await startGrpcServer();
  await using h2 = await connection(server.port);
  const s = h2.request(grpcHead("/t.Test/Fail", server.port));
  await s.write(grpcMessage("x"));
  await s.end();
  const head = await s.response();
  assertEquals(head.status, 200);
  assertEquals(await s.read(), null);
  // grpc-js answers errors trailers-only (HEADERS with END_STREAM); either form is accepted
  const where = head.endStream ? head.fields : s.trailers;
  assertEquals(field(where, "grpc-status"), "5");
  assertEquals(field(where, "grpc-message"), encodeURIComponent(FAIL_DETAILS)); // percent-encoded
});

Deno.test("h2 client receives a 5000-message gRPC server stream whole", async () => {
  await using server = await startGrpcServer();
  await using h2 = await connection(server.port);
  const s = h2.request(grpcHead("/t.Test/Many", server.port));
  await s.write(grpcMessage("go"));
  await s.end();
  assertEquals((await s.response()).status, 200);
  const r = new GrpcReader(s);
  for (let i = 0; i < 5000; i++) assertEquals(await r.next(), `message ${i}`);
  assertEquals(await r.next(), null);
  assertEquals(field(s.trailers, "grpc-status"), "0");
});

Deno.test("h2 client echoes over a gRPC bidirectional stream one message at a time", async () => {
  await using server = await startGrpcServer();
  await using h2 = await connection(server.port);
  const s = h2.request(grpcHead("/t.Test/Echo", server.port));
  const r = new GrpcReader(s);
  for (let i = 0; i < 1000; i++) {
    await s.write(grpcMessage(`ping ${i}`));
    if (i === 0) assertEquals((await s.response()).status, 200);
    assertEquals(await r.next(), `ping ${i}`);
  }
  await s.end();
  assertEquals(await r.next(), null);
  assertEquals(field(s.trailers, "grpc-status"), "0");
});

Deno.test("h2 client reset with CANCEL reaches the gRPC handler as cancelled", async () => {
  await using server = await startGrpcServer();
  await using h2 = await connection(server.port);
  const s = h2.request(grpcHead("/t.Test/Hang", server.port));
  await s.write(grpcMessage("wait"));
  await s.end();
  await server.hangStarted;
  s.reset(ErrorCode.CANCEL);
  await server.hangCancelled;
  await assertRejects(() => s.response());
  assertEquals(h2.activeStreams, 0);
});

// ---- node:http2 ----

Deno.test("h2 pool multiplexes 100 concurrent streams over one connection", async () => {
  const held: http2.Http2ServerResponse[] = [];
  await using server = await nodeServer((req, res) => {
    held.push(res);
    if (held.length === 100) { for (const r of held) r.end(`done ${r.req.url}`); }
    void req;
  });
  using p = pool(server.port);
  const streams = await Promise.all(
    Array.from({ length: 100 }, (_, i) => p.open(get(`/${i}`))),
  );
  assertEquals(p.connections, 1);
  assertEquals(p.activeStreams, 100);
  const texts = await Promise.all(streams.map((s) => s.response().then(() => readText(s))));
  assertEquals(texts, Array.from({ length: 100 }, (_, i) => `done /${i}`));
  assertEquals(server.sessions.length, 1);
  assertEquals(p.activeStreams, 0);
});

Deno.test("h2 pool respects MAX_CONCURRENT_STREAMS 5: a second connection, no refused stream", async () => {
  const held: http2.Http2ServerResponse[] = [];
  await using server = await nodeServer((_req, res) => {
    held.push(res);
    if (held.length === 10) { for (const r of held) r.end("ok"); }
  }, { settings: { maxConcurrentStreams: 5 } });
  using p = pool(server.port);
  const streams = await Promise.all(Array.from({ length: 10 }, () => p.open(get("/"))));
  assertEquals(p.connections, 2);
  for (const s of streams) {
    assertEquals((await s.response()).status, 200);
    assertEquals(await readText(s), "ok");
  }
  assertEquals(server.sessions.length, 2);
});

Deno.test("h2 pool at its connection cap waits for a stream to finish, within MAX_CONCURRENT_STREAMS", async () => {
  let open = 0;
  let most = 0;
  await using server = await nodeServer((req, res) => {
    most = Math.max(most, ++open);
    req.on("close", () => open--);
    res.end("ok");
  }, { settings: { maxConcurrentStreams: 5 } });
  using p = pool(server.port, { maxConnections: 1 });
  const texts = await Promise.all(
    Array.from({ length: 40 }, async () => {
      const s = await p.open(get("/"));
      assertEquals((await s.response()).status, 200);
      return await readText(s);
    }),
  );
  assertEquals(texts, Array(40).fill("ok"));
  assertEquals(server.sessions.length, 1);
  assert(most <= 5, `${most} streams open at once`);
});

Deno.test("h2 GOAWAY refuses the streams above its last id and new streams use a new connection", async () => {
  const held: http2.Http2ServerResponse[] = [];
  await using server = await nodeServer((req, res) => {
    held.push(res);
    if (held.length === 3) {
      const first = held[0]!;
      req.stream.session!.goaway(ErrorCode.NO_ERROR, first.stream.id);
      first.end("first");
    }
    if (held.length === 4) res.end("fresh"); // on the new connection
  });
  using p = pool(server.port);
  const [a, b, c] = await Promise.all([p.open(get("/a")), p.open(get("/b")), p.open(get("/c"))]);
  assertEquals((await a!.response()).status, 200);
  assertEquals(await readText(a!), "first");
  await assertRejects(() => b!.response(), RefusedError);
  await assertRejects(() => c!.response(), RefusedError);
  const d = await p.open(get("/d"));
  assertEquals((await d.response()).status, 200);
  assertEquals(await readText(d), "fresh");
  assertEquals(server.sessions.length, 2);
});

Deno.test("h2 pool closes a connection left idle for idleTimeout", async () => {
  await using server = await nodeServer((_req, res) => res.end("ok"));
  using p = new H2Pool(createBackend({ hostname: "127.0.0.1", port: server.port }), {
    idleTimeout: 100,
  });
  const s = await p.open(get("/"));
  assertEquals(await readText(s), "ok");
  assertEquals(p.connections, 1);
  while (p.connections > 0) await new Promise((r) => setTimeout(r, 20)); // waits on the sweep
  const again = await p.open(get("/"));
  assertEquals(await readText(again), "ok");
  assertEquals(p.opened, 2);
});

Deno.test("h2 server refusing with RST_STREAM REFUSED_STREAM fails the stream as RefusedError", async () => {
  await using server = await nodeServer((req) => {
    req.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  });
  await using h2 = await connection(server.port);
  const s = h2.request(get("/"));
  await assertRejects(() => s.response(), RefusedError);
});

const MiB = 1024 * 1024;

/** Deterministic bytes: chunk `i` of 64 KiB. */
function chunkOf(i: number, buf: Uint8Array): Uint8Array {
  for (let j = 0; j < buf.length; j += 4) {
    buf[j] = i;
    buf[j + 1] = i >> 8;
    buf[j + 2] = j >> 2;
    buf[j + 3] = j >> 10;
  }
  return buf;
}

Deno.test("h2 client streams a 20 MiB request body intact", async () => {
  await using server = await nodeServer((req, res) => {
    const hash = createHash("sha256");
    let n = 0;
    req.on("data", (d: Buffer) => {
      hash.update(d);
      n += d.length;
    });
    req.on("end", () => res.end(`${n} ${hash.digest("hex")}`));
  });
  await using h2 = await connection(server.port);
  const s = h2.request({ ...get("/up"), method: "POST", endStream: false });
  const expected = createHash("sha256");
  const buf = new Uint8Array(64 * 1024);
  for (let i = 0; i < (20 * MiB) / buf.length; i++) {
    chunkOf(i, buf);
    expected.update(buf);
    await s.write(buf); // resolves once sent: buf may be reused
  }
  await s.end();
  assertEquals((await s.response()).status, 200);
  assertEquals(await readText(s), `${20 * MiB} ${expected.digest("hex")}`);
});

Deno.test("h2 client receives a 50 MiB response intact, holding the server back while it does not read", async () => {
  let sent = 0;
  let ranAhead = () => {};
  let blocked!: () => void;
  const serverBlocked = new Promise<void>((r) => blocked = r);
  await using server = await nodeServer((_req, res) => {
    const buf = new Uint8Array(64 * 1024);
    let i = 0;
    const pump = () => {
      while (i < (50 * MiB) / buf.length) {
        sent += buf.length;
        ranAhead();
        const more = res.write(Buffer.from(chunkOf(i++, buf)));
        if (!more) {
          blocked();
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  await using h2 = await connection(server.port);
  const s = h2.request(get("/down"));
  assertEquals((await s.response()).status, 200);
  const hash = createHash("sha256");
  let received = 0;
  let paused = false;
  for (let c = await s.read(); c !== null; c = await s.read()) {
    hash.update(c);
    received += c.length;
    if (!paused && received >= 5 * MiB) {
      paused = true;
      await serverBlocked;
      // Give an unbounded client every chance to let the server run ahead: wait
      // until it has (a failure) or for a second (a pass that cannot be flaky).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        ranAhead = () => sent - received > 2 * MiB && resolve();
        timer = setTimeout(resolve, 1000);
      });
      clearTimeout(timer);
      // our window (256 KiB per stream) plus node's own buffering, not the 45 MiB left
      assert(sent - received <= 2 * MiB, `server ran ${sent - received} bytes ahead`);
    }
  }
  assertEquals(received, 50 * MiB);
  const expected = createHash("sha256");
  const buf = new Uint8Array(64 * 1024);
  for (let i = 0; i < (50 * MiB) / buf.length; i++) expected.update(chunkOf(i, buf));
  assertEquals(hash.digest("hex"), expected.digest("hex"));
});

// ---- TLS ----

Deno.test("h2 pool speaks h2 over verified TLS with ALPN, and a wrong server name fails", async () => {
  const ca = await makeCa();
  try {
    const cert = await ca.issue("server", { serial: 7, names: ["app.test"] });
    const server = http2.createSecureServer({
      key: await Deno.readTextFile(cert.key),
      cert: await Deno.readTextFile(cert.cert),
    }, (req, res) => res.end(`tls ${req.httpVersion}`));
    const sessions: http2.ServerHttp2Session[] = [];
    server.on("session", (s) => sessions.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    try {
      const backend = async (serverName: string): Promise<Backend> => ({
        ...createBackend({ hostname: "127.0.0.1", port }),
        tls: await loadUpstreamTls({ name: "grpc", ca: ca.ca, server_name: serverName }),
      });
      const good = new H2Pool(await backend("app.test"), { connectTimeout: 5000 });
      try {
        const s = await good.open({ ...get("/"), scheme: "https" });
        assertEquals((await s.response()).status, 200);
        assertEquals(await readText(s), "tls 2.0");
      } finally {
        good.close();
      }
      const bad = new H2Pool(await backend("other.test"), { connectTimeout: 5000 });
      try {
        await assertRejects(() => bad.open({ ...get("/"), scheme: "https" }), ConnectError);
        assertEquals(bad.connections, 0);
      } finally {
        bad.close();
      }
    } finally {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    }
  } finally {
    await ca.remove();
  }
});

// ---- hardening against a misbehaving server (raw frames) ----

/** A raw HTTP/2 "server" that answers each client with the frames a script writes. */
function rawServer(script: (h: RawPeer) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    const peer = new RawPeer(conn);
    try {
      await script(peer);
    } finally {
      conn.close();
      await peer.reading;
    }
  })();
  return {
    port: listener.addr.port,
    done,
    [Symbol.asyncDispose]: async () => {
      listener.close();
      await done.catch(() => {});
    },
  };
}

class RawPeer {
  readonly #conn: Deno.Conn;
  #bytes = new Uint8Array(0);
  #changed: () => void = () => {};
  readonly reading: Promise<void>;
  readonly encoder = new HpackEncoder();
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.reading = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        const next = new Uint8Array(this.#bytes.length + n);
        next.set(this.#bytes);
        next.set(buf.subarray(0, n), this.#bytes.length);
        this.#bytes = next;
        this.#changed();
      }
      this.#changed();
    })();
  }
  /** The client's frames so far (after the preface) as [type, flags, stream, first 32-bit word]. */
  frames(): Array<[number, number, number, number]> {
    const out: Array<[number, number, number, number]> = [];
    const b = this.#bytes;
    for (let i = 24; i + 9 <= b.length;) {
      const len = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
      if (i + 9 + len > b.length) break;
      const word = len >= 4 ? new DataView(b.buffer, i + 9).getUint32(0) : -1;
      const id = new DataView(b.buffer, i + 5).getUint32(0) & 0x7fffffff;
      out.push([b[i + 3]!, b[i + 4]!, id, word]);
      i += 9 + len;
    }
    return out;
  }
  /** Waits for a client frame of `type` and returns its first payload word (GOAWAY: the second). */
  async waitFor(type: number): Promise<number> {
    for (;;) {
      const b = this.#bytes;
      const f = this.frames().find((f) => f[0] === type);
      if (f !== undefined) {
        if (type !== FrameType.GOAWAY) return f[3];
        const i = this.#offsetOf(type);
        return new DataView(b.buffer, i + 13).getUint32(0);
      }
      const p = new Promise<void>((r) => this.#changed = r);
      const closed = await Promise.race([p.then(() => false), this.reading.then(() => true)]);
      if (closed && this.frames().find((f) => f[0] === type) === undefined) {
        throw new Error(`The client sent no frame of type ${type}`);
      }
    }
  }
  #offsetOf(type: number): number {
    const b = this.#bytes;
    for (let i = 24; i + 9 <= b.length;) {
      const len = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
      if (b[i + 3] === type) return i;
      i += 9 + len;
    }
    return -1;
  }
  /** Sends one frame. */
  async send(type: number, flags: number, id: number, payload: Uint8Array = new Uint8Array(0)) {
    const f = new Uint8Array(9 + payload.length);
    f[0] = payload.length >> 16;
    f[1] = payload.length >> 8;
    f[2] = payload.length;
    f[3] = type;
    f[4] = flags;
    new DataView(f.buffer).setUint32(5, id);
    f.set(payload, 9);
    let off = 0;
    while (off < f.length) off += await this.#conn.write(f.subarray(off));
  }
  /** Sends a header block (one HEADERS frame, END_HEADERS). */
  async headers(id: number, fields: string[], flags = Flag.END_HEADERS) {
    await this.send(FrameType.HEADERS, flags, id, this.encoder.encode(fields).slice());
  }
}

async function rawClient(port: number) {
  const c = new H2ClientConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
  const started = c.start();
  return Object.assign(c, {
    started,
    [Symbol.asyncDispose]: async () => {
      c.close();
      await c.done;
    },
  });
}

const HARDENING: Array<
  { name: string; code: number; frame: number; act: (p: RawPeer) => Promise<void> }
> = [
  {
    name: "a PUSH_PROMISE (push disabled) is a connection PROTOCOL_ERROR",
    frame: FrameType.GOAWAY,
    code: ErrorCode.PROTOCOL_ERROR,
    act: (p) =>
      p.send(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, new Uint8Array([0, 0, 0, 2, 0x82])),
  },
  {
    name: "a frame above our max frame size is a connection FRAME_SIZE_ERROR",
    frame: FrameType.GOAWAY,
    code: ErrorCode.FRAME_SIZE_ERROR,
    act: async (p) => {
      await p.headers(1, [":status", "200"]);
      await p.send(FrameType.DATA, 0, 1, new Uint8Array(16385));
    },
  },
  {
    name: "an endless CONTINUATION sequence is cut off with ENHANCE_YOUR_CALM",
    frame: FrameType.GOAWAY,
    code: ErrorCode.ENHANCE_YOUR_CALM,
    act: async (p) => {
      await p.send(FrameType.HEADERS, 0, 1, new Uint8Array([0x88]));
      for (let i = 0; i < 6; i++) await p.send(FrameType.CONTINUATION, 0, 1, new Uint8Array(16384));
    },
  },
  {
    name: "a connection-specific response field is a stream PROTOCOL_ERROR",
    frame: FrameType.RST_STREAM,
    code: ErrorCode.PROTOCOL_ERROR,
    act: (p) => p.headers(1, [":status", "200", "connection", "close"]),
  },
  {
    name: "a pseudo-header other than :status is a stream PROTOCOL_ERROR",
    frame: FrameType.RST_STREAM,
    code: ErrorCode.PROTOCOL_ERROR,
    act: (p) => p.headers(1, [":status", "200", ":path", "/"]),
  },
  {
    name: "a response header list above maxHeaderListSize is a stream error",
    frame: FrameType.RST_STREAM,
    code: ErrorCode.PROTOCOL_ERROR,
    act: async (p) => {
      const block = p.encoder.encode([":status", "200", "x-big", "a".repeat(70_000)]).slice();
      await p.send(FrameType.HEADERS, 0, 1, block.subarray(0, 16384));
      let off = 16384;
      while (off < block.length) {
        const end = Math.min(block.length, off + 16384);
        await p.send(
          FrameType.CONTINUATION,
          end === block.length ? Flag.END_HEADERS : 0,
          1,
          block.subarray(off, end),
        );
        off = end;
      }
    },
  },
];

for (const row of HARDENING) {
  Deno.test(`h2 client hardening: ${row.name}`, async () => {
    let code = -1;
    await using server = await rawServer(async (p) => {
      await p.send(FrameType.SETTINGS, 0, 0);
      await p.waitFor(FrameType.HEADERS);
      await row.act(p);
      code = await p.waitFor(row.frame);
    });
    await using h2 = await rawClient(server.port);
    await h2.started;
    const s = h2.request(get("/"));
    await assertRejects(async () => {
      await s.response();
      while (await s.read() !== null);
    });
    await server.done;
    assertEquals(code, row.code);
    // a stream error leaves the connection open for other streams
    if (row.frame === FrameType.RST_STREAM) assert(h2.available > 0 && !h2.closed);
  });
}

Deno.test("h2 client hardening: SETTINGS_ENABLE_PUSH 1 from the server fails the start", async () => {
  await using server = await rawServer(async (p) => {
    await p.send(FrameType.SETTINGS, 0, 0, new Uint8Array([0, 2, 0, 0, 0, 1]));
    assertEquals(await p.waitFor(FrameType.GOAWAY), ErrorCode.PROTOCOL_ERROR);
  });
  await using h2 = await rawClient(server.port);
  await assertRejects(() => h2.started);
  await server.done;
  assertEquals(h2.available, 0);
});
