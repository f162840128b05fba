/**
 * TLS to backends (`routes[].tls`): the settings of a route's backend
 * connections, and the handshake that verifies a backend's certificate.
 *
 * @module
 */
import { readPem, reason } from "../config/pem.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";

/** How a route's backends are reached over TLS (`routes[].tls: true`). */
export interface UpstreamTls {
  /** Trust roots (PEM) from `routes[].ca`, added to the default (Mozilla) roots. */
  caCerts?: string[];
  /** Name verified in the backend's certificate and sent as SNI. @default {the SRV target, or the configured host} */
  serverName?: string;
  /** Identity of these settings: backends share a pool only when it is equal. */
  key: string;
}

/**
 * Builds a route's backend TLS settings, reading its CA file.
 *
 * @example
 * ```ts ignore
 * const tls = await loadUpstreamTls({ name: "app", ca: "certs/ca.pem", server_name: "app.test" });
 * ```
 * @throws {Error} `route NAME: ca PATH: ...` when the CA file is unreadable or holds no certificate.
 */
export async function loadUpstreamTls(
  route: { name: string; ca?: string; server_name?: string },
): Promise<UpstreamTls> {
  const out: UpstreamTls = { key: "" };
  let digest = "";
  if (route.ca !== undefined) {
    const pem = await readPem(route.ca, `route ${route.name}: ca`, "CERTIFICATE");
    out.caCerts = [pem];
    const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pem));
    digest = Array.from(new Uint8Array(hash, 0, 8), (b) => b.toString(16).padStart(2, "0"))
      .join("");
  }
  if (route.server_name !== undefined) out.serverName = route.server_name;
  out.key = `tls ${route.server_name ?? ""} ${route.ca ?? ""} ${digest}`;
  return out;
}

const HTTP1_ALPN = ["http/1.1"];

/** Options of {@linkcode upstreamHandshake}. */
export interface UpstreamHandshakeOptions {
  /** The route's TLS settings. */
  tls: UpstreamTls;
  /** The name verified in the certificate (and sent as SNI). */
  serverName: string;
  /** Aborts the handshake (the connect timeout, or the caller went away). */
  signal: AbortSignal;
  /** ALPN protocols offered. @default {["http/1.1"]} */
  alpn?: string[];
  /**
   * Takes a handshake that was aborted before it finished: Deno cannot release its
   * socket until the backend answers or closes, so it is counted until then. Without
   * it, the connection is closed (and the socket kept all the same, uncounted).
   */
  stalls?: HandshakeStalls | undefined;
  /** The backend, as the stall warning names it. @default {serverName} */
  where?: string;
}

/**
 * Upgrades a connected TCP socket to TLS and completes the handshake, verifying
 * the backend's certificate for `serverName`.
 *
 * @param tcp a connected socket; consumed.
 * @param options the route's settings, the name to verify, a signal that aborts the
 * handshake and the ALPN protocols offered.
 * @returns the TLS connection, handshake done.
 * @throws {Error} when the handshake fails (untrusted or wrong certificate) or is aborted.
 */
export async function upstreamHandshake(
  tcp: Deno.TcpConn,
  options: UpstreamHandshakeOptions,
): Promise<Deno.TlsConn> {
  const { tls, serverName, signal } = options;
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.startTls(tcp, {
      hostname: serverName,
      ...(tls.caCerts ? { caCerts: tls.caCerts } : {}),
      alpnProtocols: options.alpn ?? HTTP1_ALPN,
    });
  } catch (e) {
    try {
      tcp.close();
    } catch { /* consumed */ }
    throw new Error(`TLS to ${serverName}: ${reason(e)}`, { cause: e });
  }
  const handshake = conn.handshake();
  let abort = () => {};
  const aborted = new Promise<never>((_, reject) => abort = () => reject(signal.reason));
  aborted.catch(() => {}); // read through the race below
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  try {
    await Promise.race([handshake, aborted]);
  } catch (e) {
    if (!signal.aborted) {
      try {
        conn.close();
      } catch { /* closed already */ }
      throw new Error(`TLS handshake: ${reason(e)}`, { cause: e });
    }
    // Given up before it finished: the socket stays until the backend answers or closes.
    if (options.stalls) {
      options.stalls.hold("backend", conn, handshake, options.where ?? serverName);
    } else conn.close();
    throw signal.reason;
  } finally {
    signal.removeEventListener("abort", abort);
  }
  return conn;
}
