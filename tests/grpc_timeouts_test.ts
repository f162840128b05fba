// gRPC failure and timeout semantics through the balancer, with @grpc/grpc-js on both
// sides (tests/grpcio_test.ts runs the C-core grpcio): a backend lost mid-call ends it with
// UNAVAILABLE in trailers, grpc-timeout and timeouts.max_grpc_timeout /
// max_stream_duration end it with DEADLINE_EXCEEDED, routes[].timeouts let a long-stream
// route wait for a late first message, keepalive PINGs keep an idle stream alive, and
// the HTTP/2 backend pools show in /status and /metrics.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import * as grpc from "npm:@grpc/grpc-js@1.14.3";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import { delay, startBalancer } from "./_http.ts";
import { SERVICE, startGrpcServer } from "./_grpc.ts";
import type { Status } from "../src/admin/status.ts";

const Client = grpc.makeGenericClientConstructor(SERVICE, "Test");
type AnyClient = InstanceType<typeof Client> & Record<string, CallableFunction>;

/** A client of the balancer's h2c port with grpc-js `options`; `using` closes it. */
function client(port: number, options: grpc.ChannelOptions = {}): AnyClient & Disposable {
  const c = new Client(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
    options,
  ) as AnyClient;
  return Object.assign(c, { [Symbol.dispose]: () => c.close() });
}

/** A unary call; resolves to the answer or to the error, whichever comes. */
function unary(
  c: AnyClient,
  name: string,
  text: string,
  options: grpc.CallOptions = {},
): Promise<string | grpc.ServiceError> {
  return new Promise((resolve) =>
    c[name]!(
      Buffer.from(text),
      new grpc.Metadata(),
      options,
      (e: grpc.ServiceError | null, v: Buffer) => resolve(e ?? v.toString()),
    )
  );
}

/** A server-streaming `Trickle` call: the messages it got, and the error it ended with. */
function trickle(c: AnyClient, options: grpc.CallOptions = {}) {
  const got: string[] = [];
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    const call = c.Trickle!(Buffer.from(""), new grpc.Metadata(), options);
    call.on("data", (d: Buffer) => got.push(d.toString()));
    call.on("error", resolve);
    call.on("end", () => resolve(undefined));
  });
  return { got, ended };
}

function isError(v: unknown): v is grpc.ServiceError {
  return typeof v === "object" && v !== null && "code" in v;
}

