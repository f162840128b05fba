/**
 * Out of file descriptors: the balancer process under a lowered open files
 * limit (`prlimit --pid`), with real sockets on 127.0.0.1.
 */
import { assert, assertEquals, assertLess, assertMatch, assertStringIncludes } from "@std/assert";
import {
  delay,
  forEachHead,
  freePort,
  namedResponse,
  RawClient,
  rawServer,
  writeAllText,
} from "./_http.ts";
import { findChromium, launchChromium } from "./_chromium.ts";
import { type LbProcess, startLbProcess } from "./_process.ts";

/** Sets the soft open files limit of `lb` (the hard one stays, so it can be raised again). */
async function setOpenFiles(lb: LbProcess, limit: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(lb.pid), `--nofile=${limit}:`],
  }).output();
  const why = new TextDecoder().decode(out.stderr);
  assert(out.success, `prlimit: ${why}; the balancer's stderr so far:\n${lb.stderrSoFar()}`);
}

/** The lowest free descriptor number: a limit of it leaves no room for one more. */
function lowestFreeFd(pid: number): number {
  const used = new Set([...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name)));
  let fd = 0;
  while (used.has(fd)) fd++;
  return fd;
}

/** CPU time (user + system) of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * A backend that closes the connection after each response (so every request
 * needs a new backend connection), and a balancer process in front of it with
 * an admin server and `health.failures: 1` (one counted failure would eject).
 */
async function setup(health = "{ failures: 1 }") {
  const backend = rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      await writeAllText(
        conn,
        namedResponse("b", head).replace("\r\n", "\r\nconnection: close\r\n"),
      );
      return false;
    })
  );
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:$ADMIN }
health: ${health}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  return { backend, admin: lb.adminPort, lb };
}

Deno.test("out of descriptors: 503 with a warning naming the limit, no backend ejected, no accept spin, and service resumes", async () => {
  const { backend, admin, lb } = await setup();
  let stopped: Awaited<ReturnType<typeof lb.stop>> | undefined;
  const held = await RawClient.connect(lb.port);
  let queued: RawClient | undefined;
  try {
    assertEquals((await held.get("/before")).status, 200);
    await delay(100); // the backend connection is closed and gone
    await setOpenFiles(lb, lowestFreeFd(lb.pid)); // not one descriptor more

    // an accepted client gets a 503 saying why; the backend is not blamed (failures: 1 would eject it)
    for (const path of ["/1", "/2"]) {
      const res = await held.get(path);
      assertEquals(res.status, 503, res.body);
    }
    // a new client waits in the listen queue; the accept loop pauses instead of spinning
    queued = await RawClient.connect(lb.port);
    const answer = queued.get("/queued");
    answer.catch(() => {}); // awaited below; closed unanswered if an assertion fails first
    const t0 = cpuTicks(lb.pid);
    await delay(1000);
    const ticks = cpuTicks(lb.pid) - t0; // 100 ticks per second of one core
    assertLess(ticks, 50, `the balancer burned ${ticks} ticks in 1 s while it could not accept`);

    await setOpenFiles(lb, 4096);
    assertEquals(
      (await answer).status,
      200,
      "the queued client is served once descriptors are free",
    );
    assertEquals((await held.get("/after")).status, 200);
    // counted for alerts: two backend connects and at least one accept
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const n = Number(
      /^unload_resource_exhausted_total\{code="EMFILE"\} (\d+)$/m.exec(metrics)?.[1],
    );
    assert(n >= 3, `unload_resource_exhausted_total{code="EMFILE"}: ${n}`);
    const status = await (await fetch(`http://127.0.0.1:${admin}/status`)).json();
    assertEquals(status.exhausted, { EMFILE: n }, "/status counts them too");
  } finally {
    held.close();
    queued?.close();
    stopped = await lb.stop();
    await backend.close();
  }
  // one warning for the whole episode (the rest are counted into the next one, 10 s later)
  const warnings = stopped.stderr.split("\n").filter((l) =>
    l.includes(" warn ") && l.includes("Too many open files")
  );
  assertEquals(warnings.length, 1, stopped.stderr);
  assertStringIncludes(warnings[0]!, `connect to 127.0.0.1:${backend.port} failed`);
  assertStringIncludes(warnings[0]!, "raise it (ulimit -n, systemd LimitNOFILE=)");
  assert(!stopped.stderr.includes("ejected"), stopped.stderr);
  assert(!/Z error /.test(stopped.stderr), stopped.stderr); // no error-level line
});

