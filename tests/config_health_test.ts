/**
 * `routes[].health` (issue #19): a route's keys laid over the top-level `health`,
 * the gRPC check, turning active checks off, and errors at their line.
 */
import { assertEquals, assertMatch, assertThrows } from "@std/assert";
import { ConfigError, DEFAULTS, parseConfig } from "../src/config/config.ts";

function parse(yaml: string) {
  return parseConfig(yaml, "t.yaml");
}

function errors(yaml: string): string[] {
  return assertThrows(() => parse(yaml), ConfigError).errors;
}

const TOP = `listen: { http: 127.0.0.1:8080 }
health: { path: /healthz, interval: 2s, failures: 4 }
routes:
`;

Deno.test("config: a route without health takes the top-level section; one with health overrides only its keys", () => {
  const c = parse(
    TOP + `  - name: web
    backends: [{ address: 127.0.0.1:9001 }]
  - name: slow
    path: /slow
    health: { interval: 10s, rise: 5 }
    backends: [{ address: 127.0.0.1:9002 }]
`,
  );
  const web = c.routes[0]!.health;
  const slow = c.routes[1]!.health;
  assertEquals(web, { ...DEFAULTS.health, path: "/healthz", interval: 2_000, failures: 4 });
  assertEquals(slow, { ...web, interval: 10_000, rise: 5 });
});

Deno.test("config: grpc: true on an HTTP/2 route replaces the top-level path; grpc_service is kept", () => {
  const c = parse(
    TOP + `  - name: grpc
    backend_protocol: h2c
    health: { grpc: true, grpc_service: app.Greeter, timeout: 1s }
    backends: [{ address: 127.0.0.1:9001 }]
`,
  );
  assertEquals(c.routes[0]!.health, {
    ...DEFAULTS.health,
    interval: 2_000,
    failures: 4,
    timeout: 1_000,
    grpc: true,
    grpc_service: "app.Greeter",
  });
});

Deno.test("config: active: false turns a route's active checks off (passive keys still apply); a route path replaces a top-level grpc", () => {
  const c = parse(`listen: { http: 127.0.0.1:8080 }
health: { grpc: true }
routes:
  - name: off
    backend_protocol: h2c
    health: { active: false, failures: 7 }
    backends: [{ address: 127.0.0.1:9001 }]
  - name: web
    health: { path: /ping }
    backends: [{ address: 127.0.0.1:9002 }]
  - name: grpc
    backend_protocol: h2
    backends: [{ address: 127.0.0.1:9003 }]
`);
  assertEquals(c.routes[0]!.health, { ...DEFAULTS.health, failures: 7 });
  assertEquals(c.routes[1]!.health, { ...DEFAULTS.health, path: "/ping" });
  assertEquals(c.routes[2]!.health, { ...DEFAULTS.health, grpc: true });
});

Deno.test("config: routes[].health errors name the file, line and key", () => {
  const route = (health: string, protocol = "h2c") =>
    TOP + `  - name: r
    backend_protocol: ${protocol}
    backends: [{ address: 127.0.0.1:9001 }]
    health: ${health}
`;
  assertMatch(
    errors(route("{ colour: red }"))[0]!,
    /^t\.yaml:7: routes\[0\]\.health\.colour: unknown key \(expected one of: failures, rise, backoff, path, interval, timeout, grpc, grpc_service, tcp, active\)$/,
  );
  assertEquals(errors(route("{ grpc: true }", "http1")), [
    "t.yaml:7: routes[0].health.grpc: a gRPC health check needs backend_protocol: h2c or h2 (gRPC is HTTP/2)",
  ]);
  assertEquals(errors(route("{ grpc_service: a }")), [
    "t.yaml:7: routes[0].health.grpc_service: needs grpc: true",
  ]);
  assertEquals(errors(route("{ path: /a, grpc: true }")), [
    "t.yaml:7: routes[0].health.grpc: grpc: true probes Health/Check: leave out path",
  ]);
  assertEquals(errors(route("{ path: healthz }")), [
    't.yaml:7: routes[0].health.path: must be a path like /healthz: received "healthz"',
  ]);
  assertEquals(errors(route("{ interval: 0s }")), [
    "t.yaml:7: routes[0].health.interval: must be more than 0ms",
  ]);
  assertEquals(errors(route("{ rise: 0 }")), [
    "t.yaml:7: routes[0].health.rise: must be an integer 1..1000",
  ]);
});

Deno.test("config: a top-level grpc: true is an error at every HTTP/1.1 route that does not override it", () => {
  assertEquals(
    errors(`listen: { http: 127.0.0.1:8080 }
health: { grpc: true }
routes:
  - name: web
    backend_protocol: http1
    backends: [{ address: 127.0.0.1:9001 }]
  - name: web2
    health: { active: false }
    backends: [{ address: 127.0.0.1:9002 }]
`),
    [
      "t.yaml:5: routes[0]: a gRPC health check needs backend_protocol: h2c or h2 (gRPC is HTTP/2)",
    ],
  );
  assertEquals(
    errors(`listen: { http: 127.0.0.1:8080 }
health: { active: true }
routes: [{ name: a, backends: [{ address: 127.0.0.1:9001 }] }]
`),
    ["t.yaml:2: health.active: needs path, grpc: true or tcp: true (what to probe)"],
  );
});