/** Waits until `check` holds, polling every 10 ms for at most 10 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await delay(10);
  assert(check(), `timed out waiting for ${what}`);
}

/** A balancer with h2c on, admin on, and one h2c route to `port` with `extra` route keys. */
function balancerTo(port: number, options: { top?: string; route?: string } = {}) {
  return startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
${options.top ?? ""}
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${port} }]
${options.route ?? ""}
`);
}

Deno.test("grpc-js: a backend lost mid-stream ends the call with UNAVAILABLE in trailers, after the messages it sent", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  const call = trickle(c);
  await until(() => call.got.length === 1, "the first message");
  backend.kill();
  const e = await call.ended;
  assert(e !== undefined, "the call failed");
  assertEquals(e.code, grpc.status.UNAVAILABLE, e.details);
  assertEquals(e.details, "502 Bad Gateway: the backend failed mid-response");
  assertEquals(call.got, ["first"]);
});

Deno.test("grpc-js: a backend lost before answering gives UNAVAILABLE (502 as a gRPC status)", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  const answer = unary(c, "Hang", "x");
  await backend.hangStarted;
  backend.kill();
  const e = await answer;
  assert(isError(e), `the call failed: ${e}`);
  assertEquals(e.code, grpc.status.UNAVAILABLE, e.details);
  assert(e.details.startsWith("502 Bad Gateway: "), e.details);
});

Deno.test("grpc-js: timeouts.max_grpc_timeout caps a call's deadline: DEADLINE_EXCEEDED from the balancer, the handler sees the cancel", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port, {
    route: "    timeouts: { max_grpc_timeout: 1500ms }",
  });
  using c = client(lb.port);
  const deadline = Date.now() + 60_000; // far beyond the cap: the balancer ends it, not the client
  const e = await unary(c, "Hang", "x", { deadline });
  assert(isError(e), `the call failed: ${e}`);
  assertEquals(e.code, grpc.status.DEADLINE_EXCEEDED, e.details);
  assertEquals(
    e.details,
    "deadline exceeded: timeouts.max_grpc_timeout (below grpc-timeout) elapsed",
  );
  await backend.hangCancelled;

  // once the response has started, the status comes in trailers after the messages
  const call = trickle(c, { deadline });
  const late = await call.ended;
  assert(late !== undefined, "the stream failed");
  assertEquals(late.code, grpc.status.DEADLINE_EXCEEDED, late.details);
  assertStringIncludes(late.details, "timeouts.max_grpc_timeout");
  assertEquals(call.got, ["first"]);
});

Deno.test("a grpc-timeout header bounds the call at the balancer: trailers-only grpc-status 4 to a raw HTTP/2 client", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port);
  const session = http2.connect(`http://127.0.0.1:${lb.port}`);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": "/t.Test/Hang",
      "content-type": "application/grpc",
      "te": "trailers",
      "grpc-timeout": "200m",
    });
    req.end(new Uint8Array([0, 0, 0, 0, 1, 0x78])); // one message: "x"
    const fields = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      let head: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => head = h);
      req.on("trailers", (t) => head = { ...head, ...t });
      req.on("end", () => resolve(head));
      req.on("error", reject);
      req.resume();
    });
    assertEquals(Number(fields[":status"]), 200);
    assertEquals(fields["grpc-status"], "4", JSON.stringify(fields));
    assertEquals(fields["grpc-message"], "deadline exceeded: grpc-timeout elapsed");
    await backend.hangCancelled; // the backend's stream was reset
  } finally {
    session.destroy();
  }
});

Deno.test("grpc-js: timeouts.max_stream_duration ends a long stream with DEADLINE_EXCEEDED after its messages", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port, {
    route: "    timeouts: { max_stream_duration: 2s }",
  });
  using c = client(lb.port);
  const call = trickle(c);
  const e = await call.ended;
  assert(e !== undefined, "the stream failed");
  assertEquals(e.code, grpc.status.DEADLINE_EXCEEDED, e.details);
  assertEquals(e.details, "deadline exceeded: timeouts.max_stream_duration elapsed");
  assertEquals(call.got, ["first"]);
});

Deno.test("grpc-js: a late first message fails on a route with the default response timeout and passes on one with routes[].timeouts.response: 0", async () => {
  await using backend = await startGrpcServer();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
timeouts: { response: 400ms }
routes:
  - name: long
    host: long.test
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    timeouts: { response: 0, max_stream_duration: 0 }
  - name: default
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
  using long = client(lb.port, { "grpc.default_authority": "long.test" });
  using plain = client(lb.port, { "grpc.default_authority": "app.test" });
  assertEquals(await unary(long, "Late", "1500"), "late");
  const e = await unary(plain, "Late", "1500");
  assert(isError(e), `the call failed: ${e}`);
  assertEquals(e.code, grpc.status.UNAVAILABLE, e.details);
  assertEquals(e.details, "504 Gateway Timeout: the backend did not answer in time");
});

/** A bidi `Echo` call that sends `a`, waits `idleMs` after its echo, then sends `b`. */
async function echoWithPause(c: AnyClient, idleMs: number) {
  const got: string[] = [];
  const call = c.Echo!() as grpc.ClientDuplexStream<Buffer, Buffer>;
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on("data", (d: Buffer) => got.push(d.toString()));
    call.on("error", resolve);
    call.on("end", () => resolve(undefined));
  });
  call.write(Buffer.from("a"));
  await until(() => got.length === 1, "the first echo");
  await delay(idleMs);
  call.write(Buffer.from("b"));
  call.end();
  return { error: await ended, got };
}

