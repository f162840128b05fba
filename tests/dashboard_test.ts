import { assert, assertEquals } from "@std/assert";
import { findChromium, launchChromium, type Page } from "./_chromium.ts";
import {
  delay,
  forEachHead,
  freePort,
  keepAliveBackend,
  RawClient,
  rawServer,
  startBalancer,
  writeAllText,
} from "./_http.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const OUTPUT = new URL("./output/", import.meta.url);
const DOCS = new URL("../docs/", import.meta.url);
const CI = Deno.env.get("CI") === "true";

interface Row {
  name: string;
  id: string;
  healthy: string;
  share: string;
  expected: string;
}

/** `main.ts demo [--traffic]` as a process, with the permissions README gives the demo. */
async function startDemo(options: { traffic?: boolean } = {}) {
  const listen = freePort();
  const admin = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      MAIN,
      "demo",
      ...(options.traffic ?? true ? ["--traffic"] : []),
      "--listen",
      `127.0.0.1:${listen}`,
      "--admin",
      `127.0.0.1:${admin}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const deadline = Date.now() + 20_000;
  while (!stdout.includes("Ctrl-C stops")) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`demo did not start: ${stdout}\n${await stderr}`);
    }
    stdout += value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done);
  })();
  const dashboard = `http://127.0.0.1:${admin}/`;
  assert(stdout.includes(`dashboard  ${dashboard}`), stdout);
  return {
    dashboard,
    async stop() {
      child.kill("SIGTERM");
      const { code } = await child.status;
      await drained;
      return { code, stderr: await stderr };
    },
  };
}

/** Polls `check` (every 200 ms) until it returns true, or fails after `ms` with `what`. */
async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(200);
  }
}

function rows(page: Page): Promise<Row[]> {
  return page.evaluate<Row[]>(`[...document.querySelectorAll("tr[data-backend]")].map((tr) => ({
    name: tr.dataset.backend, id: tr.dataset.id, healthy: tr.dataset.healthy,
    share: tr.dataset.share, expected: tr.dataset.expected,
  }))`);
}

async function save(name: string, png: Uint8Array): Promise<void> {
  await Deno.mkdir(OUTPUT, { recursive: true });
  await Deno.writeFile(new URL(name, OUTPUT), png);
  // docs/dashboard.png (README: the incident view) is refreshed only on request, to
  // keep the tree clean: UNLOAD_UPDATE_DOCS=1 deno test -A tests/dashboard_test.ts
  if (name === "dashboard_down.png" && Deno.env.get("UNLOAD_UPDATE_DOCS") === "1") {
    await Deno.mkdir(DOCS, { recursive: true });
    await Deno.writeFile(new URL("dashboard.png", DOCS), png);
  }
}

