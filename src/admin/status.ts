/**
 * `GET /status`: a JSON snapshot of routes, backends, pools, SRV freshness,
 * reloads and resource exhaustion — what the dashboard polls.
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { type SchedulerMode } from "../scheduler/scheduler.ts";
import { expectedShares } from "../scheduler/create.ts";
import { backendRequests, LATENCY_BUCKETS, STATUS_CLASSES, statusObject } from "./metrics.ts";
import { addrKey } from "../config/address.ts";
import { type AdminSource, poolTotals, prepareSeries, type TcpRouteView } from "./prometheus.ts";
import type { SrvWatcherState } from "../upstream/discovery/srv.ts";
import { describeProbe } from "../upstream/health/checks.ts";
import type { StepDescription } from "../policy/policy.ts";

/** One backend of one route. */
export interface BackendStatus {
  /** `host:port` connected to. */
  id: string;
  /** SRV target (or configured address) it came from. */
  name: string;
  /** SRV (or configured) priority. */
  priority: number;
  /** SRV (or configured) weight. */
  weight: number;
  /** Share of the route's traffic its priority and weight call for (health ignored), 0..1. */
  share: number;
  /** False while ejected by health checks. */
  healthy: boolean;
  /** Requests being proxied to it now. */
  inflight: number;
  /** Its connection pool: connections in use and idle, opened and reused over time. */
  pool: { active: number; idle: number; opened: number; reused: number };
  /**
   * The last active probe of it by this route's check: passed or not, what it
   * answered or why it failed, when (epoch ms); null before the first or without
   * active checks.
   */
  probe: { ok: boolean; reason: string; time: number } | null;
  /** Requests this route sent it, finished. */
  requests: number;
  /** Those requests by status class (non-zero classes only). */
  status: Record<string, number>;
}

/** SRV discovery state of a route. */
export interface SrvStatus {
  /** The SRV name looked up. */
  name: string;
  /** Ms between lookups (`dns.refresh`). */
  refresh: number;
  /** True when the latest lookup failed and the last good set is in use. */
  stale: boolean;
  /** Epoch ms, or null before the first successful lookup. */
  lastSuccess: number | null;
  /** Message of the latest failed lookup (kept after a later success), or null. */
  lastError: string | null;
  /** Lookups attempted. */
  lookups: number;
  /** Lookups that failed. */
  failures: number;
  /** Addresses (`host:port`) set aside: they do not connect while a sibling address does. */
  aside: string[];
}

/** The active check of a route's backends. */
export interface ProbeStatus {
  /** The protocol probes speak: the route's `backend_protocol` (`http1`, `h2c`, `h2`). */
  protocol: string;
  /** What is sent: `GET /healthz`, or `grpc.health.v1.Health/Check` (with its service). */
  check: string;
  /** The path probed, or null for the gRPC check. */
  path: string | null;
  /** The gRPC service asked about (`""`: the server as a whole), or null for a path. */
  grpc_service: string | null;
  /** Ms between rounds. */
  interval: number;
  /** Ms a probe may take. */
  timeout: number;
  /** Consecutive failed probes that take a backend down. */
  failures: number;
  /** Consecutive passed probes that bring it back. */
  rise: number;
}

/** One route. */
export interface RouteStatus {
  /** Route name from the config. */
  name: string;
  /** `host` from the config, or null (any host). */
  host: string | null;
  /** Path prefix from the config, or null. */
  path: string | null;
  /** The route's scheduler mode. */
  scheduler: SchedulerMode;
  /** Discovery state, or null for static backends. */
  srv: SrvStatus | null;
  /** Its backends' active check, or null when active checks are off for it. */
  probe: ProbeStatus | null;
  /** Requests finished on this route. */
  requests: number;
  /** Those requests by status class (non-zero classes only). */
  status: Record<string, number>;
  /** Latency histogram: bucket bounds (seconds) and cumulative counts, the last one `+Inf`. */
  latency: { le: readonly number[]; counts: number[]; sum: number; count: number };
  /** Backends now scheduled, in scheduler order. */
  backends: BackendStatus[];
  /** Its traffic policy steps in the order they run, one line each (`allow: allow only [10.0.0.0/8]`). */
  policies: string[];
  /**
   * The same steps as data: each one's name, what it does on the way in, and on
   * the way out (`response`) when it changes responses.
   */
  policySteps: StepDescription[];
  /** What became of requests on its mirror, by result (`mirrored`, `dropped`, ...). */
  mirror: Record<string, number>;
  /** Decisions of its auth step, by `kind result` (`basic cached`, `forward denied`). */
  auth: Record<string, number>;
  /** Requests its policy answered instead of a backend, by `policy status` (`allow 403`). */
  policyAnswers: Record<string, number>;
  /**
   * Responses its `compress` encoded, by coding: how many, body bytes in (from
   * the backend) and encoded bytes out.
   */
  compressed: Record<string, { responses: number; in: number; out: number }>;
}

