// deno-lint-ignore-file no-console
// Peak RSS growth of the balancer while a 1 GiB body streams through it each way
// (issue #7 target: < 32 MB). The balancer runs as its own process.
// Run: deno run -A bench/large_body.ts [MiB]
import { rawServer, writeAllText } from "../tests/_http.ts";
import { startLbProcess } from "../tests/_process.ts";

const SIZE = Number(Deno.args[0] ?? 1024) * 1024 * 1024;
const CHUNK = new Uint8Array(256 * 1024).fill(0x61);
const buf = new Uint8Array(256 * 1024);

// Counts an uploaded body (answering the count) or streams SIZE bytes.
const backend = rawServer(async (conn, read) => {
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const c = await read();
    if (c === null) return;
    head += new TextDecoder().decode(c);
  }
  if (head.startsWith("POST")) {
    let left = SIZE - (head.length - head.indexOf("\r\n\r\n") - 4);
    while (left > 0) {
      const c = await read();
      if (c === null) return;
      left -= c.length;
    }
    await writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok`);
  } else {
    await writeAllText(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${SIZE}\r\n\r\n`);
    for (let sent = 0; sent < SIZE; sent += CHUNK.length) await writeAllText(conn, CHUNK);
  }
});
const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
const base = lb.rss();
let peak = base;
const timer = setInterval(() => peak = Math.max(peak, lb.rss()), 20);
const t0 = performance.now();

const up = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
await writeAllText(up, `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${SIZE}\r\n\r\n`);
for (let sent = 0; sent < SIZE; sent += CHUNK.length) await writeAllText(up, CHUNK);
let reply = "";
while (!reply.endsWith("ok")) {
  const n = await up.read(buf);
  if (n === null) break;
  reply += new TextDecoder().decode(buf.subarray(0, n));
}
up.close();
const t1 = performance.now();

const down = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
await writeAllText(down, "GET /down HTTP/1.1\r\nHost: a\r\n\r\n");
let received = 0;
for (;;) {
  const n = await down.read(buf);
  if (n === null) break;
  received += n;
  if (received >= SIZE + 38) break; // head + body
}
down.close();
const t2 = performance.now();
clearInterval(timer);
peak = Math.max(peak, lb.rss());

const mib = (n: number) => (n / 1048576).toFixed(1);
console.log(
  `${mib(SIZE)} MiB each way: upload ${reply.endsWith("ok") ? "ok" : "FAILED"} ` +
    `in ${((t1 - t0) / 1000).toFixed(1)} s, download ${received >= SIZE ? "ok" : "FAILED"} ` +
    `in ${((t2 - t1) / 1000).toFixed(1)} s; balancer RSS ${mib(base)} -> peak ${mib(peak)} MiB ` +
    `(+${mib(peak - base)} MiB)`,
);
await lb.stop();
await backend.close();
