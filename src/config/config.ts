/**
 * The configuration file (see DESIGN.md "Config"): parsed strictly, every error
 * reported as `file:line: path: message`, defaults filled in.
 *
 * @module
 */
import { isMap, isSeq, type Node } from "./_yaml.ts";
import { addrKey, type HostPort } from "./address.ts";
import { join, Source } from "./_source.ts";
import type { StaticBackendEntry } from "../upstream/discovery/static.ts";
import { ADDRESS_FAMILIES, type AddressFamily } from "../upstream/discovery/family.ts";
import { SCHEDULER_MODES, type SchedulerMode } from "../scheduler/scheduler.ts";
import { readHealth, routeHealth } from "./health.ts";
import { readBackends } from "./backends.ts";
import { readTcpRoutes, type TcpRouteConfig } from "./tcp.ts";
import { readPair, type TlsPair } from "./tls_pair.ts";
export type { TlsPair } from "./tls_pair.ts";
import {
  FUTURE_POLICY_KEYS,
  POLICY_KEYS,
  type PolicyConfig,
  readCidrs,
  readPolicy,
} from "./policy.ts";
import { CLIENT_IP_KEY, type HashKey, parseHashKey } from "./hash_key.ts";
import { PROXY_VERSIONS, type ProxyVersion } from "../upstream/proxy_out.ts";
import {
  DEFAULTS,
  type Health,
  type Limits,
  ROUTE_TIMEOUT_KEYS,
  type RouteTimeouts,
  type Timeouts,
} from "./defaults.ts";

export type { TcpRouteConfig, TcpTimeouts } from "./tcp.ts";
export {
  DEFAULTS,
  type HashKey,
  type Health,
  type Limits,
  type PolicyConfig,
  type RouteTimeouts,
  type Timeouts,
};

/** One route. */
export interface RouteConfig {
  /** Unique route name (letters, digits, `. _ -`); `route<i>` when not given. */
  name: string;
  /** Lower-cased exact host or `*.example.com` wildcard. @default {any host} */
  host?: string;
  /** URI path prefix; the longest matching prefix wins. @default {"/"} */
  path: string;
  /** DNS SRV name the backends are discovered from (exclusive with `backends`). */
  srv?: string;
  /** Static backends (exclusive with `srv`). */
  backends?: StaticBackendEntry[];
  /** How this route picks a backend. @default {the top-level `scheduler`} */
  scheduler: SchedulerMode;
  /**
   * What a `scheduler: hash` route hashes on (`hash_key: client_ip | header:NAME |
   * cookie:NAME`); present exactly when the route's scheduler is `hash`.
   * @default {{ kind: "client_ip" }}
   */
  hash_key?: HashKey;
  /**
   * Present when `tls: true`: backends are reached over TLS, trusting `ca` besides the
   * default roots, verifying `server_name`, presenting `client_cert` (mTLS) when asked.
   */
  tls?: { ca?: string; server_name?: string; client_cert?: TlsPair };
  /** `/readyz` stays 200 while this route has no healthy backend. @default {false} */
  optional?: boolean;
  /**
   * What the backends are spoken to in: HTTP/1.1, cleartext HTTP/2 with prior
   * knowledge (`h2c`), or HTTP/2 over TLS with ALPN (`h2`, which implies `tls`).
   * @default {"http1"}
   */
  backend_protocol: BackendProtocol;
  /**
   * Each backend connection begins with a PROXY header of this version naming the
   * client (`v1` text, `v2` binary); such a connection is kept for that client
   * connection alone. Health probes send the header naming nobody (v1 `UNKNOWN`,
   * v2 `LOCAL`). @default {no header}
   */
  proxy_protocol?: ProxyVersion;
  /**
   * The route's health settings: the top-level `health` with `routes[].health` laid
   * over it. Active checks are on when `path` or `grpc` is present (never `active`).
   */
  health: Health;
  /**
   * The timeouts of this route's exchanges: the top-level `timeouts` with the
   * route's own `timeouts` (any of {@linkcode ROUTE_TIMEOUT_KEYS}) over them.
   */
  timeouts: RouteTimeouts;
  /**
   * The route's traffic policy keys (`allow`, `deny`, `redirect`, `rewrite`,
   * `headers`), absent when it has none. A route with `redirect` has no backends.
   */
  policy?: PolicyConfig;
}

