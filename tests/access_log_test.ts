/**
 * The access log: one JSON line per request, on stdout (balancer run as a process)
 * or appended to a file, with fields matching the requests made.
 *
 * @module
 */
import { assert, assertEquals, assertLess, assertMatch } from "@std/assert";
import { Balancer } from "../src/balancer.ts";
import { loadConfig } from "../src/config.ts";
import { startDemoBackend } from "../src/demo/backends.ts";
import { delay, RawClient, type RawResponse } from "./_http.ts";
import { startLbProcess } from "./_process.ts";

const FIELDS = [
  "time",
  "client",
  "method",
  "host",
  "path",
  "status",
  "bytes_in",
  "bytes_out",
  "duration_ms",
  "route",
  "backend",
];

interface Line {
  time: string;
  client: string;
  method: string;
  host: string;
  path: string;
  status: number;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  route: string;
  backend: string;
  error?: string;
}

function parseLines(text: string): Line[] {
  assert(text.endsWith("\n"), `each line ends with a newline: ${JSON.stringify(text)}`);
  return text.trimEnd().split("\n").map((l) => {
    const line = JSON.parse(l) as Line;
    for (const f of FIELDS) assert(f in line, `field ${f} missing in ${l}`);
    return line;
  });
}

/** Bytes of a response as the client received it. */
function wireBytes(res: RawResponse): number {
  return new TextEncoder().encode(`${res.head}\r\n\r\n${res.body}`).length;
}

Deno.test("access log on stdout: one JSON line per request, fields matching the requests", async () => {
  const backend = await startDemoBackend("b1");
  const before = Date.now();
  const lb = await startLbProcess(`
listen: { http: 127.0.0.1:$PORT }
log: { access: stdout }
routes:
  - { name: app, host: app.test, backends: [{ address: 127.0.0.1:${backend.port} }] }
`);
  const responses: RawResponse[] = [];
  let stdout = "";
  try {
    const c = await RawClient.connect(lb.port);
    responses.push(await c.request("GET /a?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    responses.push(
      await c.request(
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello",
        "POST",
      ),
    );
    responses.push(await c.request("HEAD /h HTTP/1.1\r\nHost: app.test\r\n\r\n", "HEAD"));
    responses.push(await c.request("GET /missing HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"));
    c.close();
    await delay(50);
  } finally {
    const out = await lb.stop();
    stdout = out.stdout;
    await backend.close();
  }
  const after = Date.now();
  assertEquals(responses.map((r) => r.status), [200, 200, 200, 404]);
  const lines = parseLines(stdout);
  assertEquals(
    lines.map((l) => [l.method, l.host, l.path, l.status, l.bytes_in, l.route]),
    [
      ["GET", "app.test", "/a?x=1", 200, 0, "app"],
      ["POST", "app.test", "/upload", 200, 5, "app"],
      ["HEAD", "app.test", "/h", 200, 0, "app"],
      ["GET", "nowhere.test", "/missing", 404, 0, ""],
    ],
  );
  lines.forEach((l, i) => {
    assertMatch(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const t = Date.parse(l.time);
    assert(t >= before - 1000 && t <= after, l.time);
    if (i > 0) assert(t >= Date.parse(lines[i - 1]!.time), "in request order");
    assertEquals(l.client, "127.0.0.1");
    assertEquals(l.bytes_out, wireBytes(responses[i]!), `bytes_out of line ${i}`);
    assert(typeof l.duration_ms === "number" && l.duration_ms >= 0, String(l.duration_ms));
    assertLess(l.duration_ms, 5000);
  });
  assertEquals(lines.slice(0, 3).map((l) => l.backend), Array(3).fill(`127.0.0.1:${backend.port}`));
  assertEquals([lines[3]!.backend, lines[3]!.error], ["", "no route for nowhere.test/missing"]);
  assertEquals(lines.slice(0, 3).map((l) => l.error), [undefined, undefined, undefined]);
});

Deno.test("access log to a file (log.access: PATH) appends one line per request", async () => {
  const backend = await startDemoBackend("b1");
  const dir = await Deno.makeTempDir({ prefix: "unload-access-" });
  const log = `${dir}/access.log`;
  await Deno.writeTextFile(log, "earlier line\n");
  await Deno.writeTextFile(
    `${dir}/unload.yaml`,
    `
listen: { http: 127.0.0.1:0 }
log: { access: ${log} }
routes: [{ name: web, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
  );
  const lb = await Balancer.start(await loadConfig(`${dir}/unload.yaml`));
  try {
    for (let conn = 0; conn < 2; conn++) {
      const c = await RawClient.connect(lb.addrs.http!.port);
      for (let i = 0; i < 3; i++) {
        const res = await c.request(`GET /c${conn}/r${i} HTTP/1.1\r\nHost: x.test\r\n\r\n`);
        assertEquals(res.status, 200);
      }
      c.close();
    }
  } finally {
    await lb.close();
    await backend.close();
  }
  const text = await Deno.readTextFile(log);
  await Deno.remove(dir, { recursive: true });
  assert(text.startsWith("earlier line\n"), "appends, keeps what was there");
  const lines = parseLines(text.slice("earlier line\n".length));
  assertEquals(lines.map((l) => l.path), [
    "/c0/r0",
    "/c0/r1",
    "/c0/r2",
    "/c1/r0",
    "/c1/r1",
    "/c1/r2",
  ]);
  for (const l of lines) {
    assertEquals([l.route, l.backend, l.status, l.host], [
      "web",
      `127.0.0.1:${backend.port}`,
      200,
      "x.test",
    ]);
  }
});

Deno.test({
  name:
    "access log time and duration start when the request head is complete, not at keep-alive wait",
  async fn() {
    const backend = await startDemoBackend("b1");
    const dir = await Deno.makeTempDir({ prefix: "unload-access-" });
    const log = `${dir}/access.log`;
    await Deno.writeTextFile(
      `${dir}/unload.yaml`,
      `listen: { http: 127.0.0.1:0 }\nlog: { access: ${log} }\n` +
        `routes: [{ name: web, backends: [{ address: 127.0.0.1:${backend.port} }] }]\n`,
    );
    const lb = await Balancer.start(await loadConfig(`${dir}/unload.yaml`));
    try {
      const c = await RawClient.connect(lb.addrs.http!.port);
      await c.request("GET /1 HTTP/1.1\r\nHost: x.test\r\n\r\n");
      await delay(400);
      const sent = Date.now();
      await c.request("GET /2 HTTP/1.1\r\nHost: x.test\r\n\r\n");
      c.close();
      await lb.close();
      const lines = parseLines(await Deno.readTextFile(log));
      assertLess(lines[1]!.duration_ms, 200);
      assert(Date.parse(lines[1]!.time) >= sent - 5, lines[1]!.time);
    } finally {
      await lb.close();
      await backend.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
