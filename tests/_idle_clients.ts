/**
 * Clients that open many connections to a balancer and leave them idle, for the idle
 * memory benchmarks (bench/idle_memory_h2.ts, bench/idle_breakdown.ts) and
 * tests/h2_idle_memory_test.ts. 127.0.0.1 only.
 *   h1:      GET / (keep-alive), response read, then idle
 *   h2c:     the HTTP/2 preface and SETTINGS, the server's SETTINGS read and acknowledged, idle
 *   h2c-req: as h2c, then one GET on stream 1 and its whole response read, then idle
 *
 * @module
 */
import { HpackEncoder } from "../src/h2/hpack.ts";
import { CLIENT_PREFACE, Flag, FRAME_HEADER_SIZE, FrameType } from "../src/h2/frame.ts";

/** How an idle client connection was opened. */
export type IdleMode = "h1" | "h2c" | "h2c-req";

/** The idle modes, in the order the benchmarks print them. */
export const IDLE_MODES: readonly IdleMode[] = ["h1", "h2c", "h2c-req"];

const H1_REQUEST = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
const SETTINGS = frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0));
const SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(0));
// A browser-like GET: the fields a page load carries, so both HPACK tables fill a little.
const REQUEST_FIELDS = [
  ":method",
  "GET",
  ":scheme",
  "http",
  ":authority",
  "app.test",
  ":path",
  "/",
  "user-agent",
  "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
  "accept",
  "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  "accept-language",
  "en-US,en;q=0.5",
  "accept-encoding",
  "gzip, deflate, br",
];

function frame(type: number, flags: number, id: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
  b[0] = payload.length >> 16;
  b[1] = (payload.length >> 8) & 0xff;
  b[2] = payload.length & 0xff;
  b[3] = type;
  b[4] = flags;
  new DataView(b.buffer).setUint32(5, id);
  b.set(payload, FRAME_HEADER_SIZE);
  return b;
}

async function writeAll(c: Deno.Conn, p: Uint8Array): Promise<void> {
  for (let off = 0; off < p.length;) off += await c.write(p.subarray(off));
}

// Reads frames until `done` says the one wanted arrived.
async function readFrames(
  c: Deno.Conn,
  done: (type: number, flags: number, id: number, length: number) => boolean,
): Promise<void> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(16384);
  for (;;) {
    const n = await c.read(chunk);
    if (n === null) throw new Error("connection closed by the server");
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    let p = 0;
    while (buf.length - p >= FRAME_HEADER_SIZE) {
      const len = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
      if (buf.length - p < FRAME_HEADER_SIZE + len) break;
      const type = buf[p + 3]!;
      const flags = buf[p + 4]!;
      const id = new DataView(buf.buffer, buf.byteOffset + p + 5, 4).getUint32(0) & 0x7fffffff;
      p += FRAME_HEADER_SIZE + len;
      if (type === FrameType.GOAWAY) throw new Error("GOAWAY from the server");
      if (done(type, flags, id, len)) return;
    }
    buf = buf.slice(p);
  }
}

async function h1(port: number): Promise<Deno.Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(c, H1_REQUEST);
  const buf = new Uint8Array(4096);
  if (await c.read(buf) === null) throw new Error("connection closed by the server");
  return c;
}

async function h2c(port: number, request: boolean): Promise<Deno.Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const hello = new Uint8Array(CLIENT_PREFACE.length + SETTINGS.length);
  hello.set(CLIENT_PREFACE);
  hello.set(SETTINGS, CLIENT_PREFACE.length);
  await writeAll(c, hello);
  await readFrames(c, (type, flags) => type === FrameType.SETTINGS && (flags & Flag.ACK) === 0);
  await writeAll(c, SETTINGS_ACK);
  if (request) await h2Get(c, 1);
  return c;
}

/**
 * Sends a browser-like GET / on stream `id` of an h2c connection that is past its
 * preface, and reads until the response ends. @returns the DATA bytes received.
 */
export async function h2Get(c: Deno.Conn, id: number): Promise<number> {
  const block = new HpackEncoder().encode(REQUEST_FIELDS);
  await writeAll(c, frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, block));
  let data = 0;
  await readFrames(c, (type, flags, sid, length) => {
    if (sid === id && type === FrameType.DATA) data += length;
    return sid === id && (flags & Flag.END_STREAM) !== 0 &&
      (type === FrameType.DATA || type === FrameType.HEADERS);
  });
  return data;
}

/** Opens one idle connection in `mode` to 127.0.0.1:`port`. */
export function openIdle(mode: IdleMode, port: number): Promise<Deno.Conn> {
  if (mode === "h1") return h1(port);
  return h2c(port, mode === "h2c-req");
}

/** Opens `n` idle connections, 100 at a time. */
export async function openMany(mode: IdleMode, port: number, n: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Math.min(100, n - i);
    conns.push(...await Promise.all(Array.from({ length: batch }, () => openIdle(mode, port))));
  }
  return conns;
}

/** Closes every connection in `conns`. */
export function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed already */ }
  }
  conns.length = 0;
}

/** Resident set size of process `pid` in bytes (VmRSS), 0 when it is gone. */
export function rssOf(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Open descriptors of process `pid`. */
export function fdsOf(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
