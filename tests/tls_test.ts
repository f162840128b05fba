import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { StartError } from "../src/server/balancer.ts";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { startDnsServer } from "../src/cli/demo/dns_server.ts";
import { installCert, type IssuedCert, makeCa, servedSerial, tlsBackend } from "./_certs.ts";
import {
  captureLogger,
  delay,
  keepAliveBackend,
  RawClient,
  rawServer,
  startBalancer,
  startLoggedBalancer,
  until,
  writeAllText,
} from "./_http.ts";
import { runCli, startLbProcess } from "./_process.ts";
import { createBackend } from "../src/upstream/backend.ts";
import { loadUpstreamTls } from "../src/upstream/tls.ts";
import { probe } from "../src/upstream/health/active.ts";

const dec = new TextDecoder();

// One CA for the whole file; certificates differ by serial.
const ca = await makeCa();
const first = await ca.issue("first", { serial: 0x1001 });
const second = await ca.issue("second", { serial: 0x1002 });
const third = await ca.issue("third", { serial: 0x1003 });

/** Copies `cert` to fresh file names in the CA's dir (what the balancer is pointed at). */
async function liveFiles(name: string, cert: IssuedCert) {
  const files = { cert: `${ca.dir}/${name}.pem`, key: `${ca.dir}/${name}.key` };
  await installCert(cert, files);
  return files;
}

