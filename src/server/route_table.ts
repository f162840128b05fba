/**
 * The routes of one configuration: each with its scheduler, fed by static
 * backends or an SRV watcher. A reload builds a new set and retires the old one.
 *
 * @module
 */
import { type Backend, backendKey, byKey } from "../upstream/backend.ts";
import type { Config, RouteConfig } from "../config/config.ts";
import type { Route } from "../proxy/context.ts";
import { SrvWatcher } from "../upstream/discovery/srv.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import type { Logger } from "../observe/log.ts";
import { Router } from "../proxy/router.ts";
import { type Scheduler } from "../scheduler/scheduler.ts";
import { createScheduler } from "../scheduler/create.ts";
import { loadUpstreamTls, type UpstreamTls } from "../upstream/tls.ts";

/** A route with what feeds it. */
export interface RouteState extends Route {
  /** The route's configuration. */
  readonly config: RouteConfig;
  /** Picks this route's backends. */
  readonly scheduler: Scheduler;
  /** Present for routes discovered through SRV. */
  readonly srv?: SrvWatcher;
}

/** Options for {@linkcode RouteSet.start}. */
export interface RouteSetOptions {
  /** Where discovery and route messages are logged. */
  log: Logger;
  /** Backends already running (by {@linkcode backendKey}): reused so health, counters and pools carry over. */
  known?: ReadonlyMap<string, readonly Backend[]>;
  /** Called after a discovery update changed some route's backends. */
  onChange?: () => void;
}

/**
 * Routes built from a config, with a router over them.
 *
 * @example
 * ```ts ignore
 * const set = await RouteSet.start(config, { log });
 * set.router.match("app.test", "/");
 * await set.stop();
 * ```
 */
export class RouteSet {
  /** Routes in config order. */
  readonly routes: RouteState[] = [];
  /** Host + path → route. */
  readonly router: Router<RouteState> = new Router<RouteState>();
  readonly #ac = new AbortController();
  readonly #options: RouteSetOptions;

  private constructor(options: RouteSetOptions) {
    this.#options = options;
  }

  /** Builds every route and waits for each SRV name's first lookup. */
  static async start(config: Config, options: RouteSetOptions): Promise<RouteSet> {
    const set = new RouteSet(options);
    try {
      for (const rc of config.routes) {
        const found = rc.backends ? staticBackends(rc.backends) : [];
        const tls = rc.tls ? await loadUpstreamTls({ name: rc.name, ...rc.tls }) : undefined;
        const scheduler = createScheduler(rc.scheduler, set.#reuse(found, tls));
        const state: RouteState = { name: rc.name, config: rc, scheduler, hashKey: rc.hash_key };
        if (rc.srv !== undefined) {
          (state as { srv?: SrvWatcher }).srv = set.#watch(config, rc.srv, state, tls);
        }
        set.routes.push(state);
        set.router.add({ host: rc.host, path: rc.path }, state);
      }
      await Promise.all(set.routes.map((r) => r.srv?.ready));
    } catch (e) {
      await set.stop();
      throw e;
    }
    return set;
  }

  /**
   * Every backend record of every route, grouped by {@linkcode backendKey} (the id,
   * for plain TCP): routes that give one address different weights hold different
   * records, and each one counts (health, reuse on reload).
   */
  backends(): Map<string, Backend[]> {
    return byKey(this.routes.flatMap((r) => r.scheduler.backends));
  }

  /** Stops discovery. */
  async stop(): Promise<void> {
    this.#ac.abort();
    await Promise.all(this.routes.map((r) => r.srv?.closed));
  }

  #reuse(found: Backend[], tls: UpstreamTls | undefined): Backend[] {
    const known = this.#options.known;
    const mine = this.backends();
    return found.map((plain) => {
      const b: Backend = tls ? { ...plain, tls } : plain;
      const key = backendKey(b);
      const same = (o: Backend) => o.priority === b.priority && o.weight === b.weight;
      return mine.get(key)?.find(same) ?? known?.get(key)?.find(same) ?? b;
    });
  }

  #watch(
    config: Config,
    name: string,
    route: RouteState,
    tls: UpstreamTls | undefined,
  ): SrvWatcher {
    const { nameserver, refresh } = config.dns;
    const log = this.#options.log;
    return new SrvWatcher({
      name,
      ...(nameserver ? { nameServer: { ipAddr: nameserver.hostname, port: nameserver.port } } : {}),
      refresh,
      signal: this.#ac.signal,
      onUpdate: (found) => {
        const next = this.#reuse(found, tls);
        route.scheduler.update(next);
        const list = next.map((b) => `${b.name}=${b.id} p${b.priority} w${b.weight}`).join(", ");
        log.info(`route ${route.name}: ${name} → ${list}`);
        this.#options.onChange?.();
      },
      onError: (e) => {
        const kept = route.scheduler.backends.length;
        log.warn(
          `route ${route.name}: ${e.message}; keeping the last good set (${kept} backends, stale)`,
        );
      },
    });
  }
}
