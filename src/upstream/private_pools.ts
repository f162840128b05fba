/**
 * The backend connections of one client connection, for routes that send a
 * PROXY header (`routes[].proxy_protocol`): a connection whose header named one
 * client is never handed to another. Like HAProxy, which keeps such connections
 * private to the client's session, they are kept for that client's next
 * requests (keep-alive, HTTP/2 streams) and closed when its connection ends.
 *
 * @module
 */
import { type Backend, backendKey } from "./backend.ts";
import type { H2Pool } from "./h2_pool.ts";
import type { Pool } from "./pool.ts";
import { newH2Pool, newPool, type PoolSettings } from "./pool_set.ts";
import { encodeProxyHeader, type ProxyEnds } from "./proxy_out.ts";

/** Connections opened and reused by every client's private pools (for /metrics). */
export interface PrivateCounts {
  /** Connections opened. */
  opened: number;
  /** Requests (HTTP/2: streams) sent on a connection that carried one before. */
  reused: number;
}

/**
 * One client connection's pools, one per backend and client address (a trusted
 * proxy's connection may carry several clients, named by X-Forwarded-For).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { DEFAULTS } from "../config/defaults.ts";
 * import { PrivatePools } from "./private_pools.ts";
 * const backend = { ...createBackend({ hostname: "127.0.0.1", port: 9 }), proxy: "v1" as const };
 * const ends = { client: "127.0.0.5", clientPort: 40000, dest: "127.0.0.1", destPort: 80 };
 * const pools = new PrivatePools(DEFAULTS, ends);
 * assertEquals(pools.pool(backend, "127.0.0.5"), pools.pool(backend, "127.0.0.5"));
 * assertEquals(pools.pool(backend, "127.0.0.5") === pools.pool(backend, "198.51.100.7"), false);
 * pools.close();
 * ```
 */
export class PrivatePools {
  readonly #settings: PoolSettings;
  readonly #ends: ProxyEnds;
  readonly #counts: PrivateCounts | undefined;
  readonly #pools = new Map<string, Pool>();
  readonly #h2 = new Map<string, H2Pool>();
  #closed = false;

  /**
   * @param settings Limits and timeouts of the pools.
   * @param ends The client connection's two ends (the client's port is sent for its
   * own address only: a client named by X-Forwarded-For gets port 0).
   * @param counts Added to as connections open and are reused.
   */
  constructor(settings: PoolSettings, ends: ProxyEnds, counts?: PrivateCounts) {
    this.#settings = settings;
    this.#ends = ends;
    this.#counts = counts;
  }

  /** The HTTP/1.1 pool of `backend` (one with `proxy` set) for `client`. */
  pool(backend: Backend, client: string): Pool {
    const key = `${backendKey(backend)} ${client}`;
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      pool = newPool(backend, this.#settings, this.#header(backend, client));
      this.#pools.set(key, pool);
      if (this.#closed) pool.drain(); // an exchange outlived its client: nothing is kept
    }
    return pool;
  }

  /** The HTTP/2 pool of `backend` (one with `proxy` and `h2` set) for `client`. */
  h2(backend: Backend, client: string): H2Pool {
    const key = `${backendKey(backend)} ${client}`;
    let pool = this.#h2.get(key);
    if (pool === undefined) {
      pool = newH2Pool(backend, this.#settings, this.#header(backend, client));
      this.#h2.set(key, pool);
      if (this.#closed) pool.drain();
    }
    return pool;
  }

  /** The client connection ended: idle connections close now, busy ones when done. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const counts = this.#counts;
    for (const p of this.#pools.values()) {
      p.drain();
      if (counts) {
        counts.opened += p.opened;
        counts.reused += p.reused;
      }
    }
    for (const p of this.#h2.values()) {
      p.drain();
      if (counts) {
        counts.opened += p.opened;
        counts.reused += p.reused;
      }
    }
  }

  #header(backend: Backend, client: string): Uint8Array {
    const ends = this.#ends;
    const named = client === ends.client ? ends : { ...ends, client, clientPort: 0 };
    return encodeProxyHeader(backend.proxy ?? "v2", named);
  }
}
