/**
 * The ClientHello reader of SNI passthrough (src/tcp/client_hello.ts), on
 * ClientHellos captured from real clients (openssl s_client, curl, Deno's
 * rustls) by accepting them on a plain TCP socket.
 *
 * @module
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  CLIENT_HELLO_LIMIT,
  ClientHelloError,
  parseClientHello,
  readClientHello,
} from "../src/tcp/client_hello.ts";

/**
 * What `client` sends first to a plain TCP listener: every record until the
 * first handshake message is whole, framed by the record lengths alone (not by
 * the parser under test). The client is stopped once it is read.
 */
async function capture(
  client: (port: number) => Deno.ChildProcess | Promise<{ close(): Promise<void> }>,
): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const started = client(listener.addr.port);
  const conn = await listener.accept();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const fill = async (n: number) => {
    while (total < n) {
      const b = new Uint8Array(4096);
      const got = await conn.read(b);
      if (got === null) throw new Error(`client left after ${total} bytes`);
      chunks.push(b.subarray(0, got));
      total += got;
    }
  };
  const all = () => {
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) out.set(c, (at += c.length) - c.length);
    return out;
  };
  // records until the handshake message they carry is whole
  let at = 0;
  let carried = 0;
  let needed = Infinity;
  while (carried < needed) {
    await fill(at + 5);
    const length = (all()[at + 3]! << 8) | all()[at + 4]!;
    await fill(at + 5 + length);
    const b = all();
    carried += length;
    if (needed === Infinity) {
      needed = 4 + ((b[at + 6]! << 16) | (b[at + 7]! << 8) | b[at + 8]!);
    }
    at += 5 + length;
  }
  const bytes = all().slice(0, at);
  conn.close();
  if (started instanceof Promise) await (await started).close();
  else {
    try {
      started.kill();
    } catch { /* gone */ }
    await started.status;
  }
  return bytes;
}

