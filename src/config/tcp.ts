/**
 * The `tcp:` section (see DESIGN.md "Edge"): layer-4 routes, each carrying whole
 * connections from its own listen address to backends found as HTTP routes find
 * theirs (`srv:` or `backends:`), picked by the same schedulers and checked by
 * connecting (`health: { tcp: true }`).
 *
 * @module
 */
import { isMap, type Node } from "./_yaml.ts";
import { addrKey, type HostPort } from "./address.ts";
import { join, type Source } from "./_source.ts";
import type { StaticBackendEntry } from "../upstream/discovery/static.ts";
import { SCHEDULER_MODES, type SchedulerMode } from "../scheduler/scheduler.ts";
import { CLIENT_IP_KEY, type HashKey } from "./hash_key.ts";
import type { Health, Timeouts } from "./defaults.ts";
import { readHealth, routeHealth } from "./health.ts";
import { readBackends } from "./backends.ts";
import { readPair, type TlsPair } from "./tls_pair.ts";

/** The timeouts of a TCP route's connections, in milliseconds. */
export interface TcpTimeouts {
  /** Connecting to a backend (each attempt). @default {the top-level `timeouts.connect`} */
  connect: number;
  /**
   * A connection on which no byte moved, either way, for this long is closed;
   * 0 = never (as nginx's `proxy_timeout`). @default {600000}
   */
  idle: number;
}

/** The default of {@linkcode TcpTimeouts.idle}: ten minutes, as nginx's `proxy_timeout`. */
export const TCP_IDLE_DEFAULT = 600_000;

/** One `tcp:` route. */
export interface TcpRouteConfig {
  /** Unique name among all routes (letters, digits, `. _ -`); `tcp<i>` when not given. */
  name: string;
  /** The address it accepts connections on. */
  listen: HostPort;
  /** DNS SRV name the backends are discovered from (exclusive with `backends`). */
  srv?: string;
  /** Static backends (exclusive with `srv`). */
  backends?: StaticBackendEntry[];
  /** How a connection's backend is picked. @default {the top-level `scheduler`} */
  scheduler: SchedulerMode;
  /** Present exactly when `scheduler: hash`: a TCP route hashes the client address. */
  hash_key?: HashKey;
  /**
   * Its backends' health: the top-level `health` (without an HTTP probe) with the
   * route's own over it; active checks are on with `tcp: true`.
   */
  health: Health;
  /** Connect and idle timeouts. */
  timeouts: TcpTimeouts;
  /** Other backends tried after a connect that failed. @default {the top-level `retry.attempts`} */
  retries: number;
  /**
   * The TLS server name it gets by passthrough (lower case; `*.example.com` takes any
   * name ending in `.example.com`, the longest match winning): the ClientHello is
   * read, not answered, and replayed to the backend, which terminates TLS. Several
   * routes may share a listen address this way, one of them without `sni` as the
   * default (names no route has, and clients that send none).
   */
  sni?: string;
  /** Certificate and key PEM files: TLS is terminated, plain TCP goes to the backends. */
  tls?: { cert: string; key: string };
  /**
   * Present with `backend_tls: true`: the backends are reached over TLS, their
   * certificate verified (against `ca` too, for `server_name`), presenting
   * `client_cert` when they ask for one (mTLS), as HTTP routes' `tls: true`.
   */
  backend_tls?: {
    ca?: string;
    server_name?: string;
    client_cert?: TlsPair;
  };
}

/** What a TCP route takes from the top level of the config when it does not say. */
export interface TcpDefaults {
  /** The top-level `scheduler`. */
  scheduler: SchedulerMode;
  /** The top-level `health` (its HTTP probe, if any, is not inherited). */
  health: Health;
  /** The top-level `timeouts`. */
  timeouts: Timeouts;
  /** The top-level `retry.attempts`. */
  retries: number;
}

const TCP_KEYS = [
  "name",
  "listen",
  "srv",
  "backends",
  "scheduler",
  "hash_key",
  "health",
  "timeouts",
  "retries",
  "sni",
  "tls",
  "backend_tls",
  "ca",
  "server_name",
  "client_cert",
] as const;
const NAME_REGEXP = /^[A-Za-z0-9_.-]+$/;
// A server name as SNI carries it (lower case): DNS labels, the first one `*` for a wildcard.
const SNI_REGEXP =
  /^(?:\*\.)?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/;

