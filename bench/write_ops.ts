// deno-lint-ignore-file no-console
// How `Deno.Conn` moves large buffers, plain TCP and TLS (rustls, 16 KiB records), on
// 127.0.0.1: for each buffer size, whether one `write` takes the whole buffer (with a
// reader draining the other end), how many bytes one `read` returns, and the rate of a
// 256 MiB transfer written and read in pieces of that size (one sender, one receiver, both
// in this process). The numbers behind the body relay's buffer sizes (README, Performance).
// Run: deno run -A bench/write_ops.ts   (needs openssl for a throwaway certificate)
const SIZES = [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024];
const TOTAL = 256 * 1024 * 1024;

const dir = await Deno.makeTempDir();
const made = await new Deno.Command("openssl", {
  args: [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "1",
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/cert.pem`,
    "-subj",
    "/CN=app.test",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
  ],
  stderr: "null",
}).output();
if (!made.success) throw new Error("openssl could not make a certificate");
const cert = await Deno.readTextFile(`${dir}/cert.pem`);
const key = await Deno.readTextFile(`${dir}/key.pem`);

async function pair(tls: boolean): Promise<[Deno.Conn, Deno.Conn, () => void]> {
  if (!tls) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [a, b] = await Promise.all([
      l.accept(),
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
    ]);
    return [a, b, () => l.close()];
  }
  const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const port = (l.addr as Deno.NetAddr).port;
  const [a, b] = await Promise.all([
    l.accept(),
    Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] }),
  ]);
  await Promise.all([(a as Deno.TlsConn).handshake(), b.handshake()]);
  return [a, b, () => l.close()];
}

interface Row {
  transport: string;
  size: number;
  wholeWrites: number;
  bytesPerWrite: number;
  bytesPerRead: number;
  mbps: number;
}

async function measure(tls: boolean, size: number): Promise<Row> {
  const [w, r, close] = await pair(tls);
  const out = new Uint8Array(size).fill(0x61);
  const inBuf = new Uint8Array(size);
  let writes = 0, whole = 0, ops = 0, reads = 0, got = 0;
  const t0 = performance.now();
  const reader = (async () => {
    while (got < TOTAL) {
      const n = await r.read(inBuf);
      if (n === null) break;
      got += n;
      reads++;
    }
  })();
  for (let sent = 0; sent < TOTAL;) {
    const n = await w.write(out);
    writes++;
    ops++;
    if (n === size) whole++;
    let off = n;
    for (; off < size; ops++) off += await w.write(out.subarray(off));
    sent += size;
  }
  await reader;
  const secs = (performance.now() - t0) / 1000;
  w.close();
  r.close();
  close();
  return {
    transport: tls ? "TLS" : "TCP",
    size,
    wholeWrites: whole / writes,
    bytesPerWrite: TOTAL / ops,
    bytesPerRead: got / reads,
    mbps: TOTAL / secs / 1e6,
  };
}

const kib = (n: number) => `${Math.round(n / 1024)} KiB`;
console.log(`256 MiB through one connection on 127.0.0.1, Deno ${Deno.version.deno}`);
console.log("");
console.log(
  "| transport | piece | writes taking the whole piece | bytes per write op | bytes per read | MB/s |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const tls of [false, true]) {
  for (const size of SIZES) {
    const row = await measure(tls, size);
    console.log(
      `| ${row.transport} | ${kib(row.size)} | ${(row.wholeWrites * 100).toFixed(0)} % | ` +
        `${kib(row.bytesPerWrite)} | ` +
        `${kib(row.bytesPerRead)} | ${row.mbps.toFixed(0)} |`,
    );
  }
}
await Deno.remove(dir, { recursive: true });
