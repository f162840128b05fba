// Flood protection that never punishes a well-behaved client (issue 22 §1):
// real clients that return flow-control credit in small pieces (grpcio's
// C-core, h2load with 255-byte windows) run long streams and many calls through
// unload with no GOAWAY, while a connection closed for abuse gets GOAWAY
// ENHANCE_YOUR_CALM with its last stream id, lets that stream finish, and is
// named in a log line and a metric. The attack tests themselves are in
// h2_hardening_test.ts and h2_proxy_hardening_test.ts.
import { assert, assertEquals } from "@std/assert";
import { startLoggedBalancer } from "./_http.ts";
import { makeCa } from "./_certs.ts";
import { type GrpcioClientOptions, runGrpcio, startGrpcioServer } from "./_grpcio.ts";
import { startOrigin } from "./_h1_origin.ts";
import { H2_CLIENT_SCRIPT, type H2Outcome } from "./_h2_scenario.ts";
import { renderMetrics } from "../src/admin/prometheus.ts";
import { ErrorCode } from "../src/h2/frame.ts";
import { MAX_GLITCHES } from "../src/h2/abuse.ts";
import { FREE_WINDOW_UPDATES } from "../src/h2/_connection.ts";

/** The three loads of the issue, each bounded by count. */
const LOADS: { what: string; run: Omit<GrpcioClientOptions, "port" | "target" | "tls"> }[] = [
  { what: "a 10,000-message server stream", run: { mode: "stream", messages: 10_000 } },
  { what: "2,000 bidi round trips", run: { mode: "bidi", messages: 2_000 } },
  {
    what: "10 channels x 100 concurrent unary calls (6,000 calls)",
    run: { mode: "unary", calls: 6_000, channels: 10, concurrency: 100 },
  },
];

function expected(run: Omit<GrpcioClientOptions, "port">) {
  const calls = run.calls ?? 1;
  const messages = run.mode === "unary" ? calls : run.messages;
  const codes: Record<string, number> = { OK: calls };
  return { calls, ok: calls, codes, messages };
}

