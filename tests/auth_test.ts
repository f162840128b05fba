/**
 * `auth` end to end. `basic`: a password file made by Debian's `htpasswd -B`
 * (apache2-utils) and Caddy's `hash-password`, curl with right, wrong and
 * unknown users, the cache of verified credentials (seen in /metrics), the
 * event loop serving while bcrypt checks queue, the bound on those checks,
 * reload, HTTP/2 and gRPC. `forward`: an auth service written here.
 */
import { configErrors } from "./_config_errors.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import {
  captureLogger,
  forEachHead,
  freePort,
  RawClient,
  type RawServer,
  rawServer,
  recordingBackend,
  startBalancer,
  until,
  writeAllText,
} from "./_http.ts";
import { type LbProcess, runCli, startLbProcess } from "./_process.ts";
import { runGrpcio } from "./_grpcio.ts";
import { createLogger } from "../src/observe/log.ts";

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const err = new TextDecoder().decode(r.stderr);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${err}`);
  return new TextDecoder().decode(r.stdout);
}

async function curl(args: string[]): Promise<string> {
  const r = await new Deno.Command("curl", { args: ["-sS", "--max-time", "30", ...args] })
    .output();
  return new TextDecoder().decode(r.stdout);
}

/** The status code curl gets from ops.test on `port` with `-u user`. */
function opsStatus(port: number, user: string): Promise<string> {
  return curl([
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "-H",
    "Host: ops.test",
    "-u",
    user,
    `http://127.0.0.1:${port}/`,
  ]);
}

async function metrics(lb: LbProcess): Promise<string> {
  return await (await fetch(`http://127.0.0.1:${lb.adminPort}/metrics`)).text();
}

