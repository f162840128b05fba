import { assert, assertEquals } from "@std/assert";
import { startBind } from "./_bind.ts";
import { delay, forEachHead, namedResponse, RawClient, rawServer, writeAllText } from "./_http.ts";
import { startLbProcess } from "./_process.ts";

Deno.test("workers: 2 — one SRV lookup and one health probe per period for the process, shared with the worker", async () => {
  let probes = 0;
  const backend = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      if (head.startsWith("GET /healthz ")) probes++;
      return writeAllText(conn, namedResponse("b", head));
    })
  );
  await using dns = await startBind([{
    origin: "app.test",
    records: [`_http._tcp.web SRV 0 1 ${backend.port} b.app.test.`, "b A 127.0.0.1"],
  }]);
  // one refresh and one probe interval last longer than the test: each happens once
  const lb = await startLbProcess(
    `
listen: { http: 127.0.0.1:$PORT }
workers: 2
dns: { nameserver: 127.0.0.1:${dns.port}, refresh: 1h }
health: { path: /healthz, interval: 1h }
log: { access: $DIR/access.log }
routes: [{ name: app, srv: _http._tcp.web.app.test }]
`,
    ["--allow-write"],
  );
  const served = (...workers: number[]) => {
    let text = "";
    try {
      text = Deno.readTextFileSync(`${lb.dir}/access.log`);
    } catch { /* not written yet */ }
    const seen = new Set(text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).worker));
    return workers.every((w) => seen.has(w));
  };
  let out = { code: -1, stdout: "", stderr: "" };
  let both = false;
  try {
    // new connections (the kernel spreads them by 4-tuple) until the access log shows
    // that the worker, which joins the port after the main thread, served some too
    for (let i = 0; i < 400 && !served(0, 1); i++) {
      const c = await RawClient.connect(lb.port);
      const res = await c.request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      assertEquals(res.status, 200, res.body);
      c.close();
      if (i % 10 === 9) await delay(50); // let the access log batch reach the file
    }
    both = served(0, 1);
  } finally {
    out = await lb.stop(); // removes lb.dir
    await backend.close();
  }
  assertEquals(out.code, 0, out.stderr);
  assert(out.stderr.includes("with 2 workers"), out.stderr);
  assert(both, `both workers served SRV-discovered backends: ${out.stderr}`);
  assertEquals(dns.queries("_http._tcp.web.app.test", "SRV").length, 1, "one SRV query, not two");
  assertEquals(probes, 1, "one health probe, not two");
});
