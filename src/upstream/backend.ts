/**
 * The backend record shared by discovery, the scheduler, the pool and admin.
 *
 * @module
 */
import type { UpstreamTls } from "./tls.ts";
import type { BackendChecks } from "./health/checks.ts";
import type { ProxyVersion } from "./proxy_out.ts";

/** One upstream server that a route can send requests to. */
export interface Backend {
  /** Stable identity, `host:port` of the address connected to (e.g. `127.0.0.1:9001`). */
  readonly id: string;
  /** Address to connect to (IP literal or host name). */
  readonly hostname: string;
  /** TCP port to connect to. */
  readonly port: number;
  /** SRV priority (lower is preferred); 0 for static backends unless configured. */
  readonly priority: number;
  /** SRV weight, 0..65535. */
  readonly weight: number;
  /** The SRV target name this backend came from, or the configured address. */
  readonly name: string;
  /**
   * False while a health check (passive or active) has ejected it. Written only
   * through `backend_state.ts` (`markDown`, `markUp`), which tells the schedulers.
   */
  readonly healthy: boolean;
  /**
   * Requests currently being proxied to it. Written only through
   * `backend_state.ts` (`beginRequest`, `endRequest`), which tells the schedulers.
   */
  readonly inflight: number;
  /** Present when it is reached over TLS (`routes[].tls: true`). */
  readonly tls?: UpstreamTls;
  /**
   * Present when it is spoken to in HTTP/2 (`routes[].backend_protocol: h2c | h2`):
   * streams multiplexed over a few pooled connections instead of one request per
   * connection at a time.
   */
  readonly h2?: true;
  /**
   * Present when each connection to it begins with a PROXY header naming the client
   * (`routes[].proxy_protocol`): such connections are never shared by two clients,
   * and probes send the header that names nobody (v1 `UNKNOWN`, v2 `LOCAL`).
   */
  readonly proxy?: ProxyVersion;
  /**
   * How its route checks it (`health` with `routes[].health` over it). Routes whose
   * checks differ never share a record: each is probed and taken out on its own.
   * @default {the balancer's top-level settings, no active probe}
   */
  readonly checks?: BackendChecks;
}

/** Options for {@linkcode createBackend}. */
export interface BackendInit {
  /** Address to connect to (IP literal, IPv6 without brackets, or host name). */
  hostname: string;
  /** TCP port to connect to. */
  port: number;
  /** SRV priority (lower is preferred). @default {0} */
  priority?: number;
  /** SRV weight, 0..65535. @default {1} */
  weight?: number;
  /** The SRV target name or configured address it came from. @default {the id, `host:port`} */
  name?: string;
}

/**
 * Builds a healthy backend record with no requests in flight.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001, weight: 30 });
 * assert(b.id === "127.0.0.1:9001" && b.healthy);
 * ```
 */
export function createBackend(init: BackendInit): Backend {
  const host = init.hostname.includes(":") ? `[${init.hostname}]` : init.hostname;
  const id = `${host}:${init.port}`;
  return {
    id,
    hostname: init.hostname,
    port: init.port,
    priority: init.priority ?? 0,
    weight: init.weight ?? 1,
    name: init.name ?? id,
    healthy: true,
    inflight: 0,
  };
}

/**
 * The identity a pool is kept under: the id, plus the TLS settings and the name
 * verified when the backend is reached over TLS (a route with and one without
 * TLS to the same address get separate pools).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { backendKey, createBackend } from "./backend.ts";
 * assert(backendKey(createBackend({ hostname: "127.0.0.1", port: 9001 })) === "127.0.0.1:9001");
 * ```
 */
export function backendKey(b: Backend): string {
  if (!b.tls && !b.h2 && !b.proxy) return b.id;
  let key = KEYS.get(b); // asked for on every attempt: built once per record
  if (key === undefined) {
    key = b.id + (b.h2 ? " h2" : "") + (b.proxy ? ` proxy-${b.proxy}` : "") +
      (b.tls ? ` ${b.tls.key} ${tlsServerName(b)}` : "");
    KEYS.set(b, key);
  }
  return key;
}

// backendKey of TLS, HTTP/2 and PROXY-header backend records (whose fields never change).
const KEYS = new WeakMap<Backend, string>();

/**
 * The identity of a backend record's health: {@linkcode backendKey} plus its route's
 * checks. Records with one health key are probed once and go down and up together.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend, healthKey } from "./backend.ts";
 * assert(healthKey(createBackend({ hostname: "127.0.0.1", port: 9001 })) === "127.0.0.1:9001");
 * ```
 */
export function healthKey(b: Backend): string {
  return b.checks === undefined ? backendKey(b) : `${backendKey(b)} | ${b.checks.key}`;
}

/**
 * Backend records grouped by {@linkcode backendKey}: one group per address and TLS
 * setting, holding every distinct record (routes may give one address different
 * weights or priorities, and so different records).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { byKey, createBackend } from "./backend.ts";
 * const a = createBackend({ hostname: "127.0.0.1", port: 9001, weight: 1 });
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001, weight: 5 });
 * assert(byKey([a, b, a]).get("127.0.0.1:9001")?.length === 2);
 * ```
 */
export function byKey(backends: Iterable<Backend>): Map<string, Backend[]> {
  const groups = new Map<string, Backend[]>();
  for (const b of backends) {
    const key = backendKey(b);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [b]);
    else if (!group.includes(b)) group.push(b);
  }
  return groups;
}

/**
 * The name a TLS backend's certificate must carry: `routes[].server_name`, else
 * the SRV target it was discovered from, else its configured host or IP.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend, tlsServerName } from "./backend.ts";
 * const b = createBackend({ hostname: "10.0.0.5", port: 443, name: "b1.test." });
 * assert(tlsServerName(b) === "b1.test");
 * ```
 */
export function tlsServerName(b: Backend): string {
  if (b.tls?.serverName !== undefined) return b.tls.serverName;
  // SRV targets are bare names; static backends are named by their host:port address
  if (b.name !== b.id && !b.name.includes(":")) return b.name.replace(/\.$/, "");
  return b.hostname;
}
