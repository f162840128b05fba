import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { ConfigError, DEFAULTS, parseConfig } from "../src/config/config.ts";

const MINIMAL = `listen:
  http: 127.0.0.1:8080
routes:
  - name: app
    backends: [{ address: 127.0.0.1:9001 }]
`;

/** The errors of an invalid config, each checked to be `file:line: …`. */
function errors(yaml: string): string[] {
  const e = assertThrows(() => parseConfig(yaml, "t.yaml"), ConfigError);
  for (const line of e.errors) assertMatch(line, /^t\.yaml:\d+: \S/);
  assertEquals(e.message, e.errors.join("\n"));
  return e.errors;
}

/** The only error of an invalid config. */
function error(yaml: string): string {
  const all = errors(yaml);
  assertEquals(all.length, 1, all.join("\n"));
  return all[0]!;
}

Deno.test("parseConfig fills every default for a minimal config", () => {
  const c = parseConfig(MINIMAL, "t.yaml");
  assertEquals(c.file, "t.yaml");
  assertEquals(c.listen, { http: { hostname: "127.0.0.1", port: 8080 } });
  assertEquals(c.scheduler, "srv");
  assertEquals(c.workers, 1);
  assertEquals(c.timeouts, DEFAULTS.timeouts);
  assertEquals(c.limits, DEFAULTS.limits);
  assertEquals(c.dns, { refresh: 10_000, family: "auto" });
  assertEquals(c.health, DEFAULTS.health);
  assertEquals(c.retry, { attempts: 1 });
  assertEquals(c.log, { access: "off" });
  assertEquals(c.tls, undefined);
  assertEquals(c.admin, undefined);
  assertEquals(c.routes, [{
    name: "app",
    path: "/",
    scheduler: "srv",
    backend_protocol: "http1",
    backends: [{ address: "127.0.0.1:9001" }],
    health: DEFAULTS.health,
    timeouts: { response: 60_000, body_idle: 60_000, max_stream_duration: 0, max_grpc_timeout: 0 },
  }]);
});

Deno.test("parseConfig reads a full config", () => {
  const c = parseConfig(
    `listen:
  http: 0.0.0.0:80
  https: "[::1]:443"
tls: { cert: c.pem, key: k.pem, redirect_http: true }
dns: { nameserver: 127.0.0.1:5353, refresh: 30s, family: ipv6 }
scheduler: rfc2782
workers: 4
admin: { listen: 127.0.0.1:9090 }
health: { failures: 5, rise: 4, backoff: 1m, path: /healthz, interval: 2s, timeout: 500ms }
retry: { attempts: 3 }
log: { access: stdout }
routes:
  - name: api
    host: API.Example.test
    path: /api
    srv: _http._tcp.api.test
    scheduler: least_conn
  - name: web
    backends:
      - { address: b1.test:9001, priority: 0, weight: 30 }
      - { address: "[::1]:9002", priority: 10, weight: 0 }
`,
    "t.yaml",
  );
  assertEquals(c.listen.https, { hostname: "::1", port: 443 });
  assertEquals(c.tls, {
    certificates: [{ cert: "c.pem", key: "k.pem", at: "tls" }],
    redirect_http: true,
    watch: true,
  });
  assertEquals(c.dns, {
    nameserver: { hostname: "127.0.0.1", port: 5353 },
    refresh: 30_000,
    family: "ipv6",
  });
  assertEquals([c.scheduler, c.workers, c.retry.attempts, c.log.access], [
    "rfc2782",
    4,
    3,
    "stdout",
  ]);
  assertEquals(c.admin, { listen: { hostname: "127.0.0.1", port: 9090 } });
  assertEquals(c.health, {
    failures: 5,
    rise: 4,
    backoff: 60_000,
    path: "/healthz",
    interval: 2_000,
    timeout: 500,
  });
  assertEquals(c.routes[0], {
    name: "api",
    host: "api.example.test",
    path: "/api",
    srv: "_http._tcp.api.test",
    scheduler: "least_conn",
    backend_protocol: "http1",
    health: c.health,
    timeouts: { response: 60_000, body_idle: 60_000, max_stream_duration: 0, max_grpc_timeout: 0 },
  });
  assertEquals(c.routes[1]!.scheduler, "rfc2782", "a route inherits the top-level scheduler");
  assertEquals(c.routes[1]!.backends, [
    { address: "b1.test:9001", priority: 0, weight: 30 },
    { address: "[::1]:9002", priority: 10, weight: 0 },
  ]);
});

