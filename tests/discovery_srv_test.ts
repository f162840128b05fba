import { assert, assertEquals, assertGreater, assertRejects } from "@std/assert";
import { resolveSrv, SrvWatcher, type SrvWatcherState } from "../src/upstream/discovery/srv.ts";
import type { Backend } from "../src/upstream/backend.ts";
import { type Dnsmasq, type DnsmasqRecords, type SrvRecordSpec, startDnsmasq } from "./_dnsmasq.ts";

const NAME = "_http._tcp.app.test";
const REFRESH = 300;

const B1: SrvRecordSpec = {
  name: NAME,
  target: "b1.unload.test",
  port: 9001,
  priority: 0,
  weight: 30,
};
const B2: SrvRecordSpec = {
  name: NAME,
  target: "b2.unload.test",
  port: 9002,
  priority: 0,
  weight: 20,
};
const B3: SrvRecordSpec = {
  name: NAME,
  target: "b3.unload.test",
  port: 9003,
  priority: 10,
  weight: 40,
};
const B4: SrvRecordSpec = {
  name: NAME,
  target: "b4.unload.test",
  port: 9004,
  priority: 10,
  weight: 10,
};
const HOSTS = [
  { name: "b1.unload.test", address: "127.0.0.11" },
  { name: "b2.unload.test", address: "127.0.0.12" },
  { name: "b3.unload.test", address: "127.0.0.13" },
  { name: "b4.unload.test", address: "127.0.0.14" },
];
const SEED: DnsmasqRecords = { srv: [B1, B2, B3], hosts: HOSTS };

/** The fields discovery decides, without the mutable health/inflight counters. */
function summary(backends: readonly Backend[]) {
  return backends.map(({ id, hostname, port, priority, weight, name }) => ({
    id,
    hostname,
    port,
    priority,
    weight,
    name,
  }));
}

function ids(backends: readonly Backend[]): string[] {
  return backends.map((b) => b.id);
}

