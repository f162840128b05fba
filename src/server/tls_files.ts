/**
 * The listener's certificate and key: PEM files read and checked to belong
 * together, with errors that name the file.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readPem, reason } from "../config/pem.ts";

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
