/**
 * Which certificate a TLS client gets for the server name it asked for (SNI):
 * an exact name beats a `*.` wildcard, and no name, or a name no certificate
 * has, gets the first certificate.
 *
 * @module
 */

/**
 * Certificates' DNS names, indexed for the name a ClientHello carries.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { SniIndex } from "./sni.ts";
 * const index = new SniIndex([["a.test"], ["b.test", "*.wild.test"], ["x.wild.test"]]);
 * assertEquals(index.pick("b.test"), 1);
 * assertEquals(index.pick("y.wild.test"), 1);
 * assertEquals(index.pick("x.wild.test"), 2); // exact beats wildcard
 * assertEquals(index.pick("a.b.wild.test"), 0); // a wildcard covers one label
 * assertEquals(index.pick(""), 0); // no SNI: the first
 * assertEquals(index.pick("other.test"), 0);
 * ```
 */
export class SniIndex {
  readonly #exact = new Map<string, number>();
  /** By the part after `*.`. */
  readonly #wild = new Map<string, number>();

  /**
   * @param names Each certificate's DNS names, in config order: where two certificates
   * share a name, the earlier one gets it.
   */
  constructor(names: readonly (readonly string[])[]) {
    names.forEach((list, i) => {
      for (const raw of list) {
        const name = raw.toLowerCase();
        if (name.startsWith("*.")) {
          if (!this.#wild.has(name.slice(2))) this.#wild.set(name.slice(2), i);
        } else if (!this.#exact.has(name)) this.#exact.set(name, i);
      }
    });
  }

  /**
   * The certificate for `serverName`.
   *
   * @param serverName The SNI host name (any case, a trailing dot allowed); `""` when none.
   * @returns The index of the certificate to serve.
   */
  pick(serverName: string): number {
    if (serverName === "") return 0;
    let name = serverName.toLowerCase();
    if (name.endsWith(".")) name = name.slice(0, -1);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    if (dot > 0) {
      const wild = this.#wild.get(name.slice(dot + 1));
      if (wild !== undefined) return wild;
    }
    return 0;
  }
}
