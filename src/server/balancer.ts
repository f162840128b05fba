/**
 * A running load balancer built from a {@linkcode Config}: listeners, routes,
 * backend pools, admin. The only place that knows all of them; the data path gets
 * a {@linkcode ProxyContext} and never reaches back. Reloads swap the routes
 * under running listeners.
 *
 * @module
 */
import { TlsHops } from "../proxy/tls_hop.ts";
import type { PrivateCounts } from "../upstream/private_pools.ts";
import { addrKey, type HostPort } from "../config/address.ts";
import { type Cidr, parseCidr } from "../config/cidr.ts";
import type { WorkerStats } from "../admin/combined.ts";
import { type AdminServer, startAdmin } from "../admin/server.ts";
import { Metrics } from "../admin/metrics.ts";
import { type Config, loadConfig } from "../config/config.ts";
import type { ClientSession, H2Counts, ProxyContext } from "../proxy/context.ts";
import { Watchdog } from "../timer/watchdog.ts";
import type { SrvWatcherState } from "../upstream/discovery/srv.ts";
import { shareBackends, type SharedSet, type SharedSets } from "../upstream/discovery/shared.ts";
import { type Backend, healthKey } from "../upstream/backend.ts";
import { markDown, markUp } from "../upstream/backend_state.ts";
import { ExhaustionReporter, openFilesLimit } from "../observe/exhaustion.ts";
import { HandshakeStalls } from "../observe/tls_stalls.ts";
import { PassiveHealth } from "../upstream/health/passive.ts";
import { HealthChecker, type LastProbe } from "../upstream/health/active.ts";
import type { BackendChecks } from "../upstream/health/checks.ts";
import { accept, type Acceptor, bind, listenHttp, StartError } from "./listener.ts";
import { createLogger, type Logger } from "../observe/log.ts";
import type { Pool } from "../upstream/pool.ts";
import type { H2Pool } from "../upstream/h2_pool.ts";
import { PoolSet } from "../upstream/pool_set.ts";
import { serveConnection } from "../proxy/connection.ts";
import { RouteSet, type RouteSetOptions, type RouteState } from "./route_table.ts";
import { type ServedCertificate, TlsAcceptor, type WatchedTlsPaths } from "./tls_acceptor.ts";
import { FileWatch } from "./file_watch.ts";
import { within } from "../_async.ts";
import { BODY_BUFFERS, type BodyBufferPool } from "../http1/body_buffers.ts";
import { TcpMetrics } from "../admin/tcp_metrics.ts";
import { type TcpRoute, TcpRouteSet } from "../tcp/route_set.ts";
import {
  type ChooseRoute,
  onlyRoute,
  serveTcp,
  type TcpListenerContext,
} from "../tcp/connection.ts";
import { sniChooser } from "../tcp/sni.ts";
import { terminating } from "../tcp/terminate.ts";
import type { OnRefused } from "../tcp/refusal.ts";
import type { TcpPair } from "../tcp/pair.ts";

export type { RouteState } from "./route_table.ts";
export { StartError } from "./listener.ts";

/** Options for {@linkcode Balancer.start}. */
export interface BalancerOptions {
  /** Where log lines go. @default {a logger following config.log} */
  logger?: Logger;
  /**
   * Share the listening ports with other workers (`SO_REUSEPORT`): `"first"` checks
   * that the port is free, then binds shareably; `"join"` binds a port the first one
   * holds. Workers other than the first serve no admin listener.
   * @default {undefined (exclusive ports)}
   */
  reusePort?: "first" | "join";
  /** The other workers' counters, which the admin listener adds to this balancer's. */
  workerStats?: (() => Promise<WorkerStats[]>) | undefined;
  /**
   * The main thread of `workers: N`: told every set its SRV watchers find, and the
   * backends (by `backendKey`) its active checks hold down after every change, to
   * pass on to the workers.
   */
  share?: { sets(set: SharedSet): void; probed(down: string[]): void };
  /**
   * A worker of `workers: N`: no SRV lookups and no active checks of its own; SRV
   * routes take the sets the main thread posts to `sets`, addresses that do not
   * connect are reported with `setAside`, and {@linkcode Balancer.applyProbed}
   * applies the main thread's active checks.
   */
  shared?: { sets: SharedSets; setAside(route: string, id: string, reason: string): void };
}

/** Outcome of a reload. */
export interface ReloadResult {
  /** True when the new configuration is in force; false when the old one stays. */
  ok: boolean;
  /** What was wrong, when not ok. */
  error?: string;
}

