/**
 * The HTTP/2 frame layer (RFC 9113 §4, §6): frame types, flags, error codes,
 * settings, reading a frame header out of a {@linkcode BufReader}'s buffer and
 * writing each frame type into a byte sink such as a `BufWriter`.
 *
 * @module
 */
import type { BufReader } from "../http1/io.ts";

/** Frame type codes (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (RFC 9113 §6); ACK shares its bit with END_STREAM. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** Setting identifiers (RFC 9113 §6.5.2). */
export const SettingId = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Size of a frame header. */
export const FRAME_HEADER_SIZE = 9;
/** The connection preface a client sends first (RFC 9113 §3.4). */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);
/** The smallest (and default) SETTINGS_MAX_FRAME_SIZE. */
export const MIN_MAX_FRAME_SIZE = 16384;
/** The largest SETTINGS_MAX_FRAME_SIZE. */
export const MAX_MAX_FRAME_SIZE = 16777215;
/** The largest flow-control window (2^31-1). */
export const MAX_WINDOW = 0x7fffffff;
/** The initial flow-control window of streams and connections. */
export const DEFAULT_WINDOW = 65535;

/** A parsed frame header; one object is reused for every frame of a connection. */
export interface FrameHeader {
  /** Payload length. */
  length: number;
  /** Frame type (see {@linkcode FrameType}). */
  type: number;
  /** Flags (see {@linkcode Flag}). */
  flags: number;
  /** Stream id (reserved bit cleared). */
  streamId: number;
}

/** Where frames are written: a `BufWriter` or any buffer with the same method. */
export interface FrameSink {
  /** Appends `src[start..end)`. */
  writeBytes(src: Uint8Array, start: number, end: number): void;
}

/**
 * Parses the frame header at the reader's first unread byte, without consuming it.
 *
 * @returns false when fewer than 9 bytes are buffered.
 *
 * @example
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import { BufReader } from "../http1/io.ts";
 * import { type FrameHeader, parseFrameHeader } from "./frame.ts";
 * const r = new BufReader({ read: () => Promise.resolve(null), write: (p) => Promise.resolve(p.length) });
 * r.buf.set([0, 0, 8, 6, 1, 0, 0, 0, 0], 0);
 * r.end = 9;
 * const h: FrameHeader = { length: 0, type: 0, flags: 0, streamId: 0 };
 * assert(parseFrameHeader(r, h));
 * assertEquals(h, { length: 8, type: 6, flags: 1, streamId: 0 });
 * ```
 */
export function parseFrameHeader(reader: BufReader, out: FrameHeader): boolean {
  if (reader.end - reader.start < FRAME_HEADER_SIZE) return false;
  const b = reader.buf;
  const i = reader.start;
  out.length = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
  out.type = b[i + 3]!;
  out.flags = b[i + 4]!;
  out.streamId = ((b[i + 5]! & 0x7f) << 24 | (b[i + 6]! << 16) | (b[i + 7]! << 8) | b[i + 8]!) >>>
    0;
  return true;
}

