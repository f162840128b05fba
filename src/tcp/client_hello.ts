/**
 * The server name a TLS client asks for, read from its ClientHello without
 * terminating TLS (SNI passthrough). The ClientHello is the first message of a
 * TLS connection: one handshake message (type 1) carried in one or more
 * handshake records (content type 22, `0x16`). Its `server_name` extension
 * (RFC 6066 §3) names the host; a client that sends none (an IP address, or
 * `openssl s_client -noservername`) gets the default route.
 *
 * The bytes are only looked at: everything read is handed back so that the
 * backend, which terminates TLS, gets the connection's bytes unchanged.
 *
 * How much is read before deciding is bounded ({@linkcode CLIENT_HELLO_LIMIT},
 * 16 KiB, the most one TLS record may carry): a ClientHello is about 250 to
 * 1,900 bytes (browsers with post-quantum key shares send the most), so a
 * client that has not finished one by then is refused.
 *
 * @module
 */

/** Why a connection's first bytes were refused (the metric's `reason` label). */
export type ClientHelloRefusal = "not_tls" | "malformed" | "too_large" | "closed" | "timeout";

/** A connection that does not begin with a usable TLS ClientHello. */
export class ClientHelloError extends Error {
  /**
   * `not_tls` (the first byte is no TLS handshake record), `malformed`,
   * `too_large` (no whole ClientHello within the limit), `closed` (the peer left
   * first) or `timeout` (it did not come in time).
   */
  readonly reason: ClientHelloRefusal;
  /** Builds the error with its reason and a sentence saying what was wrong. */
  constructor(reason: ClientHelloRefusal, message: string) {
    super(message);
    this.name = "ClientHelloError";
    this.reason = reason;
  }
}

/** The most bytes read from a connection before a ClientHello must be whole: 16 KiB. */
export const CLIENT_HELLO_LIMIT = 16_384;

/** What a whole ClientHello said. */
export interface ClientHello {
  /** The SNI host_name, lower-cased; undefined when the client sent none. */
  serverName: string | undefined;
}

const HANDSHAKE_RECORD = 0x16;
const CLIENT_HELLO = 1;
const RECORD_HEADER = 5;
const MAX_RECORD = 16_384; // RFC 8446 §5.1: a plaintext fragment is at most 2^14 bytes
const EXT_SERVER_NAME = 0;
const HOST_NAME = 0;

/**
 * Parses the ClientHello at the start of `bytes`, the first bytes of a
 * connection, however many have come so far.
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { parseClientHello } from "./client_hello.ts";
 * // A minimal TLS 1.2 ClientHello asking for "a.test", in one record.
 * const sni = [0, 0, 0, 11, 0, 9, 0, 0, 6, ...new TextEncoder().encode("a.test")];
 * const body = [3, 3, ...new Array(32).fill(0), 0, 0, 2, 0x13, 1, 1, 0, 0, sni.length, ...sni];
 * const hello = [1, 0, 0, body.length, ...body];
 * const record = new Uint8Array([0x16, 3, 1, 0, hello.length, ...hello]);
 * assertEquals(parseClientHello(record), { serverName: "a.test" });
 * assertEquals(parseClientHello(record.subarray(0, 40)), undefined); // more to come
 * const http = new TextEncoder().encode("GET / HTTP/1.1\r\n");
 * assertThrows(() => parseClientHello(http), Error, "not a TLS handshake");
 * ```
 *
 * @param bytes The connection's bytes read so far (from its first byte).
 * @param limit The most bytes a whole ClientHello may take, record headers included.
 * @returns What it said, or undefined when more bytes are needed.
 * @throws {ClientHelloError} `not_tls`, `malformed` or `too_large` when the bytes
 * cannot begin with a ClientHello that fits in `limit`.
 */