/** A bound listener: its address key, accept loop and proxy context. */
type Listening = { key: string; acceptor: Acceptor; ctx: ProxyContext };

/** A bound TCP listen address: its key, accept loop and the routes it holds. */
type TcpListening = { key: string; acceptor: Acceptor; ctx: TcpListenerContext };

/** TCP listeners bound for a config, not yet serving: `commit` starts them, `abort` closes the new ones. */
type TcpPrepared = { commit(): void; abort(): void };

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
  /** Logger in use. */
  readonly log: Logger;
  /** Request counters and histograms. */
  readonly metrics: Metrics = new Metrics();
  /** Connection and byte counters of the `tcp:` routes. */
  readonly tcpMetrics: TcpMetrics = new TcpMetrics();
  /** HTTP/2 client connections and streams open now, on every listener. */
  readonly h2: H2Counts = { connections: 0, streams: 0, closed: {} };
  /** Connections closed for their PROXY header (`listen.proxy_protocol`), by reason. */
  readonly proxyRefused: Record<string, number> = {};
  /**
   * Backend connections opened and reused by client connections' private pools
   * (routes with `proxy_protocol`), counted as each client connection ends.
   */
  readonly privateCounts: PrivateCounts = { opened: 0, reused: 0 };
  /** Epoch ms it started. */
  readonly started: number = Date.now();
  /** The body buffers this process lends to relays (shared by its balancers). */
  readonly bodyBuffers: BodyBufferPool = BODY_BUFFERS;
  /** Accepts and backend connects that failed for lack of descriptors or ports. */
  readonly exhaustion: ExhaustionReporter = new ExhaustionReporter((m) => this.log.warn(m));
  /** TLS handshakes that ran out of time, and those still holding their socket. */
  readonly tlsStalls: HandshakeStalls = new HandshakeStalls((m) => this.log.warn(m), {
    openFiles: openFilesLimit(),
  });
  /** Reloads attempted, and those that failed. */
  readonly reloads: { ok: number; failed: number; last?: ReloadResult & { time: number } } = {
    ok: 0,
    failed: 0,
  };
  #config: Config;
  #routes!: RouteSet;
  #admin: AdminServer | undefined;
  readonly #ac = new AbortController();
  readonly #pools = new PoolSet(() => ({
    limits: this.#config.limits,
    timeouts: this.#config.timeouts,
    stalls: this.tlsStalls,
  }));
  #listening: Listening[] = [];
  #tcp: TcpRouteSet | undefined;
  #tcpListening: TcpListening[] = [];
  readonly #tcpPairs = new Set<TcpPair>();
  readonly #sessions = new Set<ClientSession>();
  readonly #watchdog: Watchdog;
  readonly #health: PassiveHealth;
  // active checkers by the checks they run (BackendChecks.key): one per distinct setting
  readonly #checks = new Map<string, { ac: AbortController; checker: HealthChecker }>();
  #closing: Promise<void> | undefined;
  #reloading: Promise<ReloadResult> | undefined;
  readonly #options: BalancerOptions;
  // healthKeys of the records the active checks (here, or the main thread's) hold down
  #probedDown = new Set<string>();
  #watch: { key: string; watch: FileWatch } | undefined;
  /** The watch on the routes' client certificate files (`routes[].client_cert`). */
  #certWatch: { key: string; watch: FileWatch } | undefined;
  readonly #ready = Promise.withResolvers<boolean>();

  private constructor(config: Config, options: BalancerOptions) {
    this.#config = config;
    this.#options = options;
    this.log = options.logger ?? createLogger({ access: config.log.access });
    this.#watchdog = new Watchdog({ signal: this.#ac.signal });
    this.#health = new PassiveHealth({
      failures: config.health.failures,
      backoff: config.health.backoff,
      activeChecks: options.shared === undefined, // workers: the main thread probes
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
      // watched from the start, so an edit made while discovery and listeners start is seen
      await lb.#watchConfig(config);
      await lb.#watchClientCerts(config);
      lb.#routes = await RouteSet.start(config, lb.#routeOptions());
      lb.#tcp = await lb.#startTcp(config);
      lb.#activeChecks(config);
      const tcp = await lb.#listenTcp(lb.#tcp, config);
      try {
        await lb.#listen(config);
      } catch (e) {
        tcp.abort();
        throw e;
      }
      tcp.commit();
      if (config.admin && options.reusePort !== "join") {
        const { listen } = config.admin;
        const others = options.workerStats;
        lb.#admin = bind("admin.listen", listen, () => startAdmin(lb, listen, { others }));
      }
    } catch (e) {
      lb.#ready.resolve(false);
      await lb.close();
      throw e instanceof StartError ? e : new StartError((e as Error).message, { cause: e });
    }
    lb.#ready.resolve(true);
    return lb;
  }

  /** The configuration in force. */
  get config(): Config {
    return this.#config;
  }

  /** True once {@linkcode Balancer.close} was called: `/readyz` then answers 503. */
  get draining(): boolean {
    return this.#closing !== undefined;
  }

  /** Routes in config order. */
  get routes(): readonly RouteState[] {
    return this.#routes?.routes ?? [];
  }

  /** The certificates `listen.https` serves now (none without it), the default first. */
  get certificates(): ServedCertificate[] {
    for (const l of this.#listening) {
      if (l.acceptor instanceof TlsAcceptor) return l.acceptor.certificates;
    }
    return [];
  }

  /** The `tcp:` routes in config order. */
  get tcpRoutes(): readonly TcpRoute[] {
    return this.#tcp?.routes ?? [];
  }

  /** The bound address of each `tcp:` route (port 0 resolved), by route name. */
  tcpAddrs(): Map<string, Deno.NetAddr> {
    const out = new Map<string, Deno.NetAddr>();
    for (const l of this.#tcpListening) {
      for (const r of l.ctx.routes) out.set(r.name, l.acceptor.addr);
    }
    return out;
  }

  /** Bound listener addresses. */
  get addrs(): { http?: Deno.NetAddr; https?: Deno.NetAddr; admin?: Deno.NetAddr } {
    const out: { http?: Deno.NetAddr; https?: Deno.NetAddr; admin?: Deno.NetAddr } = {};
    for (const l of this.#listening) out[l.ctx.proto] = l.acceptor.addr;
    if (this.#admin) out.admin = this.#admin.addr;
    return out;
  }

  /**
   * Pools by backend id (by `backendKey`: id and TLS settings, for TLS backends);
   * HTTP/2 ones (`backend_protocol: h2c | h2`) as `h2 KEY`.
   */
  get pools(): ReadonlyMap<string, Pool | H2Pool> {
    return this.#pools.all;
  }

  /** SRV watcher states by route name. */
  srvStates(): Map<string, SrvWatcherState> {
    const out = new Map<string, SrvWatcherState>();
    for (const r of this.routes) if (r.srv) out.set(r.name, r.srv.state);
    for (const r of this.tcpRoutes) if (r.srv) out.set(r.name, r.srv.state);
    return out;
  }

  /**
   * The SRV routes' current sets, as {@linkcode BalancerOptions.share} passes them on
   * (for a worker that starts or reloads after they were found).
   */
  sharedSets(): SharedSet[] {
    const out: SharedSet[] = [];
    for (const r of this.routes) {
      if (r.srv === undefined || r.config.srv === undefined) continue;
      const { backends, ...state } = r.srv.state;
      out.push({ route: r.name, srv: r.config.srv, backends: shareBackends(backends), state });
    }
    return out;
  }

  /** The backend records (by `healthKey`) the active checks hold down. */
  probedDown(): string[] {
    return [...this.#probedDown];
  }

  /**
   * Sets aside an address of a route's SRV target that a worker could not connect to
   * (see {@linkcode SrvSource.setAside}).
   *
   * @returns Whether it is set aside.
   */
  setAside(route: string, id: string, reason: string): boolean {
    return this.routes.find((r) => r.name === route)?.srv?.setAside(id, reason) ?? false;
  }

  /**
   * The last active probe of `backend` by its route's checks (this process's checks:
   * in a worker, none).
   */
  lastProbe(backend: Backend): LastProbe | undefined {
    const key = backend.checks?.key;
    return key === undefined ? undefined : this.#checks.get(key)?.checker.lastProbe(backend);
  }

  /**
   * A worker: applies the main thread's active checks. The records in `down` (by
   * `healthKey`) are out of rotation; those it held down before and no longer does
   * are back.
   */
  applyProbed(down: readonly string[]): void {
    const previous = this.#probedDown;
    this.#probedDown = new Set(down);
    for (const group of this.#routes?.backends().values() ?? []) {
      for (const b of group) {
        const key = healthKey(b);
        if (this.#probedDown.has(key)) markDown(b);
        else if (previous.has(key)) {
          markUp(b);
          this.#health.success(b);
        }
      }
    }
  }

  /** Re-reads the config file it was started from and applies it (see {@linkcode Balancer.reload}). */
  async reloadFromFile(): Promise<ReloadResult> {
    let next: Config;
    try {
      next = await loadConfig(this.#config.file);
    } catch (e) {
      return this.#reloaded({ ok: false, error: (e as Error).message });
    }
    return await this.reload(next);
  }

  /**
   * Applies a new configuration: new routes serve the next requests, in-flight
   * requests finish on the old ones, listeners whose address did not change keep
   * their sockets and connections. On failure the old configuration stays.
   */
  reload(next: Config): Promise<ReloadResult> {
    const run = async (): Promise<ReloadResult> => {
      let routes: RouteSet;
      try {
        routes = await RouteSet.start(next, {
          ...this.#routeOptions(),
          known: this.#routes.backends(),
        });
      } catch (e) {
        return this.#reloaded({ ok: false, error: (e as Error).message });
      }
      let tcp: TcpRouteSet | undefined;
      let tcpListen: TcpPrepared;
      try {
        tcp = await this.#startTcp(next);
        tcpListen = await this.#listenTcp(tcp, next);
      } catch (e) {
        await Promise.all([routes.stop(), tcp?.stop()]);
        return this.#reloaded({ ok: false, error: (e as Error).message });
      }
      const old = this.#routes;
      const oldTcp = this.#tcp;
      const previous = this.#listening;
      try {
        await this.#listen(next, routes);
      } catch (e) {
        tcpListen.abort();
        await Promise.all([routes.stop(), tcp?.stop()]);
        return this.#reloaded({ ok: false, error: (e as Error).message });
      }
      tcpListen.commit();
      this.#tcp = tcp;
      this.#routes = routes;
      this.#config = next;
      for (const l of previous) if (!this.#listening.includes(l)) this.#retire(l);
      this.#activeChecks(next);
      await this.#watchConfig(next);
      await this.#watchClientCerts(next);
      await Promise.all([old.stop(), oldTcp?.stop()]);
      this.#prunePools();
      return this.#reloaded({ ok: true });
    };
    const p = (this.#reloading ?? Promise.resolve()).then(run, run);
    this.#reloading = p;
    return p;
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
    const watchClosed = Promise.all([this.#watch?.watch.close(), this.#certWatch?.watch.close()]);
    const listening = this.#listening;
    this.#listening = [];
    for (const l of listening) this.#retire(l);
    const tcpListening = this.#tcpListening;
    this.#tcpListening = [];
    for (const l of tcpListening) l.acceptor.stop();
    for (const s of this.#sessions) s.closeIfIdle();
    const drained = Promise.all([...listening, ...tcpListening].map((l) => l.acceptor.done));
    if (await within(drained.then(() => true), this.#config.timeouts.drain) === undefined) {
      this.log.warn("drain timeout reached: closing the remaining connections");
      for (const s of this.#sessions) s.close();
      for (const p of this.#tcpPairs) p.stop("drain");
      await drained;
    }
    this.tlsStalls.close();
    this.#ac.abort();
    await watchClosed;
    for (const c of this.#checks.values()) c.ac.abort();
    await Promise.all([...this.#checks.values()].map((c) => c.checker.closed));
    this.#pools.drainAll();
    await Promise.all([this.#routes?.stop(), this.#tcp?.stop()]);
    await this.#admin?.close();
    this.#health.close();
    this.log.close();
  }

  // Active health checks as the routes' checks ask: one checker per distinct setting
  // (BackendChecks.key), probing the records that carry it. A checker whose setting is
  // still in use keeps running (and its counts); records of a route whose checks
  // changed are new records, which start up and are probed in the next round. Each
  // checker asks for the running routes' records before every round, so discovery
  // updates and reloads are followed.
  #activeChecks(config: Config): void {
    const { failures, backoff } = config.health;
    const here = this.#options.shared === undefined; // a worker: the main thread probes
    this.#health.configure({ failures, backoff, activeChecks: here });
    if (!here) return;
    const wanted = new Map<string, BackendChecks>();
    for (const r of this.#routes.routes) if (r.checks.probe) wanted.set(r.checks.key, r.checks);
    for (const r of this.tcpRoutes) if (r.checks.probe) wanted.set(r.checks.key, r.checks);
    let dropped = false;
    for (const [key, c] of this.#checks) {
      if (wanted.has(key)) continue;
      c.ac.abort();
      this.#checks.delete(key);
      for (const k of this.#probedDown) {
        if (!k.endsWith(` | ${key}`)) continue;
        this.#probedDown.delete(k);
        dropped = true;
      }
    }
    if (dropped) this.#options.share?.probed([...this.#probedDown]);
    for (const [key, checks] of wanted) {
      if (!this.#checks.has(key)) this.#checks.set(key, this.#checker(checks));
    }
  }

  #checker(checks: BackendChecks): { ac: AbortController; checker: HealthChecker } {
    const ac = new AbortController();
    const mine = (b: Backend) => b.checks?.key === checks.key;
    const checker = new HealthChecker({
      probe: checks.probe!,
      interval: checks.interval,
      timeout: checks.timeout,
      fall: checks.failures,
      rise: checks.rise,
      backends: () =>
        [...this.#routes.backends().values(), ...this.#tcp?.backends().values() ?? []].flat()
          .filter(mine),
      signal: ac.signal,
      onExhausted: (where, e) => this.exhaustion.report(where, e),
      stalls: this.tlsStalls,
      onChange: (b, healthy, why) => {
        if (healthy) this.#probedDown.delete(healthKey(b));
        else this.#probedDown.add(healthKey(b));
        this.#options.share?.probed([...this.#probedDown]);
        if (!healthy) return this.log.warn(`backend ${b.id} down: ${why}`);
        this.#health.success(b); // proven up again: passive failures start from zero
        this.log.info(`backend ${b.id} up`);
      },
    });
    return { ac, checker };
  }

  // `reload.watch`: polls the config file and the htpasswd files it names; a change re-reads
  // it and applies it when its settings differ from those in force. Restarted only when the
  // settings or the files changed.
  async #watchConfig(config: Config): Promise<void> {
    const { watch, interval } = config.reload;
    const files = [config.file];
    for (const r of config.routes) {
      const auth = r.policy?.auth;
      if (auth !== undefined && "basic" in auth) files.push(auth.basic.htpasswd);
    }
    const key = watch ? `${files.join(" ")} ${interval}` : "";
    if ((this.#watch?.key ?? "") === key) return;
    const old = this.#watch;
    this.#watch = undefined;
    // not awaited: this may run inside a reload the old watch started
    void old?.watch.close();
    if (!watch || this.#ac.signal.aborted) return;
    const fileWatch = await FileWatch.start(files, {
      interval,
      onChange: async () => {
        if (!(await this.#ready.promise) || this.#ac.signal.aborted) return;
        await this.#reloadIfChanged();
      },
    });
    this.#watch = { key, watch: fileWatch };
  }

  // With reload.watch, a change to a route's client certificate or key reloads the
  // config in force: the routes re-read the files (a bad one refuses the reload,
  // naming it, and the running routes keep theirs), and new contents get new pools.
  async #watchClientCerts(config: Config): Promise<void> {
    const { watch, interval } = config.reload;
    const files = config.routes.flatMap((r) => {
      const c = r.tls?.client_cert;
      return c ? [c.cert, c.key] : [];
    });
    const key = watch && files.length > 0 ? `${interval} ${files.join(" ")}` : "";
    if ((this.#certWatch?.key ?? "") === key) return;
    const old = this.#certWatch;
    this.#certWatch = undefined;
    void old?.watch.close(); // not awaited: this may run inside a reload the old watch started
    if (key === "" || this.#ac.signal.aborted) return;
    const fileWatch = await FileWatch.start([...new Set(files)], {
      interval,
      onChange: async () => {
        if (!(await this.#ready.promise) || this.#ac.signal.aborted) return;
        this.log.info("a routes[].client_cert file changed: reloading the routes");
        await this.reload(this.#config);
      },
    });
    this.#certWatch = { key, watch: fileWatch };
  }

  // A watched file changed: re-read it; settings equal to those in force change nothing.
  async #reloadIfChanged(): Promise<void> {
    let next: Config;
    try {
      next = await loadConfig(this.#config.file);
    } catch (e) {
      this.#reloaded({ ok: false, error: (e as Error).message });
      return;
    }
    if (JSON.stringify(next) === JSON.stringify(this.#config)) {
      if (this.reloads.last?.ok === false) {
        // an edit that was rejected has been undone: the file and the running config
        // agree again, so the failure no longer stands (metric, /status, dashboard)
        this.reloads.ok++;
        this.reloads.last = { ok: true, time: Date.now() };
        this.log.info(
          `config file ${next.file} is back to the settings in force: the failed reload is cleared`,
        );
        return;
      }
      this.log.info(`config file ${next.file} changed, its settings did not: nothing to do`);
      return;
    }
    await this.reload(next);
  }

  #reloaded(result: ReloadResult): ReloadResult {
    if (result.ok) {
      this.reloads.ok++;
      this.log.info(`config reloaded from ${this.#config.file}`);
    } else {
      this.reloads.failed++;
      this.log.error(`config reload rejected, the running config stays: ${result.error}`);
    }
    this.reloads.last = { ...result, time: Date.now() };
    return result;
  }

  // Stops accepting on a listener that is gone from the config; its connections finish.
  #retire(l: Listening): void {
    l.acceptor.stop();
    l.ctx.closing = true;
    for (const s of this.#sessions) if (s.ctx === l.ctx) s.closeIfIdle(); // HTTP/2: GOAWAY
  }

  #routeOptions(): RouteSetOptions {
    const options: RouteSetOptions = {
      log: this.log,
      onChange: () => this.#discovered(),
      onStoreError: (route, outcome) => this.metrics.storeError(route, outcome),
      onAuth: (route, kind, result) => this.metrics.authDecision(route, kind, result),
      onMirror: (route, result) => this.metrics.mirror(route, result),
    };
    const { share, shared } = this.#options;
    if (share) options.onShare = (set) => share.sets(set);
    if (shared) options.shared = shared;
    return options;
  }

  // A discovery update: unused pools go; in a worker, new records follow the main
  // thread's active checks.
  #discovered(): void {
    this.#prunePools();
    if (this.#options.shared !== undefined && this.#probedDown.size > 0) {
      this.applyProbed([...this.#probedDown]);
    }
  }

  // Pools of backends no route uses any more drain and go.
  #prunePools(): void {
    const used = this.#routes?.backends();
    if (used !== undefined) this.#pools.prune(used);
  }

  // The `tcp:` routes of `config`, reusing the running ones' backend records. A worker
  // of `workers: N` has none: TCP routes are served by the main thread only.
  async #startTcp(config: Config): Promise<TcpRouteSet | undefined> {
    if (this.#options.reusePort === "join" || config.tcp.length === 0) return undefined;
    const options = { log: this.log, dns: config.dns };
    const known = this.#tcp?.backends();
    return await TcpRouteSet.start(config.tcp, known ? { ...options, known } : options);
  }

  // Binds the TCP listen addresses of `set`'s routes that are not bound yet (one per
  // address; a route on port 0 gets its own); those already bound are kept and get
  // the new routes at `commit`, which also starts accepting on the new ones and stops
  // the listeners no route uses any more (their connections carry on to their end).
  // `abort` closes the new ones. Throws (having closed what it bound) when one cannot bind.
  async #listenTcp(set: TcpRouteSet | undefined, config: Config): Promise<TcpPrepared> {
    const groups = new Map<string, TcpRoute[]>();
    for (const r of set?.routes ?? []) {
      const a = r.config.listen;
      // a tls route has its address alone; the key tells a TLS listener from a plain one
      const kind = r.config.tls === undefined ? "" : "tls ";
      const key = a.port === 0 ? `${kind}${addrKey(a)} ${r.name}` : `${kind}${addrKey(a)}`;
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [r]);
      else group.push(r);
    }
    type Opened =
      & { key: string; routes: TcpRoute[] }
      & (
        | { listener: Deno.Listener }
        | { acceptor: TlsAcceptor; ctx: TcpListenerContext }
      );
    const opened: Opened[] = [];
    const kept: Array<{ l: TcpListening; routes: TcpRoute[] }> = [];
    const close = () => {
      for (const o of opened) "listener" in o ? o.listener.close() : o.acceptor.stop();
    };
    try {
      for (const [key, routes] of groups) {
        const l = this.#tcpListening.find((l) => l.key === key);
        const tls = routes[0]!.config.tls;
        if (l !== undefined) {
          // a new certificate (or new paths) is served from now on; a bad one fails the reload
          if (tls && l.acceptor instanceof TlsAcceptor) {
            await l.acceptor.reload(this.#tcpTlsFiles(routes[0]!, config));
          }
          kept.push({ l, routes });
          continue;
        }
        const names = routes.map((r) => r.name).join(", ");
        const addr = routes[0]!.config.listen;
        const other = tls ? key.slice("tls ".length) : `tls ${key}`;
        if (addr.port !== 0 && this.#tcpListening.some((l) => l.key === other)) {
          throw new Error(
            `tcp route ${names}: listen ${addrKey(addr)}: switching an address between tls ` +
              "termination and plain TCP needs a restart (or one reload without the address, " +
              "then one with it)",
          );
        }
        if (tls === undefined) {
          const listener = bind(`tcp route ${names}: listen`, addr, () => Deno.listen(addr));
          opened.push({ key, listener, routes });
          continue;
        }
        // TLS termination: accepting starts now, on the new routes (they are running)
        const ctx = this.#tcpContext(routes);
        const route = routes[0]!;
        const handle = terminating((conn) => serveTcp(conn, ctx), {
          watchdog: this.#watchdog,
          timeout: () => this.#config.timeouts.head,
          stalls: this.tlsStalls,
          where: `tcp route ${route.name} ${addrKey(addr)}`,
          onRefused: this.#tcpRefused(addrKey(addr)),
        });
        const acceptor = await TlsAcceptor.start({
          addr,
          tls: this.#tcpTlsFiles(route, config),
          handle,
          onExhausted: (e) => this.exhaustion.report(`accept on tcp ${addrKey(addr)}`, e),
          log: this.log,
          what: `tcp route ${route.name}: listen`,
          alpnProtocols: [],
        });
        this.tcpMetrics.refused.set(addrKey(addr), new Map());
        opened.push({ key, acceptor, ctx, routes });
      }
    } catch (e) {
      close();
      throw e;
    }
    return {
      abort: close,
      commit: () => {
        const next: TcpListening[] = [];
        for (const { l, routes } of kept) {
          l.ctx.routes = routes;
          l.ctx.choose = this.#tcpChoice(routes);
          next.push(l);
        }
        for (const o of opened) {
          if ("acceptor" in o) {
            next.push({ key: o.key, acceptor: o.acceptor, ctx: o.ctx });
            continue;
          }
          const ctx = this.#tcpContext(o.routes);
          const onExhausted = (e: unknown) =>
            this.exhaustion.report(`accept on tcp ${addrKey(o.routes[0]!.config.listen)}`, e);
          const acceptor = accept(o.listener, (conn) => serveTcp(conn, ctx), onExhausted);
          next.push({ key: o.key, acceptor, ctx });
        }
        for (const l of this.#tcpListening) if (!next.includes(l)) l.acceptor.stop();
        this.#tcpListening = next;
      },
    };
  }

  #tcpContext(routes: TcpRoute[]): TcpListenerContext {
    const metrics = this.tcpMetrics;
    const log = this.log;
    return {
      routes,
      choose: this.#tcpChoice(routes),
      health: this.#health,
      buffers: this.bodyBuffers,
      watchdog: this.#watchdog,
      pairs: this.#tcpPairs,
      stalls: this.tlsStalls,
      counters: (route, backend) => metrics.counters(route, backend),
      onConnection: (r) => {
        metrics.observe(r);
        log.connection?.(r);
      },
      onExhausted: (where, e) => this.exhaustion.report(where, e),
    };
  }

  // How the connections of a listen address with `routes` pick one: by the
  // ClientHello's server name when any has `sni` (TLS passthrough), else the only one.
  #tcpChoice(routes: readonly TcpRoute[]): ChooseRoute {
    if (!routes.some((r) => r.config.sni !== undefined)) return onlyRoute;
    const listen = addrKey(routes[0]!.config.listen);
    if (!this.tcpMetrics.refused.has(listen)) this.tcpMetrics.refused.set(listen, new Map());
    return sniChooser({
      watchdog: this.#watchdog,
      timeout: () => this.#config.timeouts.head,
      onRefused: this.#tcpRefused(listen),
    });
  }

  // Counts and logs a connection to `listen` closed before it reached a route.
  #tcpRefused(listen: string): OnRefused {
    return (client, reason, detail) => {
      this.tcpMetrics.refuse(listen, reason);
      this.log.warn(`tcp ${listen}: closed a connection from ${client} (${reason}): ${detail}`);
    };
  }

  // A tls route's certificate files, as the TLS acceptor takes them.
  #tcpTlsFiles(route: TcpRoute, config: Config): WatchedTlsPaths {
    const i = config.tcp.indexOf(route.config);
    const { cert, key } = route.config.tls!;
    return {
      certificates: [{ cert, key, at: `tcp[${i}].tls` }],
      watch: config.tls?.watch ?? config.reload.watch,
      interval: config.reload.interval,
    };
  }

  // Binds the listeners of `config`, keeping those whose address is unchanged (an
  // HTTPS one re-reads its certificate, last: a bad one fails the reload); every
  // context gets the new routes and settings.
  async #listen(config: Config, routes?: RouteSet): Promise<void> {
    const { listen } = config;
    const wanted: Array<{ proto: "http" | "https"; addr: HostPort; key: string }> = [];
    if (listen.https) {
      // a PROXY hop in front of TLS is another listener: turning it on or off rebinds
      const hop = listen.proxy_protocol === true ? " proxy_protocol" : "";
      wanted.push({
        proto: "https",
        addr: listen.https,
        key: `https ${addrKey(listen.https)}${hop}`,
      });
    }
    if (listen.http) {
      wanted.push({
        proto: "http",
        addr: listen.http,
        key: `http ${addrKey(listen.http)}`,
      });
    }
    const next: Listening[] = [];
    const opened: Listening[] = [];
    try {
      for (const w of wanted) {
        const kept = this.#listening.find((l) => l.key === w.key);
        if (kept) {
          next.push(kept);
          continue;
        }
        const ctx = this.#context(config, w.proto);
        const handle = (conn: Deno.Conn) => serveConnection(conn, ctx);
        const onExhausted = (e: unknown) =>
          this.exhaustion.report(`accept on listen.${w.proto} ${addrKey(w.addr)}`, e);
        const listen = () => listenHttp(w.addr, this.#options.reusePort);
        let hop: ((conn: Deno.Conn, tls: Deno.NetAddr) => Promise<Deno.Conn>) | undefined;
        if (w.proto === "https" && config.listen.proxy_protocol === true) {
          const hops = ctx.tlsHops = new TlsHops();
          hop = (conn, tls) => hops.serve(conn, ctx, tls);
        }
        const acceptor = w.proto === "https"
          ? await TlsAcceptor.start({
            addr: w.addr,
            tls: tlsFiles(config),
            handle,
            onExhausted,
            log: this.log,
            join: this.#options.reusePort === "join",
            ...(hop ? { hop } : {}),
          })
          : accept(bind("listen.http", w.addr, listen), handle, onExhausted);
        const l = { key: w.key, ctx, acceptor };
        opened.push(l);
        next.push(l);
      }
      for (const l of next) {
        if (l.acceptor instanceof TlsAcceptor && !opened.includes(l)) {
          await l.acceptor.reload(tlsFiles(config));
        }
      }
    } catch (e) {
      for (const l of opened) l.acceptor.stop();
      throw e;
    }
    const httpsPort = next.find((l) => l.ctx.proto === "https")?.acceptor.addr.port;
    for (const l of next) {
      const ctx = l.ctx;
      if (routes) ctx.router = routes.router;
      ctx.timeouts = config.timeouts;
      ctx.limits = config.limits;
      ctx.retries = config.retry.attempts;
      ctx.h2c = ctx.proto === "http" && config.listen.h2c === true;
      ctx.proxyProtocol = ctx.proto === "http" && config.listen.proxy_protocol === true;
      ctx.trustedProxies = trustedProxies(config);
      ctx.redirectHttpsPort = ctx.proto === "http" && config.tls?.redirect_http
        ? httpsPort
        : undefined;
    }
    this.#listening = next;
  }

  #context(config: Config, proto: "http" | "https"): ProxyContext {
    const log = this.log;
    const metrics = this.metrics;
    return {
      router: this.#routes.router,
      pool: (b) => this.#pools.get(b),
      h2pool: (b) => this.#pools.h2(b),
      privateCounts: this.privateCounts,
      timeouts: config.timeouts,
      limits: config.limits,
      retries: config.retry.attempts,
      proto,
      h2c: proto === "http" && config.listen.h2c === true,
      proxyProtocol: proto === "http" && config.listen.proxy_protocol === true,
      trustedProxies: trustedProxies(config),
      onProxyRefused: (peer, reason, detail) => {
        this.proxyRefused[reason] = (this.proxyRefused[reason] ?? 0) + 1;
        log.warn(`proxy protocol: closed a connection from ${peer} (${reason}): ${detail}`);
      },
      h2: this.h2,
      redirectHttpsPort: undefined,
      watchdog: this.#watchdog,
      health: this.#health,
      closing: false,
      sessions: this.#sessions,
      onExchange: (r) => {
        metrics.observe(r);
        log.access(r);
      },
      onExhausted: (where, e) => this.exhaustion.report(where, e),
      onH2Abuse: (client, detail) => log.warn(`h2 client ${client} closed for abuse: ${detail}`),
      stalls: this.tlsStalls,
    };
  }
}

// The `tls:` section's files, as the HTTPS acceptor takes them.
function tlsFiles(config: Config): WatchedTlsPaths {
  const tls = config.tls!;
  return { certificates: tls.certificates, watch: tls.watch, interval: config.reload.interval };
}

// listen.trusted_proxies parsed (checked at load), or undefined when there are none.
function trustedProxies(config: Config): readonly Cidr[] | undefined {
  const list = config.listen.trusted_proxies;
  return list === undefined || list.length === 0 ? undefined : list.map(parseCidr);
}
