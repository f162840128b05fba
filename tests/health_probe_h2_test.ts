/**
 * Active probes in the backend's protocol (issue #19): HTTP/2 `GET path` over h2c and
 * over TLS with ALPN h2, and the gRPC health checking protocol against real gRPC
 * servers (grpc-js and grpcio) serving grpc.health.v1.Health/Check.
 */
import { assert, assertEquals, assertMatch } from "@std/assert";
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { probeBackend } from "../src/upstream/health/active.ts";
import type { ProbeSpec } from "../src/upstream/health/checks.ts";
import { loadUpstreamTls } from "../src/upstream/tls.ts";
import { startGrpcServer } from "./_grpc.ts";
import { startGrpcioServer } from "./_grpcio.ts";
import { makeCa } from "./_certs.ts";
import { startH2Origin, tlsFront } from "./_h2_health_origin.ts";
import { healthBackend } from "./_health.ts";

const GRPC: ProbeSpec = { kind: "grpc", service: "" };

function h2Backend(port: number): Backend {
  return { ...createBackend({ hostname: "127.0.0.1", port }), h2: true };
}

Deno.test("gRPC health probe against grpc-js: SERVING passes; NOT_SERVING, UNKNOWN, an unknown service and no answer fail with the reason", async () => {
  await using server = await startGrpcServer();
  const b = h2Backend(server.port);
  const check = (probe: ProbeSpec = GRPC, timeout = 10_000) => probeBackend(b, { probe, timeout });
  let r = await check();
  assert(r.ok, r.reason);
  assertEquals(r.reason, "gRPC health check answered SERVING");
  server.setHealth("NOT_SERVING");
  r = await check();
  assertEquals([r.ok, r.reason], [false, "gRPC health check answered NOT_SERVING"]);
  server.setHealth("UNKNOWN");
  r = await check();
  assertEquals([r.ok, r.reason], [false, "gRPC health check answered UNKNOWN"]);
  server.setHealth("SERVING", "app.Greeter");
  r = await check({ kind: "grpc", service: "app.Greeter" });
  assertEquals([r.ok, r.reason], [true, 'gRPC health check of "app.Greeter" answered SERVING']);
  r = await check({ kind: "grpc", service: "nope" });
  assertEquals(r.ok, false);
  assertEquals(
    r.reason,
    'gRPC health check of "nope" failed: grpc-status 5 NOT_FOUND: unknown service',
  );
  assertEquals(server.checks.get("nope"), 1, "the service name reached the server");
  server.setHealth("HANG");
  r = await check(GRPC, 300);
  assertEquals([r.ok, r.reason], [false, "gRPC health check over h2c: timed out after 300ms"]);
});

Deno.test("gRPC health probe against grpcio: SERVING passes, NOT_SERVING fails, an unknown service is NOT_FOUND", async () => {
  await using server = await startGrpcioServer({ name: "py" });
  const b = h2Backend(server.port);
  let r = await probeBackend(b, { probe: GRPC, timeout: 10_000 });
  assertEquals([r.ok, r.reason], [true, "gRPC health check answered SERVING"]);
  await server.setHealth("NOT_SERVING");
  r = await probeBackend(b, { probe: GRPC, timeout: 10_000 });
  assertEquals([r.ok, r.reason], [false, "gRPC health check answered NOT_SERVING"]);
  r = await probeBackend(b, { probe: { kind: "grpc", service: "nope" }, timeout: 10_000 });
  assertEquals(r.ok, false);
  assertMatch(r.reason, /^gRPC health check of "nope" failed: grpc-status 5 NOT_FOUND/);
  assertEquals((await server.stats()).Check, 3);
});

Deno.test("gRPC health probe over TLS (ALPN h2) to a grpcio TLS server, verified against the route's CA and server_name", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("server", { serial: 21 });
  await using server = await startGrpcioServer({ name: "tls", tls: cert });
  const tls = await loadUpstreamTls({ name: "grpc", ca: ca.ca, server_name: "app.test" });
  const b: Backend = { ...h2Backend(server.port), tls };
  const r = await probeBackend(b, { probe: GRPC, timeout: 10_000 });
  assertEquals([r.ok, r.reason], [true, "gRPC health check answered SERVING"]);
  const wrong = await loadUpstreamTls({ name: "grpc", ca: ca.ca, server_name: "other.test" });
  const bad = await probeBackend({ ...b, tls: wrong }, { probe: GRPC, timeout: 10_000 });
  assertEquals(bad.ok, false);
  assertMatch(bad.reason, /^connect: TLS/);
});

Deno.test("a path probe of an h2c backend is an HTTP/2 GET (prior knowledge); 2xx passes, 503 fails", async () => {
  await using origin = await startH2Origin("o");
  const b = h2Backend(origin.port);
  const probe: ProbeSpec = { kind: "path", path: "/healthz" };
  let r = await probeBackend(b, { probe, timeout: 10_000 });
  assertEquals([r.ok, r.reason], [true, "GET /healthz answered 200 over h2c"]);
  origin.status = 503;
  r = await probeBackend(b, { probe, timeout: 10_000 });
  assertEquals([r.ok, r.status, r.reason], [false, 503, "GET /healthz answered 503 over h2c"]);
  assertEquals(
    origin.probes().map((p) => [p.httpVersion, p.method, p.userAgent]),
    [["2.0", "GET", "unload-health-check"], ["2.0", "GET", "unload-health-check"]],
  );
});

Deno.test("a path probe of an h2 backend is an HTTP/2 GET over TLS with ALPN h2", async () => {
  await using ca = await makeCa();
  const cert = await ca.issue("server", { serial: 22 });
  await using origin = await startH2Origin("o");
  await using front = tlsFront(origin.port, cert);
  const tls = await loadUpstreamTls({ name: "h2", ca: ca.ca, server_name: "app.test" });
  const b: Backend = { ...h2Backend(front.port), tls };
  const r = await probeBackend(b, { probe: { kind: "path", path: "/healthz" }, timeout: 10_000 });
  assertEquals([r.ok, r.reason], [true, "GET /healthz answered 200 over h2"]);
  assertEquals(front.alpn, ["h2"]);
  assertEquals(origin.probes().map((p) => p.httpVersion), ["2.0"]);
});

Deno.test("an HTTP/2 probe of a server that speaks only HTTP/1.1 fails, saying so", async () => {
  await using web = healthBackend("web");
  const r = await probeBackend(h2Backend(web.port), { probe: GRPC, timeout: 10_000 });
  assertEquals(r.ok, false);
  assertMatch(r.reason, /^HTTP\/2: /);
});