/** Polls `predicate` every 20 ms until true or `ms` have passed; clears its timers. */
async function waitFor(
  what: string,
  ms: number,
  predicate: () => boolean,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts a watcher that records its updates and errors. */
function watch(nameServer: { ipAddr: string; port: number }, signal: AbortSignal) {
  const updates: Backend[][] = [];
  const errors: Error[] = [];
  const watcher = new SrvWatcher({
    name: NAME,
    nameServer,
    refresh: REFRESH,
    signal,
    onUpdate: (backends) => updates.push(backends),
    onError: (error) => errors.push(error),
  });
  return { watcher, updates, errors };
}

/**
 * Runs `fn` once a watcher over a dnsmasq seeded with {@linkcode SEED} has made its
 * first lookup; then stops the watcher and dnsmasq, also when `fn` throws.
 */
async function withWatcher(
  fn: (t: ReturnType<typeof watch> & { dns: Dnsmasq }) => Promise<void>,
): Promise<void> {
  const dns = await startDnsmasq(SEED);
  const controller = new AbortController();
  const watched = watch(dns.nameServer, controller.signal);
  try {
    await watched.watcher.ready;
    await fn({ ...watched, dns });
  } finally {
    controller.abort();
    await watched.watcher.closed;
    await dns.stop();
  }
}

Deno.test("resolveSrv returns the seed table sorted by priority, target and address", async () => {
  const dns = await startDnsmasq(SEED);
  try {
    const backends = await resolveSrv(NAME, { nameServer: dns.nameServer });
    assertEquals(summary(backends), [
      {
        id: "127.0.0.11:9001",
        hostname: "127.0.0.11",
        port: 9001,
        priority: 0,
        weight: 30,
        name: "b1.unload.test",
      },
      {
        id: "127.0.0.12:9002",
        hostname: "127.0.0.12",
        port: 9002,
        priority: 0,
        weight: 20,
        name: "b2.unload.test",
      },
      {
        id: "127.0.0.13:9003",
        hostname: "127.0.0.13",
        port: 9003,
        priority: 10,
        weight: 40,
        name: "b3.unload.test",
      },
    ]);
    assert(backends.every((b) => b.healthy && b.inflight === 0));
  } finally {
    await dns.stop();
  }
});

Deno.test("resolveSrv gives one backend per address of a target, A and AAAA", async () => {
  const dns = await startDnsmasq({
    srv: [B1],
    hosts: [
      { name: "b1.unload.test", address: "127.0.0.21" },
      { name: "b1.unload.test", address: "127.0.0.11" },
      { name: "b1.unload.test", address: "::1" },
    ],
  });
  try {
    const backends = await resolveSrv(NAME, { nameServer: dns.nameServer });
    assertEquals(ids(backends), ["127.0.0.11:9001", "127.0.0.21:9001", "[::1]:9001"]);
    assert(backends.every((b) => b.name === "b1.unload.test" && b.weight === 30));
  } finally {
    await dns.stop();
  }
});

Deno.test("resolveSrv leaves out targets without address records", async () => {
  const dns = await startDnsmasq({
    srv: [B1, B2],
    hosts: [{ name: "b1.unload.test", address: "127.0.0.11" }],
  });
  try {
    const backends = await resolveSrv(NAME, { nameServer: dns.nameServer });
    assertEquals(ids(backends), ["127.0.0.11:9001"]);
  } finally {
    await dns.stop();
  }
});

Deno.test("resolveSrv fails with a clear message when the name has no SRV records", async () => {
  const dns = await startDnsmasq(SEED);
  try {
    await assertRejects(
      () => resolveSrv("_http._tcp.missing.test", { nameServer: dns.nameServer }),
      Error,
      "SRV lookup _http._tcp.missing.test failed: returned no records",
    );
  } finally {
    await dns.stop();
  }
});

Deno.test("resolveSrv fails when no target has an address", async () => {
  const dns = await startDnsmasq({ srv: [B1, B2], hosts: [] });
  try {
    await assertRejects(
      () => resolveSrv(NAME, { nameServer: dns.nameServer }),
      Error,
      `SRV lookup ${NAME} failed: no address records for b1.unload.test, b2.unload.test`,
    );
  } finally {
    await dns.stop();
  }
});

Deno.test("resolveSrv times out against a name server that never answers", async () => {
  const silent = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = silent.addr as Deno.NetAddr;
  try {
    const started = Date.now();
    await assertRejects(
      () => resolveSrv(NAME, { nameServer: { ipAddr: "127.0.0.1", port }, timeout: 200 }),
      Error,
      `SRV lookup ${NAME} failed: timed out after 200ms`,
    );
    assert(Date.now() - started < 2_000);
  } finally {
    silent.close();
  }
});

Deno.test("resolveSrv rejects with the abort reason when its signal aborts", async () => {
  const silent = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = silent.addr as Deno.NetAddr;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("stop now")), 50);
  try {
    await assertRejects(
      () =>
        resolveSrv(NAME, { nameServer: { ipAddr: "127.0.0.1", port }, signal: controller.signal }),
      Error,
      "stop now",
    );
  } finally {
    clearTimeout(timer);
    silent.close();
  }
});

Deno.test("SrvWatcher reports the first lookup, then only real changes", () =>
  withWatcher(async ({ watcher, updates, errors }) => {
    assertEquals(updates.length, 1);
    assertEquals(ids(updates[0]!), ["127.0.0.11:9001", "127.0.0.12:9002", "127.0.0.13:9003"]);
    const state: SrvWatcherState = watcher.state;
    assertEquals(state.stale, false);
    assertEquals(state.lookups, 1);
    assertEquals(state.failures, 0);
    assert(state.lastSuccess !== undefined);
    // Two more unchanged lookups do not call onUpdate again.
    await waitFor("two more lookups", 3 * REFRESH + 1_000, () => watcher.state.lookups >= 3);
    assertEquals(updates.length, 1);
    assertEquals(errors, []);
    assert(watcher.state.backends === updates[0], "an unchanged lookup keeps the same objects");
  }));