/** A certificate `listen.https` serves. */
export interface CertificateStatus {
  /** Path of its certificate file. */
  file: string;
  /** Its DNS names (subjectAltName): the server names that select it. */
  names: string[];
  /** Its subject. */
  subject: string;
  /** Its serial number in hex. */
  serial: string;
  /** When it expires, ISO 8601. */
  notAfter: string;
  /** Seconds until then (negative: expired). */
  expiresIn: number;
}

/** One backend of a `tcp:` route. */
export interface TcpBackendStatus {
  /** `host:port` connected to. */
  id: string;
  /** SRV target (or configured address) it came from. */
  name: string;
  /** SRV (or configured) priority. */
  priority: number;
  /** SRV (or configured) weight. */
  weight: number;
  /** Share of the route's connections its priority and weight call for (health ignored), 0..1. */
  share: number;
  /** False while ejected by health checks (connect failures, or the TCP connect check). */
  healthy: boolean;
  /** Connections carried to it over time. */
  connections: number;
  /** Connections open to it now. */
  active: number;
  /** Bytes carried from clients to it. */
  bytesIn: number;
  /** Bytes carried from it to clients. */
  bytesOut: number;
  /** The last active probe of it (see {@linkcode BackendStatus.probe}). */
  probe: { ok: boolean; reason: string; time: number } | null;
}

/** One `tcp:` route. */
export interface TcpRouteStatus {
  /** Route name from the config. */
  name: string;
  /** The address it accepts on (`host:port`, the bound port when the config says 0). */
  listen: string;
  /** The route's scheduler mode. */
  scheduler: SchedulerMode;
  /** Discovery state, or null for static backends. */
  srv: SrvStatus | null;
  /** Its backends' active check (`TCP connect`), or null when active checks are off for it. */
  probe: ProbeStatus | null;
  /** Connect and idle timeouts (ms), and the retries after a failed connect. */
  timeouts: { connect: number; idle: number };
  /** Other backends tried after a failed connect. */
  retries: number;
  /** Connections over time, and open now. */
  connections: { total: number; active: number };
  /** Bytes carried from clients (`in`) and to clients (`out`). */
  bytes: { in: number; out: number };
  /** Finished connections by how they ended (non-zero only). */
  ends: Record<string, number>;
  /** Backends now scheduled, in scheduler order. */
  backends: TcpBackendStatus[];
  /** The server name it takes by TLS passthrough (`*.` wildcards kept), or null. */
  sni: string | null;
  /** The certificate file it terminates TLS with, or null. */
  tls: string | null;
  /** Whether its backends are reached over TLS (`backend_tls`). */
  backendTls: boolean;
  /**
   * Connections its listen address closed before reaching a route, by why (non-zero
   * only; shared by the routes of one address).
   */
  refused: Record<string, number>;
}

