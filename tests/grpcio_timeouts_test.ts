// gRPC failure and timeout semantics through unload with grpcio (C-core; Debian
// python3-grpcio) on both sides, as tests/grpc_timeouts_test.ts does with grpc-js:
// deadlines and cancellation, a backend killed (SIGKILL) mid-call giving UNAVAILABLE,
// per-route timeouts for a late first message, keepalive PINGs on an idle stream.
import { assert, assertEquals } from "@std/assert";
import { startBalancer } from "./_http.ts";
import { runGrpcio, startGrpcioServer } from "./_grpcio.ts";

/** A balancer with h2c on and one h2c route to `port`, with `extra` YAML lines. */
function balancerTo(port: number, options: { top?: string; route?: string } = {}) {
  return startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
${options.top ?? ""}
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${port} }]
${options.route ?? ""}
`);
}

Deno.test("grpcio: deadlines through unload: the backend sees the client's, a route's max_grpc_timeout caps it with DEADLINE_EXCEEDED from unload", async () => {
  await using backend = await startGrpcioServer();
  {
    await using lb = await balancerTo(backend.port);
    // grpc-timeout reaches the backend: it sees a deadline, a little under the client's
    const seen = await runGrpcio({ port: lb.port, mode: "deadline", deadlineS: 30 });
    assertEquals(seen.codes, { OK: 1 });
    const left = Number(seen.first);
    assert(left > 0 && left <= 30, `the backend's deadline: ${seen.first}`);
    // the client's own deadline ends the call, and the cancel reaches the handler
    const hang = await runGrpcio({ port: lb.port, mode: "hang", deadlineS: 0.3 });
    assertEquals(hang.codes, { DEADLINE_EXCEEDED: 1 });
    await backend.waitFor("cancelled Hang", 1);
    // a cancelled server stream is cancelled at the backend too
    const stream = await runGrpcio({
      port: lb.port,
      mode: "stream",
      messages: 1000,
      everyMs: 20,
      cancelAfterMs: 300,
    });
    assertEquals(stream.codes, { CANCELLED: 1 });
    await backend.waitFor("cancelled Many", 1);
  }
  await using capped = await balancerTo(backend.port, {
    route: "    timeouts: { max_grpc_timeout: 1500ms }",
  });
  const hang = await runGrpcio({ port: capped.port, mode: "hang", deadlineS: 60 });
  assertEquals(hang.codes, { DEADLINE_EXCEEDED: 1 });
  assertEquals(
    hang.details.DEADLINE_EXCEEDED,
    "deadline exceeded: timeouts.max_grpc_timeout (below grpc-timeout) elapsed",
  );
  await backend.waitFor("cancelled Hang", 2);
  // a stream that has begun ends with the status in trailers, after its messages
  const stream = await runGrpcio({
    port: capped.port,
    mode: "stream",
    messages: 1000,
    everyMs: 20,
    deadlineS: 60,
  });
  assertEquals(stream.codes, { DEADLINE_EXCEEDED: 1 });
  assert(stream.messages > 0 && stream.messages < 1000, `${stream.messages} messages`);
  await backend.waitFor("cancelled Many", 2);
});

Deno.test("grpcio: a backend killed (SIGKILL) mid-stream gives the client UNAVAILABLE after the messages it sent", async () => {
  await using backend = await startGrpcioServer();
  await using lb = await balancerTo(backend.port);
  const call = runGrpcio({ port: lb.port, mode: "stream", messages: 1000, everyMs: 20 });
  await backend.waitFor("started Many");
  await new Promise((r) => setTimeout(r, 1500)); // some messages went through
  await backend.kill();
  const r = await call;
  assertEquals(r.codes, { UNAVAILABLE: 1 }, JSON.stringify(r.details));
  assertEquals(r.details.UNAVAILABLE, "502 Bad Gateway: the backend failed mid-response");
  assert(r.messages > 0 && r.messages < 1000, `${r.messages} messages`);
});

Deno.test("grpcio: a backend killed (SIGKILL) before answering gives the client UNAVAILABLE", async () => {
  await using backend = await startGrpcioServer();
  await using lb = await balancerTo(backend.port);
  const call = runGrpcio({ port: lb.port, mode: "hang" });
  await backend.waitFor("started Hang");
  await backend.kill();
  const r = await call;
  assertEquals(r.codes, { UNAVAILABLE: 1 }, JSON.stringify(r.details));
  assert(r.details.UNAVAILABLE!.startsWith("502 Bad Gateway: "), r.details.UNAVAILABLE);
});

Deno.test("grpcio: a late first message fails with the default response timeout and passes on a route with timeouts.response: 0", async () => {
  await using backend = await startGrpcioServer({ name: "b1" });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
timeouts: { response: 400ms }
routes:
  - name: long
    host: long.test
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    timeouts: { response: 0 }
  - name: default
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
  const authority = (host: string) => ({ "grpc.default_authority": host });
  const long = await runGrpcio({
    port: lb.port,
    mode: "slow",
    request: "1500",
    options: authority("long.test"),
  });
  assertEquals([long.codes, long.first], [{ OK: 1 }, "b1: slept 1500"]);
  const plain = await runGrpcio({
    port: lb.port,
    mode: "slow",
    request: "1500",
    options: authority("app.test"),
  });
  assertEquals(plain.codes, { UNAVAILABLE: 1 });
  assertEquals(
    plain.details.UNAVAILABLE,
    "504 Gateway Timeout: the backend did not answer in time",
  );
});

Deno.test("grpcio: keepalive PINGs keep an idle bidi stream past timeouts.body_idle; without them it ends with UNAVAILABLE", async () => {
  await using backend = await startGrpcioServer();
  await using lb = await balancerTo(backend.port, { top: "timeouts: { body_idle: 1500ms }" });
  const pinging = await runGrpcio({
    port: lb.port,
    mode: "bidi",
    messages: 2,
    pauseMs: 5000,
    keepaliveMs: 200, // C-core sends them about once a second whatever is asked: within 1.5 s
  });
  assertEquals([pinging.codes, pinging.messages], [{ OK: 1 }, 2], JSON.stringify(pinging.details));
  const quiet = await runGrpcio({ port: lb.port, mode: "bidi", messages: 2, pauseMs: 5000 });
  assertEquals(quiet.codes, { UNAVAILABLE: 1 }, JSON.stringify(quiet.details));
  assertEquals(quiet.details.UNAVAILABLE, "stream idle: nothing moved for timeouts.body_idle");
  assertEquals(quiet.messages, 1);
});
