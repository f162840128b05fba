import { assert, assertEquals, assertLess, assertStringIncludes } from "@std/assert";
import { BODY_BUFFERS } from "../src/http1/body_buffers.ts";
import { makeCa } from "./_certs.ts";
import {
  delay,
  rawServer,
  type RawServerOptions,
  startBalancer,
  until,
  writeAllText,
} from "./_http.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const PIECE = 256 * KIB;
const dec = new TextDecoder();

// Byte i of every body here is (i * 7 + i >> 11) & 255: a shifted piece or a lost one shows.
function fill(piece: Uint8Array, offset: number): Uint8Array {
  for (let j = 0; j < piece.length; j++) {
    const i = offset + j;
    piece[j] = (i * 7 + (i >> 11)) & 255;
  }
  return piece;
}

/** First offset in `got` (body bytes from `offset`) that is not the pattern, or -1. */
function mismatch(got: Uint8Array, offset: number): number {
  for (let j = 0; j < got.length; j++) {
    const i = offset + j;
    if (got[j] !== ((i * 7 + (i >> 11)) & 255)) return i;
  }
  return -1;
}

/**
 * A backend that streams SIZE pattern bytes for GET /SIZE (and counts what it has
 * written), and for POST reads the body (`pause` holds its reading while set) and
 * answers the byte count and the first bad offset.
 */
function bulkBackend(options: RawServerOptions = {}) {
  const state = { sent: 0, received: 0, pause: undefined as Promise<void> | undefined };
  const server = rawServer(async (conn, read) => {
    while (await serve(conn, read)); // keep-alive after a GET
  }, options);
  // Serves one request; true to read the next one.
  async function serve(conn: Deno.Conn, read: () => Promise<Uint8Array | null>) {
    let acc = "";
    let end = -1;
    let first: Uint8Array = new Uint8Array(0);
    while (end === -1) {
      const c = await read();
      if (c === null) return false;
      const at = acc.length;
      acc += String.fromCharCode(...c);
      end = acc.indexOf("\r\n\r\n");
      if (end !== -1) first = c.slice(end + 4 - at);
    }
    const head = acc.slice(0, end);
    if (head.startsWith("GET")) {
      const size = Number(head.split(" ")[1]!.slice(1));
      await writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
      const piece = new Uint8Array(PIECE);
      for (let off = 0; off < size; off += PIECE) {
        const p = fill(piece.subarray(0, Math.min(PIECE, size - off)), off);
        await writeAllText(conn, p);
        state.sent += p.length;
      }
      return true;
    }
    const length = Number(/content-length: (\d+)/i.exec(head)![1]);
    let got = 0;
    let bad = mismatch(first, 0);
    got += first.length;
    while (got < length) {
      if (state.pause) await state.pause;
      const c = await read();
      if (c === null) return false;
      if (bad === -1) bad = mismatch(c, got);
      got += c.length;
      state.received = got;
    }
    const text = `${got} ${bad}`;
    await writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${text.length}\r\n\r\n${text}`);
    return false;
  }
  return Object.assign(server, { state });
}

async function readHead(conn: Deno.Conn): Promise<{ head: string; rest: Uint8Array }> {
  let acc = new Uint8Array(0);
  const buf = new Uint8Array(64 * KIB);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed before the response head");
    const next = new Uint8Array(acc.length + n);
    next.set(acc);
    next.set(buf.subarray(0, n), acc.length);
    acc = next;
    const s = String.fromCharCode(...acc.subarray(0, Math.min(acc.length, 4096)));
    const end = s.indexOf("\r\n\r\n");
    if (end !== -1) return { head: s.slice(0, end), rest: acc.slice(end + 4) };
  }
}

/** Reads a body of `size` pattern bytes after `rest`; returns the first bad offset or -1. */
async function readBody(conn: Deno.Conn, rest: Uint8Array, size: number): Promise<number> {
  let got = rest.length;
  let bad = mismatch(rest, 0);
  const buf = new Uint8Array(256 * KIB);
  while (got < size) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed after ${got} of ${size} body bytes`);
    if (bad === -1) bad = mismatch(buf.subarray(0, n), got);
    got += n;
  }
  assertEquals(got, size, "no byte past the body");
  return bad;
}