function sample(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

/** `dir/users.htpasswd`, made by the real `htpasswd -B` (cost `cost`), plus a Caddy line. */
async function htpasswdFile(dir: string, cost = 10): Promise<string> {
  const file = `${dir}/users.htpasswd`;
  await run("htpasswd", ["-cbB", "-C", String(cost), file, "ann", "s3cret"]);
  await run("htpasswd", ["-bB", "-C", String(cost), file, "bob", "hunter2"]);
  const caddy = (await run("caddy", ["hash-password", "--plaintext", "pa55"])).trim();
  await Deno.writeTextFile(file, `# made by caddy hash-password\ncarol:${caddy}\n`, {
    append: true,
  });
  return file;
}

const basicConfig = (port: number, file: string) => `
listen: { http: 127.0.0.1:$PORT, h2c: true }
admin: { listen: 127.0.0.1:$ADMIN }
routes:
  - name: ops
    host: ops.test
    backends: [{ address: 127.0.0.1:${port} }]
    auth:
      basic: { realm: "ops area", htpasswd: ${file} }
  - name: open
    host: open.test
    backends: [{ address: 127.0.0.1:${port} }]
`;

Deno.test("auth basic: htpasswd -B and caddy hash-password users pass, wrong and unknown users get 401 with WWW-Authenticate; repeated requests come from the cache (/metrics)", async () => {
  await using backend = recordingBackend();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = await htpasswdFile(dir);
    await using lb = await startLbProcess(basicConfig(backend.port, file));
    const url = `http://127.0.0.1:${lb.port}/x`;
    const ask = (user?: string) =>
      curl([
        "-D",
        "-",
        "-H",
        "Host: ops.test",
        ...(user === undefined ? [] : ["-u", user]),
        url,
      ]);
    const none = await ask();
    assertMatch(none, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assertStringIncludes(none, 'WWW-Authenticate: Basic realm="ops area"');
    assertStringIncludes(none, "401 Unauthorized: authentication required");
    const wrong = await ask("ann:nope");
    assertMatch(wrong, /^HTTP\/1\.1 401 /);
    assertStringIncludes(wrong, "wrong user or password");
    const unknown = await ask("zed:s3cret");
    assertMatch(unknown, /^HTTP\/1\.1 401 /);
    assertStringIncludes(unknown, "wrong user or password", "same answer as a wrong password");
    assertEquals(backend.heads.length, 0, "nothing refused reached the backend");
    assertMatch(await ask("ann:s3cret"), /^HTTP\/1\.1 200 /);
    assertMatch(await ask("bob:hunter2"), /^HTTP\/1\.1 200 /);
    // caddy's $2a$ (cost 14), six requests at once: one bcrypt check between them
    const carol = await Promise.all(Array.from({ length: 6 }, () => ask("carol:pa55")));
    for (const r of carol) assertMatch(r, /^HTTP\/1\.1 200 /);
    assertStringIncludes(backend.heads[0]!, "Authorization: Basic "); // passed on, as nginx does
    for (let i = 0; i < 5; i++) assertMatch(await ask("ann:s3cret"), /^HTTP\/1\.1 200 /);
    let m = "";
    await until("the decisions are counted", async () => {
      m = await metrics(lb);
      return sample(
        m,
        "unload_auth_decisions_total",
        'route="ops",kind="basic",result="cached"',
      ) === 10;
    });
    const count = (result: string) =>
      sample(m, "unload_auth_decisions_total", `route="ops",kind="basic",result="${result}"`);
    assertEquals(count("verified"), 3, "one bcrypt check per user (5 + 5 from the cache)");
    assertEquals(count("refused"), 2);
    assertEquals(count("missing"), 1);
    await until("the 401s are counted", async () => {
      m = await metrics(lb);
      return sample(m, "unload_policy_answers_total", 'route="ops",policy="auth",code="401"') ===
        3;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: bcrypt checks run off the event loop (another route answers while they queue) and past 16 waiting, 503", async () => {
  await using backend = recordingBackend();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "11", file, "ann", "s3cret"]);
    await using lb = await startLbProcess(basicConfig(backend.port, file));
    // 40 guesses, each on its own connection, all sent before the first check can end
    const clients = await Promise.all(
      Array.from({ length: 40 }, () => RawClient.connect(lb.port)),
    );
    try {
      const auth = (i: number) => `Authorization: Basic ${btoa(`ann:guess${i}`)}\r\n`;
      await Promise.all(
        clients.map((c, i) => c.send(`GET / HTTP/1.1\r\nHost: ops.test\r\n${auth(i)}\r\n`)),
      );
      let refusedSoFar = 0;
      const statuses = clients.map((c) =>
        c.read().then((r) => {
          if (r.status === 401) refusedSoFar++;
          return r.status;
        })
      );
      using other = await RawClient.connect(lb.port);
      const open = await other.request("GET / HTTP/1.1\r\nHost: open.test\r\n\r\n");
      assertEquals(open.status, 200);
      // on the event loop, the 16 checks admitted would all have been answered first
      const seen = refusedSoFar;
      assert(seen < 16, `the open route waited for ${seen} bcrypt checks`);
      const all = await Promise.all(statuses);
      const busy = all.filter((s) => s === 503).length;
      const refused = all.filter((s) => s === 401).length;
      assertEquals(busy + refused, 40, all.join(" "));
      assert(refused >= 16 && busy >= 1, `401: ${refused}, 503: ${busy}`);
    } finally {
      for (const c of clients) c[Symbol.dispose]();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: a reload re-reads the htpasswd file (a changed password; the cache of the old one goes)", async () => {
  await using backend = recordingBackend();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "5", file, "ann", "old-pw"]);
    // no watch: the change waits for the SIGHUP
    await using lb = await startLbProcess(
      basicConfig(backend.port, file) + "reload: { watch: false }\n",
    );
    const code = (user: string) => opsStatus(lb.port, user);
    assertEquals(await code("ann:old-pw"), "200");
    assertEquals(await code("ann:old-pw"), "200"); // from the cache now
    await run("htpasswd", ["-bB", "-C", "5", file, "ann", "new-pw"]);
    assertEquals(await code("ann:new-pw"), "401", "the file is read at load, not per request");
    Deno.kill(lb.pid, "SIGHUP");
    await until("the reload", () => lb.stderrSoFar().includes("config reloaded"));
    assertEquals(await code("ann:old-pw"), "401");
    assertEquals(await code("ann:new-pw"), "200");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: with reload.watch, a changed htpasswd file is applied by itself", async () => {
  await using backend = recordingBackend();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "5", file, "ann", "old-pw"]);
    await using lb = await startLbProcess(
      basicConfig(backend.port, file) + "reload: { watch: true, interval: 100ms }\n",
    );
    const code = (user: string) => opsStatus(lb.port, user);
    assertEquals(await code("ann:old-pw"), "200");
    await run("htpasswd", ["-bB", "-C", "5", file, "bob", "b0b"]);
    await until("bob is let in", async () => await code("bob:b0b") === "200");
    assertStringIncludes(lb.stderrSoFar(), "config reloaded");
    assertEquals(await code("ann:old-pw"), "200");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: a missing htpasswd file, a line that is no bcrypt one and a bad realm are file:line errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "4", file, "ann", "x"]);
    await run("htpasswd", ["-bm", file, "bob", "y"]); // MD5 ($apr1$): refused
    const yaml = `listen: { http: 127.0.0.1:0 }
routes:
  - name: a
    backends: [{ address: 127.0.0.1:9 }]
    auth: { basic: { realm: ops, htpasswd: ${file} } }
  - name: b
    backends: [{ address: 127.0.0.1:9 }]
    auth: { basic: { realm: "a\\"b", htpasswd: ${dir}/nope } }
  - name: c
    backends: [{ address: 127.0.0.1:9 }]
    auth: { basic: { realm: ops, htpasswd: ${file} }, forward: { url: "http://a/" } }
`;
    const { has } = configErrors(yaml);
    has(`${file}:2: user bob:`, "not a bcrypt hash");
    has("unload.yaml:8: routes[1].auth.basic.realm:", "cannot hold a quote");
    has("unload.yaml:8: routes[1].auth.basic.htpasswd:", `cannot read ${dir}/nope`);
    has("unload.yaml:11: routes[2].auth:", "needs exactly one of basic or forward");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: HTTP/2 clients (curl) and gRPC clients (grpcio, UNAUTHENTICATED) are asked too", async () => {
  await using backend = recordingBackend();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "5", file, "ann", "s3cret"]);
    await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes:
  - name: grpc
    host: 127.0.0.1
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend.port} }]
    auth: { basic: { realm: ops, htpasswd: ${file} } }
  - name: ops
    backends: [{ address: 127.0.0.1:${backend.port} }]
    auth: { basic: { realm: ops, htpasswd: ${file} } }