Deno.test("tls terminates HTTPS: curl gets the backend's body and the backend sees X-Forwarded-Proto: https", async () => {
  let seen = "";
  await using b = rawServer(async (conn, read) => {
    seen = dec.decode((await read())!);
    await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure");
  });
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${first.cert}, key: ${first.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  const port = lb.addrs.https!.port;
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--cacert",
      ca.ca,
      "--resolve",
      `app.test:${port}:127.0.0.1`,
      `https://app.test:${port}/x`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(dec.decode(out.stderr), "");
  assertEquals(dec.decode(out.stdout), "secure");
  const lines = seen.toLowerCase().split("\r\n");
  assert(lines.includes("x-forwarded-proto: https"), seen);
  assert(lines.includes("x-forwarded-host: app.test:" + port), seen);
});

Deno.test("tls keeps one client connection alive over TLS for 100 requests (one backend connection too)", async () => {
  await using b = keepAliveBackend("b");
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${first.cert}, key: ${first.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  using c = await RawClient.tls(lb.addrs.https!.port, ca.caPem);
  assertEquals((await (c.conn as Deno.TlsConn).handshake()).alpnProtocol, "http/1.1");
  for (let i = 0; i < 100; i++) assertEquals((await c.get(`/n${i}`)).body, `b /n${i}\n`);
  assertEquals(b.accepted, 1, "backend connections accepted");
});

Deno.test("tls redirect_http answers 308 to the https port with path and query; a reload can turn it off", async () => {
  await using b = keepAliveBackend("b");
  const yaml = (redirect: boolean) => `
listen: { http: 127.0.0.1:0, https: 127.0.0.1:0 }
tls: { cert: ${first.cert}, key: ${first.key}, redirect_http: ${redirect}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`;
  await using lb = await startBalancer(yaml(true));
  const { http, https } = lb.addrs;
  using c = await RawClient.connect(http!.port);
  const res = await c.request(`GET /a/b?q=1 HTTP/1.1\r\nHost: app.test:${http!.port}\r\n\r\n`);
  assertEquals(res.status, 308);
  assertEquals(res.headers.get("location"), `https://app.test:${https!.port}/a/b?q=1`);
  assertEquals(b.accepted, 0, "nothing reached the backend");
  using tls = await RawClient.tls(https!.port, ca.caPem);
  assertEquals((await tls.get("/a")).body, "b /a\n", "https is served, not redirected");
  assertEquals((await lb.reload(parseConfig(yaml(false), "test.yaml"))).ok, true);
  assertEquals(lb.addrs.http!.port, http!.port, "the http listener was kept");
  const res2 = await c.request(`GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n`);
  assertEquals([res2.status, res2.body], [200, "b /a\n"]);
});

Deno.test("tls SIGHUP serves a new certificate to new handshakes; open connections go on; a bad pair is refused", async () => {
  await using b = keepAliveBackend("b");
  const files = await liveFiles("sighup", first);
  await using lb = await startLbProcess(`
listen: { https: 127.0.0.1:$PORT }
tls: { cert: ${files.cert}, key: ${files.key}, watch: false }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  try {
    assertEquals(await servedSerial(lb.port), first.serial);
    const open = await RawClient.tls(lb.port, ca.caPem);
    assertEquals((await open.get("/before")).body, "b /before\n");
    // a key that is not the certificate's: refused, the old certificate stays
    await installCert({ ...second, key: third.key }, files);
    Deno.kill(lb.pid, "SIGHUP");
    await delay(700);
    assertEquals(await servedSerial(lb.port), first.serial);
    await installCert(second, files);
    Deno.kill(lb.pid, "SIGHUP");
    await until("the new serial", async () => (await servedSerial(lb.port)) === second.serial);
    assertEquals((await open.get("/after")).body, "b /after\n", "the open connection still works");
    const fresh = await RawClient.tls(lb.port, ca.caPem);
    assertEquals((await fresh.get("/new")).body, "b /new\n");
    fresh.close();
    open.close();
  } finally {
    const { stderr } = await lb.stop();
    await b.close();
    assertStringIncludes(
      stderr,
      `tls.key ${files.key}: does not match the certificate in tls.cert ${files.cert}`,
    );
    assertStringIncludes(stderr, `now certificate serial ${second.serial}`);
  }
});

Deno.test("tls reloads the certificate when its files change, and keeps the old one when the new files are bad", async () => {
  await using b = keepAliveBackend("b");
  const files = await liveFiles("watched", first);
  await using lb = await startLoggedBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${files.cert}, key: ${files.key} }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${b.port} }] }]
`);
  const { lines } = lb;
  const port = lb.addrs.https!.port;
  using open = await RawClient.tls(port, ca.caPem);
  assertEquals((await open.get("/1")).body, "b /1\n");
  await installCert(second, files);
  await until("the new serial", async () => (await servedSerial(port)) === second.serial);
  await Deno.writeTextFile(
    files.cert,
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
  );
  await until("a rejection", () => Promise.resolve(lines.some((l) => l.startsWith("error"))));
  assertEquals(await servedSerial(port), second.serial);
  assertMatch(
    lines.find((l) => l.startsWith("error"))!,
    new RegExp(`tls.cert ${files.cert}: not a valid PEM certificate`),
  );
  assertEquals((await open.get("/2")).body, "b /2\n", "the open connection still works");
});

Deno.test("tls start fails with exit 2 naming the key file when the key does not match the certificate", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-tls-cli-" });
  await Deno.writeTextFile(
    `${dir}/unload.yaml`,
    `
listen: { https: 127.0.0.1:0 }
tls: { cert: ${first.cert}, key: ${second.key} }
routes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]
`,
  );
  const { code, stderr } = await runCli(["run", "--config", `${dir}/unload.yaml`]);
  await Deno.remove(dir, { recursive: true });
  assertEquals(code, 2);
  assertStringIncludes(
    stderr,
    `unload: cannot start: tls.key ${second.key}: does not match the certificate in tls.cert ${first.cert}`,
  );
});

Deno.test("tls start errors name the file: missing, not PEM, not a certificate", async () => {
  const junk = `${ca.dir}/junk.pem`;
  await Deno.writeTextFile(junk, "hello\n");
  const broken = `${ca.dir}/broken.pem`;
  await Deno.writeTextFile(
    broken,
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  const cases: Array<[string, string, string]> = [
    [`${ca.dir}/missing.pem`, first.key, `tls.cert ${ca.dir}/missing.pem: cannot read:`],
    [first.cert, junk, `tls.key ${junk}: no PEM PRIVATE KEY block found`],
    [broken, first.key, `tls.cert ${broken}: not a valid PEM certificate`],
  ];
  for (const [cert, key, message] of cases) {
    await assertRejects(
      () =>
        startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert}, key: ${key} }
routes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]
`),
      StartError,
      message,
    );
  }
});

Deno.test("tls to backends: routes with tls: true verify the backend's certificate and reuse the connection", async () => {
  await using b = tlsBackend(first);
  const errors: string[] = [];
  const logger = {
    ...captureLogger(),
    access: (r: { error?: string }) => errors.push(r.error ?? ""),
  };
  await using lb = await startBalancer(
    `
listen: { http: 127.0.0.1:0 }
retry: { attempts: 0 }
routes:
  - { name: named, path: /named, tls: true, ca: ${ca.ca}, server_name: app.test, backends: [{ address: 127.0.0.1:${b.port} }] }
  - { name: ip, path: /ip, tls: true, ca: ${ca.ca}, backends: [{ address: 127.0.0.1:${b.port} }] }
  - { name: wrongname, path: /wrong, tls: true, ca: ${ca.ca}, server_name: other.test, backends: [{ address: 127.0.0.1:${b.port} }] }
  - { name: noca, path: /noca, tls: true, backends: [{ address: 127.0.0.1:${b.port} }] }
`,
    { logger },
  );
  using c = await RawClient.connect(lb.addrs.http!.port);
  const get = (path: string) => c.request(`GET ${path} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
  for (let i = 0; i < 5; i++) assertEquals((await get(`/named/${i}`)).body, `tls /named/${i}\n`);
  assertEquals((await get("/ip")).body, "tls /ip\n", "verified against the IP address by default");
  assertEquals(b.accepted, 2, "one connection per pool (named, ip)");
  for (const path of ["/wrong", "/noca"]) {
    const res = await get(path);
    assertEquals(res.status, 502, path);
    assertEquals(res.body, "502 Bad Gateway: no valid response from the backend\n", path);
    assertStringIncludes(errors.at(-1) ?? "", "TLS handshake", "the access log says why");
  }
  assertEquals(lb.pools.size, 4, "routes with different TLS settings get separate pools");
});

Deno.test("tls health probes connect as the pool does: the backend's certificate is verified", async () => {
  await using b = tlsBackend(first);
  try {
    const backend = createBackend({ hostname: "127.0.0.1", port: b.port });
    const trusted = await loadUpstreamTls({ name: "app", ca: ca.ca, server_name: "app.test" });
    const good = await probe({ ...backend, tls: trusted }, { path: "/healthz", timeout: 5000 });
    assertEquals([good.ok, good.status], [true, 200], good.reason);
    const wrong = await loadUpstreamTls({ name: "app", ca: ca.ca, server_name: "other.test" });
    const bad = await probe({ ...backend, tls: wrong }, { path: "/healthz", timeout: 5000 });
    assertEquals(bad.ok, false);
    assertMatch(bad.reason, /^connect: TLS handshake/);
  } finally {
    await b.close();
  }
});

Deno.test("tls to SRV-discovered backends verifies the SRV target name by default", async () => {
  await using b = tlsBackend(await ca.issue("nameonly", { serial: 0x1004, names: ["app.test"] }));
  const ac = new AbortController();
  const dns = await startDnsServer({
    port: 0,
    records: {
      srv: [{ name: "_https._tcp.app.test", target: "app.test", port: b.port }],
      a: [{ name: "app.test", address: "127.0.0.1" }],
    },
    signal: ac.signal,
  });
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
dns: { nameserver: 127.0.0.1:${dns.port} }
retry: { attempts: 0 }
routes:
  - { name: app, srv: _https._tcp.app.test, tls: true, ca: ${ca.ca} }
  - { name: ip, path: /ip, tls: true, ca: ${ca.ca}, backends: [{ address: 127.0.0.1:${b.port} }] }
`);
  using c = await RawClient.connect(lb.addrs.http!.port);
  const res = await c.request("GET /srv HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals([res.status, res.body], [200, "tls /srv\n"]);
  // the same backend by IP: its certificate has no IP address in it
  const byIp = await c.request("GET /ip HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(byIp.status, 502);
  c.close();
  await lb.close();
  ac.abort();
  await dns.closed;
});

Deno.test("tls config: route tls keys are checked; a missing CA file fails the start naming it", async () => {
  const base =
    "listen: { http: 127.0.0.1:0 }\nroutes:\n  - name: app\n    backends: [{ address: 127.0.0.1:9 }]\n";
  const c = parseConfig(
    `${base}    tls: true\n    ca: ca.pem\n    server_name: app.test\n`,
    "t.yaml",
  );
  assertEquals(c.routes[0]!.tls, { ca: "ca.pem", server_name: "app.test" });
  assertEquals(parseConfig(base, "t.yaml").routes[0]!.tls, undefined);
  const bad = (extra: string, message: string) =>
    assertThrows(() => parseConfig(base + extra, "t.yaml"), ConfigError, message);
  bad("    ca: ca.pem\n", "t.yaml:5: routes[0].ca: only applies with tls: true");
  bad("    tls: yes please\n", "routes[0].tls: must be true or false");
  bad(
    "    tls: true\n    server_name: a b\n",
    'routes[0].server_name: must be a DNS name: received "a b"',
  );
  bad("    tls: true\n    sni: x\n", "routes[0].sni: unknown key");
  await assertRejects(
    () => startBalancer(`${base}    tls: true\n    ca: ${ca.dir}/nope.pem\n`),
    StartError,
    `route app: ca ${ca.dir}/nope.pem: cannot read:`,
  );
});

Deno.test("tls test CA cleanup", async () => {
  await ca.remove();
});

/** Runs the certificate recipe of docs/tls.md (its sh block with the CA) in `dir`. */
async function docsRecipe(dir: string): Promise<void> {
  const doc = await Deno.readTextFile(new URL("../docs/tls.md", import.meta.url));
  const block = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
    .find((b) => b.includes("-CAcreateserial"));
  assert(block !== undefined, "docs/tls.md has the CA + leaf recipe");
  const out = await new Deno.Command("bash", {
    args: ["-euc", block],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test("docs/tls.md's certificate recipe works end to end: the HTTPS listener serves it, and a TLS backend serving it is verified against routes[].ca", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-recipe-" });
  try {
    await docsRecipe(dir);
    const certs = `${dir}/certs`;
    await using backend = tlsBackend({
      cert: `${certs}/cert.pem`,
      key: `${certs}/key.pem`,
      serial: "",
    });
    await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${certs}/cert.pem, key: ${certs}/key.pem }
retry: { attempts: 0 }
routes:
  - { name: app, tls: true, ca: ${certs}/ca.pem, server_name: app.test, backends: [{ address: 127.0.0.1:${backend.port} }] }
`);
    using c = await RawClient.tls(lb.addrs.https!.port, await Deno.readTextFile(`${certs}/ca.pem`));
    const res = await c.get("/recipe");
    assertEquals([res.status, res.body], [200, "tls /recipe\n"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a backend serving a self-signed CA:TRUE certificate is refused (CaUsedAsEndEntity): 502 to the client, the reason in the log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-selfsigned-" });
  try {
    const out = await new Deno.Command("openssl", {
      args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        .concat(["-days", "2", "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=app.test"])
        .concat(["-addext", "subjectAltName=DNS:app.test,IP:127.0.0.1"]),
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    await using backend = tlsBackend({
      cert: `${dir}/cert.pem`,
      key: `${dir}/key.pem`,
      serial: "",
    });
    const errors: string[] = [];
    const logger = {
      ...captureLogger(),
      access: (r: { error?: string }) => errors.push(r.error ?? ""),
    };
    await using lb = await startBalancer(
      `
listen: { http: 127.0.0.1:0 }
retry: { attempts: 0 }
routes:
  - { name: app, tls: true, ca: ${dir}/cert.pem, server_name: app.test, backends: [{ address: 127.0.0.1:${backend.port} }] }
`,
      { logger },
    );
    using c = await RawClient.connect(lb.addrs.http!.port);
    const res = await c.get("/x");
    assertEquals(res.status, 502);
    assertStringIncludes(errors[0] ?? "", "CaUsedAsEndEntity");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
