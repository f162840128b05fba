/**
 * TLS to backends (`routes[].tls`): the settings of a route's backend
 * connections, and the handshake that verifies a backend's certificate.
 *
 * @module
 */
import { readPem, reason } from "../config/pem.ts";

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

/**
 * Upgrades a connected TCP socket to TLS and completes the handshake, verifying
 * the backend's certificate for `serverName`.
 *
 * @param tcp a connected socket; consumed.
 * @param options the route's settings, the name to verify, a signal that aborts the
 * handshake and the ALPN protocols offered (default `["http/1.1"]`).
 * @returns the TLS connection, handshake done.
 * @throws {Error} when the handshake fails (untrusted or wrong certificate) or is aborted.
 */
export async function upstreamHandshake(
  tcp: Deno.TcpConn,
  options: { tls: UpstreamTls; serverName: string; signal: AbortSignal; alpn?: string[] },
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
  const abort = () => conn.close();
  signal.addEventListener("abort", abort, { once: true });
  try {
    await conn.handshake();
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by the abort */ }
    throw signal.aborted ? signal.reason : new Error(`TLS handshake: ${reason(e)}`, { cause: e });
  } finally {
    signal.removeEventListener("abort", abort);
  }
  return conn;
}
