/**
 * An in-memory {@linkcode ByteConn} for unit tests, scripted from the test: bytes
 * the peer sends (`feed`), the peer closing (`end`) or failing (`fail`), reads
 * and writes cut into small pieces, and a write that breaks after some bytes
 * (a peer gone mid-body). Everything the other side wrote is kept (`text()`).
 *
 * Nothing here waits on time: a read with nothing fed stays pending until the
 * test feeds, ends or closes.
 *
 * @module
 */
import type { ByteConn } from "../src/http1/io.ts";

/** How a {@linkcode FakeConn} cuts and breaks traffic. */
export interface FakeConnOptions {
  /** Largest number of bytes one `read` returns (partial reads). @default {Infinity} */
  readChunk?: number;
  /** Largest number of bytes one `write` takes (partial writes). @default {Infinity} */
  writeChunk?: number;
  /** Writes fail (`BrokenPipe`) once this many bytes were taken. @default {Infinity} */
  breakAfter?: number;
  /** Called after every write with everything written so far (a scripted peer answers here). */
  onWrite?: (conn: FakeConn) => void;
}

const ENCODER = new TextEncoder();

/** One scripted connection end; the test plays the peer. */
export class FakeConn implements ByteConn {
  /** Reads served, and the byte count of each (to see how reads were cut). */
  readonly reads: number[] = [];
  /** Writes taken, and the byte count of each. */
  readonly writes: number[] = [];
  readonly #options: FakeConnOptions;
  readonly #incoming: Uint8Array[] = [];
  #written: Uint8Array[] = [];
  #writtenBytes = 0;
  #ended = false;
  #failure: Error | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(options: FakeConnOptions = {}) {
    this.#options = options;
  }

  /** True once `close()` was called on this end. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The peer sends `data` (bytes, or text with one byte per code unit). */
  feed(data: Uint8Array | string): void {
    this.#incoming.push(typeof data === "string" ? octets(data) : data);
    this.#poke();
  }

  /** The peer closes its sending side: reads return null once what was fed is read. */
  end(): void {
    this.#ended = true;
    this.#poke();
  }

  /** The next read (after what was fed) rejects with `e`, as a reset does. */
  fail(e: Error = new Deno.errors.ConnectionReset("Connection reset by peer")): void {
    this.#failure = e;
    this.#poke();
  }

  /** Everything written to this end, as text (one code unit per byte). */
  text(): string {
    let s = "";
    for (const b of this.bytes()) s += String.fromCharCode(b);
    return s;
  }

  /** Everything written to this end. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.#writtenBytes);
    let off = 0;
    for (const p of this.#written) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  /** Forgets what was written so far (before a second request on the same connection). */
  clearWritten(): void {
    this.#written = [];
    this.#writtenBytes = 0;
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.BadResource("Bad resource ID");
      const next = this.#incoming[0];
      if (next !== undefined) {
        const n = Math.min(p.length, next.length, this.#options.readChunk ?? Infinity);
        p.set(next.subarray(0, n));
        if (n === next.length) this.#incoming.shift();
        else this.#incoming[0] = next.subarray(n);
        this.reads.push(n);
        return n;
      }
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    const room = (this.#options.breakAfter ?? Infinity) - this.#writtenBytes;
    if (room <= 0) return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
    const n = Math.min(p.length, room, this.#options.writeChunk ?? Infinity);
    this.#written.push(p.slice(0, n));
    this.#writtenBytes += n;
    this.writes.push(n);
    this.#options.onWrite?.(this);
    return Promise.resolve(n);
  }

  /** Closes this end: a pending read rejects, as on a real socket. */
  close(): void {
    this.#closed = true;
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** `text` as bytes, one per code unit (HTTP heads are octets). */
export function octets(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return ENCODER.encode(text);
}
