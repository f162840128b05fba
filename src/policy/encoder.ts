/**
 * Streaming content codings for `compress`: gzip, br and zstd through the
 * native coders of `node:zlib` (the fastest per MiB of what Deno 2.9.6 offers:
 * its `CompressionStream` took 1.4× the time for gzip and cannot flush; see
 * bench/compress.sh). Each piece written is compressed and flushed at once
 * (`Z_SYNC_FLUSH`, `BROTLI_OPERATION_FLUSH`, `ZSTD_e_flush`): what the backend
 * sent so far reaches the client without waiting for more, so a stream of
 * events is never held back, and nothing is buffered beyond the coder's window.
 *
 * The coder is driven through its handle's `writeSync` into one output buffer
 * of the encoder's own (as Node's own `zlib.*Sync` functions drive it), not
 * through the stream API: that allocates a new buffer for every 16 KiB of
 * output, and the garbage of a large body held some 64 MiB of RSS until V8
 * collected it; this way a body of any size allocates nothing per piece.
 *
 * Levels (chosen from bench/compress.sh, per MiB of text and JSON): gzip 5 (as
 * Caddy's default; nginx's `gzip_comp_level` default is 1), br quality 3 (about
 * gzip 5's size for about its CPU time; quality 4 and up cost twice as much),
 * zstd 3 (zstd's own default, and Caddy's). Windows are kept small (br 256 KiB,
 * zstd 512 KiB) so that memory per response stays bounded whatever the body's size.
 *
 * @module
 */
import zlib from "node:zlib";
import type { BodyEncoder, EncodedSink } from "./policy.ts";

/** The codings `compress` can apply, in the server's order of preference when the client's q-values tie. */
export const CODINGS = ["br", "zstd", "gzip"] as const;
/** One of {@linkcode CODINGS}. */
export type Coding = typeof CODINGS[number];

/** gzip level (zlib 1-9). */
export const GZIP_LEVEL = 5;
/** Brotli quality (0-11). */
export const BROTLI_QUALITY = 3;
/** zstd level. */
export const ZSTD_LEVEL = 3;

const C = zlib.constants;
// Output buffers not in use, shared by the encoders of a process.
const OUT_SIZE = 32 * 1024;
const FREE_OUT: Uint8Array[] = [];
const MAX_FREE_OUT = 64;
const EMPTY = new Uint8Array(0);

// The parts of a node:zlib coder object this module drives (as Node's sync functions do).
interface Handle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
}
interface Coder {
  _handle: Handle;
  _writeState: Uint32Array; // [availOut, availIn] after each writeSync
  close(): void;
  reset(): void;
}

// Coders that finished a body, reset for the next (gzip and zstd: setting one up costs
// more than compressing a small page; Brotli's cannot be reset). At most MAX_FREE_CODERS
// each, holding their memory while idle (about 5 MiB of gzip, 15 MiB of zstd).
const FREE_CODERS: Record<Coding, Coder[]> = { gzip: [], br: [], zstd: [] };
const MAX_FREE_CODERS = 16;

