import { assertEquals, assertLess } from "@std/assert";
import { createHash } from "node:crypto";
import { rawServer, writeAllText } from "./_http.ts";
import { startLbProcess } from "./_process.ts";

const SIZE = 100 * 1024 * 1024;
const CHUNK = 64 * 1024;
const dec = new TextDecoder();

function pattern(i: number): Uint8Array {
  const b = new Uint8Array(CHUNK);
  let x = (i + 1) * 2654435761;
  for (let j = 0; j < CHUNK; j += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b[j] = x & 255;
    b[j + 1] = (x >> 8) & 255;
    b[j + 2] = (x >> 16) & 255;
    b[j + 3] = (x >> 24) & 255;
  }
  return b;
}

// A backend that hashes an uploaded body (answering the hex digest) or streams SIZE bytes.
function hashingBackend() {
  return rawServer(async (conn, read) => {
    let acc = new Uint8Array(0);
    let end = -1;
    while (end === -1) {
      const c = await read();
      if (c === null) return;
      const next = new Uint8Array(acc.length + c.length);
      next.set(acc);
      next.set(c, acc.length);
      acc = next;
      end = headEnd(acc);
    }
    const head = dec.decode(acc.subarray(0, end));
    const rest = acc.subarray(end);
    if (head.startsWith("POST")) {
      const hash = createHash("sha256");
      let left = Number(/content-length: (\d+)/i.exec(head)![1]) - rest.length;
      hash.update(rest);
      while (left > 0) {
        const c = await read();
        if (c === null) return;
        hash.update(c);
        left -= c.length;
      }
      const digest = hash.digest("hex");
      await writeAllText(
        conn,
        `HTTP/1.1 200 OK\r\ncontent-length: ${digest.length}\r\n\r\n${digest}`,
      );
    } else {
      await writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${SIZE}\r\n\r\n`);
      for (let i = 0; i < SIZE / CHUNK; i++) await writeAllText(conn, pattern(i % 97));
    }
  });
}

function headEnd(b: Uint8Array): number {
  for (let i = 3; i < b.length; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
}

function sampleRss(lb: { rss(): number }) {
  let peak = 0;
  const timer = setInterval(() => peak = Math.max(peak, lb.rss()), 25);
  return () => {
    clearInterval(timer);
    return Math.max(peak, lb.rss());
  };
}

Deno.test("proxy streams a 100 MB upload and a 100 MB download intact while RSS grows < 32 MB", async () => {
  const backend = hashingBackend();
  await using lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  try {
    // warm up, then take the baseline
    const warm = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    await writeAllText(
      warm,
      "POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    while ((await warm.read(new Uint8Array(1024))) !== null);
    warm.close();
    const base = lb.rss();
    const peak = sampleRss(lb);

    // upload
    const up = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    await writeAllText(up, `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${SIZE}\r\n\r\n`);
    const sent = createHash("sha256");
    for (let i = 0; i < SIZE / CHUNK; i++) {
      const chunk = pattern(i % 97);
      sent.update(chunk);
      await writeAllText(up, chunk);
    }
    let reply = "";
    const buf = new Uint8Array(4096);
    while (!/\r\n\r\n[0-9a-f]{64}$/.test(reply)) {
      const n = await up.read(buf);
      if (n === null) break;
      reply += dec.decode(buf.subarray(0, n));
    }
    up.close();
    assertEquals(reply.slice(-64), sent.digest("hex"), "upload digest seen by the backend");

    // download
    const down = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    await writeAllText(down, "GET /down HTTP/1.1\r\nHost: a\r\n\r\n");
    const got = createHash("sha256");
    const expected = createHash("sha256");
    for (let i = 0; i < SIZE / CHUNK; i++) expected.update(pattern(i % 97));
    const rbuf = new Uint8Array(256 * 1024);
    let acc = new Uint8Array(0);
    let bodyBytes = 0;
    for (;;) { // the head
      const n = await down.read(rbuf);
      if (n === null) break;
      const next = new Uint8Array(acc.length + n);
      next.set(acc);
      next.set(rbuf.subarray(0, n), acc.length);
      acc = next;
      const end = headEnd(acc);
      if (end !== -1) {
        got.update(acc.subarray(end));
        bodyBytes += acc.length - end;
        break;
      }
    }
    while (bodyBytes < SIZE) {
      const n = await down.read(rbuf);
      if (n === null) break;
      got.update(rbuf.subarray(0, n));
      bodyBytes += n;
    }
    down.close();
    assertEquals(bodyBytes, SIZE);
    assertEquals(got.digest("hex"), expected.digest("hex"), "download digest");
    const growth = peak() - base;
    assertLess(growth, 32 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
  } finally {
    await lb.stop();
    await backend.close();
  }
});
