/**
 * The access log: one JSON line per request, on stdout (balancer run as a process)
 * or appended to a file, with fields matching the requests made.
 *
 * @module
 */
import { assert, assertEquals, assertLess, assertMatch } from "@std/assert";
import { Balancer } from "../src/server/balancer.ts";
import { loadConfig } from "../src/config/config.ts";
import { startDemoBackend } from "../src/cli/demo/backends.ts";
import { delay, RawClient, type RawResponse } from "./_http.ts";
import { startLbProcess } from "./_process.ts";
import { createLogger } from "../src/observe/log.ts";
import type { ExchangeRecord } from "../src/proxy/context.ts";

const FIELDS = [
  "time",
  "client",
  "proto",
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

/** A JSON access log line: the ExchangeRecord's fields, some renamed (snake_case, units). */
type Line = Omit<ExchangeRecord, "time" | "bytesIn" | "bytesOut" | "duration"> & {
  time: string;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
};

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

/** A demo backend and a balancer in front of it logging to `access.log` in a temp dir. */
async function withFileLog() {
  const backend = await startDemoBackend("b1");
  const dir = await Deno.makeTempDir({ prefix: "unload-access-" });
  const log = `${dir}/access.log`;
  await Deno.writeTextFile(
    `${dir}/unload.yaml`,
    `listen: { http: 127.0.0.1:0 }\nlog: { access: ${log} }\n` +
      `routes: [{ name: web, backends: [{ address: 127.0.0.1:${backend.port} }] }]\n`,
  );
  const lb = await Balancer.start(await loadConfig(`${dir}/unload.yaml`));
  return { backend, dir, log, lb };
}

Deno.test({
  name:
    "access log time and duration start when the request head is complete, not at keep-alive wait",
  async fn() {
    const { backend, dir, log, lb } = await withFileLog();
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

Deno.test("access log lines are written in batches, yet reach the file within ~100 ms while the balancer runs", async () => {
  const { backend, dir, log, lb } = await withFileLog();
  const lines = async () => (await Deno.readTextFile(log)).split("\n").filter(Boolean).length;
  try {
    const c = await RawClient.connect(lb.addrs.http!.port);
    await c.request("GET /one HTTP/1.1\r\nHost: x.test\r\n\r\n");
    // the balancer keeps running: the line is written by the batch timer, not by close()
    for (let i = 0; i < 40 && (await lines()) === 0; i++) await delay(50);
    assertEquals(await lines(), 1);
    for (let i = 0; i < 300; i++) await c.request(`GET /${i} HTTP/1.1\r\nHost: x.test\r\n\r\n`);
    c.close();
    for (let i = 0; i < 40 && (await lines()) < 301; i++) await delay(50);
    assertEquals(await lines(), 301);
  } finally {
    await lb.close();
    await backend.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log lines are valid JSON whatever the request carried (quotes, backslashes, control characters, non-ASCII)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unload-access-" });
  const file = `${dir}/access.log`;
  const log = createLogger({ access: file, quiet: true });
  const record = {
    time: Date.UTC(2026, 10, 25, 12, 0, 0, 7),
    client: "::1",
    proto: "h2",
    method: "GET",
    host: 'we"ird\\.test',
    path: '/a\u0001b\u2028é?q="x"',
    status: 502,
    bytesIn: 0,
    bytesOut: 123,
    duration: 1.23456,
    route: "app",
    backend: "",
    error: 'Connect to 127.0.0.1:9 failed: "refused"\n',
  };
  log.access(record);
  log.close();
  const [line] = parseLines(await Deno.readTextFile(file));
  await Deno.remove(dir, { recursive: true });
  assertEquals(line as unknown, {
    time: "2026-11-25T12:00:00.007Z",
    client: "::1",
    proto: "h2",
    method: "GET",
    host: 'we"ird\\.test',
    path: '/a\u0001b\u2028é?q="x"',
    status: 502,
    bytes_in: 0,
    bytes_out: 123,
    duration_ms: 1.235,
    route: "app",
    backend: "",
    error: 'Connect to 127.0.0.1:9 failed: "refused"\n',
  });
});
