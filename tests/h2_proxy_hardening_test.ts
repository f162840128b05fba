/**
 * HTTP/2 through the balancer run as a process: large bodies both ways with
 * bounded memory, h2load, attacks (rapid reset, CONTINUATION flood) that stay at
 * the edge while others are served, and a drain with a stream in flight.
 *
 * @module
 */
import { assert, assertEquals, assertLess } from "@std/assert";
import { patternSha256, startOrigin } from "./_h1_origin.ts";
import { startLbProcess } from "./_process.ts";
import { type H2Outcome, h2ScenarioArgs, runH2Scenario } from "./_h2_scenario.ts";
import { ErrorCode } from "../src/h2/frame.ts";

const dec = new TextDecoder();
const MiB = 1024 * 1024;

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

async function sha256File(path: string): Promise<string> {
  return (await run("sha256sum", [path])).out.split(" ")[0]!;
}

/** A balancer process with h2c on, one route to `port`. */
function h2cBalancer(port: number, extra = "") {
  return startLbProcess(`
listen: { http: 127.0.0.1:$PORT, h2c: true }
${extra}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${port} }] }]
`);
}

/** Bytes the process has read through read(2)-like calls (sockets included), from /proc. */
function bytesRead(pid: number): number {
  return Number(/rchar: (\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/io`))![1]);
}

async function h2cGet(port: number, path: string): Promise<string> {
  const { code, out } = await run("curl", [
    "-sS",
    "--http2-prior-knowledge",
    `http://127.0.0.1:${port}${path}`,
  ]);
  assertEquals(code, 0, out);
  return out;
}

Deno.test("h2 proxy: 20 MiB uploads (with and without content-length) and 50 MiB downloads (content-length and chunked) pass intact with bounded balancer memory", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  const dir = await Deno.makeTempDir({ prefix: "unload-h2-bodies-" });
  try {
    const url = `http://127.0.0.1:${lb.port}`;
    assertEquals(await h2cGet(lb.port, "/warm"), "b1 /warm\n");
    const before = lb.rss();

    const size = 20 * MiB;
    assertEquals((await run("bash", ["-c", `head -c ${size} /dev/urandom > ${dir}/in`])).code, 0);
    const want = await sha256File(`${dir}/in`);
    const sized = await run("curl", [
      "-sS",
      "--http2-prior-knowledge",
      "--data-binary",
      `@${dir}/in`,
      `${url}/hash`,
    ]);
    assertEquals(sized.out, `length ${size} ${want}`);
    // from a pipe curl cannot know the length: no content-length, so the backend gets chunked
    const piped = await run("bash", [
      "-c",
      `curl -sS --http2-prior-knowledge -T - ${url}/hash < ${dir}/in`,
    ]);
    assertEquals(piped.out, `chunked ${size} ${want}`);

    const big = 50 * MiB;
    for (const kind of ["bytes", "chunked"]) {
      const { code, out } = await run("curl", [
        "-sS",
        "--http2-prior-knowledge",
        "-w",
        "%{http_version}",
        "-o",
        `${dir}/${kind}`,
        `${url}/${kind}/${big}`,
      ]);
      assertEquals([code, out], [0, "2"]);
      assertEquals(await sha256File(`${dir}/${kind}`), patternSha256(big), kind);
    }
    const grown = lb.rss() - before;
    assertLess(grown, 64 * MiB, `balancer RSS grew by ${grown} bytes`);
  } finally {
    await lb.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 proxy: h2load -n 5000 -c 20 -m 10 through the balancer, all succeed", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  try {
    const { code, out } = await run("h2load", [
      "-n",
      "5000",
      "-c",
      "20",
      "-m",
      "10",
      `http://127.0.0.1:${lb.port}/load`,
    ]);
    assertEquals(code, 0, out);
    assert(out.includes("5000 succeeded, 0 failed, 0 errored"), out);
    assert(out.includes("status codes: 5000 2xx"), out);
    assertEquals(b.heads.length, 5000);
  } finally {
    await lb.stop();
  }
});

Deno.test("h2 proxy: rapid reset of 5000 streams: at most 10% reach the backend, GOAWAY ENHANCE_YOUR_CALM, and another client is served", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  try {
    const out = await runH2Scenario(lb.port, "rapid_reset", { count: 5000 });
    assertEquals(out.goaway?.[0], ErrorCode.ENHANCE_YOUR_CALM);
    assertEquals(await h2cGet(lb.port, "/after"), "b1 /after\n");
    const reached = b.heads.length - 1;
    assert(reached <= 500, `${reached} of 5000 reset streams reached the backend`);
  } finally {
    await lb.stop();
  }
});

Deno.test("h2 proxy: a CONTINUATION flood is cut off within 1 MiB read, and the balancer serves others after it", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  try {
    const before = bytesRead(lb.pid);
    const out = await runH2Scenario(lb.port, "continuation_flood");
    const read = bytesRead(lb.pid) - before;
    assertLess(read, MiB, `the balancer read ${read} bytes of the flood`);
    assert(out.sent > read, "the client was still sending");
    if (out.goaway !== null) assertEquals(out.goaway[0], ErrorCode.ENHANCE_YOUR_CALM);
    assertEquals(await h2cGet(lb.port, "/after"), "b1 /after\n");
    assertEquals(b.heads.length, 1);
  } finally {
    await lb.stop();
  }
});

Deno.test("h2 proxy: SIGTERM with a stream in flight: the client gets GOAWAY, the stream completes with 200 and its body, the process exits 0", async () => {
  await using b = startOrigin("b1");
  const lb = await h2cBalancer(b.port);
  let exited = false;
  try {
    const head = b.nextHead();
    const child = new Deno.Command("/usr/bin/python3", {
      args: h2ScenarioArgs(lb.port, "get_through_goaway", { path: "/hold" }),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    await head; // in flight: the backend holds its answer
    lb.child.kill("SIGTERM");
    let text = "";
    while (!text.includes("GOAWAY\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`the client ended without GOAWAY: ${text}`);
      text += value;
    }
    b.release();
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    await stderr.cancel();
    assert((await child.status).success, text);
    const out = JSON.parse(text.slice(text.indexOf("GOAWAY\n") + 7)) as H2Outcome;
    assertEquals(out.goaway, [ErrorCode.NO_ERROR, 1]);
    assertEquals(out.status["1"], 200);
    assertEquals(out.body["1"], "b1 /hold\n");
    assertEquals(out.ended, [1]);
    assertEquals((await lb.child.status).code, 0);
    exited = true;
  } finally {
    const { code, stderr } = await lb.stop(exited ? "SIGTERM" : "SIGKILL");
    if (exited) assertEquals(code, 0, stderr);
  }
});