Deno.test("SrvWatcher picks up a removed target within refresh + 1s", () =>
  withWatcher(async ({ dns, updates }) => {
    await dns.restart({ srv: [B1, B3], hosts: HOSTS });
    const restarted = Date.now();
    await waitFor("an update without b2", REFRESH + 1_000, () => updates.length === 2);
    assertEquals(ids(updates[1]!), ["127.0.0.11:9001", "127.0.0.13:9003"]);
    assert(Date.now() - restarted <= REFRESH + 1_000);
  }));

Deno.test("SrvWatcher keeps the last good set and reports stale while DNS is down", () =>
  withWatcher(async ({ dns, watcher, updates, errors }) => {
    const good = watcher.state.backends;
    const lastSuccess = watcher.state.lastSuccess;
    await dns.stop();
    await waitFor("two failed lookups", 4 * REFRESH + 2_000, () => watcher.state.failures >= 2);
    const state = watcher.state;
    assertEquals(state.stale, true);
    assert(state.backends === good, "the last good set is kept");
    assertEquals(state.lastSuccess, lastSuccess);
    assert(state.lastError?.startsWith(`SRV lookup ${NAME} failed:`), state.lastError);
    assertGreater(state.lookups, state.failures);
    assertEquals(updates.length, 1, "a failure does not call onUpdate");
    assertGreater(errors.length, 1);
    assert(errors.every((e) => e.message.startsWith(`SRV lookup ${NAME} failed:`)));
  }));

Deno.test("SrvWatcher reports stale when the name starts returning no records, then recovers", () =>
  withWatcher(async ({ dns, watcher, updates, errors }) => {
    await dns.restart({ srv: [], hosts: HOSTS });
    await waitFor("a failed lookup", REFRESH + 1_000, () => watcher.state.stale);
    assertEquals(ids(watcher.state.backends).length, 3);
    assert(errors.some((e) => e.message.endsWith("returned no records")));
    await dns.restart(SEED);
    await waitFor("recovery", REFRESH + 1_000, () => !watcher.state.stale);
    assertEquals(updates.length, 1, "recovering to the same set is not a change");
    assert(watcher.state.lastError?.endsWith("returned no records"), "lastError is kept");
  }));

Deno.test("SrvWatcher shows a new target after the next refresh", () =>
  withWatcher(async ({ dns, updates }) => {
    await dns.restart({ srv: [B1, B2, B3, B4], hosts: HOSTS });
    await waitFor("an update with b4", REFRESH + 1_000, () => updates.length === 2);
    assertEquals(
      summary(updates[1]!).map(({ id, priority, weight }) => ({ id, priority, weight })),
      [
        { id: "127.0.0.11:9001", priority: 0, weight: 30 },
        { id: "127.0.0.12:9002", priority: 0, weight: 20 },
        { id: "127.0.0.13:9003", priority: 10, weight: 40 },
        { id: "127.0.0.14:9004", priority: 10, weight: 10 },
      ],
    );
  }));

Deno.test("SrvWatcher reports a changed weight as an update", () =>
  withWatcher(async ({ dns, updates }) => {
    await dns.restart({ srv: [B1, { ...B2, weight: 25 }, B3], hosts: HOSTS });
    await waitFor("an update with b2 weighing 25", REFRESH + 1_000, () => updates.length === 2);
    assertEquals(updates[1]!.map((b) => b.weight), [30, 25, 40]);
  }));

Deno.test("SrvWatcher stops at once when aborted mid-lookup", async () => {
  const silent = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = silent.addr as Deno.NetAddr;
  const controller = new AbortController();
  const { watcher, errors } = watch({ ipAddr: "127.0.0.1", port }, controller.signal);
  try {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    controller.abort();
    await watcher.ready;
    await watcher.closed;
    assert(Date.now() - started < 100, "closed promptly");
    assertEquals(watcher.state.failures, 0);
    assertEquals(errors, []);
  } finally {
    silent.close();
  }
});

Deno.test("SrvWatcher rejects a refresh that is not a positive number", () => {
  for (const refresh of [0, -1, Number.NaN, Infinity]) {
    let thrown: unknown;
    try {
      new SrvWatcher({
        name: NAME,
        refresh,
        signal: AbortSignal.abort(),
        onUpdate: () => {},
        onError: () => {},
      });
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof RangeError, `refresh ${refresh}`);
  }
});