/** Reads a big-endian 31-bit value (reserved bit cleared) at `b[i]`. */
export function readUint31(b: Uint8Array, i: number): number {
  return ((b[i]! & 0x7f) << 24 | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** Reads a big-endian 32-bit value at `b[i]`. */
export function readUint32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/**
 * Checks one received setting value (RFC 9113 §6.5.2).
 *
 * @returns 0 when acceptable, else the connection error code.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ErrorCode, SettingId, validateSetting } from "./frame.ts";
 * assertEquals(validateSetting(SettingId.ENABLE_PUSH, 2), ErrorCode.PROTOCOL_ERROR);
 * assertEquals(validateSetting(SettingId.INITIAL_WINDOW_SIZE, 2 ** 31), ErrorCode.FLOW_CONTROL_ERROR);
 * assertEquals(validateSetting(SettingId.MAX_FRAME_SIZE, 16384), 0);
 * ```
 */
export function validateSetting(id: number, value: number): number {
  switch (id) {
    case SettingId.ENABLE_PUSH:
      return value > 1 ? ErrorCode.PROTOCOL_ERROR : 0;
    case SettingId.INITIAL_WINDOW_SIZE:
      return value > MAX_WINDOW ? ErrorCode.FLOW_CONTROL_ERROR : 0;
    case SettingId.MAX_FRAME_SIZE:
      return value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE
        ? ErrorCode.PROTOCOL_ERROR
        : 0;
    default:
      return 0;
  }
}

// One scratch buffer for frame headers and small fixed payloads: frames are
// written synchronously, so it is never shared between two writes in flight.
const SCRATCH = new Uint8Array(FRAME_HEADER_SIZE + 8 + 6 * 8);

function putHeader(length: number, type: number, flags: number, streamId: number): void {
  const s = SCRATCH;
  s[0] = length >>> 16;
  s[1] = length >>> 8;
  s[2] = length;
  s[3] = type;
  s[4] = flags;
  putUint32(streamId & MAX_WINDOW, 5);
}

function putUint32(v: number, i: number): void {
  const s = SCRATCH;
  s[i] = v >>> 24;
  s[i + 1] = v >>> 16;
  s[i + 2] = v >>> 8;
  s[i + 3] = v;
}

/**
 * Writes a frame header.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { FrameType, writeFrameHeader } from "./frame.ts";
 * const out: number[] = [];
 * writeFrameHeader({ writeBytes: (s, a, b) => out.push(...s.subarray(a, b)) }, {
 *   length: 4, type: FrameType.DATA, flags: 1, streamId: 3,
 * });
 * assertEquals(out, [0, 0, 4, 0, 1, 0, 0, 0, 3]);
 * ```
 */
export function writeFrameHeader(sink: FrameSink, h: FrameHeader): void {
  putHeader(h.length, h.type, h.flags, h.streamId);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
}

/**
 * Writes a SETTINGS frame from flat `[id, value, id, value, ...]` pairs.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { SettingId, writeSettings } from "./frame.ts";
 * const out: number[] = [];
 * writeSettings({ writeBytes: (s, a, b) => out.push(...s.subarray(a, b)) }, [SettingId.ENABLE_PUSH, 0]);
 * assertEquals(out, [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
 * ```
 */
export function writeSettings(sink: FrameSink, pairs: readonly number[]): void {
  const n = pairs.length >> 1;
  putHeader(n * 6, FrameType.SETTINGS, 0, 0);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
  for (let i = 0; i < n; i++) {
    const id = pairs[2 * i]!;
    SCRATCH[0] = id >>> 8;
    SCRATCH[1] = id;
    putUint32(pairs[2 * i + 1]!, 2);
    sink.writeBytes(SCRATCH, 0, 6);
  }
}

/** Writes an empty SETTINGS frame with the ACK flag. */
export function writeSettingsAck(sink: FrameSink): void {
  putHeader(0, FrameType.SETTINGS, Flag.ACK, 0);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
}

/**
 * Writes a PING frame carrying the 8 bytes `data[start..start+8)`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { writePing } from "./frame.ts";
 * const out: number[] = [];
 * writePing({ writeBytes: (s, a, b) => out.push(...s.subarray(a, b)) }, new Uint8Array(8), { ack: true });
 * assertEquals(out.slice(0, 9), [0, 0, 8, 6, 1, 0, 0, 0, 0]);
 * ```
 */
export function writePing(
  sink: FrameSink,
  data: Uint8Array,
  options: { start?: number; ack?: boolean } = {},
): void {
  const start = options.start ?? 0;
  putHeader(8, FrameType.PING, options.ack ? Flag.ACK : 0, 0);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
  sink.writeBytes(data, start, start + 8);
}

/** Writes a GOAWAY frame (no debug data). */
export function writeGoaway(sink: FrameSink, lastStreamId: number, code: number): void {
  putHeader(8, FrameType.GOAWAY, 0, 0);
  putUint32(lastStreamId & MAX_WINDOW, 9);
  putUint32(code, 13);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE + 8);
}

/** Writes a RST_STREAM frame. */
export function writeRstStream(sink: FrameSink, streamId: number, code: number): void {
  putHeader(4, FrameType.RST_STREAM, 0, streamId);
  putUint32(code, 9);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE + 4);
}

/** Writes a WINDOW_UPDATE frame (stream 0: the connection window). */
export function writeWindowUpdate(sink: FrameSink, streamId: number, increment: number): void {
  putHeader(4, FrameType.WINDOW_UPDATE, 0, streamId);
  putUint32(increment & MAX_WINDOW, 9);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE + 4);
}

/**
 * Writes one DATA frame with payload `data[start..end)` (the caller keeps it
 * within the peer's max frame size and the send windows).
 */
export function writeData(
  sink: FrameSink,
  streamId: number,
  data: Uint8Array,
  options: { start?: number; end?: number; endStream?: boolean } = {},
): void {
  const start = options.start ?? 0;
  const end = options.end ?? data.length;
  putHeader(end - start, FrameType.DATA, options.endStream ? Flag.END_STREAM : 0, streamId);
  sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
  if (end > start) sink.writeBytes(data, start, end);
}

/**
 * Writes a header block as one HEADERS frame, followed by CONTINUATION frames
 * when it is larger than `maxFrameSize`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { writeHeaders } from "./frame.ts";
 * const out: number[] = [];
 * const sink = { writeBytes: (s: Uint8Array, a: number, b: number) => out.push(...s.subarray(a, b)) };
 * writeHeaders(sink, 1, new Uint8Array(20000), { endStream: true, maxFrameSize: 16384 });
 * assertEquals(out.slice(0, 9), [0, 0x40, 0, 1, 1, 0, 0, 0, 1]); // HEADERS, END_STREAM
 * assertEquals(out.slice(9 + 16384, 18 + 16384), [0, 0x0e, 0x20, 9, 4, 0, 0, 0, 1]); // CONTINUATION, END_HEADERS
 * ```
 */
export function writeHeaders(
  sink: FrameSink,
  streamId: number,
  block: Uint8Array,
  options: { endStream?: boolean; maxFrameSize?: number } = {},
): void {
  const max = options.maxFrameSize ?? MIN_MAX_FRAME_SIZE;
  let type: number = FrameType.HEADERS;
  let flags = options.endStream ? Flag.END_STREAM : 0;
  let off = 0;
  do {
    const n = Math.min(max, block.length - off);
    const last = off + n === block.length;
    putHeader(n, type, last ? flags | Flag.END_HEADERS : flags, streamId);
    sink.writeBytes(SCRATCH, 0, FRAME_HEADER_SIZE);
    if (n > 0) sink.writeBytes(block, off, off + n);
    off += n;
    type = FrameType.CONTINUATION;
    flags = 0;
  } while (off < block.length);
}
