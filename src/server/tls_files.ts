/**
 * The listener's certificate and key: PEM files read and checked to belong
 * together, with errors that name the file.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readPem, reason } from "../config/pem.ts";
import { dnsNames } from "../config/x509.ts";

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
  /** When the leaf becomes valid. */
  notBefore: Date;
  /** When the leaf expires. */
  notAfter: Date;
  /** The leaf's DNS names (subjectAltName), lower-cased, `*.` wildcards kept. */
  names: string[];
}

/** Paths of a certificate chain and its key (the `tls:` section). */
export interface TlsPaths {
  /** Path of the PEM certificate chain file. */
  cert: string;
  /** Path of the PEM private key file. */
  key: string;
  /**
   * Where the config names the pair, for errors: `tls` (the files are `tls.cert` and
   * `tls.key`) or `tls.certificates[1]`. @default {"tls"}
   */
  at?: string;
}

/**
 * Reads the `cert` and `key` PEM files and checks that they parse and that the
 * key is the certificate's.
 *
 * @example
 * ```ts ignore
 * const { cert, key, serial } = await loadTls({ cert: "certs/cert.pem", key: "certs/key.pem" });
 * ```
 * @throws {Error} `tls.cert PATH: ...` or `tls.key PATH: ...` (`tls.certificates[i].cert`
 * with `at`): a file that is missing,
 * holds no PEM block, does not parse, or a key that does not match the certificate.
 */
export async function loadTls(files: TlsPaths): Promise<TlsFiles> {
  const at = files.at ?? "tls";
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
      `${at}.key ${files.key}: does not match the certificate in ${at}.cert ${files.cert}`,
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

/**
 * What is wrong with the dates of a loaded certificate at `now`, if anything:
 * expired, or not valid yet. Such a certificate is still served (it is what the
 * config names; clients refuse it), with a warning.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { validity } from "./tls_files.ts";
 * const m = { notBefore: new Date("2026-01-01"), notAfter: new Date("2026-02-01") };
 * assertEquals(validity(m, new Date("2026-01-15")), undefined);
 * assertEquals(validity(m, new Date("2026-03-01")), "expired on 2026-02-01T00:00:00.000Z");
 * ```
 *
 * @param m The certificate's dates.
 * @param now The time to check against. @default {new Date()}
 * @returns `expired on ...` / `not valid before ...`, or undefined when valid.
 */
export function validity(
  m: Pick<TlsFiles, "notBefore" | "notAfter">,
  now: Date = new Date(),
): string | undefined {
  if (m.notAfter.getTime() < now.getTime()) return `expired on ${m.notAfter.toISOString()}`;
  if (m.notBefore.getTime() > now.getTime()) {
    return `not valid before ${m.notBefore.toISOString()}`;
  }
  return undefined;
}
