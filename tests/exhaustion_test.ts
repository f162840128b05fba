/**
 * Out of file descriptors: the balancer process under a lowered open files
 * limit (`prlimit --pid`), with real sockets on 127.0.0.1.
 */
import { assert, assertEquals, assertLess, assertStringIncludes } from "@std/assert";
import {
  delay,
  forEachHead,
  freePort,
  namedResponse,
  RawClient,
  rawServer,
  writeAllText,
} from "./_http.ts";
import { startLbProcess } from "./_process.ts";

/** Sets the soft open files limit of `pid` (the hard one stays, so it can be raised again). */
async function setOpenFiles(pid: number, limit: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: ["--pid", String(pid), `--nofile=${limit}:`],
  }).output();
  assert(out.success, `prlimit: ${new TextDecoder().decode(out.stderr)}`);
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

Deno.test("out of descriptors: 503 with a warning naming the limit, no backend ejected, no accept spin, and service resumes", async () => {
  // every response closes its connection, so every request needs a new backend connection
  const backend = rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      await writeAllText(
        conn,
        namedResponse("b", head).replace("\r\n", "\r\nconnection: close\r\n"),
      );
      return false;
    })
  );
  const admin = freePort();
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:${admin} }
health: { failures: 1 }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  let stopped: Awaited<ReturnType<typeof lb.stop>> | undefined;
  const held = await RawClient.connect(lb.port);
  let queued: RawClient | undefined;
  try {
    assertEquals((await held.get("/before")).status, 200);
    await delay(100); // the backend connection is closed and gone
    await setOpenFiles(lb.pid, lowestFreeFd(lb.pid)); // not one descriptor more

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

    await setOpenFiles(lb.pid, 4096);
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
});
