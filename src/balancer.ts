/**
 * A running load balancer built from a {@linkcode Config}: listeners, routes with
 * their schedulers, backend pools, SRV watchers. The only place that knows all of
 * them; the data path gets a {@linkcode ProxyContext} and never reaches back.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import type { Config, RouteConfig } from "./config.ts";
import type { ProxyContext, Route } from "./context.ts";
import { Watchdog } from "./deadline.ts";
import { SrvWatcher, type SrvWatcherState } from "./discovery/srv.ts";
import { staticBackends } from "./discovery/static.ts";
import { PassiveHealth } from "./health.ts";
import { accept, type Acceptor } from "./listener.ts";
import { createLogger, type Logger } from "./log.ts";
import { Pool } from "./pool.ts";
import { serveConn } from "./proxy.ts";
import { Router } from "./router.ts";
import { createScheduler, type Scheduler } from "./scheduler.ts";
import { loadTls } from "./tls.ts";

/** A route with what feeds it. */
export interface RouteState extends Route {
  readonly config: RouteConfig;
  readonly scheduler: Scheduler;
  /** Present for routes discovered through SRV. */
  readonly srv?: SrvWatcher;
}

/** Options for {@linkcode Balancer.start}. */
export interface BalancerOptions {
  /** @default {a logger following config.log} */
  logger?: Logger;
}

/** Thrown when the balancer cannot start (a port in use, an unreadable certificate). */
export class StartError extends Error {
  /** Wraps the reason. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StartError";
  }
}

/**
 * The running balancer.
 *
 * @example
 * ```ts ignore
 * const lb = await Balancer.start(await loadConfig("unload.yaml"));
 * console.log(lb.addrs.http);
 * await lb.close();
 * ```
 */
export class Balancer {
  /** The configuration it runs. */
  readonly config: Config;
  /** Logger in use. */
  readonly log: Logger;
  /** Routes in config order. */
  readonly routes: RouteState[] = [];
  /** Bound listener addresses. */
  readonly addrs: { http?: Deno.NetAddr; https?: Deno.NetAddr } = {};
  /** Epoch ms it started. */
  readonly started = Date.now();
  readonly #ac = new AbortController();
  readonly #pools = new Map<string, Pool>();
  readonly #acceptors: Acceptor[] = [];
  readonly #contexts: ProxyContext[] = [];
  readonly #idle = new Set<{ close(): void }>();
  readonly #watchdog: Watchdog;
  readonly #health: PassiveHealth;
  readonly #router = new Router<RouteState>();
  #closing: Promise<void> | undefined;

