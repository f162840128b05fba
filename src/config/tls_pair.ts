/**
 * A certificate and key PEM file pair as the config names it: `tls.cert` +
 * `tls.key`, `tls.certificates[i]`, and a route's `client_cert` (HTTP and tcp).
 *
 * @module
 */
import type { Node } from "./_yaml.ts";
import type { Source } from "./_source.ts";

/** A certificate and key PEM file pair, and where the config names it (for errors). */
export interface TlsPair {
  /** Path of the PEM certificate chain, leaf first. */
  cert: string;
  /** Path of the PEM private key. */
  key: string;
  /**
   * Where the config names the pair: `tls` (for `tls.cert` + `tls.key`),
   * `tls.certificates[i]`, or `FILE:LINE: routes[i].client_cert`.
   */
  at: string;
}

// A `{ cert, key }` mapping at `at` (its entries `read` already, for `tls` itself).
export function readPair(
  src: Source,
  node: Node,
  at: string,
  read: Map<string, Node> = src.map(node, at, ["cert", "key"]),
): TlsPair | undefined {
  const cert = src.string(read.get("cert"), `${at}.cert`);
  const key = src.string(read.get("key"), `${at}.key`);
  if (cert === undefined || key === undefined) {
    return src.fail(node, at, "needs both cert and key");
  }
  return { cert, key, at };
}
