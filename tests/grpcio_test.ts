// gRPC from a second implementation: grpcio (C-core; Debian python3-grpcio) as
// client and server, through unload (h2c and TLS in front, `backend_protocol:
// h2c` behind). The C-core client returns flow-control credit as it consumes
// (a WINDOW_UPDATE per small DATA frame, a 5-byte one per new stream) and pings:
// none of that is an attack, and nothing here may end in GOAWAY.
import { assertEquals } from "@std/assert";
import { startBalancer } from "./_http.ts";
import { runGrpcio, startGrpcioServer } from "./_grpcio.ts";

/** A balancer with h2c on and one route, `grpc`, to the h2c backend on `port`. */
function balancerTo(port: number) {
  return startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${port} }]
`);
}

Deno.test("grpcio harness: every method of the grpcio server answers a grpcio client directly", async () => {
  await using backend = await startGrpcioServer({ name: "b1" });
  const port = backend.port;
  const unary = await runGrpcio({ port, mode: "unary", calls: 3 });
  assertEquals([unary.codes, unary.names, unary.first], [{ OK: 3 }, { b1: 3 }, "b1: hello x"]);
  const stream = await runGrpcio({ port, mode: "stream", messages: 50 });
  assertEquals([stream.ok, stream.messages, stream.last], [1, 50, "message 49"]);
  const sum = await runGrpcio({ port, mode: "sum", messages: 10 });
  assertEquals(sum.first, "55 10");
  const bidi = await runGrpcio({ port, mode: "bidi", messages: 20 });
  assertEquals([bidi.ok, bidi.messages], [1, 20]);
  const hang = await runGrpcio({ port, mode: "hang", deadlineS: 0.3 });
  assertEquals(hang.codes, { DEADLINE_EXCEEDED: 1 });
  await backend.waitFor("cancelled Hang");
  const fail = await runGrpcio({ port, mode: "unary", method: "/t.Test/Fail" });
  assertEquals([fail.codes, fail.details], [{ NOT_FOUND: 1 }, { NOT_FOUND: "no such thing" }]);
  assertEquals((await runGrpcio({ port, mode: "health" })).first, "SERVING");
  await backend.setHealth("NOT_SERVING");
  assertEquals((await runGrpcio({ port, mode: "health" })).first, "NOT_SERVING");
  assertEquals((await runGrpcio({ port, mode: "health", request: "nope" })).codes, {
    NOT_FOUND: 1,
  });
  assertEquals((await backend.stats()).Unary, 3);
});

Deno.test("grpcio through unload over h2c: unary, server, client and bidi streams, health and a cancelled call", async () => {
  await using backend = await startGrpcioServer({ name: "b1" });
  await using lb = await balancerTo(backend.port);
  const port = lb.port;
  const unary = await runGrpcio({ port, mode: "unary", calls: 20 });
  assertEquals([unary.codes, unary.names], [{ OK: 20 }, { b1: 20 }]);
  const stream = await runGrpcio({ port, mode: "stream", messages: 500 });
  assertEquals([stream.codes, stream.messages, stream.last], [{ OK: 1 }, 500, "message 499"]);
  const sum = await runGrpcio({ port, mode: "sum", messages: 200 });
  assertEquals(sum.first, `${200 * 201 / 2} 200`);
  const bidi = await runGrpcio({ port, mode: "bidi", messages: 100 });
  assertEquals([bidi.codes, bidi.messages], [{ OK: 1 }, 100]);
  assertEquals((await runGrpcio({ port, mode: "health" })).first, "SERVING");
  const cancelled = await runGrpcio({ port, mode: "hang", cancelAfterMs: 300 });
  assertEquals(cancelled.codes, { CANCELLED: 1 });
  await backend.waitFor("cancelled Hang"); // the cancel reached the backend through unload
});
