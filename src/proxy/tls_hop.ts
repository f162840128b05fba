/**
 * PROXY protocol in on `listen.https`. `Deno.listenTls` starts TLS on the
 * socket it accepts, so no byte can be read before the handshake, and Deno has
 * no server-side `startTls`. So the public port is a plain TCP listener: each
 * connection's PROXY header is read there (from a peer in `trusted_proxies`),
 * then its bytes are carried both ways over loopback to an internal
 * `Deno.listenTls` on 127.0.0.1 (with the same certificates, SNI included), and
 * the TLS connection accepted there is mapped back, by the hop's source port,
 * to the client the header named. The price is one more copy of every byte in
 * each direction and a loopback connection per client connection (README,
 * Performance).
 *
 * @module
 */
import type { HopOrigins, ProxyContext } from "./context.ts";
import { type ClientOrigin, originOf } from "./client.ts";
import { readOrigin } from "./connection.ts";

const HOP_BUFFER = 16 * 1024 + 256; // a TLS record and its framing

/**
 * The hops of one `listen.https` listener, by the port each connects from.
 *
 * @example
 * ```ts ignore
 * const hops = new TlsHops();
 * ctx.tlsHops = hops; // the TLS side maps its connections back
 * accept(Deno.listen(publicAddr), (conn) => hops.serve(conn, ctx, internalTls.addr));
 * ```
 */
export class TlsHops implements HopOrigins {
  readonly #hops = new Map<number, Hop>();

  /** Hops open now. */
  get size(): number {
    return this.#hops.size;
  }

  /**
   * Serves one public connection: reads its PROXY header (see `readOrigin`:
   * refused peers are closed, logged and counted), connects to `target` (the
   * internal TLS listener) and carries the bytes both ways until either side
   * closes. Always closes `conn`, and resolves to it (never rejects).
   */
  async serve(conn: Deno.Conn, ctx: ProxyContext, target: Deno.NetAddr): Promise<Deno.Conn> {
    const read = await readOrigin(conn, ctx);
    if (read === undefined) return conn;
    let inner: Deno.TcpConn;
    try {
      inner = await Deno.connect({ hostname: target.hostname, port: target.port });
      inner.setNoDelay(true);
    } catch {
      closeQuietly(conn);
      return conn;
    }
    const port = (inner.localAddr as Deno.NetAddr).port;
    const hop = new Hop(conn, inner, read.origin ?? originOf(conn));
    this.#hops.set(port, hop);
    try {
      const { reader } = read;
      // what came after the header (the ClientHello, usually) goes first
      if (reader.buffered > 0) await writeAll(inner, reader.buf.subarray(reader.start, reader.end));
      reader.restore();
      await hop.run();
    } catch {
      // either side failed: both are closed below
    } finally {
      this.#hops.delete(port);
      hop.close();
    }
    return conn;
  }

  /** The origin of a TLS connection accepted from a hop (by its peer port), once. */
  origin(conn: Deno.Conn): ClientOrigin | undefined {
    const peer = conn.remoteAddr as Deno.NetAddr;
    if (peer.hostname !== "127.0.0.1") return undefined;
    const hop = this.#hops.get(peer.port);
    if (hop === undefined || hop.claimed) return undefined;
    hop.claimed = true;
    return hop.origin;
  }

  /** Closes the hop carrying `conn` (its TLS handshake ran out of time). */
  abort(conn: Deno.Conn): void {
    const peer = conn.remoteAddr as Deno.NetAddr;
    if (peer.hostname === "127.0.0.1") this.#hops.get(peer.port)?.close();
  }
}

/** One client connection carried to the internal TLS listener. */
class Hop {
  readonly origin: ClientOrigin;
  claimed = false;
  readonly #outer: Deno.Conn;
  readonly #inner: Deno.TcpConn;
  #closed = false;

  constructor(outer: Deno.Conn, inner: Deno.TcpConn, origin: ClientOrigin) {
    this.#outer = outer;
    this.#inner = inner;
    this.origin = origin;
  }

  // Both directions; the client's end of input is passed on as a half-close, the
  // TLS side's end closes the hop.
  async run(): Promise<void> {
    const up = copy(this.#outer, this.#inner).then(() => {
      try {
        this.#inner.closeWrite();
      } catch { /* closed already */ }
    });
    const down = copy(this.#inner, this.#outer);
    await Promise.race([down, up.then(() => down)]);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#outer);
    closeQuietly(this.#inner);
  }
}

// Copies `from` into `to` until `from` ends; rejects when either fails.
async function copy(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(HOP_BUFFER);
  for (;;) {
    const n = await from.read(buf);
    if (n === null) return;
    await writeAll(to, buf.subarray(0, n));
  }
}

async function writeAll(to: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await to.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}
