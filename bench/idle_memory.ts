// deno-lint-ignore-file no-console
// Memory of 10,000 idle keep-alive client connections (issue #7 target: < 150 MB RSS).
// The balancer runs as README's run command does (with --max-semi-space-size=4, from
// tests/_process.ts). Run: deno run -A bench/idle_memory.ts   (needs ulimit -n > 20000)
import { startLbProcess } from "../tests/_process.ts";
import { keepAliveBackend } from "../tests/_http.ts";
const b = keepAliveBackend("b");
const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
const base = lb.rss();
const conns: Deno.Conn[] = [];
const req = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
const buf = new Uint8Array(1024);
for (let i = 0; i < 10000; i += 100) {
  await Promise.all(Array.from({ length: 100 }, async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    await c.write(req);
    await c.read(buf);
    conns.push(c);
  }));
}
await new Promise((r) => setTimeout(r, 1000));
console.log(
  `base ${(base / 1048576).toFixed(1)} MiB, with 10k idle: ${(lb.rss() / 1048576).toFixed(1)} MiB`,
);
for (const c of conns) c.close();
await lb.stop();
await b.close();
