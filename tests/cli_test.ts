import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import denoJson from "../deno.json" with { type: "json" };
import { runCli } from "./_process.ts";
import { freePort } from "./_http.ts";

async function withConfig(text: string, fn: (file: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "unload-cli-" });
  const file = `${dir}/unload.yaml`;
  await Deno.writeTextFile(file, text);
  try {
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli --version prints the version from deno.json", async () => {
  const r = await runCli(["--version"]);
  assertEquals([r.code, r.stdout.trim()], [0, `unload ${denoJson.version}`]);
});

Deno.test("cli --help lists every command, and each command has its own help with an example", async () => {
  const r = await runCli(["--help"]);
  assertEquals(r.code, 0);
  assertStringIncludes(r.stdout.split("\n")[0]!, "an HTTP/1.1 and HTTP/2 (gRPC) load balancer");
  for (const c of ["run", "validate", "simulate", "demo"]) {
    assertStringIncludes(r.stdout, `unload ${c}`);
  }
  for (const c of ["run", "validate", "simulate", "demo"]) {
    const h = await runCli([c, "--help"]);
    assertEquals(h.code, 0);
    assertStringIncludes(h.stdout, "Example:");
  }
});

Deno.test("cli validate accepts a good config with exit 0", async () => {
  await withConfig(
    "listen: { http: 127.0.0.1:8080 }\nroutes:\n  - name: app\n    srv: _http._tcp.app.test\n",
    async (file) => {
      const r = await runCli(["validate", "--config", file]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, `${file}: ok (1 route)\n`);
      assertEquals(r.stderr, "", "no warning");
    },
  );
});

Deno.test("cli validate warns that an access log file needs --allow-write for run, and names the flag", async () => {
  await withConfig(
    `listen: { http: 127.0.0.1:${freePort()} }\nlog: { access: /var/log/unload/access.log }\nroutes:\n  - { name: a, srv: _http._tcp.a.test }\n  - { name: b, srv: _http._tcp.b.test }\n`,
    async (file) => {
      const r = await runCli(["validate", "--config", file], { perms: ["--allow-read"] });
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, `${file}: ok (2 routes)\n`);
      assertStringIncludes(r.stderr, "warning: log.access /var/log/unload/access.log is a file");
      assertStringIncludes(r.stderr, "--allow-write=/var/log/unload/access.log");
      // and run, with the flags README gives it, says the same flag
      const run = await runCli(["run", "--config", file]);
      assertEquals(run.code, 2);
      assertStringIncludes(run.stderr, "--allow-write");
    },
  );
});

Deno.test("cli validate names the file and line of every error and exits 2", async () => {
  const text = [
    "listen:",
    "  http: 127.0.0.1:99999", // 2
    "dns: { refresh: 10 }", // 3
    "colour: blue", // 4
    "routes:",
    "  - name: app",
    "    srv: _http._tcp.app.test",
    "    backends: [{ address: 127.0.0.1:9001 }]", // 6-8: both
    "  - name: api",
    "    backends:",
    "      - { address: nohost, weigth: 3 }", // 11
    "timeouts: { connect: 5 seconds }", // 12
  ].join("\n");
  await withConfig(text, async (file) => {
    const r = await runCli(["validate", "--config", file]);
    assertEquals(r.code, 2);
    const lines = r.stderr.trim().split("\n");
    const expect = [
      [`${file}:2: listen.http:`, "port out of range"],
      [`${file}:3: dns.refresh:`, "Duration must look like"],
      [`${file}:4: colour:`, "unknown key"],
      [`${file}:6: routes[0]:`, "exactly one of srv"],
      [`${file}:11: routes[1].backends[0].address:`, "missing port"],
      [`${file}:11: routes[1].backends[0].weigth:`, "unknown key"],
      [`${file}:12: timeouts.connect:`, "Duration must look like"],
    ];
    for (const [prefix, text] of expect) {
      assert(
        lines.some((l) => l.startsWith(prefix!) && l.includes(text!)),
        `expected a line "${prefix} ...${text}..." in:\n${r.stderr}`,
      );
    }
    // in the order of their lines in the file
    const numbers = lines.map((l) => Number(l.slice(file.length + 1).split(":")[0]));
    assertEquals(numbers, [...numbers].sort((a, b) => a - b), r.stderr);
    assertEquals(lines.length, expect.length, r.stderr);
  });
});

