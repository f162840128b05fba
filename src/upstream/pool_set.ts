/**
 * Every backend connection pool of a running balancer, keyed by
 * {@linkcode backendKey} so that routes sharing a backend share its pool.
 *
 * @module
 */
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import { type Backend, backendKey } from "./backend.ts";
import type { Limits, Timeouts } from "../config/defaults.ts";
import { Pool } from "./pool.ts";
import { H2Pool } from "./h2_pool.ts";

/** The part of the running config that pools are built from. */
export interface PoolSettings {
  /** Pool sizes and head limits. */
  readonly limits: Limits;
  /** Connect and idle timeouts. */
  readonly timeouts: Timeouts;
  /** Takes TLS handshakes given up before they finished (see `upstreamHandshake`). */
  readonly stalls?: HandshakeStalls | undefined;
}

/**
 * Pools created on first use and dropped when no route uses their backend.
 *
 * @example
 * ```ts ignore
 * const pools = new PoolSet(() => config);
 * const pool = pools.get(backend);
 * pools.prune(new Set([backendKey(backend)]));
 * ```
 */
export class PoolSet {
  readonly #config: () => PoolSettings;
  readonly #pools = new PoolsByKey((backend) => newPool(backend, this.#config()));
  readonly #h2 = new PoolsByKey((backend) => newH2Pool(backend, this.#config()));

  /** `config` gives the limits and timeouts in force when a pool is created. */
  constructor(config: () => PoolSettings) {
    this.#config = config;
  }

  /** Pools by backend key. */
  get map(): ReadonlyMap<string, Pool> {
    return this.#pools.map;
  }

  /** The pool of `backend`, created on first use. */
  get(backend: Backend): Pool {
    return this.#pools.get(backend);
  }

  /**
   * Every pool, HTTP/1.1 ones by backend key and HTTP/2 ones by `h2 ` and the key
   * (for /status and /metrics: both count connections opened and reused).
   */
  get all(): Map<string, Pool | H2Pool> {
    const out = new Map<string, Pool | H2Pool>(this.#pools.map);
    for (const [key, pool] of this.#h2.map) out.set(`h2 ${key}`, pool);
    return out;
  }

  /** HTTP/2 pools by backend key. */
  get h2Map(): ReadonlyMap<string, H2Pool> {
    return this.#h2.map;
  }

  /** The HTTP/2 pool of `backend` (one with `h2` set), created on first use. */
  h2(backend: Backend): H2Pool {
    return this.#h2.get(backend);
  }

  /** Drains and drops the pools whose key is not in `used`. */
  prune(used: { has(key: string): boolean }): void {
    this.#pools.prune(used);
    this.#h2.prune(used);
  }

  /** Drains every pool (shutdown). */
  drainAll(): void {
    this.#pools.drainAll();
    this.#h2.drainAll();
  }
}

/** Pools of one kind by backend key, each created on first use. */
class PoolsByKey<P extends { drain(): void }> {
  readonly map = new Map<string, P>();
  readonly #create: (backend: Backend) => P;

  constructor(create: (backend: Backend) => P) {
    this.#create = create;
  }

  get(backend: Backend): P {
    const key = backendKey(backend);
    let pool = this.map.get(key);
    if (pool === undefined) {
      pool = this.#create(backend);
      this.map.set(key, pool);
    }
    return pool;
  }

  prune(used: { has(key: string): boolean }): void {
    for (const [key, pool] of this.map) {
      if (!used.has(key)) {
        pool.drain();
        this.map.delete(key);
      }
    }
  }

  drainAll(): void {
    for (const p of this.map.values()) p.drain();
  }
}

/**
 * A pool of `backend` with the limits and timeouts of `settings`; its new
 * connections begin with `proxyHeader` when given.
 */
export function newPool(
  backend: Backend,
  { limits, timeouts, stalls }: PoolSettings,
  proxyHeader?: Uint8Array,
): Pool {
  return new Pool(backend, {
    stalls,
    proxyHeader,
    maxIdle: limits.pool_idle,
    maxConns: limits.pool_max,
    idleTimeout: timeouts.pool_idle,
    connectTimeout: timeouts.connect,
  });
}

/**
 * An HTTP/2 pool of `backend` with the limits and timeouts of `settings`; its new
 * connections begin with `proxyHeader` when given.
 */
export function newH2Pool(
  backend: Backend,
  { limits, timeouts, stalls }: PoolSettings,
  proxyHeader?: Uint8Array,
): H2Pool {
  return new H2Pool(backend, {
    stalls,
    proxyHeader,
    idleTimeout: timeouts.pool_idle,
    connectTimeout: timeouts.connect,
    // no idle timer of its own on a stream: the exchange that opened it times it, by
    // its route's timeouts (response, body_idle, max_stream_duration, grpc-timeout)
    client: { maxHeaderListSize: limits.max_head, bodyIdleTimeout: 0 },
  });
}