Deno.test("out of descriptors: the admin server listens again once they are back (Deno.serve stops at an accept error)", async () => {
  const { backend, admin, lb } = await setup();
  let scraper: Deno.Conn | undefined;
  let stopped: Awaited<ReturnType<typeof lb.stop>> | undefined;
  try {
    await setOpenFiles(lb, lowestFreeFd(lb.pid));
    // cannot be accepted; the listener closing on it may even reset the connect itself
    scraper = await Deno.connect({ hostname: "127.0.0.1", port: admin }).catch(() => undefined);
    await delay(300);
    await setOpenFiles(lb, 4096);
    let metrics = "";
    for (let i = 0; i < 50 && metrics === ""; i++) {
      metrics = await fetch(`http://127.0.0.1:${admin}/metrics`).then((r) => r.text(), () => "");
      if (metrics === "") await delay(100);
    }
    assertMatch(metrics, /^unload_resource_exhausted_total\{code="EMFILE"\} [1-9]/m);
  } finally {
    scraper?.close();
    stopped = await lb.stop();
    await backend.close();
  }
  // (the warning may name the http listener instead: its start-up probe can still be queued)
  assertMatch(stopped.stderr, /accept on .* failed: .*Too many open files/);
  assert(!/Z error /.test(stopped.stderr), stopped.stderr); // no error-level line
});

Deno.test("out of descriptors: an active health check that cannot connect counts neither way", async () => {
  const { backend, lb } = await setup(
    "{ failures: 1, path: /healthz, interval: 100ms, timeout: 500ms }",
  );
  let stopped: Awaited<ReturnType<typeof lb.stop>> | undefined;
  try {
    await delay(300); // a few rounds pass
    // Lowered to the lowest free descriptor until a probe fails for want of one: a probe's
    // own connection may be open when that is measured, and free a lower slot when it closes.
    const exhausted = /health check of 127\.0\.0\.1:\d+ failed: .*Too many open files/;
    for (let i = 0; i < 50 && !exhausted.test(lb.stderrSoFar()); i++) {
      await setOpenFiles(lb, lowestFreeFd(lb.pid));
      await delay(100);
    }
    await delay(800); // more rounds whose probes cannot connect (failures: 1 would take it down)
    await setOpenFiles(lb, 4096);
    await delay(300);
  } finally {
    stopped = await lb.stop();
    await backend.close();
  }
  assert(!/backend \S+ down: /.test(stopped.stderr), stopped.stderr);
  assertMatch(stopped.stderr, /health check of 127\.0\.0\.1:\d+ failed: .*Too many open files/);
});

Deno.test({
  name: "out of descriptors: the dashboard raises an alert and keeps the backend up",
  // without chromium the test is skipped locally, and fails under CI=true (launch throws)
  ignore: Deno.env.get("CI") !== "true" && findChromium() === undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { backend, admin, lb } = await setup();
    const browser = await launchChromium();
    const held = await RawClient.connect(lb.port);
    try {
      const page = browser.page;
      await page.goto(`http://127.0.0.1:${admin}/`);
      // polling: the browser's keep-alive connection to the admin port is open from here on
      const shown = () => page.evaluate<string>(`document.getElementById("total").textContent`);
      for (let i = 0; i < 50 && (await shown()) === "–"; i++) await delay(100);
      await delay(1100); // a second poll, on the same connection
      assertEquals((await held.get("/before")).status, 200);
      await delay(100);
      await setOpenFiles(lb, lowestFreeFd(lb.pid));
      for (let i = 0; i < 3; i++) assertEquals((await held.get(`/${i}`)).status, 503);
      const alerts = () => page.evaluate<string>(`document.getElementById("alerts").textContent`);
      for (let i = 0; i < 50 && !(await alerts()).includes("Out of file"); i++) await delay(100);
      assertStringIncludes(
        await alerts(),
        "Out of file descriptors or local ports: 3 accepts or backend connects failed in the last 10 s (EMFILE)",
      );
      const up = await page.evaluate<string>(
        `document.querySelector("tr[data-backend]").dataset.healthy`,
      );
      assertEquals(up, "true");
      await setOpenFiles(lb, 4096);
    } finally {
      held.close();
      await browser.close();
      await lb.stop();
      await backend.close();
    }
  },
});

/**
 * Runs `main.ts run` with README's flags under `prlimit --nofile=LIMIT:LIMIT` until it
 * logs that it serves, then stops it; resolves to what it wrote to stderr.
 */
async function startUnderLimit(limit: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "unload-nofile-" });
  const file = `${dir}/unload.yaml`;
  await Deno.writeTextFile(
    file,
    `listen: { http: 127.0.0.1:${freePort()} }\nroutes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]\n`,
  );
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${limit}:${limit}`,
      "--",
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-read",
    ]
      .concat([new URL("../main.ts", import.meta.url).pathname, "run", "--config", file]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  try {
    while (!stderr.includes(" serving ")) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    await delay(200); // the warning follows the serving line
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* exited already */ }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
  return stderr;
}

Deno.test("a start under a low open files limit warns with the documented flags (--allow-net --allow-read); a high limit does not", async () => {
  const low = await startUnderLimit(1024);
  assertMatch(low, / warn .*the open files limit is low: only \d+ more could be opened at start/);
  assertStringIncludes(low, "raise it (ulimit -n, systemd LimitNOFILE=)");
  const hard = /^Max open files\s+\S+\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"))
    ?.[1];
  const high = await startUnderLimit(Math.min(Number(hard ?? 65536), 65536));
  assertStringIncludes(high, " serving ");
  assert(!high.includes("open files limit"), high);
});
