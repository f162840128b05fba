/**
 * A response body sent through a {@linkcode BodyEncoder} (`compress`): each
 * piece the relay hands over is encoded and flushed, and what comes out goes
 * to the client at once, as one chunk of HTTP/1.1 chunked coding, as HTTP/2
 * DATA, or as is (an HTTP/1.0 client, delimited by close). Each write waits for
 * the client's side to take the bytes, so the backend is read no faster than
 * the client reads: backpressure holds as it does for a plain body.
 *
 * @module
 */
import type { BodyEncoder, EncodedSink } from "../policy/policy.ts";
import type { BufWriter, ByteConn } from "../http1/io.ts";

/**
 * The sink an encoded body is relayed into: a {@linkcode ByteConn} (for a
 * `BufWriter` that `relayBody` writes to), whose every write is a piece of body.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { gunzipSync } from "node:zlib";
 * import { BufWriter } from "../http1/io.ts";
 * import { StreamEncoder } from "../policy/encoder.ts";
 * import { EncodedBody } from "./encoded_body.ts";
 * const got: Uint8Array[] = [];
 * const client = new BufWriter({
 *   read: () => Promise.resolve(null),
 *   write: (p) => (got.push(p.slice()), Promise.resolve(p.length)),
 * });
 * const body = new EncodedBody(client, new StreamEncoder("gzip"), false);
 * await body.write(new TextEncoder().encode("hello"));
 * assertEquals(got.length, 1); // flushed at once
 * await body.end(undefined);
 * await client.flush();
 * const all = new Uint8Array(got.reduce((n, p) => n + p.length, 0));
 * got.reduce((at, p) => (all.set(p, at), at + p.length), 0);
 * assertEquals(new TextDecoder().decode(gunzipSync(all)), "hello");
 * ```
 */
export class EncodedBody implements ByteConn {
  readonly #dst: BufWriter;
  readonly #encoder: BodyEncoder;
  readonly #chunked: boolean;
  readonly #send: EncodedSink;

  /**
   * @param dst The client's writer.
   * @param encoder The body's encoder.
   * @param chunked Frame each piece as a chunk (an HTTP/1.1 client).
   */
  constructor(dst: BufWriter, encoder: BodyEncoder, chunked: boolean) {
    this.#dst = dst;
    this.#encoder = encoder;
    this.#chunked = chunked;
    // a piece is staged when small, else written from the encoder's buffer (awaited)
    this.#send = chunked
      ? (piece) => {
        dst.writeString(`${piece.length.toString(16)}\r\n`);
        const w = dst.write(piece);
        if (w === undefined) {
          dst.writeString("\r\n");
          return undefined;
        }
        return w.then(() => dst.writeString("\r\n"));
      }
      : (piece) => dst.write(piece);
  }

  /** Never read. */
  read(): Promise<number | null> {
    return Promise.resolve(null);
  }

  /**
   * Set once the body's last piece is about to be written: what it encodes to
   * is staged, not flushed, so that it leaves with the end (one write, not two
   * that Nagle's algorithm and a delayed ACK could hold apart).
   */
  last = false;

  /** Encodes `p` and sends what comes out; resolves once the client's side took it. */
  async write(p: Uint8Array): Promise<number> {
    await this.#encoder.write(p, this.#send);
    if (!this.last) await this.#dst.flush();
    return p.length;
  }

  /**
   * Ends the encoding and stages its last bytes, then (chunked) the last chunk
   * with `trailers`; the caller flushes.
   */
  async end(trailers: readonly string[] | undefined): Promise<void> {
    await this.#encoder.end(this.#send);
    if (!this.#chunked) return;
    let s = "0\r\n";
    if (trailers !== undefined) {
      for (let i = 0; i + 1 < trailers.length; i += 2) {
        s += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
      }
    }
    this.#dst.writeString(s + "\r\n");
  }
}