Deno.test("parseConfig reads durations in ms, s, m, h and combinations", () => {
  const c = parseConfig(
    MINIMAL +
      "timeouts: { head: 250ms, idle: 1m30s, connect: 2s, response: 1h, body_idle: 1.5s, pool_idle: 0ms, drain: 5m }\n",
    "t.yaml",
  );
  assertEquals(c.timeouts, {
    head: 250,
    idle: 90_000,
    connect: 2_000,
    response: 3_600_000,
    body_idle: 1_500,
    max_stream_duration: 0,
    max_grpc_timeout: 0,
    pool_idle: 0,
    drain: 300_000,
  });
});

Deno.test("parseConfig reads sizes as bytes or with B, KB, KiB, MB, MiB, GB, GiB", () => {
  const c = parseConfig(
    MINIMAL +
      "limits: { max_head: 32KiB, max_request_line: 4096, max_body: 1GB, pool_idle: 8, pool_max: 100 }\n",
    "t.yaml",
  );
  assertEquals(c.limits, {
    max_head: 32 * 1024,
    max_request_line: 4096,
    max_body: 1e9,
    pool_idle: 8,
    pool_max: 100,
    max_concurrent_streams: 100,
  });
  const units = ["10B", "2KB", "2KiB", "3MB", "3MiB", "1GiB"].map((s) =>
    parseConfig(MINIMAL + `limits: { max_body: ${s} }\n`, "t.yaml").limits.max_body
  );
  assertEquals(units, [10, 2000, 2048, 3e6, 3 * 1024 ** 2, 1024 ** 3]);
});

Deno.test('parseConfig accepts workers: "auto" as the number of cores', () => {
  const c = parseConfig(MINIMAL + "workers: auto\n", "t.yaml");
  assert(c.workers >= 1);
});

Deno.test("parseConfig reports a YAML syntax error with its file and line", () => {
  const e = errors(`listen:
  http: 127.0.0.1:8080
routes:
  - name: a
   backends: []
`);
  assertMatch(e[0]!, /^t\.yaml:5: /);
  assert(!e[0]!.endsWith(":"), e[0]);
});

Deno.test("parseConfig reports a duplicate key with the line of the second one", () => {
  assertMatch(error(MINIMAL + "listen: { http: 127.0.0.1:1 }\n"), /^t\.yaml:6: .*unique/);
});

Deno.test("parseConfig reports an unknown top-level key at its line", () => {
  assertMatch(
    error(MINIMAL + "\nbogus: 1\n"),
    /^t\.yaml:7: bogus: unknown key \(expected one of: listen, .*\)$/,
  );
});

Deno.test("parseConfig reports an unknown key of a route at its line", () => {
  assertMatch(
    error(MINIMAL + "    colour: red\n"),
    /^t\.yaml:6: routes\[0\]\.colour: unknown key \(expected one of: name, host, path, srv, backends, scheduler, .*\)$/,
  );
});

Deno.test("parseConfig reports unknown keys in nested sections with their dotted path", () => {
  assertMatch(
    error(MINIMAL + "timeouts:\n  head: 1s\n  tail: 2s\n"),
    /^t\.yaml:8: timeouts\.tail: unknown key/,
  );
  assertMatch(
    error(MINIMAL.replace("9001 }", "9001, zone: a }")),
    /^t\.yaml:5: routes\[0\]\.backends\[0\]\.zone: unknown key/,
  );
});

Deno.test("parseConfig reports a bad address at its line", () => {
  assertEquals(
    error(MINIMAL.replace("127.0.0.1:8080", "localhost")),
    't.yaml:2: listen.http: Address must be host:port or [ipv6]:port (missing port): received "localhost"',
  );
  assertMatch(
    error(MINIMAL.replace("127.0.0.1:9001", "127.0.0.1:99999")),
    /^t\.yaml:5: routes\[0\]\.backends\[0\]\.address: .*port out of range/,
  );
  assertMatch(
    error(MINIMAL.replace("127.0.0.1:9001", "127.0.0.1:0")),
    /^t\.yaml:5: routes\[0\]\.backends\[0\]\.address: port must be 1\.\.65535$/,
  );
  assertMatch(
    error(MINIMAL + "admin: { listen: '::1:80' }\n"),
    /^t\.yaml:6: admin\.listen: .*IPv6 literals need brackets/,
  );
});

Deno.test("parseConfig reports a bad duration at its line", () => {
  for (const d of ["10", "10 s", "ten", "-1s", "1d", '""']) {
    assertMatch(
      error(MINIMAL + `dns:\n  refresh: 1s\ntimeouts:\n  connect: ${d}\n`),
      /^t\.yaml:9: timeouts\.connect: Duration must look like 500ms, 10s, 5m, 1h or 0: received /,
      d,
    );
  }
});