/** A validated configuration with defaults applied. */
export interface Config {
  /** Path of the file it was read from (re-read on reload). */
  file: string;
  /** Addresses to serve plain HTTP and HTTPS on; at least one is set, unless there are `tcp` routes only. */
  listen: {
    http?: HostPort;
    https?: HostPort;
    /** Also serve HTTP/2 with prior knowledge (h2c) on `http`. @default {false} */
    h2c?: boolean;
    /**
     * Every connection to `http` and `https` must begin with a PROXY v1 or v2 header
     * from a peer in `trusted_proxies` (on `https`, read before TLS). @default {false}
     */
    proxy_protocol?: boolean;
    /** CIDR blocks (v4, v6) of the peers whose PROXY header and X-Forwarded-For are believed. */
    trusted_proxies?: string[];
  };
  /**
   * Certificate and key PEM files for `listen.https`: `tls.cert` + `tls.key` (one pair),
   * or `tls.certificates` (chosen by SNI, the first by default); `redirect_http` answers
   * plain HTTP with 308 to https (default false); `watch` reloads the files when they
   * change (default: `reload.watch`).
   */
  tls?: { certificates: TlsPair[]; redirect_http: boolean; watch: boolean };
  /**
   * DNS server asked for SRV/A/AAAA (system resolver when absent), ms between
   * the end of one lookup and the next per SRV name, and which address records
   * of the SRV targets are used (`auto`: A and AAAA; `ipv4`; `ipv6`).
   * @default {{ refresh: 10000, family: "auto" }}
   */
  dns: { nameserver?: HostPort; refresh: number; family: AddressFamily };
  /** Default scheduler mode for routes that do not set one. @default {"srv"} */
  scheduler: SchedulerMode;
  /** Event loops sharing the listening ports (`auto` = one per core). @default {1} */
  workers: number;
  /** The routes, in file order; at least one, unless there are `tcp` routes. */
  routes: RouteConfig[];
  /** Layer-4 routes (`tcp:`), in file order; each listens on its own address. @default {[]} */
  tcp: TcpRouteConfig[];
  /** Address of the admin server (`/metrics`, `/status`, dashboard); off when absent. */
  admin?: { listen: HostPort };
  /** Timeouts in milliseconds. */
  timeouts: Timeouts;
  /** Size and count limits. */
  limits: Limits;
  /** Passive and active health checks. */
  health: Health;
  /** Other backends tried after a failure that is safe to retry. @default {{ attempts: 1 }} */
  retry: { attempts: number };
  /** Access log target: `stdout`, `stderr`, `off` or a file path. @default {{ access: "off" }} */
  log: { access: string };
  /**
   * Reloads without a signal: with `watch`, the config file (and, unless `tls.watch`
   * says otherwise, the certificate and key) are looked at every `interval` ms and
   * re-applied when their contents change.
   * @default {{ watch: true, interval: 1000 }}
   */
  reload: { watch: boolean; interval: number };
}

/**
 * Thrown for an invalid configuration; `errors` are `file:line: path: message` lines,
 * in the order of their lines in the file (problems on one line in the order found).
 */
export class ConfigError extends Error {
  /** Every problem found, one per line. */
  readonly errors: string[];
  /** Wraps the problems found. */
  constructor(errors: string[]) {
    const sorted = errors.map((e, i) => ({ e, i, line: lineOf(e) }))
      .sort((a, b) => a.line - b.line || a.i - b.i).map((x) => x.e);
    super(sorted.join("\n"));
    this.name = "ConfigError";
    this.errors = sorted;
  }
}

const LINE_REGEXP = /:(\d+): /;

// The line number of a `file:line: ...` error (0 when it has none: such errors go first).
function lineOf(error: string): number {
  const m = LINE_REGEXP.exec(error);
  return m === null ? 0 : Number(m[1]);
}

const TOP_KEYS = [
  "listen",
  "tls",
  "dns",
  "scheduler",
  "workers",
  "routes",
  "tcp",
  "admin",
  "timeouts",
  "limits",
  "health",
  "retry",
  "log",
  "reload",
] as const;
const ROUTE_KEYS = [
  "name",
  "host",
  "path",
  "srv",
  "backends",
  "scheduler",
  "hash_key",
  "tls",
  "ca",
  "server_name",
  "client_cert",
  "optional",
  "backend_protocol",
  "proxy_protocol",
  "health",
  "timeouts",
  ...POLICY_KEYS,
  ...FUTURE_POLICY_KEYS,
] as const;
/** What a route speaks to its backends. */
export const BACKEND_PROTOCOLS = ["http1", "h2c", "h2"] as const;
/** One of {@linkcode BACKEND_PROTOCOLS}. */
export type BackendProtocol = typeof BACKEND_PROTOCOLS[number];
const ROUTE_NAME_REGEXP = /^[A-Za-z0-9_.-]+$/;
const SERVER_NAME_REGEXP = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