`);
    const base = `http://localhost:${lb.port}/`;
    const refused = await curl(["--http2-prior-knowledge", "-D", "-", base]);
    assertMatch(refused, /^HTTP\/2 401/);
    assertStringIncludes(refused, 'www-authenticate: Basic realm="ops"');
    const ok = await curl(["--http2-prior-knowledge", "-D", "-", "-u", "ann:s3cret", base]);
    assertMatch(ok, /^HTTP\/2 200/);
    const s = await runGrpcio({ target: `127.0.0.1:${lb.port}`, mode: "unary", calls: 1 });
    assertEquals(s.codes, { UNAUTHENTICATED: 1 });
    assertStringIncludes(s.details.UNAUTHENTICATED ?? "", "401 Unauthorized");
    assertEquals(backend.heads.length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth basic: `main.ts explain` says whether the -H Authorization credentials are valid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const file = `${dir}/users.htpasswd`;
    await run("htpasswd", ["-cbB", "-C", "5", file, "ann", "s3cret"]);
    const config = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      config,
      `listen: { http: 127.0.0.1:0 }
routes:
  - name: ops
    backends: [{ address: 127.0.0.1:9 }]
    auth: { basic: { realm: ops, htpasswd: ${file} } }
`,
    );
    const as = (creds: string) =>
      runCli([
        "explain",
        "--config",
        config,
        "-H",
        `Authorization: Basic ${btoa(creds)}`,
        "GET",
        "http://app.test/",
      ]);
    const good = await as("ann:s3cret");
    assertEquals(good.code, 0, good.stderr);
    assertStringIncludes(good.stdout, "auth: user ann: valid credentials: passes");
    assertStringIncludes(good.stdout, "backend: 127.0.0.1:9");
    const bad = await as("ann:nope");
    assertStringIncludes(bad.stdout, "auth: user ann: unknown user or wrong password: 401");
    assertStringIncludes(bad.stdout, "answer: 401 Unauthorized by auth");
    assertStringIncludes(bad.stdout, 'WWW-Authenticate: Basic realm="ops"');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const LOGIN_PAGE = '<html><a href="https://sso.test/login">log in</a></html>\n';