Deno.test("parseConfig reports a bad size and a bad pool count at their lines", () => {
  assertMatch(
    error(MINIMAL + "limits:\n  max_body: 1TB\n"),
    /^t\.yaml:7: limits\.max_body: must be a size/,
  );
  assertMatch(
    error(MINIMAL + "limits:\n  pool_max: 0\n"),
    /^t\.yaml:7: limits\.pool_max: must be an integer 1\.\.1000000$/,
  );
});

Deno.test("parseConfig reports a route with both srv and backends at the route's line", () => {
  assertEquals(
    error(MINIMAL + "    srv: _http._tcp.app.test\n"),
    "t.yaml:4: routes[0]: needs exactly one of srv (a DNS SRV name) or backends (a list)",
  );
});

Deno.test("parseConfig reports a route with neither srv nor backends at the route's line", () => {
  assertMatch(
    errors("listen: { http: 127.0.0.1:1 }\nroutes:\n  - name: a\n  - name: b\n    path: /b\n").join(
      "\n",
    ),
    /^t\.yaml:3: routes\[0\]: needs exactly one of srv.*\nt\.yaml:4: routes\[1\]: needs exactly one of srv/,
  );
});

Deno.test("parseConfig reports a missing listen section", () => {
  assertEquals(
    error("routes:\n  - { name: a, backends: [{ address: 127.0.0.1:1 }] }\n"),
    "t.yaml:1: listen: needs http or https (e.g. http: 127.0.0.1:8080)",
  );
  assertMatch(
    error("listen: {}\n" + MINIMAL.split("\n").slice(2).join("\n")),
    /^t\.yaml:1: listen: needs http or https/,
  );
});

Deno.test("parseConfig reports listen.https without tls at the https line", () => {
  assertEquals(
    error(
      MINIMAL.replace(
        "  http: 127.0.0.1:8080\n",
        "  http: 127.0.0.1:8080\n  https: 127.0.0.1:8443\n",
      ),
    ),
    "t.yaml:3: listen.https: needs a tls section with cert and key",
  );
  assertMatch(
    error(MINIMAL + "tls:\n  cert: c.pem\n"),
    /^t\.yaml:7: tls: needs both cert and key$/,
  );
});

Deno.test("parseConfig reports duplicate route names at the second name's line", () => {
  assertEquals(
    error(MINIMAL + "  - name: app\n    backends: [{ address: 127.0.0.1:9002 }]\n"),
    't.yaml:6: routes[1].name: duplicate route name "app"',
  );
});

Deno.test("parseConfig reports a bad route name and a path not starting with /", () => {
  assertMatch(
    error(MINIMAL.replace("name: app", "name: my app")),
    /^t\.yaml:4: routes\[0\]\.name: use letters/,
  );
  assertMatch(
    error(MINIMAL + "    path: api\n"),
    /^t\.yaml:6: routes\[0\]\.path: must start with "\/"$/,
  );
});

Deno.test("parseConfig reports a bad scheduler name at its line, top-level or per route", () => {
  assertEquals(
    error(MINIMAL + "scheduler: fastest\n"),
    't.yaml:6: scheduler: must be one of srv, rfc2782, round_robin, least_conn, hash: received "fastest"',
  );
  assertMatch(
    error(MINIMAL + "    scheduler: random\n"),
    /^t\.yaml:6: routes\[0\]\.scheduler: must be one of srv, rfc2782, round_robin, least_conn, hash: received "random"$/,
  );
});

Deno.test("parseConfig reports missing, empty or non-list routes", () => {
  assertEquals(
    error("listen: { http: 127.0.0.1:1 }\n"),
    "t.yaml:1: routes: at least one route is needed",
  );
  assertEquals(
    error("listen: { http: 127.0.0.1:1 }\nroutes: []\n"),
    "t.yaml:2: routes: at least one route is needed",
  );
  assertEquals(
    error("listen: { http: 127.0.0.1:1 }\nroutes: app\n"),
    "t.yaml:2: routes: must be a list",
  );
});

