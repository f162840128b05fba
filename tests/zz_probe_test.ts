import { RawClient, rawServer, startBalancer, delay } from "./_http.ts";
Deno.test("probe", async () => {
  const got: string[] = [];
  const b = rawServer(async (_conn, read) => {
    for (;;) { const c = await read(); if (c === null) return; got.push(new TextDecoder().decode(c)); }
  });
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
limits: { max_body: 1KiB }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  for (const req of [
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + "x".repeat(2048) + "\r\n0\r\n\r\n",
    "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
  ]) {
    const c = await RawClient.connect(lb.port);
    await c.send(req);
    const t0 = Date.now();
    try { const r = await c.read(); console.log("status", r.status, r.body.trim()); } catch (e) { console.log("no response:", (e as Error).message, Date.now() - t0); }
    console.log("closed", await c.closed());
    c.close();
    await delay(50);
    console.log("backend got", JSON.stringify(got.join("").slice(0, 300)));
    got.length = 0;
  }
  await lb.close(); await b.close();
});