/**
 * A forward auth service on raw sockets: `Bearer good` gets 200 with X-User (and an X-Other
 * not copied), `Bearer slow` no answer at all, anything else a 302 to the SSO login with a
 * Set-Cookie and a chunked HTML body.
 */
function authService(): RawServer & { heads: string[] } {
  const heads: string[] = [];
  const server = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      heads.push(head);
      if (/^authorization: bearer slow/im.test(head)) return Promise.resolve(true);
      if (/^authorization: bearer good/im.test(head)) {
        return writeAllText(
          conn,
          "HTTP/1.1 200 OK\r\nX-User: ann\r\nX-Other: no\r\ncontent-length: 2\r\n\r\nok",
        );
      }
      const uri = /X-Forwarded-Uri: (.*)/.exec(head)?.[1] ?? "";
      const half = LOGIN_PAGE.length >> 1;
      const hex = (n: number) => n.toString(16);
      return writeAllText(
        conn,
        `HTTP/1.1 302 Found\r\nLocation: https://sso.test/login?rd=${uri}\r\n` +
          "Set-Cookie: csrf=abc; Path=/\r\nContent-Type: text/html\r\n" +
          "Transfer-Encoding: chunked\r\n\r\n" +
          `${hex(half)}\r\n${LOGIN_PAGE.slice(0, half)}\r\n` +
          `${hex(LOGIN_PAGE.length - half)}\r\n${LOGIN_PAGE.slice(half)}\r\n0\r\n\r\n`,
      );
    })
  );
  return Object.assign(server, { heads });
}

const forwardConfig = (backend: number, auth: number) => `
listen: { http: 127.0.0.1:0, h2c: true }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: app
    host: app.test
    backends: [{ address: 127.0.0.1:${backend} }]
    auth:
      forward: { url: "http://127.0.0.1:${auth}/check", copy_headers: [X-User], timeout: 500ms }
  - name: down
    host: down.test
    backends: [{ address: 127.0.0.1:${backend} }]
    auth: { forward: { url: "http://127.0.0.1:${freePort()}/check" } }
  - name: grpc
    host: 127.0.0.1
    backend_protocol: h2c
    backends: [{ address: 127.0.0.1:${backend} }]
    auth: { forward: { url: "http://127.0.0.1:${auth}/check" } }
`;