export function parseClientHello(
  bytes: Uint8Array,
  limit: number = CLIENT_HELLO_LIMIT,
): ClientHello | undefined {
  if (bytes.length === 0) return undefined;
  if (bytes[0] !== HANDSHAKE_RECORD) {
    throw new ClientHelloError(
      "not_tls",
      `the first byte 0x${bytes[0]!.toString(16).padStart(2, "0")} is not a TLS handshake record`,
    );
  }
  // The handshake message, gathered from the records' fragments.
  const fragments: Uint8Array[] = [];
  let gathered = 0;
  let needed = -1; // the whole message's length, once its 4-byte header is in
  for (let at = 0; at + RECORD_HEADER <= bytes.length;) {
    const type = bytes[at]!;
    const length = (bytes[at + 3]! << 8) | bytes[at + 4]!;
    if (type !== HANDSHAKE_RECORD) {
      throw new ClientHelloError(
        "malformed",
        `a record of content type ${type} before the ClientHello was whole`,
      );
    }
    if (bytes[at + 1] !== 3) {
      throw new ClientHelloError(
        "malformed",
        `TLS record version ${bytes[at + 1]}.${bytes[at + 2]}`,
      );
    }
    if (length === 0 || length > MAX_RECORD) {
      throw new ClientHelloError("malformed", `a TLS handshake record of ${length} bytes`);
    }
    const end = at + RECORD_HEADER + length;
    if (end > bytes.length) break; // the rest of this record is still to come
    fragments.push(bytes.subarray(at + RECORD_HEADER, end));
    gathered += length;
    at = end;
    if (needed < 0 && gathered >= 4) {
      const head = join(fragments, 4);
      if (head[0] !== CLIENT_HELLO) {
        throw new ClientHelloError(
          "malformed",
          `the first handshake message is of type ${head[0]}, not a ClientHello`,
        );
      }
      needed = 4 + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
      if (RECORD_HEADER + needed > limit) {
        throw new ClientHelloError(
          "too_large",
          `a ClientHello of ${needed} bytes, over the limit of ${limit}`,
        );
      }
    }
    if (needed >= 0 && gathered >= needed) {
      return { serverName: serverName(join(fragments, needed).subarray(4)) };
    }
  }
  if (bytes.length >= limit) {
    throw new ClientHelloError("too_large", `no whole ClientHello in the first ${limit} bytes`);
  }
  return undefined;
}

// The first `n` bytes of the fragments, copied only when they span several.
function join(fragments: Uint8Array[], n: number): Uint8Array {
  const first = fragments[0]!;
  if (first.length >= n) return first.subarray(0, n);
  const out = new Uint8Array(n);
  let at = 0;
  for (const f of fragments) {
    const take = Math.min(f.length, n - at);
    out.set(f.subarray(0, take), at);
    at += take;
    if (at === n) break;
  }
  return out;
}

// The SNI host_name of a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3).
function serverName(body: Uint8Array): string | undefined {
  const r = new Cursor(body);
  r.skip(2 + 32); // legacy_version, random
  r.skip(r.u8()); // legacy_session_id
  r.skip(r.u16()); // cipher_suites
  r.skip(r.u8()); // legacy_compression_methods
  if (r.left === 0) return undefined; // no extensions at all (allowed before TLS 1.3)
  const extensions = r.sub(r.u16());
  r.end("ClientHello");
  let name: string | undefined;
  let seen = false;
  while (extensions.left > 0) {
    const type = extensions.u16();
    const data = extensions.sub(extensions.u16());
    if (type !== EXT_SERVER_NAME) continue;
    if (seen) throw new ClientHelloError("malformed", "two server_name extensions");
    seen = true;
    const list = data.sub(data.u16());
    data.end("server_name extension");
    while (list.left > 0) {
      const kind = list.u8();
      const host = list.bytes(list.u16());
      if (kind === HOST_NAME && name === undefined) name = hostName(host);
    }
  }
  return name;
}

// An SNI host_name as text: printable ASCII, lower-cased, without a trailing dot.
function hostName(host: Uint8Array): string {
  if (host.length === 0) throw new ClientHelloError("malformed", "an empty SNI host_name");
  let s = "";
  for (const c of host) {
    if (c <= 0x20 || c >= 0x7f) {
      throw new ClientHelloError("malformed", `an SNI host_name with byte 0x${c.toString(16)}`);
    }
    s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
  }
  return s.endsWith(".") ? s.slice(0, -1) : s;
}

// Reads big-endian fields from a slice; running past its end is a malformed message.
class Cursor {
  readonly #b: Uint8Array;
  #at = 0;

  constructor(b: Uint8Array) {
    this.#b = b;
  }

  get left(): number {
    return this.#b.length - this.#at;
  }

  u8(): number {
    this.#need(1);
    return this.#b[this.#at++]!;
  }

  u16(): number {
    this.#need(2);
    const v = (this.#b[this.#at]! << 8) | this.#b[this.#at + 1]!;
    this.#at += 2;
    return v;
  }

  skip(n: number): void {
    this.#need(n);
    this.#at += n;
  }

  bytes(n: number): Uint8Array {
    this.#need(n);
    return this.#b.subarray(this.#at, this.#at += n);
  }

  sub(n: number): Cursor {
    return new Cursor(this.bytes(n));
  }

  end(what: string): void {
    if (this.left !== 0) {
      throw new ClientHelloError("malformed", `${this.left} bytes left over after the ${what}`);
    }
  }

  #need(n: number): void {
    if (this.#at + n > this.#b.length) {
      throw new ClientHelloError("malformed", "a ClientHello field runs past its end");
    }
  }
}

