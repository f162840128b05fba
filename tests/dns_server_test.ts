import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { type DemoDnsRecords, startDnsServer } from "../src/cli/demo/dns_server.ts";
import { resolveSrv, SrvWatcher } from "../src/upstream/discovery/srv.ts";
import type { Backend } from "../src/upstream/backend.ts";

const NAME = "_http._tcp.app.test";
const SEED: DemoDnsRecords = {
  srv: [
    { name: NAME, target: "b1.unload.test", port: 9001, priority: 0, weight: 30 },
    { name: NAME, target: "b2.unload.test", port: 9002, priority: 0, weight: 20 },
    { name: NAME, target: "b3.unload.test", port: 9003, priority: 10, weight: 40 },
  ],
  a: [
    { name: "b1.unload.test", address: "127.0.0.11" },
    { name: "b2.unload.test", address: "127.0.0.12" },
    { name: "b3.unload.test", address: "127.0.0.13" },
  ],
};

/** Runs `fn` against a demo DNS server and always closes it. */
async function withServer(
  records: DemoDnsRecords,
  fn: (
    nameServer: { ipAddr: string; port: number },
    setRecords: (r: DemoDnsRecords) => void,
  ) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  const server = await startDnsServer({ records, signal: controller.signal });
  try {
    await fn({ ipAddr: "127.0.0.1", port: server.port }, (r) => server.setRecords(r));
  } finally {
    controller.abort();
    await server.closed;
  }
}

function ids(backends: readonly Backend[]): string[] {
  return backends.map((b) => b.id);
}

Deno.test("demo DNS server answers SRV queries from Deno.resolveDns", async () => {
  await withServer(SEED, async (nameServer) => {
    const records = await Deno.resolveDns(NAME, "SRV", { nameServer });
    assertEquals(
      records.map((r) => ({ ...r })).sort((a, b) => a.port - b.port),
      [
        { priority: 0, weight: 30, port: 9001, target: "b1.unload.test." },
        { priority: 0, weight: 20, port: 9002, target: "b2.unload.test." },
        { priority: 10, weight: 40, port: 9003, target: "b3.unload.test." },
      ],
    );
  });
});

Deno.test("demo DNS server answers A queries case-insensitively", async () => {
  await withServer(SEED, async (nameServer) => {
    assertEquals(await Deno.resolveDns("b1.unload.test", "A", { nameServer }), ["127.0.0.11"]);
    assertEquals(await Deno.resolveDns("B2.Unload.Test", "A", { nameServer }), ["127.0.0.12"]);
  });
});

Deno.test("demo DNS server gives no AAAA records and no answer for unknown names", async () => {
  await withServer(SEED, async (nameServer) => {
    await assertRejects(
      () => Deno.resolveDns("b1.unload.test", "AAAA", { nameServer }),
      Deno.errors.NotFound,
    );
    await assertRejects(
      () => Deno.resolveDns("b1.unload.test", "TXT", { nameServer }),
      Deno.errors.NotFound,
    );
    await assertRejects(
      () => Deno.resolveDns("nope.test", "A", { nameServer }),
      Deno.errors.NotFound,
    );
    await assertRejects(
      () => Deno.resolveDns("_x._tcp.test", "SRV", { nameServer }),
      Deno.errors.NotFound,
    );
  });
});