function makeCoder(coding: Coding, text: boolean): Coder {
  const free = FREE_CODERS[coding].pop();
  if (free !== undefined) return free;
  let z: unknown;
  if (coding === "gzip") z = zlib.createGzip({ level: GZIP_LEVEL });
  else if (coding === "br") {
    z = zlib.createBrotliCompress({
      params: {
        [C.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
        [C.BROTLI_PARAM_LGWIN]: 18,
        [C.BROTLI_PARAM_MODE]: text ? C.BROTLI_MODE_TEXT : C.BROTLI_MODE_GENERIC,
      },
    });
  } else {
    z = zlib.createZstdCompress({
      params: { [C.ZSTD_c_compressionLevel]: ZSTD_LEVEL, [C.ZSTD_c_windowLog]: 19 },
    });
  }
  return z as Coder;
}

const FLUSH: Record<Coding, number> = {
  gzip: C.Z_SYNC_FLUSH,
  br: C.BROTLI_OPERATION_FLUSH,
  zstd: C.ZSTD_e_flush,
};
const FINISH: Record<Coding, number> = {
  gzip: C.Z_FINISH,
  br: C.BROTLI_OPERATION_FINISH,
  zstd: C.ZSTD_e_end,
};

/**
 * One response body's coder: each {@linkcode StreamEncoder.write} encodes and
 * flushes a piece, handing the output to a sink in views of the encoder's buffer.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { gunzipSync } from "node:zlib";
 * import { StreamEncoder } from "./encoder.ts";
 * const got: number[] = [];
 * const out = (piece: Uint8Array) => (got.push(...piece), undefined);
 * const enc = new StreamEncoder("gzip");
 * await enc.write(new TextEncoder().encode("hello ".repeat(100)), out);
 * const flushed = got.length; // all of it so far, readable already
 * await enc.end(out);
 * enc.close();
 * assertEquals(new TextDecoder().decode(gunzipSync(new Uint8Array(got))), "hello ".repeat(100));
 * assertEquals([enc.bytesIn, enc.bytesOut], [600, got.length]);
 * assertEquals(
 *   new TextDecoder().decode(gunzipSync(new Uint8Array(got.slice(0, flushed)), { finishFlush: 2 })),
 *   "hello ".repeat(100),
 * );
 * ```
 */
export class StreamEncoder implements BodyEncoder {
  /** The coding's name, as `Content-Encoding` says it. */
  readonly coding: Coding;
  /** Body bytes taken in so far. */
  bytesIn = 0;
  /** Encoded bytes given out so far. */
  bytesOut = 0;
  #coder: Coder | undefined;
  #out: Uint8Array | undefined;
  #ended = false; // the coding was ended cleanly: its coder may serve another body
  readonly #onClose: (() => void) | undefined;

  /**
   * @param coding The coding.
   * @param text The body is text (br's text mode).
   * @param onClose Called once, when the encoder is closed.
   */
  constructor(coding: Coding, text = true, onClose?: () => void) {
    this.coding = coding;
    this.#coder = makeCoder(coding, text);
    this.#onClose = onClose;
  }

  /** Encodes `data` and flushes; the output goes to `out`. */
  write(data: Uint8Array, out: EncodedSink): Promise<void> {
    if (data.length === 0) return Promise.resolve();
    this.bytesIn += data.length;
    return this.#run(data, FLUSH[this.coding], out);
  }

  /** Ends the coding; its last bytes go to `out`. */
  async end(out: EncodedSink): Promise<void> {
    await this.#run(EMPTY, FINISH[this.coding], out);
    this.#ended = true;
  }

  /**
   * Lets go of the coder (its native memory; a gzip or zstd coder that ended its
   * body is reset and kept for the next) and the buffer; idempotent.
   */
  close(): void {
    const z = this.#coder;
    if (z === undefined) return;
    this.#coder = undefined;
    const free = FREE_CODERS[this.coding];
    if (this.#ended && this.coding !== "br" && free.length < MAX_FREE_CODERS) {
      z.reset();
      free.push(z);
    } else z.close();
    this.#onClose?.();
    const buf = this.#out;
    this.#out = undefined;
    if (buf !== undefined && FREE_OUT.length < MAX_FREE_OUT) FREE_OUT.push(buf);
  }

  async #run(data: Uint8Array, flush: number, out: EncodedSink): Promise<void> {
    const z = this.#coder;
    if (z === undefined) throw new Error("the encoder is closed");
    const buf = this.#out ??= FREE_OUT.pop() ?? new Uint8Array(OUT_SIZE);
    const state = z._writeState;
    let inOff = 0;
    let inLen = data.length;
    for (;;) {
      z._handle.writeSync(flush, data, inOff, inLen, buf, 0, buf.length);
      const availOut = state[0]!;
      const availIn = state[1]!;
      inOff += inLen - availIn;
      inLen = availIn;
      const n = buf.length - availOut;
      if (n > 0) {
        this.bytesOut += n;
        const w = out(buf.subarray(0, n));
        if (w !== undefined) await w;
      }
      if (availOut !== 0) return; // all in, all out
    }
  }
}
