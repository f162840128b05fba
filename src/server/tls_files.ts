/**
 * The listener's certificate and key: PEM files read and checked to belong
 * together, with errors that name the file.
 *
 * @module
 */
import { type KeyPair, readKeyPair } from "../config/key_pair.ts";

/** PEM text of a certificate chain and its key, checked to belong together. */
export type TlsFiles = KeyPair;

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
 * key is the certificate's (see {@linkcode readKeyPair}).
 *
 * @example
 * ```ts ignore
 * const { cert, key, serial } = await loadTls({ cert: "certs/cert.pem", key: "certs/key.pem" });
 * ```
 * @throws {Error} `tls.cert PATH: ...` or `tls.key PATH: ...` (`tls.certificates[i].cert`
 * with `at`): a file that is missing, holds no PEM block, does not parse, or a key that
 * does not match the certificate.
 */
export function loadTls(files: TlsPaths): Promise<TlsFiles> {
  return readKeyPair(files, files.at ?? "tls");
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
