/**
 * Metrics that add up across instances: a real Prometheus server (Debian's
 * `/usr/bin/prometheus`) scrapes three balancer processes in front of the same
 * three backends, and one PromQL query gives the fleet's per-backend shares, equal
 * to what the backends counted. The rules file docs/observability.md shows
 * (examples/prometheus/unload_rules.yml) is checked with `promtool` and loaded.
 *
 * @module
 */
import { assert, assertEquals, assertLess } from "@std/assert";
import { startDemoBackend } from "../src/cli/demo/backends.ts";
import { freePort, RawClient, until } from "./_http.ts";
import { type LbProcess, startLbProcess } from "./_process.ts";

const PROMETHEUS = "/usr/bin/prometheus";
const PROMTOOL = "/usr/bin/promtool";
const RULES = new URL("../examples/prometheus/unload_rules.yml", import.meta.url).pathname;
// skipped without Debian's prometheus package (apt-get install -y prometheus), except under CI=true
const CI = Deno.env.get("CI") === "true";
const HAVE_PROMETHEUS = CI || (() => {
  try {
    return Deno.statSync(PROMETHEUS).isFile && Deno.statSync(PROMTOOL).isFile;
  } catch {
    return false;
  }
})();

/** A Prometheus server in a temp dir, scraping `targets` every second. */
async function startPrometheus(targets: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "unload-prom-" });
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    `global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }
rule_files: [${JSON.stringify(RULES)}]
scrape_configs:
  - job_name: unload
    static_configs: [{ targets: ${JSON.stringify(targets)} }]
`,
  );
  const child = new Deno.Command(PROMETHEUS, {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const log = new Response(child.stderr).text();
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    await Deno.remove(dir, { recursive: true });
    return await log;
  };
  try {
    await until("prometheus ready", async () => (await fetch(`${base}/-/ready`)).ok);
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${await stop()}`);
  }
  return {
    /** Evaluates `promql` now; the vector's samples as label sets with numbers. */
    async query(promql: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
      const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = await res.json();
      if (body.status !== "success") throw new Error(`${promql}: ${JSON.stringify(body)}`);
      return body.data.result.map((
        r: { metric: Record<string, string>; value: [number, string] },
      ) => ({
        metric: r.metric,
        value: Number(r.value[1]),
      }));
    },
    stop,
  };
}

Deno.test("prometheus rules file passes promtool check rules", {
  ignore: !HAVE_PROMETHEUS,
}, async () => {
  const out = await new Deno.Command(PROMTOOL, { args: ["check", "rules", RULES] }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, text);
  assert(text.includes("SUCCESS: 6 rules found"), text);
});

Deno.test({
  name:
    "prometheus scraping three balancers gives the fleet's per-backend shares in one query, equal to what the backends received",
  ignore: !HAVE_PROMETHEUS,
  async fn() {
    const backends = await Promise.all(["b1", "b2", "b3"].map((n) => startDemoBackend(n)));
    const weights = [30, 20, 40];
    const lbs: LbProcess[] = [];
    let prom: Awaited<ReturnType<typeof startPrometheus>> | undefined;
    try {
      const admins = [freePort(), freePort(), freePort()];
      for (const admin of admins) {
        lbs.push(
          await startLbProcess(`listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:${admin} }
routes:
  - name: app
    backends:
${
            backends.map((b, i) =>
              `      - { address: 127.0.0.1:${b.port}, weight: ${weights[i]} }`
            ).join("\n")
          }
`),
        );
      }
      prom = await startPrometheus(admins.map((p) => `127.0.0.1:${p}`));
      const p = prom;
      // every instance scraped once before any traffic, so rate() sees the counters start at 0
      await until("three targets up", async () => {
        const up = await p.query(`sum(up{job="unload"})`);
        return up[0]?.value === 3;
      });

      // different counts per instance, none a multiple of the 9-pick round: each instance's
      // own split differs, and only the sum over instances matches the backends' counts
      const sent = [50, 31, 22];
      for (const [i, n] of sent.entries()) {
        const c = await RawClient.connect(lbs[i]!.port);
        try {
          for (let k = 0; k < n; k++) assertEquals((await c.get(`/${k}`)).status, 200);
        } finally {
          c.close();
        }
      }
      const total = sent.reduce((a, b) => a + b);
      const received = backends.map((b) => b.count);
      assertEquals(received.reduce((a, b) => a + b), total, "the backends got every request");

      const route = `route="app",backend!=""`;
      await until("prometheus to have scraped every request", async () => {
        const r = await p.query(`sum(unload_requests_total{${route}})`);
        return r[0]?.value === total;
      });

      // the fleet's shares from the raw counters: exact
      const shares = await p.query(
        `sum by (backend) (unload_requests_total{${route}})` +
          ` / scalar(sum(unload_requests_total{${route}}))`,
      );
      const byBackend = new Map(shares.map((s) => [s.metric.backend!, s.value]));
      assertEquals(byBackend.size, 3);
      for (const [i, b] of backends.entries()) {
        const share = byBackend.get(`127.0.0.1:${b.port}`)!;
        assertLess(Math.abs(share - received[i]! / total), 1e-9, `${b.name}: ${share}`);
      }

      // the recording rule (rate over 5m, summed over instances): each instance's rate is
      // extrapolated a little differently, so within 0.02 of the counted shares
      await until("the recorded shares", async () => {
        const rec = await p.query(`route_backend:unload_requests:share5m{route="app"}`);
        return rec.length === 3 && rec.every((s) => {
          const i = backends.findIndex((b) => s.metric.backend === `127.0.0.1:${b.port}`);
          return i >= 0 && Math.abs(s.value - received[i]! / total) < 0.02;
        });
      });
    } finally {
      await prom?.stop();
      await Promise.all(lbs.map((lb) => lb.stop()));
      await Promise.all(backends.map((b) => b.close()));
    }
  },
});
