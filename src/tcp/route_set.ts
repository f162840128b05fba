/**
 * The `tcp:` routes of one configuration, each with its scheduler fed by static
 * backends or an SRV watcher, as HTTP routes are. A reload builds a new set (reusing
 * the backend records that stay, so health and load carry over) and stops the old one.
 *
 * @module
 */
import { type Backend, backendKey, byKey } from "../upstream/backend.ts";
import type { TcpRouteConfig } from "../config/tcp.ts";
import type { HostPort } from "../config/address.ts";
import type { AddressFamily } from "../upstream/discovery/family.ts";
import { type SrvSource, SrvWatcher } from "../upstream/discovery/srv.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import type { Logger } from "../observe/log.ts";
import { count } from "../observe/count.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import { createScheduler } from "../scheduler/create.ts";
import { type BackendChecks, compileChecks } from "../upstream/health/checks.ts";
import { loadUpstreamTls, type UpstreamTls } from "../upstream/tls.ts";

/** A running `tcp:` route. */
export interface TcpRoute {
  /** Route name from the config. */
  readonly name: string;
  /** The route's configuration. */
  readonly config: TcpRouteConfig;
  /** Picks the backend of each connection. */
  readonly scheduler: Scheduler;
  /** Present for routes discovered through SRV. */
  readonly srv?: SrvSource;
  /** How its backends are checked (every record of the route carries these). */
  readonly checks: BackendChecks;
  /** How its backends are reached over TLS (`backend_tls: true`); absent: plain TCP. */
  readonly tls?: UpstreamTls;
}

/** Options for {@linkcode TcpRouteSet.start}. */
export interface TcpRouteSetOptions {
  /** Where discovery messages go. */
  log: Logger;
  /** The top-level `dns` settings. */
  dns: { nameserver?: HostPort; refresh: number; family: AddressFamily };
  /** Backend records already running (by `backendKey`): reused so health and load carry over. */
  known?: ReadonlyMap<string, readonly Backend[]>;
  /** Called after a discovery update changed some route's backends. */
  onChange?: () => void;
}

/**
 * The TCP routes of a config.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseConfig } from "../config/config.ts";
 * import { createLogger } from "../observe/log.ts";
 * import { TcpRouteSet } from "./route_set.ts";
 * const config = parseConfig(
 *   "tcp:\n  - { name: kv, listen: 127.0.0.1:0, backends: [{ address: 127.0.0.1:6379 }] }\n",
 *   "unload.yaml",
 * );
 * const set = await TcpRouteSet.start(config.tcp, {
 *   log: createLogger({ access: "off", quiet: true }),
 *   dns: config.dns,
 * });
 * assertEquals(set.routes[0]!.scheduler.backends.map((b) => b.id), ["127.0.0.1:6379"]);
 * await set.stop();
 * ```
 */
export class TcpRouteSet {
  /** Routes in config order. */
  readonly routes: TcpRoute[] = [];
  readonly #ac = new AbortController();
  readonly #options: TcpRouteSetOptions;

  private constructor(options: TcpRouteSetOptions) {
    this.#options = options;
  }

  /** Builds every route and waits for each SRV name's first lookup. */
  static async start(
    configs: readonly TcpRouteConfig[],
    options: TcpRouteSetOptions,
  ): Promise<TcpRouteSet> {
    const set = new TcpRouteSet(options);
    try {
      for (const rc of configs) {
        const checks = compileChecks(rc.health);
        const found = rc.backends ? staticBackends(rc.backends) : [];
        const tls = rc.backend_tls === undefined
          ? undefined
          : await loadUpstreamTls({ name: rc.name, ...rc.backend_tls });
        const route: TcpRoute = {
          name: rc.name,
          config: rc,
          scheduler: createScheduler(rc.scheduler, set.#reuse(found, checks, tls)),
          checks,
          ...(tls === undefined ? {} : { tls }),
        };
        if (rc.srv !== undefined) {
          (route as { srv?: SrvSource }).srv = set.#watch(rc.srv, route);
        }
        set.routes.push(route);
      }
      await Promise.all(set.routes.map((r) => r.srv?.ready));
    } catch (e) {
      await set.stop();
      throw e;
    }
    return set;
  }

  /** Every backend record of every route, grouped by `backendKey`. */
  backends(): Map<string, Backend[]> {
    return byKey(this.routes.flatMap((r) => r.scheduler.backends));
  }

  /** Stops discovery. */
  async stop(): Promise<void> {
    this.#ac.abort();
    await Promise.all(this.routes.map((r) => r.srv?.closed));
  }

  // The records of `found` with the route's checks (and TLS settings): one already in use
  // (this set's, or a running set's) when it has the same address, priority, weight,
  // checks and TLS settings (backendKey tells those apart).
  #reuse(found: readonly Backend[], checks: BackendChecks, tls?: UpstreamTls): Backend[] {
    const known = this.#options.known;
    const mine = this.backends();
    return found.map((plain) => {
      const b: Backend = tls ? { ...plain, tls, checks } : { ...plain, checks };
      const key = backendKey(b);
      const same = (o: Backend) =>
        o.priority === b.priority && o.weight === b.weight && o.checks?.key === checks.key;
      return mine.get(key)?.find(same) ?? known?.get(key)?.find(same) ?? b;
    });
  }

  #watch(name: string, route: TcpRoute): SrvSource {
    const { nameserver, refresh, family } = this.#options.dns;
    const log = this.#options.log;
    const watcher: SrvWatcher = new SrvWatcher({
      name,
      ...(nameserver ? { nameServer: { ipAddr: nameserver.hostname, port: nameserver.port } } : {}),
      refresh,
      family,
      signal: this.#ac.signal,
      onUpdate: (found) => {
        const next = this.#reuse(found, route.checks, route.tls);
        route.scheduler.update(next);
        this.#options.onChange?.();
        const list = next.map((b) => `${b.name}=${b.id} p${b.priority} w${b.weight}`).join(", ");
        log.info(`tcp route ${route.name}: ${name} → ${list}`);
      },
      onError: (e) => {
        if (watcher.state.lastSuccess === undefined) {
          log.warn(`tcp route ${route.name}: ${e.message}; no backends until ${name} resolves`);
          return;
        }
        const kept = count(route.scheduler.backends.length, "backend");
        log.warn(
          `tcp route ${route.name}: ${e.message}; keeping the last good set (${kept}, stale)`,
        );
      },
    });
    return watcher;
  }
}
