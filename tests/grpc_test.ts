// gRPC through the balancer, end to end with @grpc/grpc-js on both sides: the
// client speaks h2c (or h2 over TLS) to unload, unload speaks HTTP/2 to the
// backends (`backend_protocol: h2c | h2`). Unary, server, client and
// bidirectional streaming, error statuses carried in trailers, cancellation
// reaching the backend, and the balancer's own errors as gRPC statuses.
import { assert, assertEquals } from "@std/assert";
import * as grpc from "npm:@grpc/grpc-js@1.14.3";
import { Buffer } from "node:buffer";
import { startBalancer } from "./_http.ts";
import { makeCa } from "./_certs.ts";
import { FAIL_DETAILS, SERVICE, startGrpcServer } from "./_grpc.ts";

const Client = grpc.makeGenericClientConstructor(SERVICE, "Test");
type AnyClient = InstanceType<typeof Client> & Record<string, CallableFunction>;

/**
 * TLS in front of an h2c backend: accepts TLS with ALPN h2 and pipes the bytes
 * to `port` (grpc-js's own TLS server does not run under Deno's node:tls).
 */
function tlsFront(port: number, files: { cert: string; key: string }) {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(files.cert),
    key: Deno.readTextFileSync(files.key),
    alpnProtocols: ["h2"],
  });
  const conns = new Set<Deno.Conn>();
  const accepting = (async () => {
    for await (const tls of listener) {
      const plain = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(tls).add(plain);
      const close = () => [tls, plain].forEach((c) => ignore(() => c.close()));
      tls.readable.pipeTo(plain.writable).catch(close);
      plain.readable.pipeTo(tls.writable).catch(close);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) ignore(() => c.close());
      await accepting;
    },
  };
}

function ignore(f: () => void): void {
  try {
    f();
  } catch { /* closed already */ }
}

/** A client of the balancer's h2c port; `using` closes it. */
function client(port: number): AnyClient & Disposable {
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as AnyClient;
  return Object.assign(c, { [Symbol.dispose]: () => c.close() });
}

function unary(c: AnyClient, name: string, text: string): Promise<string> {
  return new Promise((resolve, reject) =>
    c[name]!(
      Buffer.from(text),
      (e: grpc.ServiceError | null, v: Buffer) => e ? reject(e) : resolve(v.toString()),
    )
  );
}