/**
 * Reads the top-level `tcp:` list (errors go to `src`).
 *
 * @param node The list's node (absent: no TCP routes).
 * @param defaults What the routes inherit.
 * @returns The routes read, in file order.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseConfig } from "./config.ts";
 * const c = parseConfig(
 *   "tcp:\n  - { name: pg, listen: 127.0.0.1:5432, backends: [{ address: 127.0.0.1:15432 }] }\n",
 *   "unload.yaml",
 * );
 * assertEquals(c.tcp[0]!.listen, { hostname: "127.0.0.1", port: 5432 });
 * assertEquals(c.tcp[0]!.timeouts.idle, 600_000);
 * ```
 */
export function readTcpRoutes(
  src: Source,
  node: Node | undefined,
  defaults: TcpDefaults,
): TcpRouteConfig[] {
  const out: TcpRouteConfig[] = [];
  const names = new Set<string>();
  const shared = new Map<string, Sharing[]>(); // the routes of each listen address
  src.seq(node, "tcp").forEach((item, i) => {
    const path = `tcp[${i}]`;
    const m = src.map(item, path, TCP_KEYS);
    const name = src.string(m.get("name"), `${path}.name`) ?? `tcp${i}`;
    if (!NAME_REGEXP.test(name)) {
      src.fail(m.get("name"), `${path}.name`, "use letters, digits, . _ -");
    }
    if (names.has(name)) src.fail(m.get("name"), `${path}.name`, `duplicate route name "${name}"`);
    names.add(name);
    const listen = src.address(m.get("listen"), `${path}.listen`);
    if (!m.has("listen")) src.fail(item, path, "needs listen (host:port)");
    const route: TcpRouteConfig = {
      name,
      listen: listen ?? { hostname: "0.0.0.0", port: 0 },
      scheduler: src.choice(m.get("scheduler"), `${path}.scheduler`, SCHEDULER_MODES) ??
        defaults.scheduler,
      health: defaults.health,
      timeouts: readTimeouts(src, m.get("timeouts"), `${path}.timeouts`, defaults.timeouts),
      retries: src.int(m.get("retries"), `${path}.retries`, 0, 5) ?? defaults.retries,
    };
    readHashKey(src, m, path, route);
    const srv = src.string(m.get("srv"), `${path}.srv`);
    if (srv !== undefined) route.srv = srv;
    if (m.has("backends")) route.backends = readBackends(src, m.get("backends"), path);
    if ((srv === undefined) === !m.has("backends")) {
      src.fail(item, path, "needs exactly one of srv (a DNS SRV name) or backends (a list)");
    }
    route.health = readTcpHealth(src, m.get("health"), `${path}.health`, defaults.health);
    readEdgeKeys(src, m, path, route);
    readBackendTls(src, m, path, route);
    out.push(route);
    if (listen !== undefined && listen.port !== 0) {
      const key = addrKey(listen);
      const group = shared.get(key) ?? [];
      group.push({ route, node: m, path });
      shared.set(key, group);
    }
  });
  for (const [key, group] of shared) if (group.length > 1) checkShared(src, key, group);
  return out;
}

// `sni`: a server name (or `*.` wildcard) whose TLS connections the route gets by
// passthrough; `tls`: the certificate and key that terminate TLS on its listen address.
function readEdgeKeys(src: Source, m: Map<string, Node>, path: string, route: TcpRouteConfig) {
  const sni = src.string(m.get("sni"), `${path}.sni`);
  if (sni !== undefined) {
    const name = sni.toLowerCase().replace(/\.$/, "");
    if (!SNI_REGEXP.test(name)) {
      src.fail(
        m.get("sni"),
        `${path}.sni`,
        `"${sni}" is not a server name (a DNS name such as db.example.com, or *.example.com)`,
      );
    }
    route.sni = name;
  }
  const node = m.get("tls");
  if (node === undefined) return;
  const tls = src.map(node, `${path}.tls`, ["cert", "key"]);
  const cert = src.string(tls.get("cert"), `${path}.tls.cert`);
  const key = src.string(tls.get("key"), `${path}.tls.key`);
  if (cert === undefined || key === undefined) {
    src.fail(node, `${path}.tls`, "needs both cert and key");
  } else route.tls = { cert, key };
  if (sni !== undefined) {
    src.fail(
      node,
      `${path}.tls`,
      "a route either passes TLS through by name (sni) or terminates it (tls), not both",
    );
  }
}