/** The whole snapshot. */
export interface Status {
  /** The balancer's version. */
  version: string;
  /** Epoch ms of this snapshot (ages are relative to it). */
  now: number;
  /** Epoch ms the balancer started. */
  started: number;
  /** Seconds since start. */
  uptime: number;
  /** Requests finished, all routes (all workers). */
  requests: number;
  /** Requests finished, by the protocol the client spoke (`http/1.1`, `h2`, ...). */
  protocols: Record<string, number>;
  /** HTTP/2 client connections and streams open now. */
  h2: { connections: number; streams: number };
  /** Event loops serving (`workers`); the counters here are their sum. */
  workers: number;
  /** Reloads applied and rejected, and the latest one (`time` in epoch ms). */
  reloads: {
    ok: number;
    failed: number;
    last: { ok: boolean; error: string | null; time: number } | null;
  };
  /** Accepts and backend connects that failed for lack of descriptors or ports, by error code. */
  exhausted: Record<string, number>;
  /**
   * TLS handshakes past their deadline and not finished, each holding a socket the runtime
   * cannot close (`stalled`), and those that ran out of time so far (`timedOut`), by side.
   */
  tls: {
    stalled: { client: number; backend: number };
    timedOut: { client: number; backend: number };
  };
  /**
   * The certificates `listen.https` serves, the default first: the file, the DNS names
   * that select it, its subject and serial, when it expires (ISO 8601) and the seconds left.
   */
  certificates: CertificateStatus[];
  /** Errors no code handled (unhandled rejections), each logged with its stack. */
  internalErrors: number;
  /**
   * How the client address is found (`listen.proxy_protocol`, `listen.trusted_proxies`), and
   * connections closed for their PROXY header by reason (non-zero reasons only).
   */
  clientAddress: {
    proxyProtocol: boolean;
    trustedProxies: string[];
    refused: Record<string, number>;
  };
  /** Routes in config order. */
  routes: RouteStatus[];
  /** `tcp:` routes in config order. */
  tcp: TcpRouteStatus[];
}

/**
 * Takes a snapshot of `lb`.
 *
 * @param lb The balancer.
 * @param now Epoch ms of the snapshot. @default {Date.now()}
 * @returns A JSON-serialisable status.
 *
 * @example
 * ```ts ignore
 * const status = buildStatus(lb);
 * console.log(status.routes[0]?.backends.map((b) => b.healthy));
 * ```
 */
export function buildStatus(lb: AdminSource, now: number = Date.now()): Status {
  prepareSeries(lb);
  const srv = lb.srvStates();
  const pools = poolTotals(lb);
  const last = lb.reloads.last;
  return {
    version: denoJson.version,
    now,
    started: lb.started,
    uptime: Math.max(0, now - lb.started) / 1000,
    requests: lb.metrics.requests,
    protocols: Object.fromEntries(lb.metrics.protocols),
    h2: { connections: lb.h2.connections, streams: lb.h2.streams },
    workers: lb.config.workers,
    reloads: {
      ok: lb.reloads.ok,
      failed: lb.reloads.failed,
      last: last ? { ok: last.ok, error: last.error ?? null, time: last.time } : null,
    },
    exhausted: Object.fromEntries(lb.exhaustion.counts),
    tls: {
      stalled: { ...(lb.tlsStalls?.stalled ?? { client: 0, backend: 0 }) },
      timedOut: { ...(lb.tlsStalls?.timedOut ?? { client: 0, backend: 0 }) },
    },
    certificates: (lb.certificates ?? []).map((c) => ({
      file: c.cert,
      names: [...c.names],
      subject: c.subject,
      serial: c.serial,
      notAfter: c.notAfter.toISOString(),
      expiresIn: Math.round((c.notAfter.getTime() - now) / 1000),
    })),
    internalErrors: lb.metrics.internalErrors,
    clientAddress: {
      proxyProtocol: lb.config.listen.proxy_protocol === true,
      trustedProxies: [...(lb.config.listen.trusted_proxies ?? [])],
      refused: Object.fromEntries(Object.entries(lb.proxyRefused ?? {}).filter(([, n]) => n > 0)),
    },
    tcp: tcpStatus(lb, srv),
    routes: lb.routes.map((r) => {
      const series = lb.metrics.route(r.name);
      const backends = r.scheduler.backends;
      const shares = expectedShares(r.scheduler.mode, backends);
      const s = srv.get(r.name);
      const codes = new Array<number>(STATUS_CLASSES.length).fill(0);
      for (const c of series?.backends.values() ?? []) c.forEach((n, i) => codes[i]! += n);
      let cumulative = 0;
      const counts = Array.from(series?.buckets ?? [], (n) => cumulative += n);
      return {
        name: r.name,
        host: r.config.host ?? null,
        path: r.config.path ?? null,
        scheduler: r.scheduler.mode,
        srv: s ? srvStatus(s, lb.config.dns.refresh) : null,
        probe: probeStatus(r),
        requests: series?.count ?? 0,
        status: statusObject(codes),
        latency: { le: LATENCY_BUCKETS, counts, sum: series?.sum ?? 0, count: series?.count ?? 0 },
        policies: [...r.policy?.summaries ?? []],
        policySteps: [...r.policy?.described ?? []],
        mirror: Object.fromEntries(series?.mirror ?? []),
        auth: Object.fromEntries(series?.authDecisions ?? []),
        policyAnswers: Object.fromEntries(series?.policies ?? []),
        compressed: Object.fromEntries(
          [...series?.compressed ?? []].map(([coding, c]) => [
            coding,
            { responses: c[0]!, in: c[1]!, out: c[2]! },
          ]),
        ),
        backends: backends.map((b, i) => {
          const pool = pools.get(b.id);
          return {
            id: b.id,
            name: b.name,
            priority: b.priority,
            weight: b.weight,
            share: shares[i]!,
            healthy: b.healthy,
            inflight: b.inflight,
            pool: {
              active: pool?.active ?? 0,
              idle: pool?.idle ?? 0,
              opened: pool?.opened ?? 0,
              reused: pool?.reused ?? 0,
            },
            probe: lb.lastProbe?.(b) ?? null,
            requests: backendRequests(series, b.id),
            status: statusObject(series?.backends.get(b.id)),
          };
        }),
      };
    }),
  };
}

