/**
 * Opening a connection to a backend: TCP with TCP_NODELAY, then TLS with
 * certificate verification (and the route's client certificate, for mTLS) for a
 * backend reached over TLS, all within a connect timeout. Shared by the HTTP/1.1
 * and the HTTP/2 pools, health probes, and anything else that reaches a backend.
 *
 * @module
 */
import { type Backend, tlsServerName } from "./backend.ts";
import { connectUpstreamTls, upstreamHandshake } from "./tls.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import { encodeProxyHeader } from "./proxy_out.ts";

/** Thrown when a backend cannot be connected to. */
export class ConnectError extends Error {
  /** True when the connect timed out (answered with 504 rather than 502). */
  readonly timedOut: boolean;
  /** Wraps the failure to reach `backend`. */
  constructor(backend: Backend, cause: unknown, timedOut: boolean) {
    const why = timedOut ? "timed out" : (cause as Error)?.message ?? String(cause);
    super(`Connect to ${backend.id} failed: ${why}`, { cause });
    this.name = "ConnectError";
    this.timedOut = timedOut;
  }
}

/** Options of {@linkcode connectBackend}. */
export interface ConnectOptions {
  /** Connecting and the TLS handshake give up after this many ms. */
  connectTimeout: number;
  /** Aborts the attempt (the caller went away). */
  signal?: AbortSignal | undefined;
  /** ALPN protocols offered to a TLS backend. @default {["http/1.1"]} */
  alpn?: string[];
  /** Takes TLS handshakes given up before they finished (see `connectUpstreamTls`). */
  stalls?: HandshakeStalls | undefined;
  /**
   * The PROXY header written first, before TLS, to a backend with `proxy` set.
   * @default {the header that names nobody (a probe's): v1 `PROXY UNKNOWN`, v2 `LOCAL`}
   */
  proxyHeader?: Uint8Array | undefined;
}

/**
 * Connects to `backend`: TCP, then its PROXY header when it takes one, then TLS
 * when the backend has TLS settings.
 *
 * @returns the connection and the ALPN protocol the backend chose (null
 * without TLS or when it chose none).
 * @throws {ConnectError} when connecting or the handshake fails, times out or is aborted.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { connectBackend, ConnectError } from "./connect.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const backend = createBackend({ hostname: "127.0.0.1", port: l.addr.port });
 * const { conn } = await connectBackend(backend, { connectTimeout: 1000 });
 * conn.close();
 * l.close();
 * const failed = await connectBackend(backend, { connectTimeout: 1000 }).catch((e) => e);
 * assert(failed instanceof ConnectError);
 * ```
 */
export async function connectBackend(
  backend: Backend,
  options: ConnectOptions,
): Promise<{ conn: Deno.Conn; alpnProtocol: string | null }> {
  const { hostname, port } = backend;
  const timeout = AbortSignal.timeout(options.connectTimeout);
  const signal = options.signal;
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  try {
    const tls = backend.tls;
    const handshake = {
      serverName: tlsServerName(backend),
      signal: both,
      ...(options.alpn !== undefined ? { alpn: options.alpn } : {}),
      stalls: options.stalls,
      where: backend.id,
    };
    let conn: Deno.TlsConn;
    if (tls?.clientCert !== undefined) {
      // Deno.connectTls: the only call that presents a client certificate (no PROXY header:
      // it connects by itself, and the config refuses client_cert with proxy_protocol)
      conn = await connectUpstreamTls({ hostname, port }, { tls, ...handshake });
    } else {
      const tcp = await Deno.connect({ hostname, port, signal: both });
      try {
        tcp.setNoDelay(true);
      } catch { /* not a TCP socket */ }
      if (backend.proxy !== undefined) {
        const header = options.proxyHeader ?? encodeProxyHeader(backend.proxy);
        try {
          for (let at = 0; at < header.length;) at += await tcp.write(header.subarray(at));
        } catch (e) {
          tcp.close();
          throw e;
        }
      }
      if (tls === undefined) return { conn: tcp, alpnProtocol: null };
      conn = await upstreamHandshake(tcp, { tls, ...handshake });
    }
    const info = await conn.handshake(); // done: returns what was negotiated
    return { conn, alpnProtocol: info.alpnProtocol };
  } catch (e) {
    throw new ConnectError(backend, e, timeout.aborted);
  }
}