Deno.test("grpc-js: keepalive PINGs keep an idle stream past timeouts.body_idle; without them it ends with UNAVAILABLE", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port, { top: "timeouts: { body_idle: 1s }" });
  {
    using pinging = client(lb.port, {
      "grpc.keepalive_time_ms": 200,
      "grpc.keepalive_timeout_ms": 5000,
    });
    const { error, got } = await echoWithPause(pinging, 3500);
    assertEquals(error, undefined, error?.details);
    assertEquals(got, ["a", "b"]);
  }
  using quiet = client(lb.port);
  const { error, got } = await echoWithPause(quiet, 3500);
  assert(error !== undefined, "the idle call was ended");
  assertEquals(error.code, grpc.status.UNAVAILABLE, error.details);
  assertEquals(error.details, "stream idle: nothing moved for timeouts.body_idle");
  assertEquals(got, ["a"]);
});

Deno.test("h2c backend pools show real opened and reused counts in /status and /metrics", async () => {
  await using backend = await startGrpcServer();
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  for (let i = 0; i < 3; i++) assertEquals(await unary(c, "Unary", "x"), "hello x");
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  const status = await (await fetch(`${admin}/status`)).json() as Status;
  const pool = status.routes[0]!.backends[0]!.pool;
  assertEquals([pool.opened, pool.reused, pool.active + pool.idle], [1, 2, 1]);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  const id = `127.0.0.1:${backend.port}`;
  assertStringIncludes(metrics, `unload_pool_connections_opened_total{backend="${id}"} 1\n`);
  assertStringIncludes(metrics, `unload_pool_reuses_total{backend="${id}"} 2\n`);
  assertStringIncludes(metrics, `unload_pool_connections{backend="${id}",state="idle"} 1\n`);
});

/**
 * An h2c backend (node:http2) that answers every call with response headers and
 * `bytes` of body, then drops its connection without a word.
 */
async function dyingBackend(bytes: Uint8Array) {
  const server = http2.createServer();
  const sockets = new Set<{ destroy(): void }>();
  server.on("connection", (socket: { destroy(): void }) => sockets.add(socket));
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.write(bytes, () => setTimeout(() => sockets.forEach((s) => s.destroy()), 50));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    [Symbol.asyncDispose]: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** One gRPC call over a raw HTTP/2 client: the body bytes, trailers, and how the stream ended. */
async function rawCall(port: number) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": "/t.Test/Many",
      "content-type": "application/grpc",
      "te": "trailers",
    });
    req.end(new Uint8Array([0, 0, 0, 0, 0]));
    let body = 0;
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on("data", (d: Uint8Array) => body += d.length);
    req.on("trailers", (t) => trailers = t);
    const ended = await new Promise<string>((resolve) => {
      req.on("end", () => resolve("end"));
      req.on("error", () => resolve("error"));
      req.on("close", () => resolve(`close ${req.rstCode}`));
    });
    return { body, trailers, ended, rstCode: req.rstCode };
  } finally {
    session.destroy();
  }
}

Deno.test("a backend lost between two gRPC messages: trailers with UNAVAILABLE; lost in the middle of one: RST_STREAM, no status", async () => {
  // one whole 3-byte message, then the connection drops
  {
    await using backend = await dyingBackend(new Uint8Array([0, 0, 0, 0, 3, 1, 2, 3]));
    await using lb = await balancerTo(backend.port);
    const r = await rawCall(lb.port);
    assertEquals(r.body, 8);
    assertEquals(r.trailers?.["grpc-status"], "14", JSON.stringify(r));
    assertEquals(r.trailers?.["grpc-message"], "502 Bad Gateway: the backend failed mid-response");
  }
  // a message announced as 100 bytes, 3 of them sent: a status after it would be misread
  await using backend = await dyingBackend(new Uint8Array([0, 0, 0, 0, 100, 1, 2, 3]));
  await using lb = await balancerTo(backend.port);
  const r = await rawCall(lb.port);
  assertEquals(r.trailers, undefined, JSON.stringify(r));
  assertEquals(r.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
});
