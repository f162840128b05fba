import { assert, assertEquals } from "@std/assert";
import { makeCa } from "./_certs.ts";
import { H2ServerConnection } from "../src/h2/server.ts";
import { startH2Echo } from "./_h2_echo.ts";

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

async function sha256File(path: string): Promise<string> {
  const { out } = await run("sha256sum", [path]);
  return out.split(" ")[0]!;
}

Deno.test("h2 curl with prior knowledge gets the request echoed as JSON", async () => {
  await using echo = startH2Echo();
  const { code, out } = await run("curl", [
    "-sS",
    "--http2-prior-knowledge",
    "-H",
    "X-Test: yes",
    "--data-binary",
    "hello",
    `http://127.0.0.1:${echo.port}/info?q=1`,
  ]);
  assertEquals(code, 0, out);
  const info = JSON.parse(out);
  assertEquals(info.method, "POST");
  assertEquals(info.scheme, "http");
  assertEquals(info.authority, `127.0.0.1:${echo.port}`);
  assertEquals(info.path, "/info?q=1");
  assertEquals(info.body, 5);
  const fields: string[] = info.fields;
  assertEquals(fields[fields.indexOf("x-test") + 1], "yes");
});

Deno.test("h2 curl receives response trailers", async () => {
  await using echo = startH2Echo();
  const { code, out } = await run("curl", [
    "-sS",
    "-v",
    "--http2-prior-knowledge",
    `http://127.0.0.1:${echo.port}/trailers`,
  ]);
  assertEquals(code, 0, out);
  assert(out.includes("< x-checksum: abc"), out);
  assert(out.includes("body"), out);
});

Deno.test("h2load: 2000 requests over 10 connections, 10 streams each, all succeed", async () => {
  await using echo = startH2Echo();
  const { code, out } = await run("h2load", [
    "-n",
    "2000",
    "-c",
    "10",
    "-m",
    "10",
    `http://127.0.0.1:${echo.port}/`,
  ]);
  assertEquals(code, 0, out);
  assert(out.includes("2000 succeeded, 0 failed, 0 errored"), out);
  assertEquals(echo.streams, 2000);
});

Deno.test("h2 nghttp uploads 20 MiB intact", async () => {
  await using echo = startH2Echo();
  const file = await Deno.makeTempFile({ prefix: "h2-up-" });
  try {
    const { code } = await run("bash", ["-c", `head -c 20971520 /dev/urandom > ${file}`]);
    assertEquals(code, 0);
    const want = await sha256File(file);
    const { code: c2, out } = await run("nghttp", [
      "-d",
      file,
      `http://127.0.0.1:${echo.port}/hash`,
    ]);
    assertEquals(c2, 0, out);
    assertEquals(out.trim(), `20971520 ${want}`);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("h2 curl echoes a 20 MiB upload back intact", async () => {
  await using echo = startH2Echo();
  const dir = await Deno.makeTempDir({ prefix: "h2-echo-" });
  try {
    await run("bash", ["-c", `head -c 20971520 /dev/urandom > ${dir}/in`]);
    const { code, out } = await run("curl", [
      "-sS",
      "--http2-prior-knowledge",
      "--data-binary",
      `@${dir}/in`,
      "-o",
      `${dir}/out`,
      `http://127.0.0.1:${echo.port}/echo`,
    ]);
    assertEquals(code, 0, out);
    assertEquals(await sha256File(`${dir}/out`), await sha256File(`${dir}/in`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 curl downloads 50 MiB intact, the server holding at most its windows", async () => {
  await using echo = startH2Echo();
  const dir = await Deno.makeTempDir({ prefix: "h2-down-" });
  try {
    const size = 50 * 1024 * 1024;
    const before = Deno.memoryUsage().rss;
    const { code, out } = await run("curl", [
      "-sS",
      "--http2-prior-knowledge",
      "-o",
      `${dir}/out`,
      `http://127.0.0.1:${echo.port}/bytes/${size}`,
    ]);
    assertEquals(code, 0, out);
    const grown = Deno.memoryUsage().rss - before;
    assertEquals((await Deno.stat(`${dir}/out`)).size, size);
    // the same pattern made here, 1 MiB at a time
    const { out: expected } = await run("bash", [
      "-c",
      `python3 -c "
import sys, hashlib
h = hashlib.sha256(); block = bytes(i % 251 for i in range(251 * 4177))
left = ${size}
while left > 0:
    n = min(len(block), left); h.update(block[:n]); left -= n
print(h.hexdigest())"`,
    ]);
    assertEquals(await sha256File(`${dir}/out`), expected.trim());
    assert(grown < 40 * 1024 * 1024, `rss grew by ${grown} bytes for a 50 MiB body`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h2 over TLS: ALPN h2 with curl --http2", async () => {
  const ca = await makeCa();
  try {
    const cert = await ca.issue("server", { serial: 7 });
    await using echo = startH2Echo({ tls: cert });
    const { code, out } = await run("curl", [
      "-sS",
      "-k",
      "--http2",
      "-w",
      "\nversion=%{http_version}\n",
      `https://127.0.0.1:${echo.port}/tls-path`,
    ]);
    assertEquals(code, 0, out);
    assert(out.includes("version=2"), out);
    const info = JSON.parse(out.split("\n")[0]!);
    assertEquals([info.scheme, info.path], ["https", "/tls-path"]);
  } finally {
    await ca.remove();
  }
});

Deno.test("h2 drain(): the open stream still gets its response, then the connection closes", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const h2: H2ServerConnection = new H2ServerConnection(conn, {
      onStream: (s) => {
        h2.drain();
        s.respond(200, ["content-type", "text/plain"]);
        s.write(new TextEncoder().encode("drained\n")).then(() => s.end());
      },
    });
    await h2.serve();
    return h2.openStreams;
  })();
  const { code, out } = await run("curl", [
    "-sS",
    "--http2-prior-knowledge",
    `http://127.0.0.1:${listener.addr.port}/`,
  ]);
  assertEquals(code, 0, out);
  assertEquals(out, "drained\n");
  assertEquals(await served, 0);
});