Deno.test("parseConfig reports wrongly typed values", () => {
  assertMatch(
    error(MINIMAL + "retry: { attempts: 9 }\n"),
    /^t\.yaml:6: retry\.attempts: must be an integer 0\.\.5$/,
  );
  assertMatch(error(MINIMAL + "workers: 0\n"), /^t\.yaml:6: workers: must be an integer 1\.\.256$/);
  assertMatch(
    error(MINIMAL + "health: { rise: 0 }\n"),
    /^t\.yaml:6: health\.rise: must be an integer 1\.\.1000$/,
  );
  assertMatch(
    error(MINIMAL + "tls: { cert: c, key: k, redirect_http: yes please }\n"),
    /tls\.redirect_http: must be true or false$/,
  );
  assertMatch(error(MINIMAL + "dns: [a]\n"), /^t\.yaml:6: dns: must be a mapping$/);
  assertEquals(
    error(MINIMAL + "dns:\n  refresh: 1s\n  family: inet6\n"),
    't.yaml:8: dns.family: must be one of auto, ipv4, ipv6: received "inet6"',
  );
  assertMatch(
    error(MINIMAL.replace("weight", "x").replace("9001 }", "9001, weight: -1 }")),
    /weight: must be an integer 0\.\.65535$/,
  );
});

Deno.test("parseConfig reports several errors at once, each with its own line", () => {
  const all = errors(`listen:
  http: nope
bogus: 1
timeouts:
  head: 10
routes:
  - name: a
    srv: _x._tcp.a
    backends: [{ address: 127.0.0.1:1 }]
  - name: a
    backends: [{ address: 127.0.0.1:1 }]
    scheduler: fastest
    colour: red
`);
  const byLine = all.map((e) => e.replace(/^t\.yaml:(\d+): ([^:]+):.*$/, "$1 $2")).sort();
  assertEquals(byLine, [
    "10 routes[1].name",
    "12 routes[1].scheduler",
    "13 routes[1].colour",
    "2 listen.http",
    "3 bogus",
    "5 timeouts.head",
    "7 routes[0]",
  ]);
});

Deno.test("parseConfig reads hash_key for scheduler: hash routes, client_ip by default", () => {
  const c = parseConfig(
    MINIMAL + `    scheduler: hash
    hash_key: header:X-User
  - name: cookie
    path: /c
    scheduler: hash
    hash_key: cookie:sid
    backends: [{ address: 127.0.0.1:9001 }]
  - name: inherited
    path: /i
    backends: [{ address: 127.0.0.1:9001 }]
scheduler: hash
`,
    "t.yaml",
  );
  assertEquals(c.routes.map((r) => [r.scheduler, r.hash_key]), [
    ["hash", { kind: "header", name: "x-user" }],
    ["hash", { kind: "cookie", name: "sid" }],
    ["hash", { kind: "client_ip" }],
  ]);
  assertEquals(parseConfig(MINIMAL, "t.yaml").routes[0]!.hash_key, undefined);
});

Deno.test("parseConfig reports hash_key without scheduler: hash, and a bad hash_key, at their line", () => {
  assertEquals(
    error(MINIMAL + "    hash_key: client_ip\n"),
    "t.yaml:6: routes[0].hash_key: only applies with scheduler: hash",
  );
  assertEquals(
    error(MINIMAL + "    scheduler: rfc2782\n    hash_key: cookie:sid\nscheduler: hash\n"),
    "t.yaml:7: routes[0].hash_key: only applies with scheduler: hash",
  );
  assertEquals(
    error(MINIMAL + "    scheduler: hash\n    hash_key: query:user\n"),
    't.yaml:7: routes[0].hash_key: must be client_ip, header:NAME or cookie:NAME: received "query:user"',
  );
  assertEquals(
    error(MINIMAL + '    scheduler: hash\n    hash_key: "header:"\n'),
    't.yaml:7: routes[0].hash_key: must be client_ip, header:NAME or cookie:NAME: received "header:"',
  );
});

Deno.test("parseConfig reload: watch on every second by default; tls.watch follows reload.watch unless set", () => {
  const base =
    "listen: { https: 127.0.0.1:8443 }\nroutes: [{ backends: [{ address: 127.0.0.1:9001 }] }]\n";
  const d = parseConfig(`${base}tls: { cert: c.pem, key: k.pem }\n`, "t.yaml");
  assertEquals([d.reload, d.tls?.watch], [{ watch: true, interval: 1000 }, true]);
  const off = parseConfig(
    `${base}tls: { cert: c.pem, key: k.pem }\nreload: { watch: false, interval: 250ms }\n`,
    "t.yaml",
  );
  assertEquals([off.reload, off.tls?.watch], [{ watch: false, interval: 250 }, false]);
  const tlsOnly = parseConfig(
    `${base}tls: { cert: c.pem, key: k.pem, watch: true }\nreload: { watch: false }\n`,
    "t.yaml",
  );
  assertEquals([tlsOnly.reload.watch, tlsOnly.tls?.watch], [false, true]);
  const bad = assertThrows(
    () =>
      parseConfig(
        `${base}tls: { cert: c.pem, key: k.pem }\nreload: { watch: 1, interval: 1ms, x: 1 }\n`,
        "t.yaml",
      ),
    ConfigError,
  );
  assertEquals(bad.errors, [
    "t.yaml:4: reload.x: unknown key (expected one of: watch, interval)",
    "t.yaml:4: reload.watch: must be true or false",
    "t.yaml:4: reload.interval: must be at least 10ms",
  ]);
});

