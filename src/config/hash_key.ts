/**
 * What a `scheduler: hash` route hashes on, as written in the config file:
 * `client_ip`, `header:NAME` or `cookie:NAME`.
 *
 * @module
 */

/** The part of a request a `hash` route's backend is chosen by. */
export type HashKey =
  | { readonly kind: "client_ip" }
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "cookie"; readonly name: string };

/** The default hash key: the client connection's IP address. */
export const CLIENT_IP_KEY: HashKey = Object.freeze({ kind: "client_ip" });

/** An RFC 9110 token: what a header field name or a cookie name must be. */
export const TOKEN_REGEXP = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses a `hash_key` value. Header names are lower-cased (they are matched
 * without regard to case); cookie names are kept as written (they are not).
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { parseHashKey } from "./hash_key.ts";
 * assertEquals(parseHashKey("header:X-User"), { kind: "header", name: "x-user" });
 * assertEquals(parseHashKey("cookie:sid"), { kind: "cookie", name: "sid" });
 * assertEquals(parseHashKey("client_ip"), { kind: "client_ip" });
 * assertThrows(() => parseHashKey("header:"), TypeError);
 * ```
 *
 * @param text The configured value.
 * @returns The key.
 * @throws {TypeError} If it is none of `client_ip`, `header:NAME`, `cookie:NAME`
 * with NAME a token.
 */
export function parseHashKey(text: string): HashKey {
  if (text === "client_ip") return CLIENT_IP_KEY;
  const colon = text.indexOf(":");
  const kind = text.slice(0, colon);
  const name = text.slice(colon + 1);
  if (colon !== -1 && TOKEN_REGEXP.test(name)) {
    if (kind === "header") return { kind, name: name.toLowerCase() };
    if (kind === "cookie") return { kind, name };
  }
  throw new TypeError(
    `Hash key must be client_ip, header:NAME or cookie:NAME (NAME a token): received "${text}"`,
  );
}
