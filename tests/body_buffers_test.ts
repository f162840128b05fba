import { assert, assertEquals } from "@std/assert";
import { BufReader, BufWriter } from "../src/http1/io.ts";
import { BODY_BUFFERS } from "../src/http1/body_buffers.ts";
import { relayBody, type RelayOptions } from "../src/proxy/relay.ts";
import { FakeConn, octets } from "./_fake_conn.ts";

const FROM_BACKEND: RelayOptions = { errorStatus: 502, side: "backend" };
const KIB = 1024;

function body(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
}

/** A FakeConn that records the size of the buffer behind each read. */
class SizedReads extends FakeConn {
  readonly buffers: number[] = [];
  override read(p: Uint8Array): Promise<number | null> {
    this.buffers.push(p.buffer.byteLength);
    return super.read(p);
  }
}

async function relayed(reader: BufReader, length: number) {
  const out = new FakeConn();
  const writer = new BufWriter(out);
  const moved = await relayBody(reader, writer, { kind: "length", length }, FROM_BACKEND);
  await writer.flush();
  return { moved, out };
}

Deno.test("relayBody reads a large body with buffers that grow 16, 64, 256 KiB while reads fill them", async () => {
  const data = body(2 * 1024 * KIB);
  const src = new SizedReads();
  src.feed(data);
  const reader = new BufReader(src, 1024); // a client connection's small buffer
  const home = reader.buf;
  const { moved, out } = await relayed(reader, data.length);
  assertEquals(moved, data.length);
  assertEquals(out.bytes(), data);
  assertEquals(src.buffers.slice(0, 4), [16 * KIB, 64 * KIB, 256 * KIB, 256 * KIB]);
  // after 1 KiB of room for a head (BufWriter.writeFrom)
  assertEquals(src.reads.slice(0, 3), [15 * KIB, 63 * KIB, 255 * KIB]);
  assert(reader.buf === home, "the reader has its own buffer back");
  assertEquals(BODY_BUFFERS.inUse, 0);
  assertEquals(BODY_BUFFERS.largeBytes, 0);
});

Deno.test("relayBody keeps a 16 KiB buffer while reads come back smaller than it", async () => {
  const data = body(1024 * KIB);
  const src = new SizedReads({ readChunk: 12 * KIB });
  src.feed(data);
  const { out } = await relayed(new BufReader(src, 1024), data.length);
  assertEquals(out.bytes(), data);
  assertEquals(Math.max(...src.buffers), 16 * KIB);
});

Deno.test("relayBody keeps reading with 16 KiB past the budget for large buffers", async () => {
  const budget = BODY_BUFFERS.budget;
  BODY_BUFFERS.budget = 0;
  try {
    const data = body(1024 * KIB);
    const src = new SizedReads();
    src.feed(data);
    const { out } = await relayed(new BufReader(src, 1024), data.length);
    assertEquals(out.bytes(), data);
    assertEquals(Math.max(...src.buffers), 16 * KIB);
    assertEquals(BODY_BUFFERS.inUse, 0);
  } finally {
    BODY_BUFFERS.budget = budget;
  }
});

Deno.test("relayBody grows a backend connection's full 16 KiB buffer at once and gives it back", async () => {
  const data = body(300 * KIB);
  const src = new SizedReads();
  src.feed(data);
  const reader = new BufReader(src); // 16 KiB, as a backend connection's
  const home = reader.buf;
  assert(await reader.fill()); // the response head's read filled it
  const { out } = await relayed(reader, data.length);
  assertEquals(out.bytes(), data);
  assertEquals(src.buffers.slice(0, 3), [16 * KIB, 64 * KIB, 256 * KIB]);
  assert(reader.buf === home);
  assertEquals(BODY_BUFFERS.inUse, 0);
});

Deno.test("relayBody keeps the bytes after a large body, more than the reader's own buffer holds", async () => {
  const data = body(100 * KIB);
  const next = "GET /next HTTP/1.1\r\nHost: a\r\nX-Pad: " + "p".repeat(3000) + "\r\n\r\n";
  const src = new SizedReads();
  const all = new Uint8Array(data.length + next.length);
  all.set(data);
  all.set(octets(next), data.length);
  src.feed(all);
  const reader = new BufReader(src, 1024);
  const { out } = await relayed(reader, data.length);
  assertEquals(out.bytes(), data);
  assertEquals(reader.buffered, next.length);
  const rest = reader.buf.subarray(reader.start, reader.end);
  assertEquals(String.fromCharCode(...rest.subarray(0, 9)), "GET /next");
  assertEquals(BODY_BUFFERS.inUse, 0);
});

Deno.test("relayBody passes a 1 MiB chunked body on unchanged with growing buffers", async () => {
  const chunks: Uint8Array[] = [];
  const data = body(1024 * KIB);
  for (let off = 0; off < data.length; off += 100_000) {
    const piece = data.subarray(off, Math.min(off + 100_000, data.length));
    chunks.push(octets(`${piece.length.toString(16)}\r\n`), piece, octets("\r\n"));
  }
  chunks.push(octets("0\r\n\r\n"));
  const wire = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    wire.set(c, off);
    off += c.length;
  }
  const src = new SizedReads();
  src.feed(wire);
  const out = new FakeConn();
  const writer = new BufWriter(out);
  const moved = await relayBody(
    new BufReader(src, 1024),
    writer,
    { kind: "chunked", length: 0 },
    FROM_BACKEND,
  );
  await writer.flush();
  assertEquals(moved, data.length);
  assertEquals(out.bytes(), wire);
  assertEquals(Math.max(...src.buffers), 256 * KIB);
  assertEquals(BODY_BUFFERS.inUse, 0);
});