/**
 * Parses and validates a config file's text.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseConfig } from "./config.ts";
 * const c = parseConfig("listen: { http: 127.0.0.1:8080 }\nroutes:\n  - name: app\n    backends: [{ address: 127.0.0.1:9001 }]\n", "unload.yaml");
 * assert(c.routes[0]!.name === "app" && c.timeouts.connect === 5000);
 * ```
 * @throws {ConfigError} listing every problem with its file and line.
 */
export function parseConfig(text: string, file: string): Config {
  const src = new Source(file, text);
  if (src.errors.length) throw new ConfigError(src.errors);
  const top = src.map(src.root, "", TOP_KEYS);
  const listenMap = src.map(top.get("listen"), "listen", [
    "http",
    "https",
    "h2c",
    "proxy_protocol",
    "trusted_proxies",
  ]);
  const listen: Config["listen"] = {};
  const http = src.address(listenMap.get("http"), "listen.http");
  const https = src.address(listenMap.get("https"), "listen.https");
  if (http) listen.http = http;
  if (https) listen.https = https;
  const h2c = src.bool(listenMap.get("h2c"), "listen.h2c");
  if (h2c !== undefined) listen.h2c = h2c;
  if (h2c && !http) src.fail(listenMap.get("h2c"), "listen.h2c", "needs listen.http");
  readEdge(src, listenMap, listen);
  const tcpOnly = top.has("tcp") && !top.has("routes");
  if (!listenMap.get("http") && !listenMap.get("https") && !tcpOnly) {
    src.fail(
      top.get("listen") ?? src.root,
      "listen",
      "needs http or https (e.g. http: 127.0.0.1:8080)",
    );
  }
  const config: Config = {
    file,
    listen,
    dns: { refresh: DEFAULTS.dns.refresh, family: DEFAULTS.dns.family },
    scheduler: src.choice(top.get("scheduler"), "scheduler", SCHEDULER_MODES) ?? "srv",
    workers: workers(src, top.get("workers")),
    routes: [],
    tcp: [],
    timeouts: { ...DEFAULTS.timeouts },
    limits: { ...DEFAULTS.limits },
    health: { ...DEFAULTS.health },
    retry: { ...DEFAULTS.retry },
    log: { ...DEFAULTS.log },
    reload: { ...DEFAULTS.reload },
  };
  if (config.workers > 1) {
    for (const proto of ["http", "https"] as const) {
      if (listen[proto]?.port !== 0) continue;
      src.fail(
        listenMap.get(proto),
        `listen.${proto}`,
        "workers > 1 needs fixed listen ports (not 0)",
      );
    }
  }
  const reload = src.map(top.get("reload"), "reload", ["watch", "interval"]);
  config.reload.watch = src.bool(reload.get("watch"), "reload.watch") ?? config.reload.watch;
  config.reload.interval = src.duration(reload.get("interval"), "reload.interval") ??
    config.reload.interval;
  if (config.reload.interval < 10) {
    src.fail(reload.get("interval"), "reload.interval", "must be at least 10ms");
  }
  readTls(src, top.get("tls"), config);
  if (config.listen.https && !config.tls) {
    src.fail(
      listenMap.get("https"),
      "listen.https",
      "needs a tls section with cert and key",
    );
  }
  const dns = src.map(top.get("dns"), "dns", ["nameserver", "refresh", "family"]);
  const ns = src.address(dns.get("nameserver"), "dns.nameserver");
  if (ns) config.dns.nameserver = ns;
  config.dns.refresh = src.duration(dns.get("refresh"), "dns.refresh") ?? config.dns.refresh;
  config.dns.family = src.choice(dns.get("family"), "dns.family", ADDRESS_FAMILIES) ??
    config.dns.family;
  readSection(src, top.get("timeouts"), "timeouts", config.timeouts, (n, p) => src.duration(n, p));
  readSection(
    src,
    top.get("limits"),
    "limits",
    config.limits,
    (n, p, k) =>
      k === "max_concurrent_streams"
        ? src.int(n, p, 1, 10_000)
        : k.startsWith("pool_")
        ? src.int(n, p, 1, 1_000_000)
        : src.size(n, p),
  );
  config.health = readHealth(src, top.get("health"), "health", config.health);
  const retry = src.map(top.get("retry"), "retry", ["attempts"]);
  config.retry.attempts = src.int(retry.get("attempts"), "retry.attempts", 0, 5) ??
    config.retry.attempts;
  const log = src.map(top.get("log"), "log", ["access"]);
  config.log.access = src.string(log.get("access"), "log.access") ?? config.log.access;
  const admin = src.map(top.get("admin"), "admin", ["listen"]);
  const adminListen = src.address(admin.get("listen"), "admin.listen");
  if (adminListen) config.admin = { listen: adminListen };
  if (!tcpOnly) readRoutes(src, top.get("routes"), config);
  if (tcpOnly && (listenMap.get("http") || listenMap.get("https"))) {
    src.fail(
      top.get("listen"),
      "listen",
      "serves HTTP: needs routes (tcp routes listen on their own)",
    );
  }
  config.tcp = readTcpRoutes(src, top.get("tcp"), {
    scheduler: config.scheduler,
    health: config.health,
    timeouts: config.timeouts,
    retries: config.retry.attempts,
  });
  checkTcpRoutes(src, top.get("tcp"), config);
  if (src.errors.length) throw new ConfigError(src.errors);
  return config;
}

