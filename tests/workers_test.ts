import { assert, assertEquals } from "@std/assert";
import {
  delay,
  forEachHead,
  freePort,
  keepAliveBackend,
  namedResponse,
  RawClient,
  rawServer,
  writeAllText,
} from "./_http.ts";
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
    // The main thread answers as soon as its port is bound; the second worker joins
    // the port group before the balancer logs that it serves "with 2 workers".
    await bothWorkers(lb);
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

Deno.test("workers: 2 — /metrics and /status count the requests of both workers", async () => {
  const backend = keepAliveBackend("b");
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:$ADMIN }
workers: 2
log: { access: stdout }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  let stdout = "";
  try {
    await bothWorkers(lb); // the second worker has joined the port group
    for (let i = 0; i < 40; i++) {
      const c = await RawClient.connect(lb.port);
      assertEquals((await c.get(`/${i}`)).status, 200);
      c.close();
    }
    const status = await (await fetch(`http://127.0.0.1:${lb.adminPort}/status`)).json();
    assertEquals([status.workers, status.requests], [2, 40]);
    assertEquals(status.routes[0].backends[0].requests, 40);
    const metrics = await (await fetch(`http://127.0.0.1:${lb.adminPort}/metrics`)).text();
    const served =
      /^unload_requests_total\{route="app",backend="127\.0\.0\.1:\d+",code="2xx"\} (\d+)$/m
        .exec(metrics)?.[1];
    assertEquals(served, "40", metrics);
  } finally {
    const out = await lb.stop();
    stdout = out.stdout;
    await backend.close();
  }
  const workers = new Set(stdout.trim().split("\n").map((l) => JSON.parse(l).worker as number));
  assertEquals([...workers].sort(), [0, 1], "both workers served some of them");
});

Deno.test("workers: 2 — /status counts the requests in flight in both workers", async () => {
  // a backend that answers only when told to
  let release: () => void = () => {};
  const released = new Promise<void>((r) => release = r);
  let arrived = 0;
  const backend = rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      arrived++;
      await released;
      await writeAllText(conn, namedResponse("b", head));
    })
  );
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
admin: { listen: 127.0.0.1:$ADMIN }
workers: 2
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const clients: RawClient[] = [];
  try {
    await bothWorkers(lb); // the second worker has joined the port group
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await RawClient.connect(lb.port);
      clients.push(c);
      const answer = c.get(`/${i}`);
      answer.catch(() => {}); // awaited below; closed unanswered if an assertion fails first
      answers.push(answer);
    }
    for (let i = 0; i < 100 && arrived < 20; i++) await delay(50);
    assertEquals(arrived, 20);
    const status = await (await fetch(`http://127.0.0.1:${lb.adminPort}/status`)).json();
    assertEquals(status.routes[0].backends[0].inflight, 20);
    release();
    await Promise.all(answers);
  } finally {
    release();
    for (const c of clients) c.close();
    await lb.stop();
    await backend.close();
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

/** Waits until the balancer says every worker serves (it logs that once they have joined the port). */
async function bothWorkers(lb: { stderrSoFar(): string }): Promise<void> {
  for (let i = 0; !lb.stderrSoFar().includes("with 2 workers"); i++) {
    if (i > 300) throw new Error(`the workers did not start: ${lb.stderrSoFar()}`);
    await delay(100);
  }
}
