/**
 * The DNS names of an X.509 certificate, read from its subjectAltName extension
 * (RFC 5280 §4.2.1.6) by walking the DER: just enough ASN.1 to find them, no
 * more. The names choose the certificate a TLS client gets by SNI.
 *
 * @module
 */

/** One DER element: its tag, and where its contents start and end in the buffer. */
interface Element {
  tag: number;
  start: number;
  end: number;
}

// subjectAltName's object identifier, 2.5.29.17, as its DER contents.
const SAN_OID = [0x55, 0x1d, 0x11];

/**
 * The DNS names (`dNSName` entries, lower-cased, `*.` wildcards kept) in the
 * subjectAltName of the first certificate in `pem`, in their order; empty when it
 * has no such extension.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { dnsNames } from "./x509.ts";
 * const out = await new Deno.Command("openssl", {
 *   args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
 *     "-keyout", "/dev/null", "-subj", "/CN=a.test", "-days", "1",
 *     "-addext", "subjectAltName=DNS:a.test,IP:127.0.0.1,DNS:*.Wild.test"],
 *   stdout: "piped", stderr: "null",
 * }).output();
 * assertEquals(dnsNames(new TextDecoder().decode(out.stdout)), ["a.test", "*.wild.test"]);
 * ```
 *
 * @param pem PEM text holding a certificate (a chain: the first, the leaf, is read).
 * @returns Its DNS names.
 * @throws {Error} when there is no certificate or its DER does not parse.
 */
export function dnsNames(pem: string): string[] {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error("no PEM CERTIFICATE block found");
  let der: Uint8Array;
  try {
    der = Uint8Array.from(atob(m[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw new Error("the PEM CERTIFICATE block is not base64");
  }
  return sanNames(der);
}

// Certificate ::= SEQUENCE { tbsCertificate, ... }; the extensions are tbsCertificate's [3].
function sanNames(der: Uint8Array): string[] {
  const cert = read(der, 0, der.length, 0x30);
  const tbs = read(der, cert.start, cert.end, 0x30);
  for (const field of children(der, tbs)) {
    if (field.tag !== 0xa3) continue; // extensions [3] EXPLICIT
    const list = read(der, field.start, field.end, 0x30);
    for (const ext of children(der, list)) {
      const parts = children(der, ext);
      const oid = parts[0];
      if (oid?.tag !== 0x06 || !equals(der.subarray(oid.start, oid.end), SAN_OID)) continue;
      const value = parts[parts.length - 1]!; // extnValue OCTET STRING (after `critical`)
      if (value.tag !== 0x04) throw new Error("subjectAltName is not an OCTET STRING");
      const names = read(der, value.start, value.end, 0x30);
      const out: string[] = [];
      for (const name of children(der, names)) {
        if (name.tag !== 0x82) continue; // dNSName [2] IMPLICIT IA5String
        out.push(String.fromCharCode(...der.subarray(name.start, name.end)).toLowerCase());
      }
      return out;
    }
  }
  return [];
}

// The elements inside `parent`, in order.
function children(der: Uint8Array, parent: Element): Element[] {
  const out: Element[] = [];
  for (let at = parent.start; at < parent.end;) {
    const e = read(der, at, parent.end);
    out.push(e);
    at = e.end;
  }
  return out;
}

// The element at `at` (which must end by `limit`), checked to have tag `want` when given.
function read(der: Uint8Array, at: number, limit: number, want?: number): Element {
  if (at + 2 > limit) throw new Error("certificate DER is truncated");
  const tag = der[at]!;
  if (want !== undefined && tag !== want) {
    throw new Error(`certificate DER: expected tag 0x${want.toString(16)} at byte ${at}`);
  }
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error("certificate DER: bad length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[start + i]!;
    start += n;
  }
  const end = start + length;
  if (end > limit) throw new Error("certificate DER is truncated");
  return { tag, start, end };
}

function equals(a: Uint8Array, b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