/**
 * Reads and parses a config file.
 *
 * @throws {ConfigError} when the file cannot be read or is invalid.
 */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ConfigError([`${file}: cannot read config file: ${(e as Error).message}`]);
  }
  return parseConfig(text, file);
}

// TCP routes against the rest: a name no HTTP route has, an address no other listener has.
function checkTcpRoutes(src: Source, node: Node | undefined, config: Config): void {
  const items = src.seq(node, "tcp");
  const taken = new Map<string, string>();
  for (const proto of ["http", "https"] as const) {
    const a = config.listen[proto];
    if (a !== undefined && a.port !== 0) taken.set(addrKey(a), `listen.${proto}`);
  }
  if (config.admin && config.admin.listen.port !== 0) {
    taken.set(addrKey(config.admin.listen), "admin.listen");
  }
  const names = new Set(config.routes.map((r) => r.name));
  config.tcp.forEach((r, i) => {
    const m = isMap(items[i]) ? items[i] : undefined;
    const at = (key: string) => (m?.get(key, true) as Node | undefined) ?? items[i];
    if (names.has(r.name)) {
      src.fail(
        at("name"),
        `tcp[${i}].name`,
        `duplicate route name "${r.name}" (an HTTP route has it)`,
      );
    }
    const other = r.listen.port === 0 ? undefined : taken.get(addrKey(r.listen));
    if (other !== undefined) {
      src.fail(at("listen"), `tcp[${i}].listen`, `${addrKey(r.listen)} is ${other}'s already`);
    }
  });
}

// listen.proxy_protocol and listen.trusted_proxies.
function readEdge(src: Source, m: Map<string, Node>, listen: Config["listen"]): void {
  const node = m.get("trusted_proxies");
  if (node !== undefined) listen.trusted_proxies = readCidrs(src, node, "listen.trusted_proxies");
  const proxy = src.bool(m.get("proxy_protocol"), "listen.proxy_protocol");
  if (proxy === undefined) return;
  listen.proxy_protocol = proxy;
  if (!proxy) return;
  const at = m.get("proxy_protocol");
  if (!m.get("http") && !m.get("https")) {
    src.fail(at, "listen.proxy_protocol", "needs listen.http or listen.https");
  }
  if (node === undefined || (listen.trusted_proxies ?? []).length === 0) {
    src.fail(
      at,
      "listen.proxy_protocol",
      "needs listen.trusted_proxies (the balancers that send it)",
    );
  }
}

function workers(src: Source, node: Node | undefined): number {
  if (node === undefined) return 1;
  if ((node as { value?: unknown }).value === "auto") return navigator.hardwareConcurrency || 1;
  return src.int(node, "workers", 1, 256) ?? 1;
}

