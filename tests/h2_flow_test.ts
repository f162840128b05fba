/**
 * HTTP/2 flow control and framing details a well-behaved client rarely uses,
 * against unload's own server through the frame-level Python client: window
 * changes by SETTINGS on an open stream, padding, and small writes that are
 * copied so the writer need not be waited for.
 */
import { assert, assertEquals } from "@std/assert";
import { runH2Scenario } from "./_h2_scenario.ts";
import { serveOneConnection, startH2Echo } from "./_h2_echo.ts";
import { COPY_WRITE_MAX, SETTLED } from "../src/h2/_stream_base.ts";

Deno.test("h2 SETTINGS_INITIAL_WINDOW_SIZE raised and lowered on an open stream moves its window (RFC 9113 §6.9.2)", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "window_settings");
  const marks = out.marks ?? {};
  assertEquals(marks.at_1000, 1000, "an initial window of 1000 lets 1000 bytes out");
  assertEquals(marks.at_40000, 40000, "raising it to 40000 lets the open stream go on to 40000");
  assertEquals(
    marks.after_lowering,
    40000,
    "lowered to 10000, the window is -30000; a 30000 update brings it to 0, not above",
  );
  assertEquals(out.data["1"], 100000, "the rest after the last WINDOW_UPDATE");
  assert(out.ended.includes(1));
  assertEquals(out.goaway, null);
});

Deno.test("h2 padded HEADERS (with PRIORITY) and padded DATA: the padding is dropped", async () => {
  await using echo = startH2Echo();
  const out = await runH2Scenario(echo.port, "padded");
  assertEquals(out.status["1"], 200);
  assertEquals(out.body["1"], "hello, padded world");
  assertEquals(out.rst, {});
  assertEquals(out.goaway, null);
});

Deno.test("h2 a small write is copied and resolves at once; a larger one waits for the writer", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const results: { small: boolean; large: boolean; smallAfterReuse: string } = {
    small: false,
    large: false,
    smallAfterReuse: "",
  };
  const served = serveOneConnection(listener, async (s) => {
    s.respond(200, []);
    const buf = new TextEncoder().encode("small");
    results.small = s.write(buf) === SETTLED;
    buf.set(new TextEncoder().encode("XXXXX")); // reused at once: the copy went out
    const big = new Uint8Array(COPY_WRITE_MAX + 1).fill(97);
    const p = s.write(big);
    results.large = p !== SETTLED;
    await p;
    await s.end();
  });
  const res = await new Deno.Command("curl", {
    args: ["-s", "--http2-prior-knowledge", `http://127.0.0.1:${listener.addr.port}/`],
    stdout: "piped",
  }).output();
  await served;
  const body = new TextDecoder().decode(res.stdout);
  results.smallAfterReuse = body.slice(0, 5);
  assert(results.small, "a 5-byte write within the window resolves with SETTLED");
  assert(results.large, `a write of ${COPY_WRITE_MAX + 1} bytes is not copied`);
  assertEquals(results.smallAfterReuse, "small", "the caller's buffer was copied before reuse");
  assertEquals(body.length, 5 + COPY_WRITE_MAX + 1);
});
