/**
 * The routes of one configuration: each with its scheduler, fed by static
 * backends or an SRV watcher. A reload builds a new set and retires the old one.
 *
 * @module
 */
import { type Backend, backendKey, byKey } from "../upstream/backend.ts";
import type { Config, RouteConfig } from "../config/config.ts";
import type { Route } from "../proxy/context.ts";
import { type SrvSource, SrvWatcher } from "../upstream/discovery/srv.ts";
import {
  shareBackends,
  type SharedSet,
  type SharedSets,
  SharedSrv,
} from "../upstream/discovery/shared.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import type { Logger } from "../observe/log.ts";
import { count } from "../observe/count.ts";
import { Router } from "../proxy/router.ts";
import { compilePolicy } from "../policy/compile.ts";
import type { MirrorResult } from "../policy/mirror.ts";
import { type Scheduler } from "../scheduler/scheduler.ts";
import { createScheduler } from "../scheduler/create.ts";
import { loadUpstreamTls, type UpstreamTls } from "../upstream/tls.ts";
import { type BackendChecks, compileChecks } from "../upstream/health/checks.ts";
import type { ProxyVersion } from "../upstream/proxy_out.ts";

/** A route with what feeds it. */
export interface RouteState extends Route {
  /** The route's configuration. */
  readonly config: RouteConfig;
  /** Picks this route's backends. */
  readonly scheduler: Scheduler;
  /** Present for routes discovered through SRV. */
  readonly srv?: SrvSource;
  /** How its backends are checked (every record of the route carries these). */
  readonly checks: BackendChecks;
}

/** How a route's backends are reached (over TLS, in HTTP/2) and checked. */
interface Reach {
  tls: UpstreamTls | undefined;
  h2: boolean;
  proxy: ProxyVersion | undefined;
  checks: BackendChecks;
}