// `backend_tls: true`, with its `ca`, `server_name` and `client_cert` (HTTP routes' keys).
function readBackendTls(src: Source, m: Map<string, Node>, path: string, route: TcpRouteConfig) {
  const on = src.bool(m.get("backend_tls"), `${path}.backend_tls`);
  const ca = src.string(m.get("ca"), `${path}.ca`);
  const serverName = src.string(m.get("server_name"), `${path}.server_name`);
  if (serverName !== undefined && !SNI_REGEXP.test(serverName) || serverName?.startsWith("*")) {
    src.fail(
      m.get("server_name"),
      `${path}.server_name`,
      `must be a DNS name: received "${serverName}"`,
    );
  }
  const certNode = m.get("client_cert");
  const pair = certNode === undefined ? undefined : readPair(src, certNode, `${path}.client_cert`);
  // the files are read when the routes are built: their errors start with file:line
  const clientCert = pair && { ...pair, at: src.where(certNode, pair.at) };
  if (on !== true) {
    for (const k of ["ca", "server_name", "client_cert"] as const) {
      if (m.has(k)) src.fail(m.get(k), `${path}.${k}`, "only applies with backend_tls: true");
    }
    return;
  }
  route.backend_tls = {};
  if (ca !== undefined) route.backend_tls.ca = ca;
  if (serverName !== undefined) route.backend_tls.server_name = serverName;
  if (clientCert !== undefined) route.backend_tls.client_cert = clientCert;
}

/** A route on a listen address, with where the config has it. */
type Sharing = { route: TcpRouteConfig; node: Map<string, Node>; path: string };

// Routes sharing a listen address pass TLS through, chosen by the ClientHello's server
// name: each has its own sni, but for at most one (the default route, for names no
// route has and for clients that send none). TLS termination takes an address alone.
function checkShared(src: Source, key: string, group: Sharing[]): void {
  const names = new Map<string, string>();
  let fallback: string | undefined;
  for (const { route, node, path } of group) {
    if (route.tls !== undefined) {
      src.fail(
        node.get("tls"),
        `${path}.tls`,
        `terminates TLS on its own listen address: ${key} is shared with tcp route "${
          group.find((g) => g.route !== route)!.route.name
        }"`,
      );
    } else if (route.sni === undefined) {
      if (fallback === undefined) fallback = route.name;
      else {
        src.fail(
          node.get("listen"),
          `${path}.listen`,
          `${key} has a default route already, tcp route "${fallback}" (routes sharing a ` +
            "listen address are chosen by sni: and at most one goes without)",
        );
      }
    } else {
      const other = names.get(route.sni);
      if (other !== undefined) {
        src.fail(
          node.get("sni"),
          `${path}.sni`,
          `"${route.sni}" on ${key} is tcp route "${other}"'s already`,
        );
      } else names.set(route.sni, route.name);
    }
  }
}

// `hash_key` only with `scheduler: hash`, and then only client_ip (a TCP route sees no header).
function readHashKey(src: Source, m: Map<string, Node>, path: string, route: TcpRouteConfig) {
  const node = m.get("hash_key");
  const text = src.string(node, `${path}.hash_key`);
  if (route.scheduler !== "hash") {
    if (node !== undefined) src.fail(node, `${path}.hash_key`, "only applies with scheduler: hash");
    return;
  }
  route.hash_key = CLIENT_IP_KEY;
  if (text !== undefined && text !== "client_ip") {
    src.fail(node, `${path}.hash_key`, `a tcp route hashes on client_ip only: received "${text}"`);
  }
}

function readTimeouts(src: Source, node: Node | undefined, path: string, top: Timeouts) {
  const out: TcpTimeouts = { connect: top.connect, idle: TCP_IDLE_DEFAULT };
  for (const [key, value] of src.map(node, path, ["connect", "idle"])) {
    const v = src.duration(value, join(path, key));
    if (v === undefined) continue;
    if (key === "connect" && v === 0) src.fail(value, join(path, key), "must be more than 0ms");
    out[key as keyof TcpTimeouts] = v;
  }
  return out;
}

// The top-level health without its HTTP probe, the route's own over it: a TCP route's
// backends are checked by connecting (tcp: true) or not actively at all.
function readTcpHealth(src: Source, node: Node | undefined, at: string, top: Health): Health {
  const { path: _p, grpc: _g, grpc_service: _s, ...base } = top;
  const merged: Health = node === undefined ? base : readHealth(src, node, at, base);
  if (merged.path !== undefined || merged.grpc === true) {
    const m = isMap(node) ? node : undefined;
    const key = merged.path !== undefined ? "path" : "grpc";
    src.fail(
      (m?.get(key, true) as Node | undefined) ?? node,
      `${at}.${key}`,
      "a tcp route's backends are checked by connecting: use tcp: true",
    );
  }
  return routeHealth(merged);
}
