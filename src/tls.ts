/**
 * TLS material for `Deno.listenTls`: PEM files read and checked at start, with
 * errors that name the file.
 *
 * @module
 */

/** PEM text of a certificate chain and its key. */
export interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * Reads `cert` and `key` PEM files.
 *
 * @example
 * ```ts ignore
 * const { cert, key } = await loadTls({ cert: "certs/cert.pem", key: "certs/key.pem" });
 * ```
 * @throws {Error} naming the file that is missing or holds no PEM block.
 */
export async function loadTls(files: { cert: string; key: string }): Promise<TlsFiles> {
  const cert = await readPem(files.cert, "tls.cert", "CERTIFICATE");
  const key = await readPem(files.key, "tls.key", "PRIVATE KEY");
  return { cert, key };
}

async function readPem(path: string, what: string, kind: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`${what} ${path}: cannot read: ${(e as Error).message}`);
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(text)) {
    throw new Error(`${what} ${path}: no PEM ${kind} block found`);
  }
  return text;
}
