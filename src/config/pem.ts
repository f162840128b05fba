/**
 * PEM files named by the config (certificates, keys, CA bundles).
 *
 * @module
 */

/**
 * Reads a PEM file named by the config and checks that it holds a `kind` block.
 *
 * @example
 * ```ts
 * import { assertRejects } from "@std/assert";
 * import { readPem } from "./pem.ts";
 * await assertRejects(() => readPem("/nonexistent.pem", "tls.cert", "CERTIFICATE"), Error, "tls.cert /nonexistent.pem: cannot read");
 * ```
 *
 * @param path The file.
 * @param what The config key that named it, for the error (`tls.cert`).
 * @param kind The PEM label to look for (`CERTIFICATE`, `PRIVATE KEY`).
 * @returns The file's text.
 * @throws {Error} `WHAT PATH: cannot read: ...` or `WHAT PATH: no PEM KIND block found`.
 */
export async function readPem(path: string, what: string, kind: string): Promise<string> {
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

/**
 * The message of a thrown value, whatever it is.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { reason } from "./pem.ts";
 * assertEquals(reason(new Error("boom")), "boom");
 * assertEquals(reason("plain"), "plain");
 * ```
 *
 * @param e What was thrown.
 * @returns Its message, or its string form.
 */
export function reason(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}
