/**
 * Why a connection to a TCP listen address was closed before it reached a route.
 *
 * @module
 */
import type { ClientHelloRefusal } from "./client_hello.ts";

/**
 * Why a connection was closed before it reached a route: on an address shared by
 * `sni` routes, its first bytes (`not_tls`, `malformed`, `too_large`, `closed`,
 * `timeout`: see {@linkcode ClientHelloRefusal}) or `no_route` (a server name no
 * route has, and no default route); on a `tls` route, `tls_handshake` (the
 * handshake failed) or `timeout` (it did not finish within `timeouts.head`).
 */
export type TcpRefusal = ClientHelloRefusal | "no_route" | "tls_handshake";

/** Every {@linkcode TcpRefusal}, in the order metrics list them. */
export const TCP_REFUSALS: readonly TcpRefusal[] = Object.freeze([
  "not_tls",
  "malformed",
  "too_large",
  "closed",
  "timeout",
  "no_route",
  "tls_handshake",
]);

/** Told each connection closed before reaching a route: its client, why, and what happened. */
export type OnRefused = (client: string, reason: TcpRefusal, detail: string) => void;
