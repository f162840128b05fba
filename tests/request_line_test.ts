/**
 * Request lines that are valid but unusual, or carry what must not be forwarded
 * (RFC 9110 §6.2, §9.1; RFC 9112 §3.2): a higher HTTP/1 minor version, an extension
 * method in lower case (HTTP/1.1 and HTTP/2), a target or `:path` with a fragment.
 * Real sockets through the balancer to a raw backend that records what it receives.
 *
 * @module
 */
import { assert, assertEquals } from "@std/assert";
import {
  delay,
  forEachHead,
  proxyTo,
  RawClient,
  rawServer,
  startBalancer,
  writeAllText,
} from "./_http.ts";
import { runH2Scenario } from "./_h2_scenario.ts";
import { ErrorCode } from "../src/h2/frame.ts";

/** A backend that answers every request with 200 and keeps the request heads it got. */
function recordingBackend(heads: string[]) {
  return rawServer((conn, read) =>
    forEachHead(read, async (head) => {
      heads.push(head);
      await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    })
  );
}

Deno.test("an HTTP/1.2 request is processed as HTTP/1.1: forwarded as 1.1, answered in HTTP/1.1, kept alive", async () => {
  const heads: string[] = [];
  await using proxied = await proxyTo(recordingBackend(heads));
  const res = await proxied.c.request("GET /v HTTP/1.2\r\nHost: app.test\r\n\r\n");
  assertEquals([res.status, res.body], [200, "ok"]);
  assert(res.head.startsWith("HTTP/1.1 200"), res.head);
  assert(heads[0]?.startsWith("GET /v HTTP/1.1\r\n"), heads[0]);
  // the connection is still usable, as for any HTTP/1.1 request
  const again = await proxied.c.request("GET /w HTTP/1.9\r\nHost: app.test\r\n\r\n");
  assertEquals(again.status, 200);
  assert(heads[1]?.startsWith("GET /w HTTP/1.1\r\n"), heads[1]);
});

Deno.test("a lower-case method is an extension method: forwarded with its case kept, not rejected", async () => {
  const heads: string[] = [];
  await using proxied = await proxyTo(recordingBackend(heads));
  const res = await proxied.c.request("get /m HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals([res.status, res.body], [200, "ok"]);
  assert(heads[0]?.startsWith("get /m HTTP/1.1\r\n"), heads[0]);
  const other = await proxied.c.request("Purge /n HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assertEquals(other.status, 200);
  assert(heads[1]?.startsWith("Purge /n HTTP/1.1\r\n"), heads[1]);
});

Deno.test("a request target with a #fragment gets 400 and a close, and nothing reaches the backend", async () => {
  const heads: string[] = [];
  const backend = recordingBackend(heads);
  await using proxied = await proxyTo(backend);
  for (const target of ["/a#b", "/#", "/p?q=1#frag", "http://app.test/x#y"]) {
    const c = await RawClient.connect(proxied.lb.port);
    try {
      const res = await c.request(`GET ${target} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
      assertEquals(res.status, 400, target);
      assert(await c.closed(), `closed after ${target}`);
    } finally {
      c.close();
    }
  }
  await delay(20);
  assertEquals(backend.accepted, 0, "backend connections");
  assertEquals(heads, []);
});

Deno.test("an HTTP/2 :path with a #fragment is reset (PROTOCOL_ERROR) and never forwarded; a clean path on the same connection is", async () => {
  const heads: string[] = [];
  const backend = recordingBackend(heads);
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  try {
    const out = await runH2Scenario(lb.port, "sequential", { path: "app.test/a#b,app.test/ok" });
    assertEquals(out.rst["1"], ErrorCode.PROTOCOL_ERROR);
    assertEquals(out.status["3"], 200);
    assertEquals(heads.length, 1, "only the clean request reached the backend");
    assert(heads[0]?.startsWith("GET /ok HTTP/1.1\r\n"), heads[0]);
  } finally {
    await backend.close();
  }
});

Deno.test("a lower-case :method over HTTP/2 reaches an HTTP/1.1 backend with its case kept", async () => {
  const heads: string[] = [];
  const backend = recordingBackend(heads);
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0, h2c: true }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  try {
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--http2-prior-knowledge",
        "-X",
        "get",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
      ]
        .concat([`http://127.0.0.1:${lb.port}/h2m`]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(
      new TextDecoder().decode(out.stdout),
      "2 200",
      new TextDecoder().decode(out.stderr),
    );
    assert(heads[0]?.startsWith("get /h2m HTTP/1.1\r\n"), heads[0]);
  } finally {
    await backend.close();
  }
});
