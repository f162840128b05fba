import { assert, assertEquals } from "@std/assert";
import { runH2Scenario } from "./_h2_scenario.ts";
import { ErrorCode } from "../src/h2/frame.ts";
import { H2ServerConnection } from "../src/h2/server.ts";
import { serveOneConnection, startH2Echo } from "./_h2_echo.ts";

Deno.test("h2 rapid reset: streams reset in the same batch never reach onStream, and the connection gets ENHANCE_YOUR_CALM", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "rapid_reset", { count: 5000 });
  assertEquals(out.goaway?.[0], ErrorCode.ENHANCE_YOUR_CALM);
  await echo.settled();
  assert(echo.streams <= 500, `${echo.streams} of 5000 reset streams reached onStream`);
});

Deno.test("h2 CONTINUATION flood: the server stops reading and closes within 1 MiB", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let read = 0;
  const served = (async () => {
    const conn = await listener.accept();
    const counting = {
      read: async (p: Uint8Array) => {
        const n = await conn.read(p);
        if (n !== null) read += n;
        return n;
      },
      write: (p: Uint8Array) => conn.write(p),
      close: () => conn.close(),
    };
    await new H2ServerConnection(counting, { onStream: () => {} }).serve();
  })();
  const out = await runH2Scenario(listener.addr.port, "continuation_flood");
  await served;
  assert(read < 1 << 20, `server read ${read} bytes`);
  assert(out.sent > read, "the client was still sending");
  if (out.goaway !== null) assertEquals(out.goaway[0], ErrorCode.ENHANCE_YOUR_CALM);
});

for (
  const [name, n] of [
    ["ping_flood", 5000],
    ["settings_flood", 5000],
    ["window_update_flood", 5000],
    ["empty_data_flood", 5000],
  ] as const
) {
  Deno.test(`h2 ${name.replaceAll("_", " ")} ends with GOAWAY ENHANCE_YOUR_CALM`, async () => {
    await using echo = startH2Echo();
    const out = await runH2Scenario(echo.port, name, { count: n });
    assertEquals(out.goaway?.[0], ErrorCode.ENHANCE_YOUR_CALM);
    if (name === "ping_flood") assert(out.ping_acks <= 1001, `${out.ping_acks} PING ACKs`);
  });
}

for (
  const [name, code] of [
    ["stream_id_reuse", ErrorCode.PROTOCOL_ERROR],
    ["data_on_idle", ErrorCode.PROTOCOL_ERROR],
    ["frame_too_large", ErrorCode.FRAME_SIZE_ERROR],
    ["setting_2_2", ErrorCode.PROTOCOL_ERROR], // ENABLE_PUSH 2
    ["setting_4_2147483648", ErrorCode.FLOW_CONTROL_ERROR], // INITIAL_WINDOW_SIZE 2^31
    ["setting_5_100", ErrorCode.PROTOCOL_ERROR], // MAX_FRAME_SIZE < 16384
    ["setting_5_16777216", ErrorCode.PROTOCOL_ERROR], // MAX_FRAME_SIZE > 2^24-1
    ["window_update_zero", ErrorCode.PROTOCOL_ERROR],
    ["window_update_overflow", ErrorCode.FLOW_CONTROL_ERROR],
    ["headers_interleaved", ErrorCode.PROTOCOL_ERROR],
  ] as const
) {
  Deno.test(`h2 connection error: ${name.replaceAll("_", " ")} gets GOAWAY ${code}`, async () => {
    await using echo = startH2Echo();
    const out = await runH2Scenario(echo.port, name);
    assertEquals(out.goaway?.[0], code);
  });
}

Deno.test("h2 DATA on a closed stream gets RST_STREAM STREAM_CLOSED and the connection goes on", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "data_on_closed");
  assertEquals(out.rst["1"], ErrorCode.STREAM_CLOSED);
  assertEquals(out.ping_acks, 1);
  assertEquals(out.status["3"], 200);
  assertEquals(out.goaway, null);
});