Deno.test("parseConfig reads backend_protocol: h2 implies tls, h2c refuses it, at their line", () => {
  const c = parseConfig(
    MINIMAL + `    backend_protocol: h2
    ca: ca.pem
  - name: plain
    path: /p
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:9002 }]
`,
    "t.yaml",
  );
  assertEquals(c.routes.map((r) => [r.backend_protocol, r.tls]), [
    ["h2", { ca: "ca.pem" }],
    ["h2c", undefined],
  ]);
  assertEquals(
    error(MINIMAL + "    backend_protocol: h2\n    tls: false\n"),
    "t.yaml:7: routes[0].tls: backend_protocol: h2 is HTTP/2 over TLS: not false",
  );
  assertEquals(
    error(MINIMAL + "    backend_protocol: h2c\n    tls: true\n"),
    "t.yaml:7: routes[0].tls: backend_protocol: h2c is cleartext: use h2 for TLS",
  );
  assertMatch(
    error(MINIMAL + "    backend_protocol: grpc\n"),
    /^t\.yaml:6: routes\[0\]\.backend_protocol: /,
  );
});

Deno.test("importing the config parser leaves process.env alone, and parsing needs no --allow-env", async () => {
  // A fresh process: this file has imported the parser already. It runs with
  // --allow-read only, so a parse that read an environment variable would throw.
  const config = new URL("../src/config/config.ts", import.meta.url).href;
  const script = `import process from "node:process";
const before = Object.getOwnPropertyDescriptor(process, "env");
const { parseConfig } = await import(${JSON.stringify(config)});
const after = Object.getOwnPropertyDescriptor(process, "env");
const same = (d) => d.value === before.value && d.get === before.get && d.set === before.set;
const name = parseConfig(${JSON.stringify(MINIMAL)}, "t.yaml").routes[0].name;
console.log(JSON.stringify({ imported: same(after), parsed: same(Object.getOwnPropertyDescriptor(process, "env")), name }));
`;
  const dir = await Deno.makeTempDir({ prefix: "unload-yaml-env-" });
  try {
    const file = `${dir}/probe.ts`;
    await Deno.writeTextFile(file, script);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        "--allow-read",
        file,
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), {
      imported: true,
      parsed: true,
      name: "app",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig reads routes[].timeouts over the top-level ones, 0 turning one off", () => {
  const c = parseConfig(
    `listen: { http: 127.0.0.1:8080 }
timeouts: { response: 20s, body_idle: 30s, max_grpc_timeout: 1m }
routes:
  - name: stream
    path: /t.Stream/
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:9001 }]
    timeouts: { response: 0, body_idle: 0s, max_stream_duration: 1h, max_grpc_timeout: 0 }
  - name: app
    backends: [{ address: 127.0.0.1:9002 }]
    timeouts: { response: 5s }
`,
    "t.yaml",
  );
  assertEquals(c.timeouts.max_stream_duration, 0, "off unless set");
  assertEquals(c.routes.map((r) => r.timeouts), [
    { response: 0, body_idle: 0, max_stream_duration: 3_600_000, max_grpc_timeout: 0 },
    { response: 5_000, body_idle: 30_000, max_stream_duration: 0, max_grpc_timeout: 60_000 },
  ]);
});

Deno.test("parseConfig refuses unknown or connection-wide keys in routes[].timeouts at their line", () => {
  assertEquals(
    errors(MINIMAL + "    timeouts:\n      response: 1s\n      idle: 5s\n      body_idle: soon\n"),
    [
      "t.yaml:8: routes[0].timeouts.idle: unknown key (expected one of: response, body_idle, max_stream_duration, max_grpc_timeout)",
      't.yaml:9: routes[0].timeouts.body_idle: Duration must look like 500ms, 10s, 5m, 1h or 0: received "soon"',
    ],
  );
  assertMatch(
    error(MINIMAL + "    timeouts: 5s\n"),
    /^t\.yaml:6: routes\[0\]\.timeouts: must be a mapping$/,
  );
});