function readTls(src: Source, node: Node | undefined, config: Config): void {
  const keys = ["cert", "key", "certificates", "redirect_http", "watch"];
  const tls = src.map(node, "tls", keys);
  if (node === undefined) return;
  const certificates: TlsPair[] = [];
  const list = tls.get("certificates");
  if (list !== undefined) {
    if (tls.has("cert") || tls.has("key")) {
      src.fail(list, "tls.certificates", "either tls.cert and tls.key, or certificates: not both");
      return;
    }
    const items = src.seq(list, "tls.certificates");
    if (items.length === 0) src.fail(list, "tls.certificates", "needs at least one certificate");
    items.forEach((item, i) => {
      const at = `tls.certificates[${i}]`;
      const pair = readPair(src, item, at);
      if (pair) certificates.push(pair);
    });
    if (certificates.length !== items.length || items.length === 0) return;
  } else {
    const pair = readPair(src, node, "tls", tls);
    if (!pair) return;
    certificates.push(pair);
  }
  const redirect = src.bool(tls.get("redirect_http"), "tls.redirect_http") ?? false;
  const watch = src.bool(tls.get("watch"), "tls.watch") ?? config.reload.watch;
  config.tls = { certificates, redirect_http: redirect, watch };
}

function readSection<T extends object>(
  src: Source,
  node: Node | undefined,
  path: string,
  target: T,
  read: (n: Node, p: string, key: string) => number | undefined,
): void {
  const entries = src.map(node, path, Object.keys(target));
  for (const [key, value] of entries) {
    const v = read(value, join(path, key), key);
    if (v !== undefined) (target as Record<string, number>)[key] = v;
  }
}

function readRoutes(src: Source, node: Node | undefined, config: Config): void {
  if (node === undefined) {
    src.fail(src.root, "routes", "at least one route is needed");
    return;
  }
  const items = src.seq(node, "routes");
  if (items.length === 0 && isSeq(node)) src.fail(node, "routes", "at least one route is needed");
  const names = new Set<string>();
  items.forEach((item, i) => {
    const path = `routes[${i}]`;
    const m = src.map(item, path, ROUTE_KEYS);
    const name = src.string(m.get("name"), `${path}.name`) ?? `route${i}`;
    if (!ROUTE_NAME_REGEXP.test(name)) {
      src.fail(m.get("name"), `${path}.name`, "use letters, digits, . _ -");
    }
    if (names.has(name)) src.fail(m.get("name"), `${path}.name`, `duplicate route name "${name}"`);
    names.add(name);
    const route: RouteConfig = {
      name,
      path: src.string(m.get("path"), `${path}.path`) ?? "/",
      scheduler: src.choice(m.get("scheduler"), `${path}.scheduler`, SCHEDULER_MODES) ??
        config.scheduler,
      backend_protocol: src.choice(
        m.get("backend_protocol"),
        `${path}.backend_protocol`,
        BACKEND_PROTOCOLS,
      ) ?? "http1",
      health: config.health,
      timeouts: readRouteTimeouts(src, m.get("timeouts"), `${path}.timeouts`, config.timeouts),
    };
    if (!route.path.startsWith("/")) src.fail(m.get("path"), `${path}.path`, 'must start with "/"');
    readHashKey(src, m, path, route);
    const host = src.string(m.get("host"), `${path}.host`);
    if (host !== undefined) route.host = host.toLowerCase();
    const srv = src.string(m.get("srv"), `${path}.srv`);
    if (srv !== undefined) route.srv = srv;
    if (m.has("backends")) route.backends = readBackends(src, m.get("backends"), path);
    for (const key of FUTURE_POLICY_KEYS) {
      if (m.has(key)) src.fail(m.get(key), `${path}.${key}`, "not implemented yet (issue 23)");
    }
    const policy = readPolicy(src, m, path);
    if (policy !== undefined) route.policy = policy;
    if (m.has("redirect")) {
      if (srv !== undefined || m.has("backends")) {
        src.fail(m.get("redirect"), `${path}.redirect`, "a redirect route has no srv or backends");
      }
      route.backends = [];
      route.optional = true; // it needs no backend to be ready
    } else if ((srv === undefined) === !m.has("backends")) {
      src.fail(item, path, "needs exactly one of srv (a DNS SRV name) or backends (a list)");
    }
    const proxy = src.choice(m.get("proxy_protocol"), `${path}.proxy_protocol`, PROXY_VERSIONS);
    if (proxy !== undefined) route.proxy_protocol = proxy;
    if (proxy !== undefined && m.has("redirect")) {
      src.fail(
        m.get("proxy_protocol"),
        `${path}.proxy_protocol`,
        "a redirect route has no backends",
      );
    }
    readUpstreamTls(src, m, path, route);
    if (route.tls?.client_cert && route.proxy_protocol !== undefined) {
      src.fail(
        m.get("client_cert"),
        `${path}.client_cert`,
        "cannot be combined with proxy_protocol: a client certificate is presented through " +
          "Deno.connectTls, which connects by itself, so no PROXY header can go before the handshake",
      );
    }
    readRouteHealth(src, m, path, route, config.health);
    const optional = src.bool(m.get("optional"), `${path}.optional`);
    if (optional !== undefined && !m.has("redirect")) route.optional = optional;
    config.routes.push(route);
  });
}