function openssl(...args: string[]) {
  return (port: number) =>
    new Deno.Command("openssl", {
      args: ["s_client", "-connect", `127.0.0.1:${port}`, ...args],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
}

function curl(name: string) {
  return (port: number) =>
    new Deno.Command("curl", {
      args: [
        "-sk",
        "--max-time",
        "20",
        "--resolve",
        `${name}:${port}:127.0.0.1`,
        `https://${name}:${port}/`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
}

function denoTls(name: string) {
  return async (port: number) => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    // never answered: the handshake fails once the capture closes its side
    const tls = Deno.startTls(tcp, { hostname: name });
    const handshake = tls.then((c) => c.handshake()).catch(() => {});
    return { close: () => handshake.then(() => tls.then((c) => c.close()).catch(() => {})) };
  };
}

/** Captured once per run: [what, bytes, the name asked for]. */
const HELLOS: Promise<[string, Uint8Array, string | undefined][]> = (async () => [
  [
    "openssl s_client -servername a.test",
    await capture(openssl("-servername", "a.test")),
    "a.test",
  ],
  [
    "openssl s_client -tls1_2",
    await capture(openssl("-servername", "b.test", "-tls1_2")),
    "b.test",
  ],
  ["openssl s_client -noservername", await capture(openssl("-noservername")), undefined],
  [
    "openssl s_client -servername Mixed.Case.TEST",
    await capture(openssl("-servername", "Mixed.Case.TEST")),
    "mixed.case.test",
  ],
  ["curl --resolve c.test", await capture(curl("c.test")), "c.test"],
  ["Deno.startTls hostname d.test", await capture(denoTls("d.test")), "d.test"],
])();

Deno.test("the server name of real ClientHellos (openssl, curl, Deno) is found, and none when not sent", async () => {
  for (const [what, bytes, name] of await HELLOS) {
    assertEquals(parseClientHello(bytes), { serverName: name }, what);
  }
});

Deno.test("openssl -split_send_frag spreads its ClientHello over several records, and the name is still found", async () => {
  const bytes = await capture(
    openssl(
      "-servername",
      "frag.test",
      "-tls1_2",
      "-max_send_frag",
      "512",
      "-split_send_frag",
      "64",
    ),
  );
  let records = 0;
  for (let at = 0; at < bytes.length; at += 5 + ((bytes[at + 3]! << 8) | bytes[at + 4]!)) records++;
  assert(records > 1, `openssl sent ${records} record`);
  assertEquals(parseClientHello(bytes), { serverName: "frag.test" });
});

/** The handshake message of `record` (one record) re-framed in records of `size` bytes. */
function reframe(record: Uint8Array, size: number): Uint8Array {
  const message = record.subarray(5);
  const out: number[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    out.push(0x16, record[1]!, record[2]!, part.length >> 8, part.length & 0xff, ...part);
  }
  return new Uint8Array(out);
}

Deno.test("a ClientHello cut into records of 1, 7 and 100 bytes gives the same name", async () => {
  for (const [what, bytes, name] of await HELLOS) {
    for (const size of [1, 7, 100]) {
      assertEquals(
        parseClientHello(reframe(bytes, size)),
        { serverName: name },
        `${what} / ${size}`,
      );
    }
  }
});

/** A source that hands out `bytes` in the given pieces, then the end of the stream. */
function pieces(bytes: Uint8Array, cuts: number[]) {
  const bounds = [...cuts, bytes.length];
  let at = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      while (bounds.length > 0 && bounds[0]! <= at) bounds.shift();
      if (bounds.length === 0) return Promise.resolve(null);
      const part = bytes.subarray(at, Math.min(bounds[0]!, at + p.length));
      p.set(part);
      at += part.length;
      return Promise.resolve(part.length);
    },
  };
}

Deno.test("a ClientHello split across two reads at every offset is read whole, its bytes unchanged", async () => {
  for (const [what, bytes, name] of await HELLOS) {
    const extra = new Uint8Array([...bytes, 0x17, 3, 3, 0, 1, 0xaa]); // what follows is kept too
    for (let cut = 1; cut < extra.length; cut++) {
      const got = await readClientHello(pieces(extra, [cut]));
      assertEquals(got.serverName, name, `${what} cut at ${cut}`);
      // everything read is handed back: the ClientHello, and what came with it in the last read
      assertEquals(
        got.bytes,
        cut < bytes.length ? extra : extra.subarray(0, cut),
        `${what} at ${cut}`,
      );
    }
  }
});

Deno.test("every truncation of a real ClientHello asks for more, and a peer leaving there is 'closed'", async () => {
  const [, bytes] = (await HELLOS)[0]!;
  for (let n = 0; n < bytes.length; n++) {
    assertEquals(parseClientHello(bytes.subarray(0, n)), undefined, `first ${n} bytes`);
  }
  const e = await assertRejects(() => readClientHello(pieces(bytes.subarray(0, 100), [])));
  assertEquals((e as ClientHelloError).reason, "closed");
});

function reasonOf(bytes: Uint8Array, limit?: number): string {
  const e = assertThrows(() => parseClientHello(bytes, limit), ClientHelloError);
  return e.reason;
}

Deno.test("a first byte that is not a TLS handshake record is refused as not_tls at once", () => {
  const enc = new TextEncoder();
  assertEquals(reasonOf(enc.encode("G")), "not_tls"); // HTTP
  assertEquals(reasonOf(enc.encode("PROXY TCP4 ")), "not_tls");
  assertEquals(reasonOf(new Uint8Array([0x80, 0x2e, 0x01])), "not_tls"); // SSLv2-style hello
  assertEquals(reasonOf(new Uint8Array([0x17, 3, 3, 0, 5])), "not_tls"); // application data
});

Deno.test("malformed ClientHellos are refused: bad record version, empty record, other records, bad lengths", async () => {
  const [, real] = (await HELLOS)[0]!;
  const edit = (f: (b: Uint8Array) => void) => {
    const b = real.slice();
    f(b);
    return b;
  };
  assertEquals(reasonOf(edit((b) => b[1] = 2)), "malformed"); // record version 2.x
  assertEquals(reasonOf(new Uint8Array([0x16, 3, 1, 0, 0])), "malformed"); // empty record
  assertEquals(reasonOf(edit((b) => b[5] = 2)), "malformed"); // a ServerHello
  // a handshake message cut by an alert record
  const split = reframe(real, 50);
  split[55] = 0x15;
  assertEquals(reasonOf(split), "malformed");
  // the extensions' length runs past the message
  const body = real.subarray(9);
  const sid = body[34]!;
  const cs = (body[35 + sid]! << 8) | body[36 + sid]!;
  const comp = body[37 + sid + cs]!;
  const extAt = 9 + 38 + sid + cs + comp;
  assertEquals(reasonOf(edit((b) => b[extAt] = 0xff)), "malformed");
  // a name with a control byte
  const name = new TextEncoder().encode("a.test");
  const idx = real.findIndex((_, i) => name.every((c, j) => real[i + j] === c));
  assert(idx > 0);
  assertEquals(reasonOf(edit((b) => b[idx] = 0x0a)), "malformed");
});

Deno.test("a ClientHello over the limit is refused as too_large, declared or dribbled", async () => {
  const [, real] = (await HELLOS)[0]!;
  // declares a 20,000-byte message: refused on its first record, without waiting for it
  const big = new Uint8Array([0x16, 3, 1, 0, 4, 1, 0, 0x4e, 0x20]);
  assertEquals(reasonOf(big), "too_large");
  // a real one, under a limit smaller than itself
  assertEquals(reasonOf(real, real.length - 1), "too_large");
  assertEquals(parseClientHello(real, real.length)?.serverName, "a.test");
  // 1-byte records that never finish a message declared at the limit's size
  const header = [1, 0, 0x3f, 0xf0]; // a 16,368-byte body
  const oneByte = new Uint8Array(Math.ceil(CLIENT_HELLO_LIMIT / 6 + 1) * 6);
  for (let i = 0; i < oneByte.length; i += 6) {
    oneByte.set([0x16, 3, 1, 0, 1, header[i / 6] ?? 0], i);
  }
  const e = await assertRejects(() => readClientHello(pieces(oneByte, [])), ClientHelloError);
  assertEquals((e as ClientHelloError).reason, "too_large");
});

Deno.test("a client that connects and sends nothing is given up at the deadline as a timeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using _client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  const deadline = new AbortController();
  const reading = readClientHello(conn, { signal: deadline.signal });
  deadline.abort();
  const e = await assertRejects(() => reading, ClientHelloError);
  assertEquals(e.reason, "timeout");
  conn.close(); // the pending read ends quietly
});

Deno.test("a ClientHello written one byte at a time over a real socket is read whole", async () => {
  const [, bytes] = (await HELLOS)[4]!; // curl's
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  client.setNoDelay(true);
  using conn = await listener.accept();
  let reads = 0;
  const counted = {
    read: (p: Uint8Array) => {
      reads++;
      return conn.read(p);
    },
  };
  const reading = readClientHello(counted);
  for (let i = 0; i < bytes.length; i++) {
    await client.write(bytes.subarray(i, i + 1));
    if (i % 64 === 0) await new Promise((r) => setTimeout(r, 1)); // let some land on their own
  }
  const got = await reading;
  assertEquals([got.serverName, got.bytes], ["c.test", bytes]);
  assert(reads > 1, `${reads} reads`);
});