  private constructor(config: Config, options: BalancerOptions) {
    this.config = config;
    this.log = options.logger ?? createLogger({ access: config.log.access });
    this.#watchdog = new Watchdog({ signal: this.#ac.signal });
    this.#health = new PassiveHealth({
      failures: config.health.failures,
      backoff: config.health.backoff,
      onChange: (b, healthy, why) =>
        healthy
          ? this.log.info(`backend ${b.id} back in rotation: ${why}`)
          : this.log.warn(`backend ${b.id} ejected: ${why}`),
    });
  }

  /**
   * Starts everything the config asks for; on any failure stops what was started
   * and throws.
   *
   * @throws {StartError} naming what could not start.
   */
  static async start(config: Config, options: BalancerOptions = {}): Promise<Balancer> {
    const lb = new Balancer(config, options);
    try {
      await lb.#startRoutes();
      await lb.#listen();
    } catch (e) {
      await lb.close();
      throw e instanceof StartError ? e : new StartError((e as Error).message, { cause: e });
    }
    return lb;
  }

  /** Pools by backend id. */
  get pools(): ReadonlyMap<string, Pool> {
    return this.#pools;
  }

  /** SRV watcher states by route name. */
  srvStates(): Map<string, SrvWatcherState> {
    const out = new Map<string, SrvWatcherState>();
    for (const r of this.routes) if (r.srv) out.set(r.name, r.srv.state);
    return out;
  }

  /**
   * Stops accepting, lets in-flight requests finish (up to `timeouts.drain`),
   * closes idle connections, stops discovery and empties the pools.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    for (const a of this.#acceptors) a.stop();
    for (const c of this.#contexts) c.closing = true;
    for (const s of this.#idle) s.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = Promise.all(this.#acceptors.map((a) => a.done));
    const late = new Promise<boolean>((r) =>
      timer = setTimeout(() => r(true), this.config.timeouts.drain)
    );
    if (await Promise.race([drained.then(() => false), late])) {
      this.log.warn("drain timeout reached: closing the remaining connections");
      for (const p of this.#pools.values()) p.drain();
      this.#ac.abort(); // stops the watchdog; sessions are closed below
    }
    clearTimeout(timer);
    this.#ac.abort();
    for (const p of this.#pools.values()) p.drain();
    await Promise.all(this.routes.map((r) => r.srv?.closed));
    this.#health.close();
    this.log.close();
  }

  #pool(backend: Backend): Pool {
    let pool = this.#pools.get(backend.id);
    if (pool === undefined) {
      const { limits, timeouts } = this.config;
      pool = new Pool(backend, {
        maxIdle: limits.pool_idle,
        maxConns: limits.pool_max,
        idleTimeout: timeouts.pool_idle,
        connectTimeout: timeouts.connect,
      });
      this.#pools.set(backend.id, pool);
    }
    return pool;
  }

  async #startRoutes(): Promise<void> {
    for (const rc of this.config.routes) {
      const scheduler = createScheduler(
        rc.scheduler,
        rc.backends ? staticBackends(rc.backends) : [],
      );
      const state: RouteState = { name: rc.name, config: rc, scheduler };
      if (rc.srv !== undefined) {
        (state as { srv?: SrvWatcher }).srv = this.#watch(rc.srv, state);
      }
      this.routes.push(state);
      this.#router.add({ host: rc.host, path: rc.path }, state);
    }
    await Promise.all(this.routes.map((r) => r.srv?.ready));
  }

  #watch(name: string, route: { name: string; scheduler: Scheduler }): SrvWatcher {
    const { nameserver, refresh } = this.config.dns;
    return new SrvWatcher({
      name,
      ...(nameserver ? { nameServer: { ipAddr: nameserver.hostname, port: nameserver.port } } : {}),
      refresh,
      signal: this.#ac.signal,
      onUpdate: (found) => this.#apply(route, found),
      onError: (e) => {
        const kept = route.scheduler.backends.length;
        this.log.warn(
          `route ${route.name}: ${e.message}; keeping the last good set (${kept} backends, stale)`,
        );
      },
    });
  }

  // Backends that stay keep their object (health, in-flight count, pool).
  #apply(route: { name: string; scheduler: Scheduler }, found: Backend[]): void {
    const current = new Map(route.scheduler.backends.map((b) => [b.id, b]));
    const next = found.map((b) => {
      const old = current.get(b.id);
      return old && old.priority === b.priority && old.weight === b.weight ? old : b;
    });
    route.scheduler.update(next);
    const ids = next.map((b) => `${b.name}=${b.id} p${b.priority} w${b.weight}`).join(", ");
    this.log.info(`route ${route.name}: backends ${ids}`);
    const used = new Set<string>();
    for (const r of this.routes) for (const b of r.scheduler.backends) used.add(b.id);
    for (const [id, pool] of this.#pools) {
      if (!used.has(id) && !next.some((b) => b.id === id)) {
        pool.drain();
        this.#pools.delete(id);
      }
    }
  }

  async #listen(): Promise<void> {
    const { listen, tls } = this.config;
    const tlsFiles = tls && listen.https ? await loadTls(tls) : undefined;
    if (listen.https && tlsFiles) {
      const addr = listen.https;
      const listener = bind(
        "listen.https",
        addr,
        () =>
          Deno.listenTls({ ...addr, transport: "tcp", ...tlsFiles, alpnProtocols: ["http/1.1"] }),
      );
      this.addrs.https = this.#serve(listener, "https", undefined);
    }
    if (listen.http) {
      const redirect = tls?.redirect_http ? this.addrs.https?.port : undefined;
      const listener = bind("listen.http", listen.http, () => Deno.listen(listen.http!));
      this.addrs.http = this.#serve(listener, "http", redirect);
    }
  }

  #serve(listener: Deno.Listener, proto: "http" | "https", redirect?: number): Deno.NetAddr {
    const log = this.log;
    const ctx: ProxyContext = {
      router: this.#router,
      pool: (b) => this.#pool(b),
      timeouts: this.config.timeouts,
      limits: this.config.limits,
      retries: this.config.retry.attempts,
      proto,
      redirectHttpsPort: redirect,
      watchdog: this.#watchdog,
      health: this.#health,
      closing: false,
      idle: this.#idle,
      onExchange: (r) => log.access(r),
    };
    this.#contexts.push(ctx);
    const acceptor = accept(listener, (conn) => serveConn(conn, ctx));
    this.#acceptors.push(acceptor);
    return acceptor.addr;
  }
}

function bind(what: string, addr: { hostname: string; port: number }, open: () => Deno.Listener) {
  try {
    return open();
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : (e as Error).message;
    throw new StartError(`${what} ${addr.hostname}:${addr.port}: ${why}`, { cause: e });
  }
}
