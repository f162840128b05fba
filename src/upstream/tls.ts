/**
 * TLS to backends (`routes[].tls`): the settings of a route's backend
 * connections, and the handshake that verifies a backend's certificate.
 *
 * @module
 */
import { readPem, reason } from "../config/pem.ts";
import { readKeyPair } from "../config/key_pair.ts";
import { connectNodeTls } from "./node_tls.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";

/** How a route's backends are reached over TLS (`routes[].tls: true`). */
export interface UpstreamTls {
  /** Trust roots (PEM) from `routes[].ca`, added to the default (Mozilla) roots. */
  caCerts?: string[];
  /** Name verified in the backend's certificate and sent as SNI. @default {the SRV target, or the configured host} */
  serverName?: string;
  /** The certificate chain and key (PEM) presented when the backend asks for one (mTLS). */
  clientCert?: { cert: string; key: string };
  /** Identity of these settings: backends share a pool only when it is equal. */
  key: string;
}

/**
 * Builds a route's backend TLS settings, reading its CA file and its client
 * certificate and key (checked to belong together).
 *
 * @example
 * ```ts ignore
 * const tls = await loadUpstreamTls({ name: "app", ca: "certs/ca.pem", server_name: "app.test" });
 * ```
 * @throws {Error} `route NAME: ca PATH: ...` when the CA file is unreadable or holds no
 * certificate; `FILE:LINE: routes[i].client_cert.cert PATH: ...` (or `.key`) for a client
 * certificate or key that is unreadable, does not parse, or does not match.
 */
export async function loadUpstreamTls(
  route: {
    name: string;
    ca?: string;
    server_name?: string;
    client_cert?: { cert: string; key: string; at: string };
  },
): Promise<UpstreamTls> {
  const out: UpstreamTls = { key: "" };
  let digest = "";
  if (route.ca !== undefined) {
    const pem = await readPem(route.ca, `route ${route.name}: ca`, "CERTIFICATE");
    out.caCerts = [pem];
    digest = await shortDigest(pem);
  }
  if (route.server_name !== undefined) out.serverName = route.server_name;
  let client = "";
  const files = route.client_cert;
  if (files !== undefined) {
    const pair = await readKeyPair(files, files.at);
    out.clientCert = { cert: pair.cert, key: pair.key };
    // new contents, new pools: connections made with the old certificate are not reused
    client = ` client ${files.cert} ${files.key} ${await shortDigest(pair.cert + pair.key)}`;
  }
  out.key = `tls ${route.server_name ?? ""} ${route.ca ?? ""} ${digest}${client}`;
  return out;
}

async function shortDigest(text: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(hash, 0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
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
 * the backend's certificate for `serverName`. Without a client certificate only:
 * `Deno.startTls` cannot present one (see {@linkcode connectUpstreamTls}).
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
  const { tls, serverName } = options;
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
  return await handshake(conn, options);
}

/**
 * Connects to a backend over TLS: TCP, then the handshake, verifying the backend's
 * certificate for `serverName` and presenting the route's client certificate when
 * it has one (mTLS). Without one this is `Deno.connect` + {@linkcode upstreamHandshake}
 * (with TCP_NODELAY); with one it is `node:tls` (see {@linkcode connectNodeTls}: the
 * only Deno call that takes a client certificate, `Deno.connectTls`, leaves Nagle's
 * algorithm on, which costs a delayed ACK on every request with a body).
 *
 * @example
 * ```ts ignore
 * const conn = await connectUpstreamTls({ hostname: "10.0.0.5", port: 443 }, {
 *   tls: await loadUpstreamTls(route), serverName: "api.internal", signal,
 * });
 * ```
 *
 * @param addr The backend's address.
 * @param options The route's settings, the name to verify, a signal that aborts the
 * connect and the handshake, the ALPN protocols offered.
 * @returns The TLS connection, handshake done.
 * @throws {Error} when connecting or the handshake fails, or `signal`'s reason when aborted.
 */
export async function connectUpstreamTls(
  addr: { hostname: string; port: number },
  options: UpstreamHandshakeOptions,
): Promise<Deno.TlsConn> {
  const { tls, serverName, signal } = options;
  if (tls.clientCert === undefined) {
    const tcp = await Deno.connect({ ...addr, signal });
    try {
      tcp.setNoDelay(true);
    } catch { /* not a TCP socket */ }
    return await upstreamHandshake(tcp, options);
  }
  try {
    return await connectNodeTls({
      ...addr,
      serverName,
      caCerts: tls.caCerts,
      cert: tls.clientCert.cert,
      key: tls.clientCert.key,
      alpn: options.alpn ?? HTTP1_ALPN,
      signal,
    });
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw new Error(`TLS to ${serverName}: ${reason(e)}`, { cause: e });
  }
}

// Waits for `conn`'s handshake, or for `signal`.
async function handshake(
  conn: Deno.TlsConn,
  options: UpstreamHandshakeOptions,
): Promise<Deno.TlsConn> {
  const { signal } = options;
  const pending = conn.handshake();
  try {
    await abortable(pending, signal);
  } catch (e) {
    if (!signal.aborted) {
      try {
        conn.close();
      } catch { /* closed already */ }
      throw new Error(`TLS handshake: ${reason(e)}`, { cause: e });
    }
    giveUp(conn, pending, options);
    throw signal.reason;
  } finally {
    pending.catch(() => {});
  }
  return conn;
}

// Given up before it finished: the socket stays until the backend answers or closes.
function giveUp(conn: Deno.TlsConn, pending: Promise<unknown>, options: UpstreamHandshakeOptions) {
  if (options.stalls) {
    options.stalls.hold("backend", conn, pending, options.where ?? options.serverName);
  } else {
    try {
      conn.close();
    } catch { /* closed already */ }
  }
}

// `p`, or a rejection with `signal`'s reason once it aborts (`p` is left running).
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  let abort = () => {};
  const aborted = new Promise<never>((_, reject) => abort = () => reject(signal.reason));
  signal.addEventListener("abort", abort, { once: true });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", abort));
}