Deno.test("h2 HPACK bomb: a header list over the limit gets 431 and the next request on the connection works", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "hpack_bomb");
  assertEquals(out.status["1"], 431);
  assertEquals(out.status["3"], 200);
  assertEquals(out.goaway, null);
  assertEquals(echo.streams, 1);
});

Deno.test("h2 body longer than content-length resets the stream with PROTOCOL_ERROR", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "content_length_over");
  assertEquals(out.rst["1"], ErrorCode.PROTOCOL_ERROR);
  assertEquals(out.ping_acks, 1);
});

Deno.test("h2 malformed requests are reset with PROTOCOL_ERROR and never reach onStream", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "malformed");
  for (let i = 0; i < 12; i++) {
    assertEquals(out.rst[String(2 * i + 1)], ErrorCode.PROTOCOL_ERROR, `case ${i}`);
  }
  assertEquals(out.status["25"], 501); // CONNECT
  assertEquals(out.status["99"], 200);
  assertEquals(echo.streams, 1);
});

Deno.test("h2 a zero window held past bodyIdleTimeout resets the stream, the connection goes on", async () => {
  await using echo = startH2Echo({ h2: { bodyIdleTimeout: 200 } });
  const out = await runH2Scenario(echo.port, "zero_window");
  assertEquals(out.rst["1"], ErrorCode.CANCEL);
  assertEquals(out.ping_acks, 1);
});

Deno.test("h2 a request body that never comes is reset after bodyIdleTimeout", async () => {
  await using echo = startH2Echo({ h2: { bodyIdleTimeout: 200 } });
  const out = await runH2Scenario(echo.port, "silent_upload");
  assertEquals(out.rst["1"], ErrorCode.CANCEL);
  assertEquals(out.ping_acks, 1);
});

Deno.test("h2 a client that stops reading gets no more than its window queued", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let handed = 0;
  let failed: unknown;
  const served = serveOneConnection(listener, async (s) => {
    s.respond(200, []);
    const chunk = new Uint8Array(16384);
    try {
      for (let i = 0; i < 640; i++) {
        await s.write(chunk);
        handed += chunk.length;
      }
    } catch (e) {
      failed = e;
    }
  });
  await runH2Scenario(listener.addr.port, "no_read", { count: 1000 });
  await served;
  assert(failed instanceof Error, "the write waiting on the window fails when the client leaves");
  assert(handed > 0 && handed <= 65535, `${handed} bytes handed to a client with a 65535 window`);
});

Deno.test("h2 a connection without streams for idleTimeout gets GOAWAY NO_ERROR and is closed", async () => {
  await using echo = startH2Echo({ h2: { idleTimeout: 200 } });
  const out = await runH2Scenario(echo.port, "idle");
  assertEquals(out.goaway, [ErrorCode.NO_ERROR, 0]);
  await echo.settled();
});

Deno.test("h2 a HEADERS frame that makes its stream depend on itself is a stream error PROTOCOL_ERROR (RFC 9113 §5.3.1); the connection goes on", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "self_dependent_headers");
  assertEquals(out.rst["1"], ErrorCode.PROTOCOL_ERROR);
  assertEquals(out.status["1"], undefined);
  assertEquals(out.status["3"], 200);
  assertEquals(out.goaway, null);
  assertEquals(echo.streams, 1, "only stream 3 reached onStream");
});

Deno.test("h2 a PRIORITY frame that makes a stream (open or idle) depend on itself is a stream error PROTOCOL_ERROR; the connection goes on", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "self_dependent_priority");
  assertEquals(out.rst["1"], ErrorCode.PROTOCOL_ERROR);
  assertEquals(out.rst["5"], ErrorCode.PROTOCOL_ERROR);
  assertEquals(out.status["3"], 200);
  assertEquals(out.goaway, null);
});