/** Options for {@linkcode RouteSet.start}. */
export interface RouteSetOptions {
  /** Where discovery and route messages are logged. */
  log: Logger;
  /** Backends already running (by {@linkcode backendKey}): reused so health, counters and pools carry over. */
  known?: ReadonlyMap<string, readonly Backend[]>;
  /** Told each rate limit decision its Redis store could not make, and what the request got. */
  onStoreError?: (route: string, outcome: "allow" | "deny") => void;
  /** Told each decision of a route's auth step (`basic` or `forward`, and what happened). */
  onAuth?: (route: string, kind: string, result: string) => void;
  /** Told what became of each request on a mirrored route (`mirrored`, `dropped`, ...). */
  onMirror?: (route: string, result: MirrorResult) => void;
  /** Called after a discovery update changed some route's backends. */
  onChange?: () => void;
  /** Told every set an SRV watcher found (to pass on to workers). */
  onShare?: (set: SharedSet) => void;
  /**
   * A worker's discovery: SRV routes take the sets the main thread posts here instead of
   * looking up themselves, and ask it (`setAside`) to set addresses aside.
   */
  shared?: { sets: SharedSets; setAside(route: string, id: string, reason: string): void };
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
  // `backends()` as it stands, kept while routes are added (so that building n routes
  // costs O(n), not O(n²)); dropped when discovery changes a route's backends.
  #mine: Map<string, Backend[]> | undefined;

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
        const reach: Reach = {
          tls,
          h2: rc.backend_protocol !== "http1",
          proxy: rc.proxy_protocol,
          checks: compileChecks(rc.health),
        };
        const scheduler = createScheduler(rc.scheduler, set.#reuse(found, reach));
        const state: RouteState = {
          name: rc.name,
          config: rc,
          scheduler,
          timeouts: rc.timeouts,
          hashKey: rc.hash_key,
          policy: compilePolicy(rc.policy, {
            route: rc.name,
            log: options.log,
            onStoreError: options.onStoreError,
            onAuth: options.onAuth,
            onMirror: options.onMirror,
            dns: config.dns,
          }),
          checks: reach.checks,
          fallback: (failed, tried, reason) => set.#fallback(state, failed, tried, reason),
        };
        if (rc.srv !== undefined) {
          (state as { srv?: SrvSource }).srv = set.#watch(config, rc.srv, state, reach);
        }
        set.routes.push(state);
        set.#index(scheduler.backends);
        set.router.add({ host: rc.host, path: rc.path }, state);
      }
      await Promise.all(set.routes.map((r) => Promise.all([r.srv?.ready, r.policy?.ready])));
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
    for (const r of this.routes) r.policy?.close();
    await Promise.all(this.routes.map((r) => r.srv?.closed));
  }

  // Records `backends` (a new route's) in the kept `backends()`, when there is one.
  #index(backends: readonly Backend[]): void {
    const mine = this.#mine;
    if (mine === undefined) return;
    for (const b of byKey(backends).values()) {
      const key = backendKey(b[0]!);
      const group = mine.get(key);
      if (group === undefined) mine.set(key, b);
      else for (const one of b) if (!group.includes(one)) group.push(one);
    }
  }

  #reuse(found: Backend[], reach: Reach): Backend[] {
    const known = this.#options.known;
    const mine = this.#mine ??= this.backends();
    const { tls, h2, proxy, checks } = reach;
    return found.map((plain) => {
      let b: Backend = tls ? { ...plain, tls, checks } : { ...plain, checks };
      if (h2) b = { ...b, h2: true };
      if (proxy) b = { ...b, proxy };
      const key = backendKey(b);
      // a record is shared only by routes that check it alike (one probe, one state)
      const same = (o: Backend) =>
        o.priority === b.priority && o.weight === b.weight && o.checks?.key === checks.key;
      return mine.get(key)?.find(same) ?? known?.get(key)?.find(same) ?? b;
    });
  }

  // A connect to `failed` failed: when another address of its SRV target is in use,
  // healthy and not tried yet, `failed` is set aside (its share goes to its siblings)
  // and that sibling is returned, to try at once.
  #fallback(
    route: RouteState,
    failed: Backend,
    tried: readonly Backend[],
    reason: string,
  ): Backend | undefined {
    if (route.srv === undefined) return undefined;
    const sibling = (b: Backend) =>
      b.name === failed.name && b.port === failed.port && b.priority === failed.priority &&
      b.id !== failed.id && b.healthy && !tried.some((t) => t.id === b.id);
    const family = (b: Backend) => b.hostname.includes(":") !== failed.hostname.includes(":");
    if (!route.scheduler.backends.some(sibling)) return undefined;
    if (!route.srv.setAside(failed.id, reason)) return undefined;
    const now = route.scheduler.backends; // the set without `failed`, when set aside here
    return now.find((b) => sibling(b) && family(b)) ?? now.find(sibling);
  }

  #watch(
    config: Config,
    name: string,
    route: RouteState,
    reach: Reach,
  ): SrvSource {
    const { nameserver, refresh, family } = config.dns;
    const log = this.#options.log;
    const onUpdate = (found: Backend[]) => {
      const next = this.#reuse(found, reach);
      route.scheduler.update(next);
      this.#mine = undefined;
      this.#options.onChange?.();
      return next;
    };
    const shared = this.#options.shared;
    if (shared !== undefined) {
      return new SharedSrv({
        route: route.name,
        srv: name,
        sets: shared.sets,
        signal: this.#ac.signal,
        timeout: Math.min(refresh, 5_000),
        onUpdate,
        setAside: (id, reason) => shared.setAside(route.name, id, reason),
      });
    }
    const watcher: SrvWatcher = new SrvWatcher({
      name,
      ...(nameserver ? { nameServer: { ipAddr: nameserver.hostname, port: nameserver.port } } : {}),
      refresh,
      family,
      signal: this.#ac.signal,
      onUpdate: (found) => {
        const next = onUpdate(found);
        const list = next.map((b) => `${b.name}=${b.id} p${b.priority} w${b.weight}`).join(", ");
        log.info(`route ${route.name}: ${name} → ${list}`);
        const { backends: _, ...state } = watcher.state;
        this.#options.onShare?.({
          route: route.name,
          srv: name,
          backends: shareBackends(found),
          state,
        });
      },
      onAddress: (id, inUse, reason) =>
        inUse ? log.info(`route ${route.name}: ${id} back in use: ${reason}`) : log.warn(
          `route ${route.name}: ${id} set aside, its target's other addresses take its share until a probe connects: ${reason}`,
        ),
      onError: (e) => {
        if (watcher.state.lastSuccess === undefined) { // nothing was ever found: nothing is kept
          log.warn(`route ${route.name}: ${e.message}; no backends until ${name} resolves`);
          return;
        }
        const kept = count(route.scheduler.backends.length, "backend");
        log.warn(`route ${route.name}: ${e.message}; keeping the last good set (${kept}, stale)`);
      },
    });
    return watcher;
  }
}