/** The reading side of a connection (a `Deno.Conn` has it). */
export interface ByteSource {
  /** Reads into `p`; resolves to the byte count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Options of {@linkcode readClientHello}. */
export interface ReadClientHelloOptions {
  /** The most bytes read before a ClientHello must be whole. @default {16384} */
  limit?: number;
  /**
   * Gives up when it aborts (`timeouts.head`): the read rejects with a `timeout`
   * {@linkcode ClientHelloError}. Close the connection then; its pending read is
   * dropped quietly. @default {undefined} (no deadline)
   */
  signal?: AbortSignal;
}

/** A ClientHello read from a connection, and every byte read to get it. */
export interface ReadClientHello extends ClientHello {
  /** The bytes read, ClientHello first (there may be more after it): replay them to the backend. */
  bytes: Uint8Array;
}

const FIRST_READ = 4096;

/**
 * Reads a connection's first bytes until they hold a whole ClientHello, however
 * they are split across reads and records.
 *
 * @example
 * ```ts
 * import { assertEquals, assertRejects } from "@std/assert";
 * import { readClientHello } from "./client_hello.ts";
 * const sni = [0, 0, 0, 11, 0, 9, 0, 0, 6, ...new TextEncoder().encode("a.test")];
 * const body = [3, 3, ...new Array(32).fill(0), 0, 0, 2, 0x13, 1, 1, 0, 0, sni.length, ...sni];
 * const hello = [1, 0, 0, body.length, ...body];
 * const record = new Uint8Array([0x16, 3, 1, 0, hello.length, ...hello]);
 * // a client that writes one byte at a time, and one that leaves after 40
 * const dribble = (bytes: Uint8Array) => {
 *   let at = 0;
 *   return {
 *     read: (p: Uint8Array) => Promise.resolve(at < bytes.length ? (p[0] = bytes[at++]!, 1) : null),
 *   };
 * };
 * const got = await readClientHello(dribble(record));
 * assertEquals([got.serverName, got.bytes], ["a.test", record]);
 * await assertRejects(() => readClientHello(dribble(record.subarray(0, 40))), Error, "ended after 40");
 * ```
 *
 * @param conn A fresh connection.
 * @param options The limit and the deadline.
 * @returns The server name and the bytes read.
 * @throws {ClientHelloError} when the bytes are no ClientHello, one over the limit, or
 * the peer left (`closed`) or took too long (`timeout`) before it was whole.
 */
export async function readClientHello(
  conn: ByteSource,
  options: ReadClientHelloOptions = {},
): Promise<ReadClientHello> {
  const limit = options.limit ?? CLIENT_HELLO_LIMIT;
  const { signal } = options;
  let buf = new Uint8Array(Math.min(FIRST_READ, limit));
  let end = 0;
  const expired = signal === undefined ? undefined : aborted(signal);
  try {
    for (;;) {
      if (end === buf.length) {
        const next = new Uint8Array(Math.min(limit, buf.length * 2));
        next.set(buf);
        buf = next;
      }
      const read = conn.read(buf.subarray(end));
      let n: number | null;
      if (expired === undefined) n = await read;
      else {
        read.catch(() => {}); // settles once the caller closes the connection
        n = await Promise.race([read, expired.promise]);
      }
      if (n === null) {
        throw new ClientHelloError(
          "closed",
          `the connection ended after ${end} bytes, before a whole ClientHello`,
        );
      }
      end += n;
      const hello = parseClientHello(buf.subarray(0, end), limit);
      if (hello !== undefined) return { serverName: hello.serverName, bytes: buf.subarray(0, end) };
    }
  } catch (e) {
    if (e instanceof ClientHelloError) throw e;
    throw new ClientHelloError(
      "closed",
      `the connection failed after ${end} bytes, before a whole ClientHello: ${
        (e as Error).message
      }`,
    );
  } finally {
    expired?.dispose();
  }
}

// A promise that rejects with a `timeout` error when `signal` aborts.
function aborted(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  const { promise, reject } = Promise.withResolvers<never>();
  promise.catch(() => {});
  const onAbort = () =>
    reject(new ClientHelloError("timeout", "no whole ClientHello within timeouts.head"));
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return { promise, dispose: () => signal.removeEventListener("abort", onAbort) };
}