// `routes[].health` over the top-level section; a gRPC check needs an HTTP/2 route.
function readRouteHealth(
  src: Source,
  m: Map<string, Node>,
  path: string,
  route: RouteConfig,
  top: Health,
): void {
  const node = m.get("health");
  const at = `${path}.health`;
  const merged = node === undefined ? top : readHealth(src, node, at, top);
  route.health = routeHealth(merged);
  if (route.health.grpc && route.backend_protocol === "http1") {
    const grpcNode = isMap(node) ? node.get("grpc", true) as Node | undefined : undefined;
    src.fail(
      grpcNode ?? m.get("backend_protocol") ?? node ?? m.get("name"),
      grpcNode ? `${at}.grpc` : path,
      "a gRPC health check needs backend_protocol: h2c or h2 (gRPC is HTTP/2)",
    );
  }
}

// The route's `timeouts` over the top-level ones. Only the timeouts of an exchange
// can differ by route: head, idle and drain belong to client connections (read
// before any route is known), connect and pool_idle to pools shared by routes.
function readRouteTimeouts(
  src: Source,
  node: Node | undefined,
  path: string,
  top: Timeouts,
): RouteTimeouts {
  const out: RouteTimeouts = {
    response: top.response,
    body_idle: top.body_idle,
    max_stream_duration: top.max_stream_duration,
    max_grpc_timeout: top.max_grpc_timeout,
  };
  for (const [key, value] of src.map(node, path, ROUTE_TIMEOUT_KEYS)) {
    const v = src.duration(value, join(path, key));
    if (v !== undefined) out[key as keyof RouteTimeouts] = v;
  }
  return out;
}

function readHashKey(src: Source, m: Map<string, Node>, path: string, route: RouteConfig) {
  const node = m.get("hash_key");
  const text = src.string(node, `${path}.hash_key`);
  if (route.scheduler !== "hash") {
    if (node !== undefined) src.fail(node, `${path}.hash_key`, "only applies with scheduler: hash");
    return;
  }
  route.hash_key = CLIENT_IP_KEY;
  if (text === undefined) return;
  try {
    route.hash_key = parseHashKey(text);
  } catch {
    src.fail(
      node,
      `${path}.hash_key`,
      `must be client_ip, header:NAME or cookie:NAME: received "${text}"`,
    );
  }
}

// `tls: true` (implied by `backend_protocol: h2`), with its `ca` and `server_name`.
function readUpstreamTls(src: Source, m: Map<string, Node>, path: string, route: RouteConfig) {
  const given = src.bool(m.get("tls"), `${path}.tls`);
  const protocol = route.backend_protocol;
  if (protocol === "h2" && given === false) {
    src.fail(m.get("tls"), `${path}.tls`, "backend_protocol: h2 is HTTP/2 over TLS: not false");
  }
  if (protocol === "h2c" && given === true) {
    src.fail(m.get("tls"), `${path}.tls`, "backend_protocol: h2c is cleartext: use h2 for TLS");
  }
  const tls = given ?? (protocol === "h2" ? true : undefined);
  const ca = src.string(m.get("ca"), `${path}.ca`);
  const serverName = src.string(m.get("server_name"), `${path}.server_name`);
  if (serverName !== undefined && !SERVER_NAME_REGEXP.test(serverName)) {
    src.fail(
      m.get("server_name"),
      `${path}.server_name`,
      `must be a DNS name: received "${serverName}"`,
    );
  }
  const certNode = m.get("client_cert");
  const clientCert = certNode === undefined
    ? undefined
    : readPair(src, certNode, `${path}.client_cert`);
  if (tls !== true) {
    for (const k of ["ca", "server_name", "client_cert"] as const) {
      if (m.has(k)) src.fail(m.get(k), `${path}.${k}`, "only applies with tls: true");
    }
    return;
  }
  route.tls = {};
  if (ca !== undefined) route.tls.ca = ca;
  if (serverName !== undefined) route.tls.server_name = serverName;
  // the files are read when the routes are built: their errors start with file:line
  if (clientCert) route.tls.client_cert = { ...clientCert, at: src.where(certNode, clientCert.at) };
}
