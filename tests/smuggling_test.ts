/**
 * Issue #6, first acceptance item: malformed and smuggling-prone requests are
 * answered by the balancer itself with the right status, the connection is closed
 * afterwards, and nothing of them reaches a backend (RFC 9112 §2–§7, DESIGN.md
 * "Malformed or ambiguous framing → 400 and close; nothing reaches a backend").
 */
import { assert, assertEquals } from "@std/assert";
import { delay, proxyTo, RawClient, rawServer, startBalancer } from "./_http.ts";
import { H, LIMITS_YAML, type Row, ROWS } from "./_smuggling_rows.ts";

/** One malformed request and what the balancer must do with it. */

async function eventually(cond: () => boolean, ms = 1000): Promise<boolean> {
  for (let waited = 0; !cond() && waited < ms; waited += 10) await delay(10);
  return cond();
}

Deno.test("balancer rejects malformed and smuggling requests, closes, and forwards none of them", async (t) => {
  assert(ROWS.length >= 30, "issue #6 asks for at least 30 rows");
  const seen: string[] = [];
  await using backend = rawServer(async (_conn, read) => {
    // never answers: a request that wrongly got through ends in a visible 504
    for (let chunk = await read(); chunk !== null; chunk = await read()) {
      seen.push(new TextDecoder("latin1").decode(chunk));
    }
  });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
timeouts: { response: 3s }
${LIMITS_YAML}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);

  async function check(row: Row, options: { status: boolean }): Promise<void> {
    const accepted = backend.accepted;
    const received = backend.received;
    seen.length = 0;
    const c = await RawClient.connect(lb.port);
    try {
      const pieces = typeof row.request === "string" ? [row.request] : row.request;
      for (const [i, piece] of pieces.entries()) {
        if (i > 0) await delay(30);
        // a Latin-1 string: every code unit is one byte on the wire
        await c.send(Uint8Array.from(piece, (ch) => ch.charCodeAt(0))).catch(() => {});
      }
      let status = 0; // no response at all
      let body = "";
      try {
        ({ status, body } = await c.read());
      } catch { /* closed without a response */ }
      if (options.status) assertEquals(status, row.status, `status (body: ${body.trim()})`);
      assert(await c.closed(), "the balancer closes the connection afterwards");
    } finally {
      c.close();
    }
    if ((row.backendBytes ?? 0) === 0) {
      await delay(20);
      assertEquals(backend.accepted - accepted, 0, "backend connections opened");
      assertEquals(backend.received - received, 0, "backend bytes received");
    } else {
      assert(await eventually(() => backend.open === 0), "the backend connection is closed");
      const text = seen.join("");
      if (text !== "") assert(text.startsWith("POST / HTTP/1.1\r\n"), text.slice(0, 80));
      assert(!text.includes(row.forbidden ?? "\0never"), "malformed bytes reached the backend");
    }
  }

  for (const row of ROWS) {
    await t.step(
      `${row.name}: ${row.status}, closed, backend ${row.backendBytes ?? 0}`,
      () => check(row, { status: true }),
    );
  }
});

Deno.test("balancer serves a well-formed request on the same setup (the table's control row)", async () => {
  await using backend = rawServer(async (conn, read) => {
    await read();
    await conn.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
    await read();
  });
  await using proxied = await proxyTo(backend, { config: LIMITS_YAML });
  const { c } = proxied;
  const res = await c.request(
    `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\nX-Pad: ${"p".repeat(500)}\r\n\r\nhello`,
  );
  assertEquals([res.status, res.body], [200, "ok"]);
});
