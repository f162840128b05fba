/**
 * `auth` end to end. `basic`: a password file made by Debian's `htpasswd -B`
 * (apache2-utils) and Caddy's `hash-password`, curl with right, wrong and
 * unknown users, the cache of verified credentials (seen in /metrics), the
 * event loop serving while bcrypt checks queue, the bound on those checks,
 * reload, HTTP/2 and gRPC. `forward`: an auth service written here.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import {
  delay,
  forEachHead,
  RawClient,
  type RawServer,
  rawServer,
  startBalancer,
  writeAllText,
} from "./_http.ts";
import { type LbProcess, runCli, startLbProcess } from "./_process.ts";
import { runGrpcio } from "./_grpcio.ts";
import { type ConfigError, parseConfig } from "../src/config/config.ts";

/** A backend that keeps every request head it gets. */
function recordingBackend(): RawServer & { heads: string[] } {
  const heads: string[] = [];
  const server = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      heads.push(head);
      return writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
    })
  );
  return Object.assign(server, { heads });
}

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

/** Waits (bounded) until `check` holds; throws with `what` when it never does. */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await delay(50);
  }
  throw new Error(`never happened: ${what}`);
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
    assertMatch(await ask("carol:pa55"), /^HTTP\/1\.1 200 /); // caddy's $2a$
    assertStringIncludes(backend.heads[0]!, "Authorization: Basic "); // passed on, as nginx does
    for (let i = 0; i < 5; i++) assertMatch(await ask("ann:s3cret"), /^HTTP\/1\.1 200 /);
    let m = "";
    await until("the decisions are counted", async () => {
      m = await metrics(lb);
      return sample(
        m,
        "unload_auth_decisions_total",
        'route="ops",kind="basic",result="cached"',
      ) ===
        5;
    });
    const count = (result: string) =>
      sample(m, "unload_auth_decisions_total", `route="ops",kind="basic",result="${result}"`);
    assertEquals(count("verified"), 3, "one bcrypt check per user");
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
    await using lb = await startLbProcess(basicConfig(backend.port, file));
    const code = (user: string) =>
      curl([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: ops.test",
        "-u",
        user,
        `http://127.0.0.1:${lb.port}/`,
      ]);
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
    let errors: string[] = [];
    try {
      parseConfig(yaml, "unload.yaml");
    } catch (e) {
      errors = (e as ConfigError).errors;
    }
    const has = (prefix: string, text: string) =>
      assert(errors.some((e) => e.startsWith(prefix) && e.includes(text)), errors.join("\n"));
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
