import { assertEquals, assertRejects } from "@std/assert";
import { BufReader, BufWriter } from "../src/http1/io.ts";
import type { Framing } from "../src/http1/body.ts";
import { HttpError } from "../src/http1/head.ts";
import {
  ClosedEarlyError,
  relayBody,
  type RelayOptions,
  relayUntilClose,
} from "../src/proxy/relay.ts";
import { FakeConn, octets } from "./_fake_conn.ts";

const FROM_CLIENT: RelayOptions = { errorStatus: 400, side: "client" };
const CHUNKED: Framing = { kind: "chunked", length: 0 };

function body(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
}

async function relay(
  src: FakeConn,
  framing: Framing,
  options = FROM_CLIENT,
): Promise<{ moved: number; out: FakeConn }> {
  const out = new FakeConn();
  const writer = new BufWriter(out);
  const moved = await relayBody(new BufReader(src), writer, framing, options);
  await writer.flush();
  return { moved, out };
}

Deno.test("relayBody moves a length-framed body that arrives one byte per read", async () => {
  const data = body(3000);
  const src = new FakeConn({ readChunk: 1 });
  src.feed(data);
  const { moved, out } = await relay(src, { kind: "length", length: data.length });
  assertEquals(moved, data.length);
  assertEquals(out.bytes(), data);
  assertEquals(src.reads.length, data.length);
});

Deno.test("relayBody writes all of a large body through writes cut to 7 bytes", async () => {
  const data = body(40_000); // past the write stage: written straight through
  const src = new FakeConn();
  src.feed(data);
  const out = new FakeConn({ writeChunk: 7 });
  const writer = new BufWriter(out);
  const moved = await relayBody(new BufReader(src), writer, {
    kind: "length",
    length: data.length,
  }, FROM_CLIENT);
  await writer.flush();
  assertEquals(moved, data.length);
  assertEquals(out.bytes(), data);
  assertEquals(Math.max(...out.writes), 7);
});

Deno.test("relayBody leaves the bytes after a length-framed body in the reader", async () => {
  const src = new FakeConn();
  src.feed("helloGET / HTTP/1.1\r\n");
  const reader = new BufReader(src);
  const out = new FakeConn();
  const writer = new BufWriter(out);
  assertEquals(await relayBody(reader, writer, { kind: "length", length: 5 }, FROM_CLIENT), 5);
  await writer.flush();
  assertEquals(out.text(), "hello");
  assertEquals(reader.buffered, "GET / HTTP/1.1\r\n".length);
});

const CHUNKED_BODY = "5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n";

Deno.test("relayBody passes a chunked body on unchanged when it is split at any byte", async () => {
  for (let cut = 1; cut < CHUNKED_BODY.length; cut++) {
    const src = new FakeConn();
    src.feed(CHUNKED_BODY.slice(0, cut));
    src.feed(CHUNKED_BODY.slice(cut));
    const { moved, out } = await relay(src, CHUNKED);
    assertEquals(out.text(), CHUNKED_BODY, `split at ${cut}`);
    assertEquals(moved, "hello world!".length, `split at ${cut}`);
  }
});

Deno.test("relayBody passes a chunked body arriving one byte per read", async () => {
  const src = new FakeConn({ readChunk: 1 });
  src.feed(CHUNKED_BODY);
  const { moved, out } = await relay(src, CHUNKED);
  assertEquals([out.text(), moved], [CHUNKED_BODY, 12]);
});

Deno.test("relayBody dechunks for an HTTP/1.0 client when split at any byte", async () => {
  const options = { errorStatus: 502, side: "backend", dechunk: true };
  for (let cut = 1; cut < CHUNKED_BODY.length; cut++) {
    const src = new FakeConn();
    src.feed(CHUNKED_BODY.slice(0, cut));
    src.feed(CHUNKED_BODY.slice(cut));
    const { out } = await relay(src, CHUNKED, options);
    assertEquals(out.text(), "hello world!", `split at ${cut}`);
  }
});

Deno.test("relayBody rejects a chunked body over maxBody with 413", async () => {
  const src = new FakeConn();
  src.feed("6\r\nabcdef\r\n0\r\n\r\n");
  const e = await assertRejects(
    () => relay(src, CHUNKED, { ...FROM_CLIENT, maxBody: 5 }),
    HttpError,
  );
  assertEquals(e.status, 413);
});

Deno.test("relayBody rejects malformed chunk framing with the side's status", async () => {
  const src = new FakeConn();
  src.feed("5\r\nhelloXX0\r\n\r\n");
  const e = await assertRejects(
    () => relay(src, CHUNKED, { errorStatus: 502, side: "backend" }),
    HttpError,
  );
  assertEquals(e.status, 502);
});

Deno.test("relayBody fails with ClosedEarlyError when the sender closes mid-body", async () => {
  for (const framing of [{ kind: "length", length: 10 } as Framing, CHUNKED]) {
    const src = new FakeConn();
    src.feed(framing.kind === "length" ? "12345" : "a\r\n12345");
    src.end();
    const out = new FakeConn();
    const writer = new BufWriter(out);
    await assertRejects(
      async () => await relayBody(new BufReader(src), writer, framing, FROM_CLIENT),
      ClosedEarlyError,
      "client closed the connection before the end of the body",
    );
    await writer.flush();
    assertEquals(out.text().endsWith("12345"), true, "what came is passed on before the error");
  }
});

Deno.test("relayBody fails when the sender's connection is reset mid-body", async () => {
  const src = new FakeConn();
  src.feed("12345");
  src.fail();
  await assertRejects(
    () => relay(src, { kind: "length", length: 10 }),
    Deno.errors.ConnectionReset,
  );
});

Deno.test("relayBody fails when the receiver goes away mid-body", async () => {
  const data = body(40_000);
  const src = new FakeConn();
  src.feed(data);
  const out = new FakeConn({ breakAfter: 20_000 });
  await assertRejects(
    async () =>
      await relayBody(new BufReader(src), new BufWriter(out), {
        kind: "length",
        length: data.length,
      }, FROM_CLIENT),
    Deno.errors.BrokenPipe,
  );
});

Deno.test("relayUntilClose moves everything until the sender closes", async () => {
  const src = new FakeConn({ readChunk: 3 });
  src.feed(octets("close-delimited body"));
  src.end();
  const out = new FakeConn({ writeChunk: 2 });
  assertEquals(await relayUntilClose(new BufReader(src), new BufWriter(out)), 20);
  assertEquals(out.text(), "close-delimited body");
});
