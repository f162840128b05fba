/**
 * The `tcp:` section of the config file and the CLI around it: what is read, the
 * defaults, every mistake as `file:line: path: message`, `validate`'s summary, and a
 * start that cannot bind exiting non-zero with a clear message.
 */
import { assertEquals, assertMatch, assertStringIncludes, assertThrows } from "@std/assert";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { runCli } from "./_process.ts";

function errors(yaml: string): string[] {
  const e = assertThrows(() => parseConfig(yaml, "t.yaml"), ConfigError);
  for (const line of e.errors) assertMatch(line, /^t\.yaml:\d+: \S/);
  return e.errors;
}

Deno.test("tcp config: a route reads its listen, discovery, scheduler, timeouts, retries and health, with defaults from the top", () => {
  const c = parseConfig(
    `
scheduler: least_conn
retry: { attempts: 2 }
timeouts: { connect: 2s }
health: { path: /healthz, failures: 5 }
tcp:
  - { name: pg, listen: 0.0.0.0:5432, srv: _postgresql._tcp.db.test }
  - name: kv
    listen: 127.0.0.1:6380
    scheduler: hash
    retries: 0
    timeouts: { idle: 30s, connect: 500ms }
    health: { tcp: true, interval: 1s }
    backends: [{ address: 127.0.0.1:6379, weight: 3 }]
`,
    "t.yaml",
  );
  assertEquals(c.routes, []);
  const [pg, kv] = c.tcp;
  assertEquals(pg!.listen, { hostname: "0.0.0.0", port: 5432 });
  assertEquals(pg!.srv, "_postgresql._tcp.db.test");
  assertEquals([pg!.scheduler, pg!.retries, pg!.timeouts], ["least_conn", 2, {
    connect: 2000,
    idle: 600_000,
  }]);
  // the top-level HTTP probe is not a TCP route's: passive health only, its failures kept
  assertEquals([pg!.health.path, pg!.health.tcp, pg!.health.failures], [undefined, undefined, 5]);
  assertEquals([kv!.scheduler, kv!.hash_key, kv!.retries], ["hash", { kind: "client_ip" }, 0]);
  assertEquals(kv!.timeouts, { connect: 500, idle: 30_000 });
  assertEquals([kv!.health.tcp, kv!.health.interval], [true, 1000]);
  assertEquals(kv!.backends, [{ address: "127.0.0.1:6379", weight: 3 }]);
});

Deno.test("tcp config: mistakes are reported with their file and line", () => {
  assertEquals(
    errors(`
listen: { http: 127.0.0.1:8080 }
routes: [{ name: web, backends: [{ address: 127.0.0.1:9000 }] }]
tcp:
  - { name: web, listen: 127.0.0.1:8080, backends: [{ address: 127.0.0.1:1 }] }
  - { name: a, listen: 127.0.0.1:7000, srv: _x._tcp.test, backends: [{ address: 127.0.0.1:1 }] }
  - { name: b, listen: 127.0.0.1:7000, backends: [{ address: 127.0.0.1:1 }] }
  - { name: c, listen: 127.0.0.1:7001, scheduler: hash, hash_key: "header:x-user", backends: [{ address: 127.0.0.1:1 }] }
  - { name: d, listen: 127.0.0.1:7002, health: { path: /healthz }, backends: [{ address: 127.0.0.1:1 }] }
  - { name: e, backends: [{ address: 127.0.0.1:1 }], colour: blue }
`),
    [
      't.yaml:5: tcp[0].name: duplicate route name "web" (an HTTP route has it)',
      "t.yaml:5: tcp[0].listen: 127.0.0.1:8080 is listen.http's already",
      "t.yaml:6: tcp[1]: needs exactly one of srv (a DNS SRV name) or backends (a list)",
      't.yaml:7: tcp[2].listen: 127.0.0.1:7000 has a default route already, tcp route "a" (routes sharing a listen address are chosen by sni: and at most one goes without)',
      't.yaml:8: tcp[3].hash_key: a tcp route hashes on client_ip only: received "header:x-user"',
      "t.yaml:9: tcp[4].health.path: a tcp route's backends are checked by connecting: use tcp: true",
      "t.yaml:10: tcp[5].colour: unknown key (expected one of: name, listen, srv, backends, scheduler, hash_key, health, timeouts, retries, sni, tls, backend_tls, ca, server_name, client_cert)",
      "t.yaml:10: tcp[5]: needs listen (host:port)",
    ],
  );
});

