/**
 * Every backend connection pool of a running balancer, keyed by
 * {@linkcode backendKey} so that routes sharing a backend share its pool.
 *
 * @module
 */
import { type Backend, backendKey } from "./backend.ts";
import type { Config } from "../config/config.ts";
import { Pool } from "./pool.ts";
import { H2Pool } from "./h2_pool.ts";

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
  readonly #pools = new Map<string, Pool>();
  readonly #h2 = new Map<string, H2Pool>();
  readonly #config: () => Config;

  /** `config` gives the limits and timeouts in force when a pool is created. */
  constructor(config: () => Config) {
    this.#config = config;
  }

  /** Pools by backend key. */
  get map(): ReadonlyMap<string, Pool> {
    return this.#pools;
  }

  /** The pool of `backend`, created on first use. */
  get(backend: Backend): Pool {
    const key = backendKey(backend);
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      const { limits, timeouts } = this.#config();
      pool = new Pool(backend, {
        maxIdle: limits.pool_idle,
        maxConns: limits.pool_max,
        idleTimeout: timeouts.pool_idle,
        connectTimeout: timeouts.connect,
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** HTTP/2 pools by backend key. */
  get h2Map(): ReadonlyMap<string, H2Pool> {
    return this.#h2;
  }

  /** The HTTP/2 pool of `backend` (one with `h2` set), created on first use. */
  h2(backend: Backend): H2Pool {
    const key = backendKey(backend);
    let pool = this.#h2.get(key);
    if (pool === undefined) {
      const { limits, timeouts } = this.#config();
      pool = new H2Pool(backend, {
        idleTimeout: timeouts.pool_idle,
        connectTimeout: timeouts.connect,
        client: { maxHeaderListSize: limits.max_head, bodyIdleTimeout: timeouts.body_idle },
      });
      this.#h2.set(key, pool);
    }
    return pool;
  }

  /** Drains and drops the pools whose key is not in `used`. */
  prune(used: { has(key: string): boolean }): void {
    for (const [key, pool] of this.#pools) {
      if (!used.has(key)) {
        pool.drain();
        this.#pools.delete(key);
      }
    }
    for (const [key, pool] of this.#h2) {
      if (!used.has(key)) {
        pool.drain();
        this.#h2.delete(key);
      }
    }
  }

  /** Drains every pool (shutdown). */
  drainAll(): void {
    for (const p of this.#pools.values()) p.drain();
    for (const p of this.#h2.values()) p.drain();
  }
}