Deno.test("relayBody gives its lent buffer back when the sender closes mid-body", async () => {
  const src = new SizedReads();
  src.feed(body(600 * KIB));
  src.end();
  const out = new FakeConn();
  let failed = false;
  try {
    await relayBody(new BufReader(src, 1024), new BufWriter(out), {
      kind: "length",
      length: 1024 * KIB,
    }, FROM_BACKEND);
  } catch {
    failed = true;
  }
  assert(failed);
  assertEquals(Math.max(...src.buffers), 256 * KIB);
  assertEquals(BODY_BUFFERS.inUse, 0);
  assertEquals(BODY_BUFFERS.largeBytes, 0);
});

Deno.test("a backend reader keeps its lent buffer for the next body, and gives it back once an idle read settles", async () => {
  const src = new SizedReads();
  src.feed(body(600 * KIB));
  const reader = new BufReader(src);
  reader.keepLent = true;
  await relayed(reader, 600 * KIB);
  assertEquals(reader.buf.length, 256 * KIB, "kept after the body");
  assertEquals(BODY_BUFFERS.largeBytes, 256 * KIB);
  src.feed(body(300 * KIB));
  await relayed(reader, 300 * KIB);
  assertEquals(src.buffers.at(-1), 256 * KIB, "the next body's reads use it");
  const idle = reader.prefetch(); // pooled: a read waits for the backend's close
  reader.restore(); // discarded while that read is pending
  assertEquals(BODY_BUFFERS.inUse, 1, "not back while a read may still fill it");
  src.end();
  assertEquals(await idle, false);
  await Promise.resolve();
  assertEquals(BODY_BUFFERS.inUse, 0);
  assertEquals(reader.buf.length, 16 * KIB, "its own buffer again");
});

Deno.test("relayBody sends a staged head, longer than the backend's, and a whole buffered body in one write", async () => {
  const data = body(14 * KIB);
  const src = new FakeConn();
  const backendHead = "HTTP/1.1 200 OK\r\ncontent-length: 14336\r\n\r\n";
  const wire = new Uint8Array(backendHead.length + data.length);
  wire.set(octets(backendHead));
  wire.set(data, backendHead.length);
  const reader = new BufReader(src);
  reader.keepLent = true; // a pooled backend connection, after a large body
  src.feed(body(100 * KIB));
  await relayed(reader, 100 * KIB);
  src.feed(wire);
  assert(await reader.fill());
  reader.consume(backendHead.length); // parsed: the head goes to the client rewritten
  const out = new FakeConn();
  const writer = new BufWriter(out);
  const head = "HTTP/1.1 200 OK\r\ncontent-length: 14336\r\nvia: 1.1 unload\r\n\r\n";
  writer.writeString(head);
  const moved = await relayBody(reader, writer, { kind: "length", length: data.length }, {
    errorStatus: 502,
    side: "backend",
  });
  await writer.flush();
  assertEquals(moved, data.length);
  assertEquals(out.writes, [head.length + data.length]);
  const expected = new Uint8Array(head.length + data.length);
  expected.set(octets(head));
  expected.set(data, head.length);
  assertEquals(out.bytes(), expected);
  assertEquals(writer.written, expected.length);
  reader.restore();
  assertEquals(BODY_BUFFERS.inUse, 0);
});

Deno.test("a backend reader gives its lent buffer back after the body when over half the budget is lent", async () => {
  const budget = BODY_BUFFERS.budget;
  BODY_BUFFERS.budget = 400 * KIB; // one 256 KiB buffer is more than half of it
  try {
    const src = new SizedReads();
    src.feed(body(600 * KIB));
    const reader = new BufReader(src);
    reader.keepLent = true;
    await relayed(reader, 600 * KIB);
    assertEquals(Math.max(...src.buffers), 256 * KIB);
    assertEquals(reader.buf.length, 16 * KIB, "its own buffer again");
    assertEquals(BODY_BUFFERS.inUse, 0);
  } finally {
    BODY_BUFFERS.budget = budget;
  }
});

Deno.test("a writer with joinHead off (a TLS client) sends the head on its own, then a 64 KiB body read whole, bytes unchanged", async () => {
  const data = body(64 * KIB);
  const src = new FakeConn();
  const reader = new BufReader(src);
  reader.keepLent = true; // a pooled backend connection, after a large body
  src.feed(body(300 * KIB));
  await relayed(reader, 300 * KIB); // now reading with 256 KiB: the next body comes in one read
  src.feed(data);
  assert(await reader.fill());
  assertEquals(reader.buffered, data.length);
  const out = new FakeConn();
  const writer = new BufWriter(out, { joinHead: false });
  const head = "HTTP/1.1 200 OK\r\ncontent-length: 65536\r\n\r\n";
  writer.writeString(head);
  const moved = await relayBody(
    reader,
    writer,
    { kind: "length", length: data.length },
    FROM_BACKEND,
  );
  await writer.flush();
  assertEquals(moved, data.length);
  assertEquals(out.writes, [head.length, data.length]); // joined, it would be one write
  const expected = new Uint8Array(head.length + data.length);
  expected.set(octets(head));
  expected.set(data, head.length);
  assertEquals(out.bytes(), expected);
  assertEquals(writer.written, expected.length);
  reader.restore();
  assertEquals(BODY_BUFFERS.inUse, 0);
});
