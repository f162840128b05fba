/**
 * Every backend connection pool of a running balancer, keyed by
 * {@linkcode backendKey} so that routes sharing a backend share its pool.
 *
 * @module
 */
import { type Backend, backendKey } from "./backend.ts";
import type { Config } from "../config/config.ts";
import { Pool } from "./pool.ts";

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

  /** Drains and drops the pools whose key is not in `used`. */
  prune(used: { has(key: string): boolean }): void {
    for (const [key, pool] of this.#pools) {
      if (!used.has(key)) {
        pool.drain();
        this.#pools.delete(key);
      }
    }
  }

  /** Drains every pool (shutdown). */
  drainAll(): void {
    for (const p of this.#pools.values()) p.drain();
  }
}
