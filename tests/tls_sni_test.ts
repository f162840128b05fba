/**
 * Several certificates on one HTTPS listener (`tls.certificates`), chosen by the
 * name the client asks for (SNI): what `openssl s_client` and curl see, reloads
 * of one pair at a time, and what `/status`, `/metrics` and the example alert say.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { installCert, type IssuedCert, makeCa, openssl } from "./_certs.ts";
import {
  captureLogger,
  keepAliveBackend,
  startBalancer,
  startLoggedBalancer,
  until,
} from "./_http.ts";
import { TlsAcceptor } from "../src/server/tls_acceptor.ts";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import type { Status } from "../src/admin/status.ts";
import { findChromium, launchChromium } from "./_chromium.ts";

const dec = new TextDecoder();
const ca = await makeCa();
// a.test is first: the default for no SNI and for names no certificate has
const a = await ca.issue("a", { serial: 0xa1, names: ["a.test"] });
const b = await ca.issue("b", { serial: 0xb1, names: ["b.test"] });
const wild = await ca.issue("wild", { serial: 0xc1, names: ["*.wild.test"] });
const x = await ca.issue("x", { serial: 0xd1, names: ["x.wild.test"] });
const b2 = await ca.issue("b2", { serial: 0xb2, names: ["b.test"] });
const wild2 = await ca.issue("wild2", { serial: 0xc2, names: ["*.wild.test"] });

/** What `openssl s_client` sees on `port`: the served certificate's subject and serial. */
async function served(port: number, serverName: string | null) {
  const sni = serverName === null ? "-noservername" : `-servername ${serverName}`;
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `openssl s_client -connect 127.0.0.1:${port} ${sni} </dev/null 2>/dev/null` +
      ` | openssl x509 -noout -subject -serial -nameopt RFC2253`,
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = dec.decode(out.stdout);
  const subject = /subject=(.*)/.exec(text)?.[1]?.trim() ?? "none";
  const serial = /serial=([0-9A-F]+)/i.exec(text)?.[1]?.replace(/^0+(?=.)/, "") ?? "none";
  return { subject, serial: serial.toUpperCase() };
}

/** Copies `cert` to fresh names in the CA's dir: the files the balancer is pointed at. */
async function live(name: string, cert: IssuedCert) {
  const files = { cert: `${ca.dir}/live-${name}.pem`, key: `${ca.dir}/live-${name}.key` };
  await installCert(cert, files);
  return files;
}

function certificatesYaml(pairs: Array<{ cert: string; key: string }>): string {
  return pairs.map((p) => `    - { cert: ${p.cert}, key: ${p.key} }`).join("\n");
}

Deno.test("tls.certificates: openssl s_client gets the certificate for its server name, exact before wildcard, the first for no SNI or an unknown name", async () => {
  await using backend = keepAliveBackend("app");
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls:
  watch: false
  certificates:
${certificatesYaml([a, b, wild, x])}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const port = lb.addrs.https!.port;
  const seen: Record<string, string> = {};
  for (const name of ["a.test", "b.test", "x.wild.test", "y.wild.test", "B.Test", "unknown.test"]) {
    seen[name] = (await served(port, name)).subject;
  }
  seen["(none)"] = (await served(port, null)).subject;
  assertEquals(seen, {
    "a.test": "CN=a.test",
    "b.test": "CN=b.test",
    "x.wild.test": "CN=x.wild.test", // its own certificate beats *.wild.test
    "y.wild.test": "CN=*.wild.test",
    "B.Test": "CN=b.test",
    "unknown.test": "CN=a.test",
    "(none)": "CN=a.test",
  });
});