Deno.test("tcp config: sni routes share a listen address with one default; tls terminates on an address of its own", () => {
  const c = parseConfig(
    `
tcp:
  - { name: a, listen: 127.0.0.1:8443, sni: A.Test, backends: [{ address: 127.0.0.1:1 }] }
  - { name: wild, listen: 127.0.0.1:8443, sni: "*.example.com", backends: [{ address: 127.0.0.1:2 }] }
  - { name: other, listen: 127.0.0.1:8443, backends: [{ address: 127.0.0.1:3 }] }
  - { name: r, listen: 127.0.0.1:6380, tls: { cert: r.pem, key: r.key }, backends: [{ address: 127.0.0.1:4 }] }
`,
    "t.yaml",
  );
  assertEquals(c.tcp.map((r) => [r.name, r.sni, r.tls]), [
    ["a", "a.test", undefined],
    ["wild", "*.example.com", undefined],
    ["other", undefined, undefined],
    ["r", undefined, { cert: "r.pem", key: "r.key" }],
  ]);
  assertEquals(
    errors(`
tcp:
  - { name: a, listen: 127.0.0.1:8443, sni: a.test, backends: [{ address: 127.0.0.1:1 }] }
  - { name: b, listen: 127.0.0.1:8443, backends: [{ address: 127.0.0.1:1 }] }
  - { name: c, listen: 127.0.0.1:8443, backends: [{ address: 127.0.0.1:1 }] }
  - { name: d, listen: 127.0.0.1:8443, sni: A.test, backends: [{ address: 127.0.0.1:1 }] }
  - { name: e, listen: 127.0.0.1:8443, tls: { cert: e.pem, key: e.key }, backends: [{ address: 127.0.0.1:1 }] }
  - { name: f, listen: 127.0.0.1:9443, sni: "a.*.test", backends: [{ address: 127.0.0.1:1 }] }
  - { name: g, listen: 127.0.0.1:9444, sni: g.test, tls: { cert: g.pem, key: g.key }, backends: [{ address: 127.0.0.1:1 }] }
  - { name: h, listen: 127.0.0.1:9445, tls: { cert: h.pem }, backends: [{ address: 127.0.0.1:1 }] }
`),
    [
      't.yaml:5: tcp[2].listen: 127.0.0.1:8443 has a default route already, tcp route "b" (routes sharing a listen address are chosen by sni: and at most one goes without)',
      't.yaml:6: tcp[3].sni: "a.test" on 127.0.0.1:8443 is tcp route "a"\'s already',
      't.yaml:7: tcp[4].tls: terminates TLS on its own listen address: 127.0.0.1:8443 is shared with tcp route "a"',
      't.yaml:8: tcp[5].sni: "a.*.test" is not a server name (a DNS name such as db.example.com, or *.example.com)',
      "t.yaml:9: tcp[6].tls: a route either passes TLS through by name (sni) or terminates it (tls), not both",
      "t.yaml:10: tcp[7].tls: needs both cert and key",
    ],
  );
});

Deno.test("tcp config: health tcp: true is a connect check for HTTP routes too, exclusive with path", () => {
  const c = parseConfig(
    "listen: { http: 127.0.0.1:0 }\nhealth: { tcp: true }\nroutes: [{ name: a, backends: [{ address: 127.0.0.1:1 }] }]\n",
    "t.yaml",
  );
  assertEquals([c.routes[0]!.health.tcp, c.routes[0]!.health.path], [true, undefined]);
  assertEquals(
    errors(
      "listen: { http: 127.0.0.1:0 }\nhealth: { tcp: true, path: /h }\nroutes: [{ name: a, backends: [{ address: 127.0.0.1:1 }] }]\n",
    ),
    ["t.yaml:2: health.tcp: tcp: true probes by connecting: leave out path and grpc"],
  );
});

Deno.test("tcp config: main.ts validate lists the tcp routes; a port in use makes run exit non-zero with its route and address", async () => {
  const dir = await Deno.makeTempDir();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      file,
      `tcp:\n  - { name: kv, listen: 127.0.0.1:${taken.addr.port}, scheduler: least_conn, backends: [{ address: 127.0.0.1:6379 }] }\n`,
    );
    const v = await runCli(["validate", "--config", file]);
    assertEquals(v.code, 0, v.stderr);
    assertEquals(
      v.stdout,
      `${file}: ok (0 routes, 1 tcp route)\n  tcp kv: 127.0.0.1:${taken.addr.port} → 127.0.0.1:6379 (least_conn)\n`,
    );
    const run = await runCli(["run", "--config", file]);
    assertEquals(run.code, 2);
    assertStringIncludes(
      run.stderr,
      `unload: cannot start: tcp route kv: listen 127.0.0.1:${taken.addr.port}: address already in use`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tcp config: main.ts validate says which routes pass TLS through by name, terminate it, or reach their backends over TLS", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      file,
      `tcp:
  - { name: a, listen: 127.0.0.1:8443, sni: a.test, backends: [{ address: 127.0.0.1:1443 }] }
  - { name: r, listen: 127.0.0.1:6380, tls: { cert: r.pem, key: r.key }, backend_tls: true, backends: [{ address: 127.0.0.1:6379 }] }
`,
    );
    const v = await runCli(["validate", "--config", file]);
    assertEquals(v.code, 0, v.stderr);
    assertEquals(
      v.stdout,
      `${file}: ok (0 routes, 2 tcp routes)\n` +
        "  tcp a: 127.0.0.1:8443 → 127.0.0.1:1443 (srv, sni a.test)\n" +
        "  tcp r: 127.0.0.1:6380 → 127.0.0.1:6379 (srv, tls terminated, tls to backends)\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