function srvStatus(s: SrvWatcherState, refresh: number): SrvStatus {
  return {
    name: s.name,
    refresh,
    stale: s.stale,
    lastSuccess: s.lastSuccess ?? null,
    lastError: s.lastError ?? null,
    lookups: s.lookups,
    failures: s.failures,
    aside: [...s.aside],
  };
}

function tcpStatus(lb: AdminSource, srv: Map<string, SrvWatcherState>): TcpRouteStatus[] {
  const bound = lb.tcpAddrs?.();
  return (lb.tcpRoutes ?? []).map((r: TcpRouteView) => {
    const series = lb.tcpMetrics?.route(r.name);
    const backends = r.scheduler.backends;
    const shares = expectedShares(r.scheduler.mode, backends);
    const s = srv.get(r.name);
    const addr = bound?.get(r.name) ?? r.config.listen;
    let total = 0, active = 0, bytesIn = 0, bytesOut = 0;
    for (const c of series?.backends.values() ?? []) {
      total += c.connections;
      active += c.active;
      bytesIn += c.bytesIn;
      bytesOut += c.bytesOut;
    }
    const ends: Record<string, number> = {};
    for (const [end, n] of series?.ends ?? []) if (n > 0) ends[end] = n;
    return {
      name: r.name,
      listen: `${addr.hostname}:${addr.port}`,
      scheduler: r.scheduler.mode,
      srv: s ? srvStatus(s, lb.config.dns.refresh) : null,
      probe: probeStatus({ checks: r.checks, config: { backend_protocol: "tcp" } }),
      timeouts: { connect: r.config.timeouts.connect, idle: r.config.timeouts.idle },
      retries: r.config.retries,
      connections: { total, active },
      bytes: { in: bytesIn, out: bytesOut },
      ends,
      sni: r.config.sni ?? null,
      tls: r.config.tls?.cert ?? null,
      backendTls: r.config.backend_tls !== undefined,
      refused: Object.fromEntries(
        [...lb.tcpMetrics?.refused.get(addrKey(r.config.listen)) ?? []].filter(([, n]) => n > 0),
      ),
      backends: backends.map((b, i) => {
        const c = series?.backends.get(b.id);
        return {
          id: b.id,
          name: b.name,
          priority: b.priority,
          weight: b.weight,
          share: shares[i]!,
          healthy: b.healthy,
          connections: c?.connections ?? 0,
          active: c?.active ?? 0,
          bytesIn: c?.bytesIn ?? 0,
          bytesOut: c?.bytesOut ?? 0,
          probe: lb.lastProbe?.(b) ?? null,
        };
      }),
    };
  });
}

function probeStatus(
  r: { checks?: AdminSource["routes"][number]["checks"]; config: { backend_protocol: string } },
): ProbeStatus | null {
  const checks = r.checks;
  const probe = checks?.probe;
  if (checks === undefined || probe === undefined) return null;
  return {
    protocol: r.config.backend_protocol,
    check: describeProbe(probe),
    path: probe.kind === "path" ? probe.path : null,
    grpc_service: probe.kind === "grpc" ? probe.service : null,
    interval: checks.interval,
    timeout: checks.timeout,
    failures: checks.failures,
    rise: checks.rise,
  };
}
