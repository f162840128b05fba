/**
 * The client address behind trusted proxies: when the address that reached
 * the balancer is in `listen.trusted_proxies`, the client is the right-most
 * address of `X-Forwarded-For` that is not itself trusted (what nginx's
 * `real_ip_recursive on` does). From any other peer the header says nothing.
 *
 * @module
 */
import { type Cidr, formatIp, inAny, ipBytes } from "../config/cidr.ts";
import { X_FORWARDED_FOR } from "../http1/fields.ts";
import type { RequestHead } from "../http1/parse.ts";

/**
 * The client of a request that came from `peer`.
 *
 * Walks `X-Forwarded-For` (every field, every comma-separated entry) from the
 * right while the address at hand is trusted; the first untrusted one is the
 * client. When every entry is trusted the left-most is; an entry that is not an
 * IP address stops the walk at the last address known good.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseCidr } from "../config/cidr.ts";
 * import { RequestHead, parseRequest } from "../http1/parse.ts";
 * import { realClient } from "./real_client.ts";
 * const text = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.9, 10.0.0.2\r\n\r\n";
 * const bytes = new TextEncoder().encode(text);
 * const head = new RequestHead();
 * head.own(bytes, 0, bytes.length);
 * parseRequest(head, head.storage, 0, bytes.length, 8192);
 * const trusted = [parseCidr("10.0.0.0/8")];
 * assertEquals(realClient(head, "10.0.0.1", trusted), "198.51.100.9");
 * assertEquals(realClient(head, "192.0.2.1", trusted), "192.0.2.1"); // untrusted peer
 * ```
 *
 * @param head The request head.
 * @param peer The address the request came from (the TCP peer, or what a PROXY header named).
 * @param trusted `listen.trusted_proxies`.
 * @returns The client's address.
 */
export function realClient(head: RequestHead, peer: string, trusted: readonly Cidr[]): string {
  const peerBytes = ipBytes(peer);
  if (peerBytes === undefined || !inAny(peerBytes, trusted)) return peer;
  let client = peer;
  for (let i = head.count - 1; i >= 0; i--) {
    if (head.id(i) !== X_FORWARDED_FOR) continue;
    const entries = head.value(i).split(",");
    for (let j = entries.length - 1; j >= 0; j--) {
      const text = entries[j]!.trim();
      if (text === "") continue;
      const bytes = ipBytes(text);
      if (bytes === undefined) return client;
      client = formatIp(bytes);
      if (!inAny(bytes, trusted)) return client;
    }
  }
  return client;
}
