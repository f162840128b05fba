/**
 * What one finished request leaves behind: the record the proxy fills in and the
 * access log and metrics read. It lives here, with its readers, so that observing
 * needs nothing from the layers it observes.
 *
 * @module
 */

/** One finished request, for the access log and metrics. */
export interface ExchangeRecord {
  /** Epoch ms the request head was complete. */
  time: number;
  /**
   * Client IP address: the TCP peer, or the client a PROXY header named, or (from a
   * peer in `listen.trusted_proxies`) the one `X-Forwarded-For` named.
   */
  client: string;
  /**
   * The address the request came from (TCP peer or PROXY header), when `client` was
   * taken from `X-Forwarded-For`: it is the one appended to `X-Forwarded-For`.
   */
  via?: string;
  /** Protocol the request came in on: `http/1.1`, `http/1.0` or `h2`. */
  proto: string;
  /** Request method. */
  method: string;
  /** Host the request was for (Host header or absolute-form authority). */
  host: string;
  /** Request path used for routing ("/" for an asterisk-form target). */
  path: string;
  /** Response status sent, or 0 when none was. */
  status: number;
  /** Request body bytes received. */
  bytesIn: number;
  /** Response bytes sent (head and body). */
  bytesOut: number;
  /** Milliseconds from request head to end of response. */
  duration: number;
  /** Name of the matched route, or "" when none matched. */
  route: string;
  /** Backend id, or "" when none was used. */
  backend: string;
  /** Short reason for a balancer-made error response. */
  error?: string;
  /** The traffic policy that answered instead of a backend (`deny`, `allow`, `redirect`). */
  policy?: string;
  /** The target the backend got, when a policy rewrote it (`path` keeps the client's). */
  target?: string;
  /** The content coding `compress` applied to the response body (`gzip`, `br`, `zstd`). */
  encoding?: string;
  /** Body bytes the encoder took in (from the backend), when one was applied. */
  encodedIn?: number;
  /** Encoded body bytes it gave out (to the client, before framing), when one was applied. */
  encodedOut?: number;
}
