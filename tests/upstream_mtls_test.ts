/**
 * Client certificates to backends (`routes[].client_cert`, mTLS): a real nginx
 * with `ssl_verify_client on` trusting the test CA answers with the subject of
 * the certificate it verified, over HTTP/1.1 and HTTP/2; without a certificate
 * nginx answers its own 400. The pair is checked at load (file:line errors) and
 * reloaded when its files change.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { installCert, makeCa } from "./_certs.ts";
import { delay, startBalancer, startLoggedBalancer } from "./_http.ts";
import { startNginx } from "./_nginx.ts";
import { runCli } from "./_process.ts";
import { ConfigError, parseConfig } from "../src/config/config.ts";

const ca = await makeCa();
const server = await ca.issue("nginx", { serial: 0x51, names: ["backend.test", "127.0.0.1"] });
const client = await ca.issue("client", { serial: 0xc1, names: ["client.test"], client: true });
const client2 = await ca.issue("client2", { serial: 0xc2, names: ["client2.test"], client: true });

/** nginx over TLS (HTTP/1.1 and HTTP/2) that requires a client certificate signed by the CA. */
function mtlsNginx() {
  return startNginx((port) => `
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${server.cert};
    ssl_certificate_key ${server.key};
    ssl_client_certificate ${ca.ca};
    ssl_verify_client on;
    client_max_body_size 16m;
    location = /big/big.bin {
      root ${ca.dir};
    }
    location / {
      add_header x-client-dn $ssl_client_s_dn always;
      add_header x-protocol $server_protocol always;
      return 200 "verified $ssl_client_s_dn\\n";
    }
  }`);
}

/** One plain-HTTP request to the balancer: status, x-client-dn, x-protocol and body. */
async function get(port: number, path = "/") {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const body = await res.text();
  return [
    res.status,
    res.headers.get("x-client-dn"),
    res.headers.get("x-protocol"),
    body.trim(),
  ];
}

function route(name: string, nginxPort: number, extra: string): string {
  return `  - { name: ${name}, path: /${name}, backends: [{ address: 127.0.0.1:${nginxPort} }], tls: true, ca: ${ca.ca}, server_name: backend.test${extra} }`;
}

Deno.test("client_cert: nginx with ssl_verify_client on sees the route's client certificate over HTTP/1.1 and HTTP/2; a route without one gets nginx's 400; the backend's certificate is still verified", async () => {
  await using nginx = await mtlsNginx();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
${route("h1", nginx.port, `, client_cert: { cert: ${client.cert}, key: ${client.key} }`)}
${
    route(
      "h2",
      nginx.port,
      `, backend_protocol: h2, client_cert: { cert: ${client.cert}, key: ${client.key} }`,
    )
  }
${route("none", nginx.port, "")}
  - { name: untrusted, path: /untrusted, backends: [{ address: 127.0.0.1:${nginx.port} }], tls: true, server_name: backend.test, client_cert: { cert: ${client.cert}, key: ${client.key} } }
`);
  assertEquals(await get(lb.port, "/h1"), [
    200,
    "CN=client.test",
    "HTTP/1.1",
    "verified CN=client.test",
  ]);
  assertEquals(await get(lb.port, "/h2"), [
    200,
    "CN=client.test",
    "HTTP/2.0",
    "verified CN=client.test",
  ]);
  const [status, , , body] = await get(lb.port, "/none");
  assertEquals(status, 400);
  assertStringIncludes(body as string, "No required SSL certificate was sent");
  // the backend's certificate is still verified: without the route's ca it is not trusted
  assertEquals((await get(lb.port, "/untrusted"))[0], 502);
  // the pooled connection is reused and still carries the certificate
  for (let i = 0; i < 3; i++) assertEquals((await get(lb.port, "/h1"))[1], "CN=client.test");
});

Deno.test("client_cert: a 4 MiB response and a 4 MiB upload cross the client-certificate connection whole, and the route serves the next request", async () => {
  const big = crypto.getRandomValues(new Uint8Array(4 << 20).subarray(0, 65536));
  const bytes = new Uint8Array(4 << 20);
  for (let i = 0; i < bytes.length; i += big.length) bytes.set(big, i);
  await Deno.mkdir(`${ca.dir}/big`, { recursive: true });
  await Deno.writeFile(`${ca.dir}/big/big.bin`, bytes);
  await using nginx = await mtlsNginx();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
${route("big", nginx.port, `, client_cert: { cert: ${client.cert}, key: ${client.key} }`)}
`);
  const res = await fetch(`http://127.0.0.1:${lb.port}/big/big.bin`);
  assertEquals(res.status, 200);
  const got = new Uint8Array(await res.arrayBuffer());
  assertEquals(got.length, bytes.length);
  assert(got.every((b, i) => b === bytes[i]), "the bytes differ");
  const up = await fetch(`http://127.0.0.1:${lb.port}/big/upload`, { method: "POST", body: bytes });
  assertEquals([up.status, (await up.text()).trim()], [200, "verified CN=client.test"]);
  assertEquals((await get(lb.port, "/big/after"))[1], "CN=client.test");
});