/** A balancer with h2c on and `routes` (YAML list items). */
async function balancerFor(routes: string) {
  return await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
timeouts: { response: 10s }
routes:
${routes}`);
}

/** A balancer with h2c on and one route, `grpc`, to the h2c backend on `port`. */
function balancerTo(port: number) {
  return balancerFor(`  - name: grpc
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${port} }]
`);
}

Deno.test("gRPC unary, server streaming, client streaming and bidi streaming pass through unload to an h2c backend", async () => {
  await using backend = await startGrpcServer({ name: "b1" });
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  assertEquals(await unary(c, "Unary", "world"), "b1: hello world");

  const many: string[] = await new Promise((resolve, reject) => {
    const got: string[] = [];
    const call = c.Many!(Buffer.from("")) as grpc.ClientReadableStream<Buffer>;
    call.on("data", (d: Buffer) => got.push(d.toString()));
    call.on("end", () => resolve(got));
    call.on("error", reject);
  });
  assertEquals(many.length, 5000);
  assertEquals([many[0], many[4999]], ["message 0", "message 4999"]);

  const sum: string = await new Promise((resolve, reject) => {
    const call = c.Sum!((e: grpc.ServiceError | null, v: Buffer) =>
      e ? reject(e) : resolve(v.toString())
    ) as grpc.ClientWritableStream<Buffer>;
    for (let i = 1; i <= 2000; i++) call.write(Buffer.from(String(i)));
    call.end();
  });
  assertEquals(sum, String(2000 * 2001 / 2));

  // bidirectional: each message is answered before the next is sent (nothing buffers)
  const echoed = await new Promise<number>((resolve, reject) => {
    const call = c.Echo!() as grpc.ClientDuplexStream<Buffer, Buffer>;
    let n = 0;
    call.on("data", (d: Buffer) => {
      if (d.toString() !== `ping ${n}`) reject(new Error(`got ${d} for ping ${n}`));
      n++;
      if (n === 1000) call.end();
      else call.write(Buffer.from(`ping ${n}`));
    });
    call.on("end", () => resolve(n));
    call.on("error", reject);
    call.write(Buffer.from("ping 0"));
  });
  assertEquals(echoed, 1000);
});

Deno.test("a gRPC error status from the backend reaches the client in trailers, not as an HTTP error", async () => {
  await using backend = await startGrpcServer({ name: "b1" });
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  const e = await unary(c, "Fail", "x").then(() => undefined, (e) => e as grpc.ServiceError);
  assert(e !== undefined, "the call failed");
  assertEquals([e.code, e.details], [grpc.status.NOT_FOUND, FAIL_DETAILS]);
  assertEquals(lb.metrics.route("grpc")!.codes(`127.0.0.1:${backend.port}`)[2], 1, "a 200");
});

Deno.test("a gRPC client that cancels a call cancels the backend's stream", async () => {
  await using backend = await startGrpcServer({ name: "b1" });
  await using lb = await balancerTo(backend.port);
  using c = client(lb.port);
  const done = new Promise<grpc.ServiceError>((resolve) => {
    const call = c.Hang!(
      Buffer.from("x"),
      (e: grpc.ServiceError) => resolve(e),
    ) as grpc.ClientUnaryCall;
    backend.hangStarted.then(() => call.cancel());
  });
  assertEquals((await done).code, grpc.status.CANCELLED);
  await backend.hangCancelled; // the handler saw its call cancelled
});

Deno.test("the balancer's own errors reach a gRPC client as gRPC statuses: no route is UNIMPLEMENTED, a refusing backend UNAVAILABLE", async () => {
  await using lb = await balancerFor(`  - name: grpc
    path: /t.Test/Unary
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:1 }]
`);
  using c = client(lb.port);
  const failure = (name: string) =>
    unary(c, name, "x").then(() => undefined, (e) => e as grpc.ServiceError);
  const refused = await failure("Unary");
  assert(refused !== undefined);
  assertEquals(refused.code, grpc.status.UNAVAILABLE);
  // a generic text: the backend's address and the OS error are for the log only
  assertEquals(refused.details, "502 Bad Gateway: no valid response from the backend");
  const unrouted = await failure("Fail");
  assert(unrouted !== undefined);
  assertEquals(unrouted.code, grpc.status.UNIMPLEMENTED);
  assert(unrouted.details.startsWith("404 Not Found: no route for "), unrouted.details);
});

Deno.test("gRPC streams of one client connection are scheduled across h2c backends by weight", async () => {
  await using b1 = await startGrpcServer({ name: "b1" });
  await using b2 = await startGrpcServer({ name: "b2" });
  await using lb = await balancerFor(`  - name: grpc
    backend_protocol: h2c
    scheduler: srv
    backends:
      - { address: 127.0.0.1:${b1.port}, weight: 2 }
      - { address: 127.0.0.1:${b2.port}, weight: 1 }
`);
  using c = client(lb.port);
  const who: string[] = [];
  for (let i = 0; i < 6; i++) who.push((await unary(c, "Unary", "x")).split(":")[0]!);
  assertEquals(who, ["b1", "b2", "b1", "b1", "b2", "b1"]);
});

Deno.test("gRPC over TLS both ways: ALPN h2 from the client, backend_protocol: h2 to a TLS backend", async () => {
  await using ca = await makeCa();
  const server = await ca.issue("server", { serial: 11 });
  await using plain = await startGrpcServer({ name: "tls" });
  await using backend = tlsFront(plain.port, server);
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${server.cert}, key: ${server.key} }
routes:
  - name: grpc
    backend_protocol: h2
    ca: ${ca.ca}
    server_name: app.test
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
  const credentials = grpc.credentials.createSsl(Buffer.from(ca.caPem));
  const c = new Client(`127.0.0.1:${lb.addrs.https!.port}`, credentials, {
    "grpc.ssl_target_name_override": "app.test",
  }) as AnyClient;
  try {
    assertEquals(await unary(c, "Unary", "over tls"), "tls: hello over tls");
  } finally {
    c.close();
  }
});
