/**
 * A certificate and its private key, read from PEM files and checked to belong
 * together, with errors that name the file and where the config names it. Used
 * for the HTTPS listener's certificates and for client certificates to backends.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readPem, reason } from "./pem.ts";
import { dnsNames } from "./x509.ts";

/** PEM text of a certificate chain and its key, checked to belong together. */
export interface KeyPair {
  /** The certificate chain, leaf first. */
  cert: string;
  /** The private key of the leaf. */
  key: string;
  /** The leaf's serial number in hex, as `openssl x509 -serial` prints it. */
  serial: string;
  /** The leaf's subject, e.g. `CN=app.test`. */
  subject: string;
  /** When the leaf becomes valid. */
  notBefore: Date;
  /** When the leaf expires. */
  notAfter: Date;
  /** The leaf's DNS names (subjectAltName), lower-cased, `*.` wildcards kept. */
  names: string[];
}

/**
 * Reads the `cert` and `key` PEM files and checks that they parse and that the
 * key is the certificate's.
 *
 * @example
 * ```ts
 * import { assertRejects } from "@std/assert";
 * import { readKeyPair } from "./key_pair.ts";
 * await assertRejects(
 *   () => readKeyPair({ cert: "/nonexistent.pem", key: "/nonexistent.key" }, "tls"),
 *   Error,
 *   "tls.cert /nonexistent.pem: cannot read",
 * );
 * ```
 *
 * @param files The two paths.
 * @param at Where the config names them, the prefix of errors: `tls` gives `tls.cert PATH: ...`.
 * @returns Their text, and what the certificate says.
 * @throws {Error} `AT.cert PATH: ...` or `AT.key PATH: ...`: a file that is missing,
 * holds no PEM block, does not parse, or a key that does not match the certificate.
 */
export async function readKeyPair(
  files: { cert: string; key: string },
  at: string,
): Promise<KeyPair> {
  const cert = await readPem(files.cert, `${at}.cert`, "CERTIFICATE");
  const key = await readPem(files.key, `${at}.key`, "PRIVATE KEY");
  let x509: X509Certificate;
  let names: string[];
  try {
    x509 = new X509Certificate(cert);
    names = dnsNames(cert);
  } catch (e) {
    throw new Error(`${at}.cert ${files.cert}: not a valid PEM certificate: ${reason(e)}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new Error(
      `${at}.key ${files.key}: not a valid unencrypted PEM private key: ${reason(e)}`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(
      `${at}.key ${files.key}: does not match the certificate in ${at.replace(/^.*: /, "") // without its file:line
      }.cert ${files.cert}`,
    );
  }
  return {
    cert,
    key,
    serial: x509.serialNumber.toUpperCase(),
    subject: x509.subject.replaceAll("\n", ", "),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    names,
  };
}