for (const tls of [false, true]) {
  const over = tls ? "TLS (ALPN h2)" : "h2c";
  Deno.test(`grpcio through unload over ${over}: a 10,000-message stream, 2,000 bidi round trips and 10x100 concurrent unary calls all succeed, and no connection is closed for abuse`, async () => {
    await using ca = await makeCa();
    const cert = await ca.issue("server", { serial: 1 });
    await using backend = await startGrpcioServer({ name: "b1" });
    await using lb = await startLoggedBalancer(`
listen: ${tls ? "{ https: 127.0.0.1:0 }" : "{ http: 127.0.0.1:0, h2c: true }"}
${tls ? `tls: { cert: ${cert.cert}, key: ${cert.key} }` : ""}
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
    const port = tls ? lb.addrs.https!.port : lb.port;
    for (const { what, run } of LOADS) {
      const r = await runGrpcio({
        ...run,
        port,
        ...(tls ? { tls: { ca: ca.ca, authority: "app.test" } } : {}),
      });
      assertEquals(
        { calls: r.calls, ok: r.ok, codes: r.codes, messages: r.messages },
        expected(run),
        `${what}: ${JSON.stringify(r.details)}`,
      );
    }
    assertEquals(lb.h2.closed, {}, "no connection closed for abuse");
    assertEquals(lb.lines.filter((l) => l.includes("abuse")), []);
  });
}

Deno.test("h2load with 255-byte windows (-w 8 -W 8) through unload: 5000 of 5000 requests with 2 KB answers succeed", async () => {
  await using origin = startOrigin("b1");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${origin.port} }] }]
`);
  const out = await new Deno.Command("h2load", {
    args: [
      "-w",
      "8",
      "-W",
      "8",
      "-n",
      "5000",
      "-c",
      "4",
      "-m",
      "10",
      `http://127.0.0.1:${lb.port}/bytes/2000`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(text.includes("5000 succeeded, 0 failed, 0 errored"), text);
  assert(text.includes("status codes: 5000 2xx"), text);
  assertEquals(lb.h2.closed, {});
});

Deno.test("a connection closed for abuse gets GOAWAY ENHANCE_YOUR_CALM with its last stream id, the stream in flight completes, and the client and reason are logged and counted", async () => {
  await using origin = startOrigin("b1");
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${origin.port} }] }]
`);
  const head = origin.nextHead();
  // GET /hold on stream 1 (the origin holds its answer), then a flood of 1-byte
  // WINDOW_UPDATEs that return no credit for anything sent: a few more than it
  // takes, and then it stops (as told by GOAWAY)
  const flood = FREE_WINDOW_UPDATES + MAX_GLITCHES + 50;
  const child = new Deno.Command("/usr/bin/python3", {
    args: [H2_CLIENT_SCRIPT, String(lb.port), "flood_during_get", String(flood), "/hold"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  // the request reaches the backend (or the client ends first: the test fails)
  if (await Promise.race([head.then(() => false), child.status.then(() => true)])) {
    for (let r = await lines.read(); !r.done; r = await lines.read()) text += r.value;
    await new Response(child.stderr).text();
    throw new Error(`the client ended before its request reached the backend: ${text}`);
  }
  while (!text.includes("GOAWAY\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`the client ended without GOAWAY: ${text}`);
    text += value;
  }
  origin.release(); // the backend answers only now, after GOAWAY
  for (;;) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  const status = await child.status;
  await new Response(child.stderr).text();
  assert(status.success, text);
  const out = JSON.parse(text.slice(text.indexOf("GOAWAY\n") + 7)) as H2Outcome;
  assertEquals(out.goaway, [ErrorCode.ENHANCE_YOUR_CALM, 1]);
  assertEquals(out.status["1"], 200, "the stream accepted before GOAWAY completes");
  assertEquals(out.body["1"], "b1 /hold\n");
  const warned = lb.lines.filter((l) => l.includes("closed for abuse"));
  assertEquals(warned.length, 1, lb.lines.join("\n"));
  assert(
    /^warn h2 client 127\.0\.0\.1:\d+ closed for abuse: window_update_flood: .*WINDOW_UPDATE.*last stream 1, 1 stream left to finish$/
      .test(warned[0]!),
    warned[0],
  );
  assertEquals(lb.h2.closed, { window_update_flood: 1 });
  const metrics = renderMetrics(lb);
  assert(
    metrics.includes('unload_h2_connections_closed_total{reason="window_update_flood"} 1'),
    metrics,
  );
  assert(metrics.includes('unload_h2_connections_closed_total{reason="rapid_reset"} 0'));
});

Deno.test("grpcio calls cancelled mid-stream, or reset by a deadline after waiting on the backend, are not rapid reset: 150 of each on one connection, no connection closed", async () => {
  await using backend = await startGrpcioServer({ name: "b1" });
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
  // each call gets its response and 3 messages, then the client cancels it (RST_STREAM CANCEL)
  const cancelled = await runGrpcio({
    port: lb.port,
    mode: "stream",
    messages: 1000,
    everyMs: 20,
    cancelAfterMessages: 3,
    calls: 150,
    concurrency: 50,
  });
  assertEquals([cancelled.codes, cancelled.messages], [{ CANCELLED: 150 }, 450]);
  // each call waits on a backend that never answers until its 1.5 s deadline resets it
  const late = await runGrpcio({
    port: lb.port,
    mode: "hang",
    deadlineS: 1.5,
    calls: 150,
    concurrency: 50,
  });
  assertEquals(late.codes, { DEADLINE_EXCEEDED: 150 });
  await backend.waitFor("cancelled Hang", 150);
  assertEquals(lb.h2.closed, {});
  assertEquals(lb.lines.filter((l) => l.includes("abuse")), []);
});
