/**
 * TLS material: the listener's certificate and key (PEM files read and checked,
 * with errors that name the file) and the settings of TLS connections to backends.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";

/** PEM text of a certificate chain and its key, checked to belong together. */
export interface TlsFiles {
  /** The certificate chain, leaf first. */
  cert: string;
  /** The private key of the leaf. */
  key: string;
  /** The leaf's serial number in hex, as `openssl x509 -serial` prints it. */
  serial: string;
  /** The leaf's subject, e.g. `CN=app.test`. */
  subject: string;
  /** When the leaf expires. */
  notAfter: Date;
}

/** Paths of a certificate chain and its key (the `tls:` section). */
export interface TlsPaths {
  /** Path of the PEM certificate chain file. */
  cert: string;
  /** Path of the PEM private key file. */
  key: string;
}

/**
 * Reads the `cert` and `key` PEM files and checks that they parse and that the
 * key is the certificate's.
 *
 * @example
 * ```ts ignore
 * const { cert, key, serial } = await loadTls({ cert: "certs/cert.pem", key: "certs/key.pem" });
 * ```
 * @throws {Error} `tls.cert PATH: ...` or `tls.key PATH: ...`: a file that is missing,
 * holds no PEM block, does not parse, or a key that does not match the certificate.
 */
export async function loadTls(files: TlsPaths): Promise<TlsFiles> {
  const cert = await readPem(files.cert, "tls.cert", "CERTIFICATE");
  const key = await readPem(files.key, "tls.key", "PRIVATE KEY");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new Error(`tls.cert ${files.cert}: not a valid PEM certificate: ${reason(e)}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new Error(`tls.key ${files.key}: not a valid unencrypted PEM private key: ${reason(e)}`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(
      `tls.key ${files.key}: does not match the certificate in tls.cert ${files.cert}`,
    );
  }
  return {
    cert,
    key,
    serial: x509.serialNumber.toUpperCase(),
    subject: x509.subject.replaceAll("\n", ", "),
    notAfter: new Date(x509.validTo),
  };
}

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

/**
 * Upgrades a connected TCP socket to TLS and completes the handshake, verifying
 * the backend's certificate for `serverName`.
 *
 * @param tcp a connected socket; consumed.
 * @param options the route's settings, the name to verify and a signal that aborts the handshake.
 * @returns the TLS connection, handshake done.
 * @throws {Error} when the handshake fails (untrusted or wrong certificate) or is aborted.
 */
export async function upstreamHandshake(
  tcp: Deno.TcpConn,
  options: { tls: UpstreamTls; serverName: string; signal: AbortSignal },
): Promise<Deno.TlsConn> {
  const { tls, serverName, signal } = options;
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.startTls(tcp, {
      hostname: serverName,
      ...(tls.caCerts ? { caCerts: tls.caCerts } : {}),
      alpnProtocols: ["http/1.1"],
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

async function readPem(path: string, what: string, kind: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`${what} ${path}: cannot read: ${reason(e)}`);
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(text)) {
    throw new Error(`${what} ${path}: no PEM ${kind} block found`);
  }
  return text;
}

function reason(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}