Deno.test("tls.certificates: curl --resolve verifies each name's certificate against the CA and gets 200 over HTTP/1.1 and HTTP/2", async () => {
  await using backend = keepAliveBackend("app");
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls:
  watch: false
  certificates:
${certificatesYaml([a, b, wild])}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const port = lb.addrs.https!.port;
  const got: string[] = [];
  for (const host of ["a.test", "b.test", "deep.wild.test"]) {
    for (const version of ["--http1.1", "--http2"]) {
      const out = await new Deno.Command("curl", {
        args: [
          "-sS",
          "-v",
          version,
          "--cacert",
          ca.ca,
          "--resolve",
          `${host}:${port}:127.0.0.1`,
          "-w",
          "%{http_code} %{http_version}",
          "-o",
          "/dev/null",
          `https://${host}:${port}/x`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const subject = /subject: (.*)/.exec(dec.decode(out.stderr))?.[1]?.trim();
      got.push(`${host} ${dec.decode(out.stdout)} ${subject}`);
    }
  }
  assertEquals(got, [
    "a.test 200 1.1 CN=a.test",
    "a.test 200 2 CN=a.test",
    "b.test 200 1.1 CN=b.test",
    "b.test 200 2 CN=b.test",
    "deep.wild.test 200 1.1 CN=*.wild.test",
    "deep.wild.test 200 2 CN=*.wild.test",
  ]);
});

Deno.test("tls.certificates: a pair whose file turns to garbage is refused naming the path; it and the others keep serving, and a good change to another pair is taken alone", async () => {
  await using backend = keepAliveBackend("app");
  const files = [await live("a", a), await live("b", b), await live("wild", wild)];
  await using lb = await startLoggedBalancer(`
listen: { https: 127.0.0.1:0 }
reload: { interval: 100ms }
tls:
  certificates:
${certificatesYaml(files)}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const port = lb.addrs.https!.port;
  const serials = async () => [
    (await served(port, "a.test")).serial,
    (await served(port, "b.test")).serial,
    (await served(port, "y.wild.test")).serial,
  ];
  assertEquals(await serials(), [a.serial, b.serial, wild.serial]);

  await Deno.writeTextFile(files[1]!.cert, "garbage, not a certificate\n");
  await until("a rejection", () => Promise.resolve(lb.lines.some((l) => l.startsWith("error"))));
  const rejected = lb.lines.find((l) => l.startsWith("error"))!;
  assertStringIncludes(
    rejected,
    `tls.certificates[1].cert ${files[1]!.cert}: no PEM CERTIFICATE block found`,
  );
  assertStringIncludes(rejected, `keeps serving serial ${b.serial}`);
  assertEquals(await serials(), [a.serial, b.serial, wild.serial]);

  // the wildcard pair changes for real: taken, while b's file is still garbage
  await installCert(wild2, files[2]!);
  await until(
    "the new wildcard serial",
    async () => (await served(port, "y.wild.test")).serial === wild2.serial,
  );
  assertEquals(await serials(), [a.serial, b.serial, wild2.serial]);
  assert(
    lb.lines.some((l) =>
      l.includes(
        `tls.certificates[2].cert ${files[2]!.cert}: now certificate serial ${wild2.serial}`,
      )
    ),
    lb.lines.join("\n"),
  );

  // b gets a good certificate again
  await installCert(b2, files[1]!);
  await until("b's new serial", async () => (await served(port, "b.test")).serial === b2.serial);
  assertEquals(await serials(), [a.serial, b2.serial, wild2.serial]);
});

Deno.test("tls.certificates: a config reload adds a certificate; one naming a bad pair is refused as a whole, naming the file, and the certificates in force stay", async () => {
  await using backend = keepAliveBackend("app");
  const yaml = (pairs: Array<{ cert: string; key: string }>) => `
listen: { https: 127.0.0.1:0 }
tls:
  certificates:
${certificatesYaml(pairs)}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`;
  await using lb = await startLoggedBalancer(yaml([a, b]));
  const port = lb.addrs.https!.port;
  assertEquals((await served(port, "y.wild.test")).subject, "CN=a.test");
  const added = await lb.reload(
    parseConfig(yaml([a, b, wild]), "t.yaml"),
  );
  assertEquals(added, { ok: true });
  assertEquals((await served(port, "y.wild.test")).subject, "CN=*.wild.test");
  const bad = { cert: `${ca.dir}/missing.pem`, key: wild.key };
  const refused = await lb.reload(
    parseConfig(yaml([a, bad, x]), "t.yaml"),
  );
  assertEquals(refused.ok, false);
  assertStringIncludes(refused.error ?? "", `tls.certificates[1].cert ${bad.cert}: cannot read`);
  assertEquals(
    [(await served(port, "b.test")).subject, (await served(port, "y.wild.test")).subject],
    ["CN=b.test", "CN=*.wild.test"],
  );
  assertEquals(lb.certificates.map((c) => c.cert), [a.cert, b.cert, wild.cert]);
});

Deno.test("tls.certificates: /status lists each certificate's file, names and expiry, and /metrics has unload_tls_certificate_expiry_seconds per name", async () => {
  await using backend = keepAliveBackend("app");
  const both = await ca.issue("both", { serial: 0xe1, names: ["b.test", "*.wild.test"] });
  await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
tls:
  watch: false
  certificates:
${certificatesYaml([a, both])}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const admin = lb.addrs.admin!.port;
  const status: Status = await (await fetch(`http://127.0.0.1:${admin}/status`)).json();
  const notAfter = async (file: string) =>
    new Date(
      (await openssl(["x509", "-in", file, "-noout", "-enddate"], ca.dir)).split("=")[1]!.trim(),
    );
  const aEnd = await notAfter(a.cert);
  const bothEnd = await notAfter(both.cert);
  assertEquals(
    status.certificates.map((c) => [c.file, c.names, c.serial, c.notAfter]),
    [
      [a.cert, ["a.test"], "A1", aEnd.toISOString()],
      [both.cert, ["b.test", "*.wild.test"], "E1", bothEnd.toISOString()],
    ],
  );
  // the test CA's certificates last 2 days
  for (const c of status.certificates) {
    assert(c.expiresIn > 86400 && c.expiresIn <= 2 * 86400, String(c.expiresIn));
  }

  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const samples = metrics.split("\n").filter((l) =>
    l.startsWith("unload_tls_certificate_expiry_seconds{")
  );
  assertEquals(samples.map((l) => l.replace(/} .*/, "}")), [
    `unload_tls_certificate_expiry_seconds{file="${a.cert}",name="a.test"}`,
    `unload_tls_certificate_expiry_seconds{file="${both.cert}",name="b.test"}`,
    `unload_tls_certificate_expiry_seconds{file="${both.cert}",name="*.wild.test"}`,
  ]);
  const left = Number(samples[0]!.split(" ")[1]);
  assert(Math.abs(left - (aEnd.getTime() - Date.now()) / 1000) < 60, String(left));
});

Deno.test({
  name:
    "tls.certificates on the dashboard in headless chromium: a row per certificate with its names and expiry, the default marked, and a warning for one that expires within 14 days",
  // without chromium the test is skipped locally, and fails under CI=true (launch throws)
  ignore: Deno.env.get("CI") !== "true" && findChromium() === undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using backend = keepAliveBackend("app");
    await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
tls:
  watch: false
  certificates:
${certificatesYaml([a, wild])}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
    await using browser = await launchChromium();
    const page = browser.page;
    await page.goto(`http://127.0.0.1:${lb.addrs.admin!.port}/`);
    type CertRow = { file: string; names: string; text: string };
    let rows: CertRow[] = [];
    await until("the certificate rows", async () => {
      rows = await page.evaluate<CertRow[]>(
        `[...document.querySelectorAll("tr[data-cert]")].map((tr) => ({
          file: tr.dataset.cert, names: tr.dataset.names, text: tr.textContent }))`,
      );
      return rows.length === 2;
    });
    assertEquals(rows.map((r) => [r.file, r.names]), [[a.cert, "a.test"], [
      wild.cert,
      "*.wild.test",
    ]]);
    assertStringIncludes(rows[0]!.text, "(default)");
    const alerts = await page.evaluate<string[]>(
      `[...document.querySelectorAll("#alerts .alert")].map((e) => e.textContent)`,
    );
    // the test CA's certificates last 2 days
    assert(
      alerts.some((t) => t.startsWith(`TLS certificate ${wild.cert} (CN=*.wild.test) expires in`)),
      alerts.join("\n"),
    );
    assertEquals(page.errors, []);
  },
});

Deno.test("tls config: cert+key and certificates together are an error; each pair needs both files; a bad pair stops the start naming its path", async () => {
  const base =
    "listen: { https: 127.0.0.1:0 }\nroutes: [{ name: app, backends: [{ address: 127.0.0.1:1 }] }]\n";
  const error = (yaml: string) => {
    try {
      parseConfig(base + yaml, "t.yaml");
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return "no error";
  };
  assertStringIncludes(
    error("tls:\n  cert: c.pem\n  key: k.pem\n  certificates: [{ cert: a.pem, key: a.key }]\n"),
    "t.yaml:6: tls.certificates: either tls.cert and tls.key, or certificates: not both",
  );
  assertStringIncludes(
    error("tls:\n  certificates:\n    - { cert: a.pem, key: a.key }\n    - { cert: b.pem }\n"),
    "t.yaml:6: tls.certificates[1]: needs both cert and key",
  );
  assertStringIncludes(
    error("tls: { certificates: [] }\n"),
    "tls.certificates: needs at least one certificate",
  );
  assertMatch(
    error("tls:\n  certificates:\n    - { cert: a.pem, key: a.key, x: 1 }\n"),
    /tls\.certificates\[0\]\.x: unknown key/,
  );

  const bad = await live("mismatch", { ...b, key: a.key });
  const started = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls:
  certificates:
${certificatesYaml([a, bad])}
routes: [{ name: app, backends: [{ address: 127.0.0.1:1 }] }]
`).then(async (lb) => {
      await lb.close();
      return "started";
    }, (e: Error) => e.message);
  assertEquals(
    started,
    `tls.certificates[1].key ${bad.key}: does not match the certificate in tls.certificates[1].cert ${bad.cert}`,
  );
});

Deno.test("tls.certificates: after sniNames distinct server names the listener is renewed (Deno caches an answer per name for a listener's life) and goes on choosing by SNI on the same port", async () => {
  const log = captureLogger();
  const acceptor = await TlsAcceptor.start({
    addr: { hostname: "127.0.0.1", port: 0 },
    tls: { certificates: [a, b], watch: false },
    handle: (conn) => Promise.resolve(conn).finally(() => conn.close()),
    log,
    sniNames: 3,
  });
  try {
    const port = acceptor.addr.port;
    const renewed = () => log.lines.filter((l) => l.includes("listener renewed")).length;
    assertEquals((await served(port, "b.test")).subject, "CN=b.test");
    assertEquals((await served(port, "made-up-1.test")).subject, "CN=a.test");
    assertEquals(renewed(), 0);
    assertEquals((await served(port, "made-up-2.test")).subject, "CN=a.test"); // the third name
    await until("the renewal", () => Promise.resolve(renewed() === 1));
    assertStringIncludes(
      log.lines.find((l) => l.includes("listener renewed"))!,
      "tls: 3 distinct server names",
    );
    assertEquals(acceptor.addr.port, port);
    assertEquals((await served(port, "b.test")).subject, "CN=b.test");
    assertEquals((await served(port, "a.test")).subject, "CN=a.test");
  } finally {
    acceptor.stop();
    await acceptor.done;
  }
});

Deno.test("tls sni test CA cleanup", async () => {
  await ca.remove();
});