// Waits (bounded) until `ok()` holds.
// Samples the pool 40 times over a second (the relay is stalled all along): the most
// buffers and large-buffer bytes lent at once.
async function sampleLent(): Promise<{ buffers: number; bytes: number }> {
  let buffers = 0;
  let bytes = 0;
  for (let i = 0; i < 40; i++) {
    buffers = Math.max(buffers, BODY_BUFFERS.inUse);
    bytes = Math.max(bytes, BODY_BUFFERS.largeBytes);
    await delay(25);
  }
  return { buffers, bytes };
}

// Every test starts with no buffer lent (an earlier test's pooled connections give theirs
// back once their idle reads settle).
function noneLent(): Promise<void> {
  return until("no body buffer is lent", () => BODY_BUFFERS.inUse === 0);
}

const config = (port: number) => `
listen: { http: 127.0.0.1:0 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${port} }] }]
`;

Deno.test("a client that stops reading a 64 MiB download holds one body buffer, and the backend is held back", async () => {
  await noneLent();
  const size = 64 * MIB;
  await using backend = bulkBackend();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  try {
    await writeAllText(c, `GET /${size} HTTP/1.1\r\nHost: a\r\n\r\n`);
    const { head, rest } = await readHead(c);
    assert(head.startsWith("HTTP/1.1 200"), head);
    // the client reads nothing more: the relay fills the socket buffers and waits
    await until("the relay reads with a large buffer", () => BODY_BUFFERS.largeInUse >= 1);
    let sent = -1;
    await until("the backend is held back", () => {
      const moved = backend.state.sent !== sent;
      sent = backend.state.sent;
      return !moved && sent > 0;
    });
    const lent = await sampleLent();
    assertEquals(lent.buffers, 1, "buffers lent while the client does not read");
    assertLess(lent.bytes, 256 * KIB + 1);
    assertLess(backend.state.sent, size, "the backend could not send everything");
    const metrics = await (await fetch(`http://127.0.0.1:${lb.addrs.admin!.port}/metrics`)).text();
    assertStringIncludes(metrics, "\nunload_body_buffers 1\n");
    assertStringIncludes(metrics, "\nunload_body_buffer_bytes 262144\n");
    assertEquals(await readBody(c, rest, size), -1, "first bad byte of the body");
  } finally {
    c.close();
  }
});