Deno.test("demo DNS server returns NXDOMAIN for unknown names and NOERROR for known ones", async () => {
  await withServer(SEED, async ({ port }) => {
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
      const ask = async (name: string, type: number) => {
        const labels = name.split(".").flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
        const query = new Uint8Array([
          0x12,
          0x34,
          0x01,
          0x00,
          0,
          1,
          0,
          0,
          0,
          0,
          0,
          0,
          ...labels,
          0,
          0,
          type,
          0,
          1,
        ]);
        await socket.send(query, server);
        const [reply] = await socket.receive();
        assertEquals([reply[0], reply[1]], [0x12, 0x34], "the id is echoed");
        assert((reply[2]! & 0x80) !== 0, "QR is set");
        return {
          rcode: reply[3]! & 0x0f,
          answers: (reply[6]! << 8) | reply[7]!,
          additional: reply[11],
        };
      };
      assertEquals(await ask("nope.test", 1), { rcode: 3, answers: 0, additional: 0 });
      assertEquals(await ask("b1.unload.test", 28), { rcode: 0, answers: 0, additional: 0 });
      assertEquals(await ask("b1.unload.test", 1), { rcode: 0, answers: 1, additional: 0 });
      assertEquals(await ask(NAME, 33), { rcode: 0, answers: 3, additional: 3 });
    } finally {
      socket.close();
    }
  });
});

Deno.test("demo DNS server interoperates with resolveSrv, including an IP literal target", async () => {
  const records: DemoDnsRecords = {
    srv: [...SEED.srv!, { name: NAME, target: "127.0.0.1", port: 9004, priority: 20, weight: 5 }],
    a: SEED.a!,
  };
  await withServer(records, async (nameServer) => {
    const backends = await resolveSrv(NAME, { nameServer });
    assertEquals(
      backends.map(({ id, priority, weight, name }) => ({ id, priority, weight, name })),
      [
        { id: "127.0.0.11:9001", priority: 0, weight: 30, name: "b1.unload.test" },
        { id: "127.0.0.12:9002", priority: 0, weight: 20, name: "b2.unload.test" },
        { id: "127.0.0.13:9003", priority: 10, weight: 40, name: "b3.unload.test" },
        { id: "127.0.0.1:9004", priority: 20, weight: 5, name: "127.0.0.1" },
      ],
    );
  });
});

Deno.test("demo DNS server serves new records after setRecords, seen by a watcher", async () => {
  await withServer(SEED, async (nameServer, setRecords) => {
    const controller = new AbortController();
    const updates: Backend[][] = [];
    const watcher = new SrvWatcher({
      name: NAME,
      nameServer,
      refresh: 200,
      jitter: 0,
      signal: controller.signal,
      onUpdate: (backends) => updates.push(backends),
      onError: () => {},
    });
    try {
      await watcher.ready;
      setRecords({ srv: SEED.srv!.filter((r) => r.target !== "b2.unload.test"), a: SEED.a! });
      const deadline = Date.now() + 1_500;
      while (updates.length < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assertEquals(updates.map(ids), [
        ["127.0.0.11:9001", "127.0.0.12:9002", "127.0.0.13:9003"],
        ["127.0.0.11:9001", "127.0.0.13:9003"],
      ]);
    } finally {
      controller.abort();
      await watcher.closed;
    }
  });
});

Deno.test("demo DNS server ignores garbage and keeps serving", async () => {
  await withServer(SEED, async (nameServer) => {
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      const server: Deno.NetAddr = {
        transport: "udp",
        hostname: "127.0.0.1",
        port: nameServer.port,
      };
      await socket.send(new Uint8Array([1, 2, 3]), server);
      await socket.send(new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 200, 1]), server);
      const [reply] = await socket.receive();
      assertEquals(reply[3]! & 0x0f, 1, "a bad question gets FORMERR");
    } finally {
      socket.close();
    }
    assertEquals(await Deno.resolveDns("b3.unload.test", "A", { nameServer }), ["127.0.0.13"]);
  });
});

Deno.test("demo DNS server rejects invalid records", async () => {
  const signal = AbortSignal.abort();
  await assertRejects(
    () => startDnsServer({ records: { a: [{ name: "b1.unload.test", address: "::1" }] }, signal }),
    RangeError,
    "A record address must be IPv4",
  );
  const server = await startDnsServer({ records: SEED, signal });
  assertThrows(
    () => server.setRecords({ srv: [{ name: NAME, target: "b1.unload.test", port: 70000 }] }),
    RangeError,
    "Port must be 0..65535: received 70000",
  );
  await server.closed;
});