Deno.test("client_cert: active health probes present the route's certificate too (200 from nginx), where a route without one gets 400", async () => {
  await using nginx = await mtlsNginx();
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
health: { path: /healthz, interval: 50ms, timeout: 5s, failures: 1 }
routes:
${route("m", nginx.port, `, client_cert: { cert: ${client.cert}, key: ${client.key} }`)}
${route("none", nginx.port, "")}
`);
  const backend = (name: string) => lb.routes.find((r) => r.name === name)!.scheduler.backends[0]!;
  await until(() =>
    Promise.resolve(
      lb.lastProbe(backend("none")) !== undefined && lb.lastProbe(backend("m")) !== undefined,
    )
  );
  const probes = ["m", "none"].map((n) => {
    const p = lb.lastProbe(backend(n))!;
    return [n, p.ok, p.reason];
  });
  assertEquals(probes.map(([n, ok]) => [n, ok]), [["m", true], ["none", false]]);
  assertStringIncludes(String(probes[0]![2]), "200");
  assertStringIncludes(String(probes[1]![2]), "400");
});

Deno.test("client_cert: a changed pair is used for new connections; a bad file refuses the reload naming file:line and path, and the running pair keeps working", async () => {
  await using nginx = await mtlsNginx();
  const files = { cert: `${ca.dir}/live-client.pem`, key: `${ca.dir}/live-client.key` };
  await installCert(client, files);
  await using lb = await startLoggedBalancer(`
listen: { http: 127.0.0.1:0 }
reload: { interval: 100ms }
routes:
${route("app", nginx.port, `, client_cert: { cert: ${files.cert}, key: ${files.key} }`)}
`);
  {
    assertEquals((await get(lb.port, "/app"))[1], "CN=client.test");
    await installCert(client2, files);
    await until(async () => (await get(lb.port, "/app"))[1] === "CN=client2.test");

    await Deno.writeTextFile(files.key, "not a key\n");
    await until(() => Promise.resolve(lb.lines.some((l) => l.startsWith("error"))));
    const rejected = lb.lines.find((l) => l.startsWith("error"))!;
    assertStringIncludes(
      rejected,
      `test.yaml:5: routes[0].client_cert.key ${files.key}: no PEM PRIVATE KEY block found`,
    );
    assertEquals((await get(lb.port, "/app"))[1], "CN=client2.test");
  }
});

Deno.test("client_cert config: only with tls: true, not with proxy_protocol, both files needed, a key that is not the certificate's stops the start at its line", async () => {
  const error = (yaml: string) => {
    try {
      parseConfig(yaml, "t.yaml");
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return "no error";
  };
  assertStringIncludes(
    error(`listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:1 }]
    client_cert: { cert: c.pem, key: c.key }
`),
    "t.yaml:5: routes[0].client_cert: only applies with tls: true",
  );
  assertStringIncludes(
    error(`listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:1 }]
    tls: true
    client_cert: { cert: c.pem }
`),
    "t.yaml:6: routes[0].client_cert: needs both cert and key",
  );
  assertStringIncludes(
    error(`listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:1 }]
    tls: true
    proxy_protocol: v2
    client_cert: { cert: c.pem, key: c.key }
`),
    "t.yaml:7: routes[0].client_cert: cannot be combined with proxy_protocol",
  );
  const started = await startBalancer(`
listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:1 }]
    tls: true
    client_cert: { cert: ${client.cert}, key: ${client2.key} }
`).then(async (lb) => {
      await lb.close();
      return "started";
    }, (e: Error) => e.message);
  assertEquals(
    started,
    `test.yaml:7: routes[0].client_cert.key ${client2.key}: does not match the certificate in ` +
      `routes[0].client_cert.cert ${client.cert}`,
  );
});

Deno.test("client_cert: unload validate reports a key that is not the certificate's at its config line, and run exits 2 with the same line", async () => {
  const file = `${ca.dir}/validate.yaml`;
  await Deno.writeTextFile(
    file,
    `listen: { http: 127.0.0.1:0 }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:1 }]
    tls: true
    client_cert: { cert: ${client.cert}, key: ${client2.key} }
`,
  );
  const line = `${file}:6: routes[0].client_cert.key ${client2.key}: does not match the ` +
    `certificate in routes[0].client_cert.cert ${client.cert}`;
  const validated = await runCli(["validate", "--config", file]);
  assertEquals([validated.code, validated.stderr.trim()], [2, line]);
  const ran = await runCli(["run", "--config", file]);
  assertEquals(ran.code, 2);
  assertStringIncludes(ran.stderr, line);
});

async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await delay(100)) {
    if (await check().catch(() => false)) return;
  }
  assert(false, "timed out waiting");
}

Deno.test("client_cert test CA cleanup", async () => {
  await ca.remove();
});