Deno.test("a backend that stops reading a 64 MiB upload leaves the balancer one body buffer for it", async () => {
  await noneLent();
  const size = 64 * MIB;
  await using backend = bulkBackend();
  let resume = () => {};
  backend.state.pause = new Promise<void>((r) => resume = r);
  await using lb = await startBalancer(config(backend.port));
  const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  try {
    await writeAllText(c, `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
    const piece = new Uint8Array(PIECE);
    let written = 0;
    const upload = (async () => {
      for (let off = 0; off < size; off += PIECE) {
        await writeAllText(c, fill(piece, off));
        written = off + PIECE;
      }
    })();
    await until("the relay reads with a large buffer", () => BODY_BUFFERS.largeInUse >= 1);
    let seen = -1;
    await until("the client is held back", () => {
      const moved = written !== seen;
      seen = written;
      return !moved;
    });
    const lent = await sampleLent();
    assertEquals(lent.buffers, 1, "buffers lent while the backend does not read");
    assertLess(lent.bytes, 256 * KIB + 1);
    assertLess(written, size, "the client could not send everything");
    backend.state.pause = undefined;
    resume();
    await upload;
    const { head, rest } = await readHead(c);
    assert(head.startsWith("HTTP/1.1 200"), head);
    let body = dec.decode(rest);
    const buf = new Uint8Array(64);
    while (body.length < `${size} -1`.length) {
      const n = await c.read(buf);
      if (n === null) break;
      body += dec.decode(buf.subarray(0, n));
    }
    assertEquals(body, `${size} -1`, "bytes the backend counted, and the first bad one");
  } finally {
    c.close();
  }
});

Deno.test("four stalled downloads lend no more large buffers than the budget, and all arrive intact", async () => {
  await noneLent();
  const size = 16 * MIB;
  const budget = BODY_BUFFERS.budget;
  BODY_BUFFERS.budget = 2 * 256 * KIB;
  try {
    await using backend = bulkBackend();
    await using lb = await startBalancer(config(backend.port));
    const conns = await Promise.all(
      [0, 1, 2, 3].map(() => Deno.connect({ hostname: "127.0.0.1", port: lb.port })),
    );
    try {
      const heads = await Promise.all(conns.map(async (c) => {
        await writeAllText(c, `GET /${size} HTTP/1.1\r\nHost: a\r\n\r\n`);
        return await readHead(c);
      }));
      await until("large buffers are lent", () => BODY_BUFFERS.largeInUse >= 1);
      const lent = await sampleLent();
      assertLess(lent.bytes, BODY_BUFFERS.budget + 1, "large-buffer bytes lent at once");
      assertLess(lent.buffers, 5, "buffers lent at once");
      const bad = await Promise.all(conns.map((c, i) => readBody(c, heads[i]!.rest, size)));
      assertEquals(bad, [-1, -1, -1, -1], "first bad byte of each body");
    } finally {
      for (const c of conns) c.close();
    }
  } finally {
    BODY_BUFFERS.budget = budget;
  }
});

Deno.test("after a 4 MiB download an idle keep-alive client holds no body buffer; the pooled backend connection keeps one until closed", async () => {
  await noneLent();
  const size = 4 * MIB;
  await using backend = bulkBackend();
  const lb = await startBalancer(config(backend.port));
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    try {
      for (let i = 0; i < 3; i++) { // keep-alive: the same connections each time
        await writeAllText(c, `GET /${size} HTTP/1.1\r\nHost: a\r\n\r\n`);
        const { head, rest } = await readHead(c);
        assert(head.startsWith("HTTP/1.1 200"), head);
        assertEquals(await readBody(c, rest, size), -1);
      }
      assertEquals(backend.accepted, 1, "one backend connection, reused");
      await until("the relay has ended", () => BODY_BUFFERS.inUse <= 1);
      assertEquals(BODY_BUFFERS.inUse, 1, "buffers lent while the client is idle");
      assertEquals(BODY_BUFFERS.largeBytes, 256 * KIB, "the backend connection's one");
    } finally {
      c.close();
    }
  } finally {
    await lb.close();
  }
  await until("the pooled connection's buffer is back", () => BODY_BUFFERS.inUse === 0);
});

Deno.test("an 8 MiB download and upload through TLS on both sides arrive intact and give their buffers back", async () => {
  await noneLent();
  const size = 8 * MIB;
  await using ca = await makeCa();
  const cert = await ca.issue("server", { serial: 0x2101, names: ["app.test", "127.0.0.1"] });
  await using backend = bulkBackend({
    listener: Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(cert.cert),
      key: Deno.readTextFileSync(cert.key),
    }),
  });
  const lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert.cert}, key: ${cert.key}, watch: false }
routes: [{ name: app, tls: true, ca: ${ca.ca}, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  try {
    const c = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: lb.addrs.https!.port,
      caCerts: [ca.caPem],
    });
    try {
      await writeAllText(c, `GET /${size} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const { rest } = await readHead(c);
      assertEquals(await readBody(c, rest, size), -1, "first bad byte of the download");
      await writeAllText(c, `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`);
      const piece = new Uint8Array(PIECE);
      for (let off = 0; off < size; off += PIECE) await writeAllText(c, fill(piece, off));
      const { head, rest: answer } = await readHead(c);
      assert(head.startsWith("HTTP/1.1 200"), head);
      assertEquals(dec.decode(answer), `${size} -1`, "bytes the backend counted, first bad one");
    } finally {
      c.close();
    }
  } finally {
    await lb.close();
  }
  await until("every lent buffer is back", () => BODY_BUFFERS.inUse === 0);
});