Deno.test("auth forward: a 2xx lets the request through with copy_headers (a forged one removed); the service gets GET, the fields and X-Forwarded-*, no body", async () => {
  await using backend = recordingBackend();
  await using auth = authService();
  await using lb = await startBalancer(forwardConfig(backend.port, auth.port));
  const out = await curl([
    "-D",
    "-",
    "-H",
    "Host: app.test",
    "-H",
    "Authorization: Bearer good",
    "-H",
    "X-User: eve",
    "-d",
    "payload",
    `http://127.0.0.1:${lb.port}/app/x?y=1`,
  ]);
  assertMatch(out, /^HTTP\/1\.1 200 /);
  const asked = auth.heads[0]!.split("\r\n");
  assertEquals(asked[0], "GET /check HTTP/1.1");
  for (
    const line of [
      `Host: 127.0.0.1:${auth.port}`,
      "Authorization: Bearer good",
      "X-Forwarded-Method: POST",
      "X-Forwarded-Uri: /app/x?y=1",
      "X-Forwarded-Host: app.test",
      "X-Forwarded-Proto: http",
      "X-Forwarded-For: 127.0.0.1",
    ]
  ) assert(asked.includes(line), `${line} not in:\n${auth.heads[0]}`);
  assert(!/content-length|transfer-encoding/i.test(auth.heads[0]!), "no body goes to the service");
  assertEquals(auth.received, auth.heads[0]!.length + 4, "nothing after the head");
  const got = backend.heads[0]!.split("\r\n");
  assertEquals(got[0], "POST /app/x?y=1 HTTP/1.1");
  assert(got.includes("X-User: ann"), backend.heads[0]);
  assert(!got.some((l) => /^x-user: eve/i.test(l) || /^x-other/i.test(l)), backend.heads[0]);
});

Deno.test("auth forward: any other answer reaches the client as the service sent it (302 to the SSO login, its Set-Cookie and body), over HTTP/1.1 and HTTP/2", async () => {
  await using backend = recordingBackend();
  await using auth = authService();
  await using lb = await startBalancer(forwardConfig(backend.port, auth.port));
  using c = await RawClient.connect(lb.port);
  const res = await c.request("GET /private?a=b HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(res.status, 302);
  assertEquals(res.headers.get("location"), "https://sso.test/login?rd=/private?a=b");
  assertEquals(res.headers.get("set-cookie"), "csrf=abc; Path=/");
  assertEquals(res.headers.get("content-type"), "text/html");
  assertEquals(res.headers.get("content-length"), String(LOGIN_PAGE.length));
  assertEquals(res.headers.get("transfer-encoding"), undefined);
  assertEquals(res.body, LOGIN_PAGE);
  const again = await c.request("GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(again.status, 302, "the client connection goes on");
  const h2 = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "Host: app.test",
    `http://127.0.0.1:${lb.port}/p`,
  ]);
  assertMatch(h2, /^HTTP\/2 302/);
  assertStringIncludes(h2, "location: https://sso.test/login?rd=/p");
  assert(h2.endsWith(LOGIN_PAGE), h2);
  const ok = await curl([
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "Host: app.test",
    "-H",
    "Authorization: Bearer good",
    `http://127.0.0.1:${lb.port}/p`,
  ]);
  assertMatch(ok, /^HTTP\/2 200/);
  assertEquals(backend.heads.length, 1, "only the allowed request reached the backend");
});