Deno.test("cli validate reports YAML syntax errors with their line", async () => {
  await withConfig("listen:\n  http: [127.0.0.1:8080\nroutes: []\n", async (file) => {
    const r = await runCli(["validate", "--config", file]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, new RegExp(`^${file.replaceAll(".", "\\.")}:\\d+: `));
  });
});

Deno.test("cli validate says when the config file cannot be read", async () => {
  const r = await runCli(["validate", "--config", "/nonexistent/unload.yaml"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, "/nonexistent/unload.yaml: cannot read config file");
});

Deno.test("cli run exits 2 without a half-started server when a port is taken", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  await withConfig(
    `listen: { http: 127.0.0.1:${port} }\nroutes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]\n`,
    async (file) => {
      const r = await runCli(["run", "--config", file]);
      assertEquals(r.code, 2);
      assertStringIncludes(r.stderr, `listen.http 127.0.0.1:${port}: address already in use`);
    },
  );
  busy.close();
});

Deno.test("cli simulate prints the seed table's pick order and shares", async () => {
  const r = await runCli(["simulate", "--srv", "b1:0:30,b2:0:20,b3:10:40", "-n", "9"]);
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, "b1 b2 b1 b2 b1 b3 b3 b3 b3");
  const bad = await runCli(["simulate", "--srv", "b1:x:30"]);
  assertEquals(bad.code, 2);
  assertStringIncludes(bad.stderr, 'Invalid --srv entry "b1:x:30"');
});

Deno.test("cli rejects an unknown command with usage and exit 2", async () => {
  const r = await runCli(["frobnicate"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, 'unknown command "frobnicate"');
});

Deno.test("cli validate checks the certificate and CA files a config names", async () => {
  await withConfig(
    [
      "listen: { https: 127.0.0.1:8443 }",
      "tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }",
      "routes:",
      "  - { name: app, backends: [{ address: 127.0.0.1:9001 }], tls: true, ca: /nonexistent/ca.pem }",
    ].join("\n"),
    async (file) => {
      const r = await runCli(["validate", "--config", file]);
      assertEquals(r.code, 2);
      assertStringIncludes(r.stderr, `${file}: tls.cert /nonexistent/cert.pem: cannot read`);
      assertStringIncludes(r.stderr, `${file}: route app: ca /nonexistent/ca.pem: cannot read`);
    },
  );
});

Deno.test("deno task start on a fresh DENO_DIR prints no warning (no build-script notice for the tests' npm packages)", async () => {
  // `deno task` caches every npm package of deno.lock before running a task, the tests'
  // @grpc/grpc-js (and its protobufjs, which declares a postinstall script) included.
  const denoDir = await Deno.makeTempDir({ prefix: "unload-deno-dir-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "start",
      "--listen",
      `127.0.0.1:${freePort()}`,
      "--admin",
      `127.0.0.1:${freePort()}`,
    ],
    cwd: new URL("../", import.meta.url),
    env: { DENO_DIR: denoDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  try {
    const deadline = Date.now() + 120_000; // the first run downloads the npm packages
    while (!stdout.includes("Ctrl-C stops")) {
      const { value, done } = await reader.read();
      if (done || Date.now() > deadline) break;
      stdout += value;
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
  }
  const err = await stderr;
  await Deno.remove(denoDir, { recursive: true });
  assertStringIncludes(stdout, "Ctrl-C stops", err);
  assert(!/warning|build script|lifecycle/i.test(err), err);
  assertStringIncludes(
    err,
    "Download",
    "a fresh DENO_DIR, so the packages were installed just now",
  );
});
