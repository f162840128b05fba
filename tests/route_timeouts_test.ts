// routes[].timeouts for HTTP/1.1 backends and clients (the gRPC side is in
// tests/grpc_timeouts_test.ts): a route's own response timeout, 0 turning it off, and
// max_stream_duration ending a response that would stream forever.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { delay, forEachHead, rawServer, startBalancer, writeAllText } from "./_http.ts";

/** A backend that answers each request after `ms` milliseconds. */
function lateBackend(ms: number) {
  return rawServer((conn, read) =>
    forEachHead(read, async () => {
      await delay(ms);
      await writeAllText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate");
    })
  );
}

Deno.test("a route's timeouts.response: 0 waits for a late answer that the top-level timeouts.response turns into a 504", async () => {
  await using backend = lateBackend(1000);
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
timeouts: { response: 300ms }
routes:
  - name: patient
    path: /patient
    backends: [{ address: 127.0.0.1:${backend.port} }]
    timeouts: { response: 0 }
  - name: default
    backends: [{ address: 127.0.0.1:${backend.port} }]
`);
  const patient = await fetch(`http://127.0.0.1:${lb.port}/patient`);
  assertEquals([patient.status, await patient.text()], [200, "late"]);
  const plain = await fetch(`http://127.0.0.1:${lb.port}/`);
  assertEquals(plain.status, 504);
  assertStringIncludes(await plain.text(), "504 Gateway Timeout");
});

Deno.test("a route's timeouts.max_stream_duration cuts a response that keeps streaming (never idle)", async () => {
  await using backend = rawServer((conn, read) =>
    forEachHead(read, async () => {
      await writeAllText(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
      for (let i = 0; i < 600; i++) { // a chunk every 50 ms: never idle, ends after 30 s
        await writeAllText(conn, "2\r\nx\n\r\n");
        await delay(50);
      }
      await writeAllText(conn, "0\r\n\r\n");
    })
  );
  await using lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
timeouts: { body_idle: 1s }
routes:
  - name: feed
    backends: [{ address: 127.0.0.1:${backend.port} }]
    timeouts: { max_stream_duration: 700ms }
`);
  const res = await fetch(`http://127.0.0.1:${lb.port}/`);
  assertEquals(res.status, 200);
  const reader = res.body!.getReader();
  let lines = 0;
  let error: unknown;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      lines += new TextDecoder().decode(value).split("\n").length - 1;
    }
  } catch (e) {
    error = e;
  }
  // the response was cut (no last chunk: an error, not an end), after some chunks
  assert(error !== undefined, `the stream ended cleanly after ${lines} lines`);
  assert(lines > 0 && lines < 600, `${lines} lines`);
});