Deno.test({
  name:
    "dashboard in headless chromium: 3 backends, shares near 3:2:4, a killed backend turns DOWN",
  // without chromium the test is skipped locally, and fails under CI=true (launch throws)
  ignore: !CI && findChromium() === undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const demo = await startDemo();
    let browser;
    try {
      browser = await launchChromium();
      const page = browser.page;
      await page.goto(demo.dashboard);
      assertEquals(await page.evaluate<string>("document.title"), "unload dashboard");

      await waitFor("three healthy backends", 10_000, async () => {
        const r = await rows(page);
        return r.length === 3 && r.every((b) => b.healthy === "true");
      });
      assertEquals((await rows(page)).map((b) => b.name), ["b1.test", "b2.test", "b3.test"]);
      assertEquals(
        await page.evaluate<string>(`document.querySelector("span[data-probe]").textContent`),
        "check GET /healthz over http1 every 1.0 s",
        "the route's active check is shown",
      );

      // the srv scheduler gives 3:2:4 in every 9 picks; over the page's window the
      // shares sit right at 33.3 / 22.2 / 44.4 %
      const want = [3 / 9, 2 / 9, 4 / 9];
      let last: Row[] = [];
      await waitFor("shares near 3:2:4", 15_000, async () => {
        last = await rows(page);
        return last.length === 3 &&
          last.every((b, i) =>
            b.share !== "" && Math.abs(Number(b.share) - want[i]!) < 0.03 &&
            Math.abs(Number(b.expected) - want[i]!) < 0.001
          );
      }).catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(last)}`);
      });
      // the demo's traffic is HTTP/1.1: the header says so, and that no h2 stream is open
      assertEquals(
        await page.evaluate<string>(`document.getElementById("protocols").textContent`),
        "http/1.1 100%",
      );
      assertEquals(
        await page.evaluate<string>(`document.getElementById("h2").textContent`),
        "0 connections, 0 streams",
      );
      await delay(1500); // let the sparklines fill a little for the picture
      await save("dashboard.png", await page.screenshot());

      const res = await fetch(`${demo.dashboard}demo/backends/b1/stop`, { method: "POST" });
      assertEquals(await res.json(), { name: "b1", running: false });
      await waitFor("b1 shown DOWN", 15_000, async () => {
        const b1 = (await rows(page)).find((b) => b.name === "b1.test");
        return b1?.healthy === "false";
      });
      const alerts = await page.evaluate<string>(`document.getElementById("alerts").textContent`);
      assert(alerts.includes("b1.test") && alerts.includes("DOWN"), alerts);
      const others = (await rows(page)).filter((b) => b.name !== "b1.test");
      assert(others.every((b) => b.healthy === "true"), JSON.stringify(others));
      await save("dashboard_down.png", await page.screenshot());

      assertEquals(page.errors, [], "no script errors in the page");
    } finally {
      await browser?.close();
      const { code, stderr } = await demo.stop();
      assertEquals(code, 0, stderr);
    }
  },
});

interface DemoStatus {
  requests: number;
  routes: Array<{ backends: Array<{ name: string; healthy: boolean }> }>;
}

async function demoStatus(dashboard: string): Promise<DemoStatus> {
  return await (await fetch(`${dashboard}status`)).json();
}

function health(s: DemoStatus): Record<string, boolean> {
  return Object.fromEntries(s.routes[0]!.backends.map((b) => [b.name, b.healthy]));
}

Deno.test("demo without traffic: a backend stopped through /demo/backends/b1/stop shows DOWN (active checks), and UP once started again", async () => {
  const demo = await startDemo({ traffic: false });
  try {
    const all = { "b1.test": true, "b2.test": true, "b3.test": true };
    await waitFor("three healthy backends", 10_000, async () => {
      const s = await demoStatus(demo.dashboard);
      return JSON.stringify(health(s)) === JSON.stringify(all);
    });
    const stop = await fetch(`${demo.dashboard}demo/backends/b1/stop`, { method: "POST" });
    assertEquals(await stop.json(), { name: "b1", running: false });
    await waitFor(
      "b1 DOWN",
      10_000,
      async () => !health(await demoStatus(demo.dashboard))["b1.test"],
    );
    const down = await demoStatus(demo.dashboard);
    assertEquals(health(down), { ...all, "b1.test": false });
    assertEquals(down.requests, 0, "no request went through the balancer");
    const start = await fetch(`${demo.dashboard}demo/backends/b1/start`, { method: "POST" });
    assertEquals(await start.json(), { name: "b1", running: true });
    await waitFor(
      "b1 UP again",
      10_000,
      async () => health(await demoStatus(demo.dashboard))["b1.test"]!,
    );
  } finally {
    const { code, stderr } = await demo.stop();
    assertEquals(code, 0, stderr);
  }
});

interface DemoBackendRow {
  name: string;
  running: boolean;
  requests: number;
}

async function demoBackends(dashboard: string): Promise<Record<string, DemoBackendRow>> {
  const list: DemoBackendRow[] = await (await fetch(`${dashboard}demo/backends`)).json();
  return Object.fromEntries(list.map((b) => [b.name, b]));
}

Deno.test("demo: POST /reload applies the embedded config again (200, no failed reload), and a stopped backend keeps its request count", async () => {
  const demo = await startDemo({ traffic: false });
  try {
    const reload = await fetch(`${demo.dashboard}reload`, { method: "POST" });
    const body = await reload.json();
    assertEquals(reload.status, 200, JSON.stringify(body));
    assertEquals(body.ok, true);
    assert(String(body.note).includes("no config file"), body.note);
    const status = await (await fetch(`${demo.dashboard}status`)).json();
    assertEquals([status.reloads.ok, status.reloads.failed], [1, 0]);
    assertEquals(status.reloads.last.ok, true, "no banner on the dashboard");
    const metrics = await (await fetch(`${demo.dashboard}metrics`)).text();
    assert(metrics.includes("\nunload_config_last_reload_successful 1\n"));

    // requests through the balancer (and its health checks) reach b1; then it stops
    await waitFor("b1 to have answered", 10_000, async () => {
      return (await demoBackends(demo.dashboard)).b1!.requests > 0;
    });
    const stop = await fetch(`${demo.dashboard}demo/backends/b1/stop`, { method: "POST" });
    assertEquals(await stop.json(), { name: "b1", running: false });
    const stopped = (await demoBackends(demo.dashboard)).b1!;
    assertEquals(stopped.running, false);
    assert(stopped.requests > 0, "a stopped backend keeps the count it had");
    await delay(1500); // health checks go on against the stopped port: the count stays
    assertEquals((await demoBackends(demo.dashboard)).b1!.requests, stopped.requests);
    const start = await fetch(`${demo.dashboard}demo/backends/b1/start`, { method: "POST" });
    assertEquals(await start.json(), { name: "b1", running: true });
    const again = (await demoBackends(demo.dashboard)).b1!;
    assert(again.requests >= stopped.requests, "a restart counts on from there, not from 0");
  } finally {
    const { code, stderr } = await demo.stop();
    assertEquals(code, 0, stderr);
  }
});

interface PolicyRow {
  name: string;
  summary: string;
  counts: string;
}

Deno.test({
  name:
    "dashboard in headless chromium: each route's policy steps in order (rewrite, headers, mirror, auth, compress, allow) with what each did so far",
  ignore: !CI && findChromium() === undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using backend = keepAliveBackend("b");
    // an HTML page worth compressing, and a password file made by the real htpasswd
    const page4k = "<p>" + "unload ".repeat(600) + "</p>";
    await using big = rawServer((conn, read) =>
      forEachHead(read, () =>
        writeAllText(
          conn,
          `HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: ${page4k.length}\r\n\r\n${page4k}`,
        ))
    );
    const dir = await Deno.makeTempDir({ prefix: "unload-dashboard-" });
    const made = await new Deno.Command("htpasswd", {
      args: ["-cbB", "-C", "5", `${dir}/users.htpasswd`, "ann", "s3cret"],
      stderr: "null",
    }).output();
    assert(made.success, "htpasswd -B");
    await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
routes:
  - name: shop
    backends: [{ address: 127.0.0.1:${backend.port} }]
    rewrite: { strip_prefix: /api }
    host: shop.test
    headers: { response: { remove: [X-Powered-By] } }
    mirror: { backends: [{ address: 127.0.0.1:${backend.port} }], percent: 100 }
  - name: docs
    host: docs.test
    backends: [{ address: 127.0.0.1:${big.port} }]
    auth: { basic: { realm: ops, htpasswd: ${dir}/users.htpasswd } }
    compress: true
  - name: office
    host: office.test
    backends: [{ address: 127.0.0.1:${backend.port} }]
    allow: [10.0.0.0/8]
  - name: plain
    host: plain.test
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
    using c = await RawClient.connect(lb.port);
    assertEquals((await c.request("GET /api/a HTTP/1.1\r\nHost: shop.test\r\n\r\n")).status, 200);
    assertEquals((await c.request("GET / HTTP/1.1\r\nHost: office.test\r\n\r\n")).status, 403);
    const docs = (auth: string) =>
      c.request(`GET / HTTP/1.1\r\nHost: docs.test\r\nAccept-Encoding: gzip\r\n${auth}\r\n`);
    assertEquals((await docs("")).status, 401);
    const zipped = await docs(`Authorization: Basic ${btoa("ann:s3cret")}\r\n`);
    assertEquals([zipped.status, zipped.headers.get("content-encoding")], [200, "gzip"]);
    let browser;
    try {
      browser = await launchChromium();
      const page = browser.page;
      await page.goto(`http://127.0.0.1:${lb.addrs.admin!.port}/`);
      const read = () =>
        page.evaluate<PolicyRow[]>(`[...document.querySelectorAll("tr[data-policy]")].map((tr) => ({
          name: tr.dataset.policy, summary: tr.dataset.summary, counts: tr.dataset.counts,
        }))`);
      let got: PolicyRow[] = [];
      await waitFor("the mirror's copy on the page", 10_000, async () => {
        got = await read();
        return got.some((r) => r.counts === "mirrored 1");
      }).catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(got)}`);
      });
      assertEquals(got.map((r) => r.name), [
        "rewrite",
        "headers",
        "mirror",
        "auth",
        "compress",
        "allow",
      ]);
      assertEquals(got[3]!.counts, "401 ×1 · basic missing 1 · basic verified 1");
      assert(/^gzip 1 \(\d+ %\)$/.test(got[4]!.counts), got[4]!.counts);
      assertEquals(got[0]!.summary, "strip prefix /api");
      assertEquals(got[5]!.counts, "403 ×1");
      assert(
        got[2]!.summary.startsWith(`copy to 127.0.0.1:${backend.port}, 100 %`),
        got[3]!.summary,
      );
      const plain = await page.evaluate<number>(
        `document.querySelectorAll('section[data-route="plain"] tr[data-policy]').length`,
      );
      assertEquals(plain, 0, "a route without policy shows none");
      assertEquals(got[1]!.summary, "response remove x-powered-by");
      await save("dashboard_policies.png", await page.screenshot());
      assertEquals(page.errors, [], "no script errors in the page");
    } finally {
      await browser?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
