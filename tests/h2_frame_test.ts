import { assert, assertEquals } from "@std/assert";
import { BufReader, BufWriter, type ByteConn } from "../src/http1/io.ts";
import {
  ErrorCode,
  Flag,
  type FrameHeader,
  FrameType,
  parseFrameHeader,
  SettingId,
  validateSetting,
  writeData,
  writeGoaway,
  writeHeaders,
  writeRstStream,
  writeSettings,
  writeWindowUpdate,
} from "../src/h2/frame.ts";

// A ByteConn that collects writes and replays them to a reader.
class Loop implements ByteConn {
  bytes: number[] = [];
  #off = 0;
  write(p: Uint8Array): Promise<number> {
    this.bytes.push(...p);
    return Promise.resolve(p.length);
  }
  read(p: Uint8Array): Promise<number | null> {
    if (this.#off >= this.bytes.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.bytes.length - this.#off);
    p.set(this.bytes.slice(this.#off, this.#off + n));
    this.#off += n;
    return Promise.resolve(n);
  }
}

async function frames(loop: Loop): Promise<[FrameHeader, Uint8Array][]> {
  const r = new BufReader(loop, 1 << 16);
  const out: [FrameHeader, Uint8Array][] = [];
  while (await r.fill()) {
    for (;;) {
      const h: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
      if (!parseFrameHeader(r, h) || r.buffered < 9 + h.length) break;
      out.push([h, r.buf.slice(r.start + 9, r.start + 9 + h.length)]);
      r.consume(9 + h.length);
    }
  }
  return out;
}

Deno.test("h2 frame writers produce frames the header parser reads back", async () => {
  const loop = new Loop();
  const w = new BufWriter(loop);
  writeSettings(w, [SettingId.MAX_CONCURRENT_STREAMS, 100, SettingId.INITIAL_WINDOW_SIZE, 1 << 20]);
  writeData(w, 1, new Uint8Array([1, 2, 3, 4]), { start: 1, end: 3, endStream: true });
  writeRstStream(w, 3, ErrorCode.CANCEL);
  writeWindowUpdate(w, 0, 0x7fffffff);
  writeGoaway(w, 7, ErrorCode.ENHANCE_YOUR_CALM);
  await w.flush();
  const got = await frames(loop);
  assertEquals(got.map(([h]) => [h.type, h.flags, h.streamId, h.length]), [
    [FrameType.SETTINGS, 0, 0, 12],
    [FrameType.DATA, Flag.END_STREAM, 1, 2],
    [FrameType.RST_STREAM, 0, 3, 4],
    [FrameType.WINDOW_UPDATE, 0, 0, 4],
    [FrameType.GOAWAY, 0, 0, 8],
  ]);
  assertEquals([...got[1]![1]], [2, 3]);
  assertEquals([...got[2]![1]], [0, 0, 0, 8]);
  assertEquals([...got[3]![1]], [0x7f, 0xff, 0xff, 0xff]);
  assertEquals([...got[4]![1]], [0, 0, 0, 7, 0, 0, 0, 0xb]);
});

Deno.test("h2 a header block larger than the max frame size is split into CONTINUATION frames", async () => {
  const loop = new Loop();
  const w = new BufWriter(loop);
  const block = new Uint8Array(40000).map((_, i) => i % 256);
  writeHeaders(w, 5, block, { endStream: true, maxFrameSize: 16384 });
  await w.flush();
  const got = await frames(loop);
  assertEquals(got.map(([h]) => [h.type, h.flags, h.streamId, h.length]), [
    [FrameType.HEADERS, Flag.END_STREAM, 5, 16384],
    [FrameType.CONTINUATION, 0, 5, 16384],
    [FrameType.CONTINUATION, Flag.END_HEADERS, 5, 40000 - 32768],
  ]);
  const joined = new Uint8Array(40000);
  let off = 0;
  for (const [, p] of got) {
    joined.set(p, off);
    off += p.length;
  }
  assertEquals(joined, block);
});

Deno.test("h2 an empty header block is one HEADERS frame with END_HEADERS", async () => {
  const loop = new Loop();
  const w = new BufWriter(loop);
  writeHeaders(w, 1, new Uint8Array(0));
  await w.flush();
  const got = await frames(loop);
  assertEquals(got.map(([h]) => [h.type, h.flags, h.length]), [
    [FrameType.HEADERS, Flag.END_HEADERS, 0],
  ]);
});

Deno.test("h2 settings validation follows RFC 9113 §6.5.2", () => {
  assertEquals(validateSetting(SettingId.ENABLE_PUSH, 0), 0);
  assertEquals(validateSetting(SettingId.ENABLE_PUSH, 1), 0);
  assertEquals(validateSetting(SettingId.ENABLE_PUSH, 2), ErrorCode.PROTOCOL_ERROR);
  assertEquals(validateSetting(SettingId.INITIAL_WINDOW_SIZE, 0x7fffffff), 0);
  assertEquals(
    validateSetting(SettingId.INITIAL_WINDOW_SIZE, 0x80000000),
    ErrorCode.FLOW_CONTROL_ERROR,
  );
  assertEquals(validateSetting(SettingId.MAX_FRAME_SIZE, 16383), ErrorCode.PROTOCOL_ERROR);
  assertEquals(validateSetting(SettingId.MAX_FRAME_SIZE, 16777215), 0);
  assertEquals(validateSetting(SettingId.MAX_FRAME_SIZE, 16777216), ErrorCode.PROTOCOL_ERROR);
  assert(validateSetting(0xff, 12345) === 0, "unknown settings are ignored");
});
