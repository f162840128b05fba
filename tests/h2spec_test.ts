// h2spec, the public HTTP/2 conformance suite, against the balancer over TLS (ALPN h2).
// Runs when H2SPEC names an h2spec binary (build one with _tools/build_h2spec.sh, see
// docs/h2.md "Conformance"); without it the test is reported as ignored.
import { assert } from "@std/assert";
import { startBalancer } from "./_http.ts";
import { makeCa } from "./_certs.ts";
import { startOrigin } from "./_h1_origin.ts";

const H2SPEC = Deno.env.get("H2SPEC") ?? "";

Deno.test({
  name: "h2spec over TLS: all 146 cases pass",
  ignore: H2SPEC === "",
  async fn() {
    await using ca = await makeCa();
    const cert = await ca.issue("server", { serial: 1 });
    await using origin = startOrigin("b1");
    await using lb = await startBalancer(`
listen: { https: 127.0.0.1:0 }
tls: { cert: ${cert.cert}, key: ${cert.key} }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${origin.port} }] }]
`);
    const out = await new Deno.Command(H2SPEC, {
      args: ["-h", "127.0.0.1", "-p", String(lb.addrs.https!.port), "-t", "-k", "-o", "5"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const failures = text.slice(text.indexOf("Failures:"));
    assert(text.includes("146 tests, 146 passed, 0 skipped, 0 failed"), failures);
  },
});