Deno.test("auth forward: many requests share one kept-alive connection to the service; timeout 504, unreachable 503, counted in /metrics and the access log", async () => {
  await using backend = recordingBackend();
  await using auth = authService();
  const records: { policy?: string; status: number; route: string }[] = [];
  const base = createLogger({ access: "off", quiet: true });
  const captured = captureLogger();
  const logger = {
    ...captured,
    access: (r: Parameters<typeof base.access>[0]) =>
      void records.push(JSON.parse(JSON.stringify(r))),
  };
  await using lb = await startBalancer(forwardConfig(backend.port, auth.port), { logger });
  for (let i = 0; i < 10; i++) {
    // a new client connection each time: the service's connection is the balancer's own
    using c = await RawClient.connect(lb.port);
    const r = await c.request(
      `GET /${i} HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer ${
        i % 2 ? "good" : "other"
      }\r\n\r\n`,
    );
    assertEquals(r.status, i % 2 ? 200 : 302);
  }
  assertEquals(auth.heads.length, 10);
  assertEquals(auth.accepted, 1, "one connection to the service for 10 requests");
  using c = await RawClient.connect(lb.port);
  const slow = await c.request(
    "GET / HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer slow\r\n\r\n",
  );
  assertEquals(slow.status, 504);
  const down = await c.request("GET / HTTP/1.1\r\nHost: down.test\r\n\r\n");
  assertEquals(down.status, 503);
  const ok = await c.request(
    "GET / HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer good\r\n\r\n",
  );
  assertEquals(ok.status, 200, "after a timeout, a new connection");
  assertEquals(auth.accepted, 2);
  const admin = `http://127.0.0.1:${lb.addrs.admin!.port}`;
  let m = "";
  await until("the decisions are counted", async () => {
    m = await (await fetch(`${admin}/metrics`)).text();
    return m.includes('policy="auth",code="503"');
  });
  const n = (labels: string) => sample(m, "unload_auth_decisions_total", labels);
  assertEquals(n('route="app",kind="forward",result="allowed"'), 6);
  assertEquals(n('route="app",kind="forward",result="denied"'), 5);
  assertEquals(n('route="app",kind="forward",result="timeout"'), 1);
  assertEquals(n('route="down",kind="forward",result="unreachable"'), 1);
  assertEquals(
    sample(m, "unload_policy_answers_total", 'route="app",policy="auth",code="302"'),
    5,
  );
  assertEquals(
    sample(m, "unload_policy_answers_total", 'route="app",policy="auth",code="504"'),
    1,
  );
  await until("the access log", () => records.length >= 13);
  const logged = records.filter((r) => r.policy === "auth").map((r) => `${r.route} ${r.status}`);
  assertEquals(logged.filter((l) => l === "app 302").length, 5);
  assert(logged.includes("app 504") && logged.includes("down 503"), logged.join(", "));
  const lines = captured.lines.join("\n");
  assertStringIncludes(lines, "did not answer within 500ms");
});

Deno.test("auth forward: a gRPC client the service refuses gets UNAUTHENTICATED (grpcio)", async () => {
  await using backend = recordingBackend();
  await using auth = authService();
  await using lb = await startBalancer(forwardConfig(backend.port, auth.port));
  const s = await runGrpcio({ target: `127.0.0.1:${lb.port}`, mode: "unary", calls: 1 });
  assertEquals(s.codes, { UNAUTHENTICATED: 1 });
  assertEquals(backend.heads.length, 0);
  assertStringIncludes(auth.heads[0]!, "X-Forwarded-Uri: /t.Test/Unary");
});

Deno.test("auth forward: `main.ts explain` says it would ask the service, and asks nothing; config mistakes are file:line errors", async () => {
  await using auth = authService();
  const dir = await Deno.makeTempDir({ prefix: "unload-auth-" });
  try {
    const config = `${dir}/unload.yaml`;
    await Deno.writeTextFile(
      config,
      `listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:9 }]
    auth: { forward: { url: "http://127.0.0.1:${auth.port}/check", copy_headers: [X-User] } }
`,
    );
    const r = await runCli(["explain", "--config", config, "GET", "http://app.test/x"]);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(
      r.stdout,
      `auth: would ask http://127.0.0.1:${auth.port}/check (explain sends nothing)`,
    );
    assertStringIncludes(r.stdout, "backend: 127.0.0.1:9");
    assertEquals(auth.accepted, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const { has } = configErrors(`listen: { http: 127.0.0.1:0 }
routes:
  - name: a
    backends: [{ address: 127.0.0.1:9 }]
    auth: { forward: { url: "https://auth/check", copy_headers: [Content-Length], timeout: soon } }
`);
  has("unload.yaml:5: routes[0].auth.forward.url:", "must be http://host[:port][/path]");
  has("unload.yaml:5: routes[0].auth.forward.copy_headers[0]:", "cannot be copied");
  has("unload.yaml:5: routes[0].auth.forward.timeout:", "");
});
