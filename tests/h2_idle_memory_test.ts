/**
 * What an idle HTTP/2 connection costs the balancer (issue #25): no frame read or
 * write buffer, control queue or HPACK scratch is held between requests, and a
 * connection that was idle serves its next request.
 *
 * @module
 */
import { assertEquals, assertLess } from "@std/assert";
import { startLbProcess } from "./_process.ts";
import { keepAliveBackend } from "./_http.ts";
import { closeAll, h2Get, openMany } from "./_idle_clients.ts";

const N = 2000;
const KiB = 1024;

Deno.test(`${N} idle h2c connections, each after one request, grow the balancer's RSS by less than 16 KiB each, and serve their next request`, async () => {
  await using backend = keepAliveBackend("b");
  await using lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  // warm-up: code compiled and pools made before the baseline
  closeAll(await openMany("h2c-req", lb.port, 200));
  await new Promise((r) => setTimeout(r, 1000));
  const before = lb.rss();
  const conns = await openMany("h2c-req", lb.port, N);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const grown = lb.rss() - before;
    // each held ~31 KiB when it kept a 16 KiB read buffer and its own queues (docs/h2.md)
    assertLess(grown / N, 16 * KiB, `RSS grew by ${grown} bytes for ${N} idle connections`);
    for (const c of conns.slice(0, 20)) {
      assertEquals(await h2Get(c, 3), "b /\n".length); // namedResponse: "b /\n"
    }
  } finally {
    closeAll(conns);
  }
});
