import { assert, assertEquals } from "@std/assert";
import { delay, freePort, keepAliveBackend, RawClient } from "./_http.ts";
import { startLbProcess } from "./_process.ts";

Deno.test("workers: 2 serves one port from two event loops, both taking connections", async () => {
  const backend = keepAliveBackend("b");
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
workers: 2
log: { access: stdout }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  try {
    // The main thread answers as soon as its port is bound; give the second worker
    // time to join the port group before counting who takes connections.
    await delay(1000);
    for (let i = 0; i < 40; i++) { // new connections: the kernel spreads them by 4-tuple
      const c = await RawClient.connect(lb.port);
      const res = await c.request("GET /w HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      assertEquals(res.status, 200);
      c.close();
    }
  } finally {
    const { code, stdout, stderr } = await lb.stop();
    await backend.close();
    assertEquals(code, 0, stderr);
    assert(stderr.includes("with 2 workers"), stderr);
    const workers = new Set(
      stdout.trim().split("\n").map((l) => JSON.parse(l).worker as number),
    );
    assertEquals([...workers].sort(), [0, 1], "access log lines from both workers");
  }
});

Deno.test("workers > 1 refuses port 0, and a port in use stops every worker with exit 2", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: freePort() });
  const port = (busy.addr as Deno.NetAddr).port;
  const dir = await Deno.makeTempDir();
  try {
    const { runCli } = await import("./_process.ts");
    await Deno.writeTextFile(
      `${dir}/a.yaml`,
      `listen: { http: 127.0.0.1:${port} }\nworkers: 2\nroutes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]\n`,
    );
    const inUse = await runCli(["run", "--config", `${dir}/a.yaml`]);
    assertEquals(inUse.code, 2);
    assert(inUse.stderr.includes("address already in use"), inUse.stderr);
    await Deno.writeTextFile(
      `${dir}/b.yaml`,
      "listen: { http: 127.0.0.1:0 }\nworkers: 2\nroutes: [{ name: app, backends: [{ address: 127.0.0.1:9 }] }]\n",
    );
    const zero = await runCli(["run", "--config", `${dir}/b.yaml`]);
    assertEquals(zero.code, 2);
    assert(zero.stderr.includes("workers > 1 needs fixed listen ports"), zero.stderr);
    const checked = await runCli(["validate", "--config", `${dir}/b.yaml`], {
      perms: ["--allow-read"],
    });
    assertEquals(checked.code, 2);
    assert(
      checked.stderr.includes("b.yaml:1: listen.http: workers > 1 needs fixed listen ports"),
      checked.stderr,
    );
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});
