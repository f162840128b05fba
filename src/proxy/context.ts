/**
 * What the data path is handed by whoever runs it (the balancer): routes,
 * pools, limits. The data path reads it and never reaches back up.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";
import type { ExchangeRecord } from "../observe/exchange_record.ts";
import type { Limits, RouteTimeouts, Timeouts } from "../config/config.ts";
import type { HashKey } from "../config/hash_key.ts";
import type { Cidr } from "../config/cidr.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import type { Watchdog } from "../timer/watchdog.ts";
import type { PassiveHealth } from "../upstream/health/passive.ts";
import type { Pool } from "../upstream/pool.ts";
import type { H2Pool } from "../upstream/h2_pool.ts";
import type { PrivateCounts } from "../upstream/private_pools.ts";
import type { Router } from "./router.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { RoutePolicy } from "../policy/policy.ts";

export type { ExchangeRecord };

/** A route as the data path sees it. */
export interface Route {
  /** Route name from the config. */
  readonly name: string;
  /** Picks this route's backends. */
  readonly scheduler: Scheduler;
  /**
   * The timeouts of this route's exchanges (ms, 0 = none), resolved at config load:
   * the top-level ones with the route's own over them.
   */
  readonly timeouts: RouteTimeouts;
  /** What the scheduler is given as each request's key (`scheduler: hash` routes only). */
  readonly hashKey?: HashKey | undefined;
  /** The route's compiled traffic policy steps; undefined when it has none. */
  readonly policy?: RoutePolicy | undefined;
  /**
   * A connect to `failed` failed: another address of the same SRV target to try at
   * once (not counted as a retry, `failed` is not charged a passive failure and gets
   * no traffic until it connects again), or undefined when there is none.
   */
  fallback?(failed: Backend, tried: readonly Backend[], reason: string): Backend | undefined;
}

/** Counts of HTTP/2 client connections and streams, for /metrics and /status. */
export interface H2Counts {
  /** HTTP/2 client connections open now. */
  connections: number;
  /** Request streams being served now. */
  streams: number;
  /** Connections closed for abuse (GOAWAY ENHANCE_YOUR_CALM), by reason (`ABUSE_REASONS`). */
  closed: Record<string, number>;
}

/** An open client connection, as shutdown and reloads see it. */
export interface ClientSession {
  /** The context of the listener it came in on. */
  readonly ctx: ProxyContext;
  /**
   * Winds it down: an HTTP/1.x connection between requests closes now (one
   * mid-request after its response); an HTTP/2 one gets GOAWAY with its last
   * stream id and closes once its streams finish.
   */
  closeIfIdle(): void;
  /** Closes it now. */
  close(): void;
}

/** Everything the per-connection code needs. */
export interface ProxyContext {
  /** Maps Host + path to a route. */
  router: Router<Route>;
  /** The pool of a backend (created on first use). */
  pool(backend: Backend): Pool;
  /** The HTTP/2 pool of a backend spoken to in HTTP/2 (created on first use). */
  h2pool(backend: Backend): H2Pool;
  /**
   * Connections opened and reused by the pools private to client connections
   * (routes with `proxy_protocol`), added to as each client connection ends.
   */
  privateCounts?: PrivateCounts | undefined;
  /** Timeouts in force (ms). */
  timeouts: Timeouts;
  /** Size and count limits in force. */
  limits: Limits;
  /** Extra backends to try after a failure that is safe to retry. */
  retries: number;
  /** Accept HTTP/2 with prior knowledge (h2c) on a plain listener (`listen.h2c`). */
  h2c: boolean;
  /** HTTP/2 connections and streams open now (shared by every listener). */
  h2: H2Counts;
  /** `http` or `https`: how clients reach this listener. */
  proto: "http" | "https";
  /** When set, plain-HTTP requests are redirected (308) to HTTPS on this port. */
  redirectHttpsPort?: number | undefined;
  /** Drives head, idle, response and body timeouts. */
  watchdog: Watchdog;
  /** Passive health tracking. */
  health: PassiveHealth;
  /**
   * Open client connections; shutdown closes those waiting for a request, and the
   * rest when the drain runs out of time.
   */
  sessions: Set<ClientSession>;
  /** True once shutdown started: finish the current request, then close. */
  closing: boolean;
  /** Called after every request. */
  onExchange?: ((record: ExchangeRecord) => void) | undefined;
  /**
   * Told when an HTTP/2 client connection is closed for abuse: the client's
   * `address:port`, and a sentence saying why and what was sent.
   */
  onH2Abuse?: ((client: string, detail: string) => void) | undefined;
  /** Told when connecting to a backend failed for lack of descriptors or ports. */
  onExhausted?: ((where: string, e: unknown) => void) | undefined;
  /**
   * Takes TLS handshakes that ran out of time (Deno cannot release their socket until
   * the handshake ends); without it they are closed.
   */
  stalls?: HandshakeStalls | undefined;
  /**
   * Every connection must begin with a PROXY header (`listen.proxy_protocol`, plain
   * HTTP listener only), from a peer in {@linkcode ProxyContext.trustedProxies}.
   */
  proxyProtocol?: boolean | undefined;
  /**
   * `listen.trusted_proxies` (undefined when none): peers whose PROXY header and
   * `X-Forwarded-For` name the client.
   */
  trustedProxies?: readonly Cidr[] | undefined;
  /**
   * Told when a connection is closed for its PROXY header: the peer's address, why
   * (`untrusted`, `missing`, `malformed`, `too_large`, `closed`, `timeout`) and a
   * sentence saying what was wrong.
   */
  onProxyRefused?: ((peer: string, reason: string, detail: string) => void) | undefined;
  /**
   * `listen.https` with `proxy_protocol`: the hop that read each connection's PROXY
   * header and carries its bytes to the internal TLS listener; it names the client
   * of each TLS connection accepted there (see `TlsHops`).
   */
  tlsHops?: HopOrigins | undefined;
}

/** What the TLS side asks of the PROXY hop in front of it (`TlsHops`). */
export interface HopOrigins {
  /**
   * The client and the address it connected to, as the PROXY header of the hop
   * that carries `conn` named them (its peer's when `LOCAL`); undefined when no
   * hop carries it (a connection made to the internal listener by anyone else).
   */
  origin(
    conn: Deno.Conn,
  ): { ip: string; port: number; dest: string; destPort: number } | undefined;
  /** Closes the hop that carries `conn` (its handshake ran out of time). */
  abort(conn: Deno.Conn): void;
}
