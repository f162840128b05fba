/**
 * `GET /metrics`: the balancer's state in the Prometheus text format — requests,
 * latency, pools, backend health, SRV discovery and reloads.
 *
 * @module
 */
import type { StepDescription } from "../policy/policy.ts";
import denoJson from "../../deno.json" with { type: "json" };
import type { Backend } from "../upstream/backend.ts";
import type { SrvWatcherState } from "../upstream/discovery/srv.ts";
import type { Config, RouteConfig } from "../config/config.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";
import type { BackendChecks } from "../upstream/health/checks.ts";
import type { LastProbe } from "../upstream/health/active.ts";
import { EXHAUSTION_CODES } from "../observe/exhaustion.ts";
import { ABUSE_REASONS } from "../h2/abuse.ts";
import { PROXY_REFUSALS } from "../proxy/proxy_header.ts";
import { LATENCY_BUCKETS, type Metrics, STATUS_CLASSES } from "./metrics.ts";
import { TextFormat } from "./_text_format.ts";
import type { TcpRouteConfig } from "../config/tcp.ts";
import { tcpFamilies, type TcpMetrics } from "./tcp_metrics.ts";

/** What the exporters read of a route: its name, host and path, mode and backends. */
export interface RouteView {
  /** Route name from the config. */
  readonly name: string;
  /** Its host and path from the config. */
  readonly config: Pick<RouteConfig, "host" | "path" | "optional" | "backend_protocol">;
  /** Its scheduler's mode and backends. */
  readonly scheduler: Pick<Scheduler, "mode" | "backends">;
  /** How its backends are checked (absent: not known, shown as no active checks). */
  readonly checks?: BackendChecks;
  /** Its traffic policy steps, one line each (absent: none). */
  readonly policy?:
    | { readonly summaries: readonly string[]; readonly described: readonly StepDescription[] }
    | undefined;
}

/** What the exporters read of a `tcp:` route. */
export interface TcpRouteView {
  /** Route name from the config. */
  readonly name: string;
  /** Its configuration. */
  readonly config: TcpRouteConfig;
  /** Its scheduler's mode and backends. */
  readonly scheduler: Pick<Scheduler, "mode" | "backends">;
  /** How its backends are checked. */
  readonly checks?: BackendChecks;
}

/** What the exporters read from a running balancer (or from it and its workers, summed). */
export type AdminSource = {
  /** The configuration in force. */
  readonly config: Config;
  /** The state of each SRV name's watcher, by name. */
  srvStates(): Map<string, SrvWatcherState>;
  /** Reloads that worked and that failed, and the last one's outcome. */
  readonly reloads: {
    readonly ok: number;
    readonly failed: number;
    readonly last?: { ok: boolean; error?: string; time: number };
  };
  /** Epoch ms the balancer started. */
  readonly started: number;
  /** Request counters and histograms. */
  readonly metrics: Metrics;
  /** Routes in config order. */
  readonly routes: readonly RouteView[];
  /** Connection pools, each with the id of its backend. */
  readonly pools: ReadonlyMap<string, PoolTotals & { readonly backend: { readonly id: string } }>;
  /** HTTP/2 client connections and streams open now. */
  readonly h2: {
    readonly connections: number;
    readonly streams: number;
    /** Connections closed for abuse, by reason. */
    readonly closed: Readonly<Record<string, number>>;
  };
  /** Connections closed for their PROXY header, by reason (absent: none counted). */
  readonly proxyRefused?: Readonly<Record<string, number>>;
  /**
   * Backend connections opened and reused by the pools private to client connections
   * (`routes[].proxy_protocol`), counted as each client connection ends.
   */
  readonly privateCounts?: { readonly opened: number; readonly reused: number };
  /** Resource exhaustion counts by error code. */
  readonly exhaustion: { readonly counts: ReadonlyMap<string, number> };
  /** Body buffers lent to relays now, and the bytes of the large ones among them. */
  readonly bodyBuffers: { readonly inUse: number; readonly largeBytes: number };
  /** TLS handshakes that ran out of time, and those still holding their socket, by side. */
  readonly tlsStalls?: TlsStallCounts;
  /** The certificates `listen.https` serves, the default first (absent or empty: none). */
  readonly certificates?: readonly CertificateView[];
  /** The `tcp:` routes in config order (absent: none). */
  readonly tcpRoutes?: readonly TcpRouteView[];
  /** Their connection and byte counters (absent: none). */
  readonly tcpMetrics?: TcpMetrics;
  /** The bound address of each `tcp:` route, by route name (absent: as configured). */
  tcpAddrs?(): ReadonlyMap<string, { hostname: string; port: number }>;
  /** The last active probe of a backend record by its route's checks, if any. */
  lastProbe?(backend: Backend): LastProbe | undefined;
};

/** A certificate `listen.https` serves. */
export interface CertificateView {
  /** Path of its certificate file. */
  readonly cert: string;
  /** Its DNS names (subjectAltName). */
  readonly names: readonly string[];
  /** Its subject. */
  readonly subject: string;
  /** Its serial number in hex. */
  readonly serial: string;
  /** When it expires. */
  readonly notAfter: Date;
}

/** Counts of TLS handshakes past their deadline, by side (see `HandshakeStalls`). */
export interface TlsStallCounts {
  /** Pending now, each holding a socket. */
  readonly stalled: { readonly client: number; readonly backend: number };
  /** Ran out of time so far. */
  readonly timedOut: { readonly client: number; readonly backend: number };
}

const LE = LATENCY_BUCKETS.map(String).concat("+Inf");

/**
 * Makes sure every configured route and each of its backends has a (zero) series, so
 * dashboards and alerts see them before their first request.
 *
 * @param lb The balancer.
 */
export function prepareSeries(lb: AdminSource): void {
  for (const r of lb.routes) {
    const series = lb.metrics.series(r.name);
    for (const b of r.scheduler.backends) series.codes(b.id);
  }
}

/**
 * Renders the metrics of `lb`.
 *
 * @param lb The balancer.
 * @param now Epoch ms to compute ages against. @default {Date.now()}
 * @returns The exposition text.
 *
 * @example
 * ```ts ignore
 * const text = renderMetrics(lb);
 * ```
 */
export function renderMetrics(lb: AdminSource, now: number = Date.now()): string {
  prepareSeries(lb);
  const out = new TextFormat();
  const m = lb.metrics;

  out.family("unload_build_info", "gauge", "Always 1; the version in a label.");
  out.sample("unload_build_info", { version: denoJson.version }, 1);
  out.family("unload_start_time_seconds", "gauge", "Unix time the balancer started.");
  out.sample("unload_start_time_seconds", {}, lb.started / 1000);

  out.family(
    "unload_requests_total",
    "counter",
    'Requests finished, by route, backend and status class ("" = no route or no backend).',
  );
  for (const [route, s] of m.routes()) {
    for (const [backend, codes] of s.backends) {
      for (let i = 1; i < STATUS_CLASSES.length; i++) {
        out.sample(
          "unload_requests_total",
          { route, backend, code: STATUS_CLASSES[i]! },
          codes[i]!,
        );
      }
      if (codes[0]) {
        out.sample("unload_requests_total", { route, backend, code: "none" }, codes[0]);
      }
    }
  }
  out.family(
    "unload_protocol_requests_total",
    "counter",
    "Requests finished, by the protocol the client spoke (http/1.0, http/1.1, h2).",
  );
  for (const proto of ["http/1.1", "h2"]) {
    out.sample("unload_protocol_requests_total", { proto }, m.protocols.get(proto) ?? 0);
  }
  for (const [proto, n] of m.protocols) {
    if (proto !== "http/1.1" && proto !== "h2") {
      out.sample("unload_protocol_requests_total", { proto }, n);
    }
  }
  out.family("unload_h2_connections", "gauge", "HTTP/2 client connections open now.");
  out.sample("unload_h2_connections", {}, lb.h2.connections);
  out.family("unload_h2_streams", "gauge", "HTTP/2 request streams being served now.");
  out.sample("unload_h2_streams", {}, lb.h2.streams);
  tlsStallFamilies(out, lb.tlsStalls);
  certificateFamily(out, lb.certificates ?? [], now);
  out.family(
    "unload_body_buffers",
    "gauge",
    "Body buffers lent now: one per direction of a moving body, and one per pooled backend connection that moved a large body.",
  );
  out.sample("unload_body_buffers", {}, lb.bodyBuffers.inUse);
  out.family(
    "unload_body_buffer_bytes",
    "gauge",
    "Bytes of the large (64 and 256 KiB) body buffers lent now, at most 32 MiB per worker.",
  );
  out.sample("unload_body_buffer_bytes", {}, lb.bodyBuffers.largeBytes);
  out.family(
    "unload_h2_connections_closed_total",
    "counter",
    "HTTP/2 client connections closed for abuse (GOAWAY ENHANCE_YOUR_CALM), by reason.",
  );
  for (const reason of ABUSE_REASONS) {
    out.sample("unload_h2_connections_closed_total", { reason }, lb.h2.closed[reason] ?? 0);
  }
  out.family(
    "unload_proxy_protocol_refused_total",
    "counter",
    "Client connections closed for their PROXY header (listen.proxy_protocol), by reason: " +
      "untrusted peer, missing, malformed, too_large, closed or timeout.",
  );
  for (const reason of PROXY_REFUSALS) {
    out.sample("unload_proxy_protocol_refused_total", { reason }, lb.proxyRefused?.[reason] ?? 0);
  }
  out.family(
    "unload_private_pool_connections_opened_total",
    "counter",
    "Backend connections opened for one client connection alone (routes with proxy_protocol), " +
      "counted when the client connection ends.",
  );
  out.sample("unload_private_pool_connections_opened_total", {}, lb.privateCounts?.opened ?? 0);
  out.family(
    "unload_private_pool_reuses_total",
    "counter",
    "Requests sent on a client connection's own backend connection that carried one before " +
      "(routes with proxy_protocol), counted when the client connection ends.",
  );
  out.sample("unload_private_pool_reuses_total", {}, lb.privateCounts?.reused ?? 0);
  out.family(
    "unload_request_duration_seconds",
    "histogram",
    "Time from a complete request head to the end of the response, by route.",
  );
  for (const [route, s] of m.routes()) {
    let cumulative = 0;
    for (let i = 0; i < LE.length; i++) {
      cumulative += s.buckets[i]!;
      out.sample("unload_request_duration_seconds_bucket", { route, le: LE[i]! }, cumulative);
    }
    out.sample("unload_request_duration_seconds_sum", { route }, s.sum);
    out.sample("unload_request_duration_seconds_count", { route }, s.count);
  }
  out.family("unload_request_body_bytes_total", "counter", "Request body bytes received.");
  for (const [route, s] of m.routes()) {
    out.sample("unload_request_body_bytes_total", { route }, s.bytesIn);
  }
  out.family("unload_response_bytes_total", "counter", "Response bytes sent (head and body).");
  for (const [route, s] of m.routes()) {
    out.sample("unload_response_bytes_total", { route }, s.bytesOut);
  }

  out.family(
    "unload_policy_answers_total",
    "counter",
    "Requests a route's traffic policy answered instead of a backend (allow/deny 403, redirect, rate_limit 429, auth 401), by route, policy and status.",
  );
  for (const [route, s] of m.routes()) {
    for (const [key, n] of s.policies ?? []) {
      const [policy, code] = key.split(" ") as [string, string];
      out.sample("unload_policy_answers_total", { route, policy, code }, n);
    }
  }
  out.family(
    "unload_rate_limit_store_errors_total",
    "counter",
    "Rate limit decisions a route's Redis store could not make (down, slow past rate_limit.timeout, or a bad answer), by route and what the request got (on_store_error).",
  );
  for (const [route, s] of m.routes()) {
    for (const [outcome, n] of s.storeErrors ?? []) {
      out.sample("unload_rate_limit_store_errors_total", { route, outcome }, n);
    }
  }
  out.family(
    "unload_auth_decisions_total",
    "counter",
    "Decisions of a route's auth step, by route, kind (basic, forward) and result: basic cached (no bcrypt check of its own: verified earlier, or joined a check in progress), verified (a bcrypt check passed), refused, missing, busy (too many bcrypt checks at once: 503); forward allowed, denied, timeout (504), unreachable (503).",
  );
  for (const [route, s] of m.routes()) {
    for (const [key, n] of s.authDecisions ?? []) {
      const [kind, result] = key.split(" ") as [string, string];
      out.sample("unload_auth_decisions_total", { route, kind, result }, n);
    }
  }
  out.family(
    "unload_mirror_copies_total",
    "counter",
    "Requests on a mirrored route by what became of their copy: mirrored (the mirror answered), failed (unreachable, broke off, or past mirror.timeout), dropped (queue full), too_large (body over mirror.max_body), incomplete (the body never ended), stream (gRPC or upgrade, not copied), not_sampled (left out by percent).",
  );
  for (const [route, s] of m.routes()) {
    for (const [result, n] of s.mirror ?? []) {
      out.sample("unload_mirror_copies_total", { route, result }, n);
    }
  }
  compressFamilies(out, m);

  if (lb.tcpMetrics !== undefined) {
    const views = (lb.tcpRoutes ?? []).map((r) => ({
      name: r.name,
      backends: r.scheduler.backends.map((b) => b.id),
    }));
    tcpFamilies(out, lb.tcpMetrics, views);
  }
  backendFamilies(out, lb);
  poolFamilies(out, lb);
  srvFamilies(out, lb, now);

  out.family(
    "unload_resource_exhausted_total",
    "counter",
    "Accepts and backend connects that failed for lack of descriptors, ports or socket memory.",
  );
  for (const code of EXHAUSTION_CODES) {
    out.sample("unload_resource_exhausted_total", { code }, lb.exhaustion.counts.get(code) ?? 0);
  }
  out.family(
    "unload_internal_errors_total",
    "counter",
    "Errors no code handled (unhandled rejections); each is logged with its stack.",
  );
  out.sample("unload_internal_errors_total", {}, lb.metrics.internalErrors);
  out.family("unload_config_reloads_total", "counter", "Configuration reloads, by result.");
  out.sample("unload_config_reloads_total", { result: "ok" }, lb.reloads.ok);
  out.sample("unload_config_reloads_total", { result: "failed" }, lb.reloads.failed);
  out.family(
    "unload_config_last_reload_successful",
    "gauge",
    "1 when the latest reload (if any) was applied, 0 when it was rejected.",
  );
  out.sample("unload_config_last_reload_successful", {}, lb.reloads.last?.ok === false ? 0 : 1);
  return out.toString();
}

function backendFamilies(out: TextFormat, lb: AdminSource): void {
  const unique = new Map<string, Backend>();
  // routes that check one address differently hold records of their own: it is up
  // while every route that uses it sends it traffic
  const down = new Set<string>();
  const routes = [...lb.routes, ...lb.tcpRoutes ?? []];
  for (const r of routes) {
    for (const b of r.scheduler.backends) {
      unique.set(b.id, b);
      if (!b.healthy) down.add(b.id);
    }
  }
  out.family("unload_backend_up", "gauge", "1 while the backend gets traffic, 0 while ejected.");
  for (const b of unique.values()) {
    out.sample("unload_backend_up", { backend: b.id, name: b.name }, down.has(b.id) ? 0 : 1);
  }
  out.family("unload_backend_inflight_requests", "gauge", "Requests being proxied now.");
  for (const b of unique.values()) {
    out.sample("unload_backend_inflight_requests", { backend: b.id }, b.inflight);
  }
  out.family("unload_backend_weight", "gauge", "SRV (or configured) weight, by route.");
  for (const r of routes) {
    for (const b of r.scheduler.backends) {
      out.sample("unload_backend_weight", { route: r.name, backend: b.id }, b.weight);
    }
  }
  out.family("unload_backend_priority", "gauge", "SRV (or configured) priority, by route.");
  for (const r of routes) {
    for (const b of r.scheduler.backends) {
      out.sample("unload_backend_priority", { route: r.name, backend: b.id }, b.priority);
    }
  }
}

/** Pool counters summed by backend id (a backend can have more than one pool, e.g. TLS). */
export interface PoolTotals {
  /** Connections handed out now. */
  active: number;
  /** Idle connections now. */
  idle: number;
  /** Connections opened over time. */
  opened: number;
  /** Requests sent on a reused connection. */
  reused: number;
}

/**
 * The pools of `lb` summed by backend id.
 *
 * @param lb The balancer.
 * @returns Counters by backend id.
 */
export function poolTotals(lb: AdminSource): Map<string, PoolTotals> {
  const out = new Map<string, PoolTotals>();
  for (const p of lb.pools.values()) {
    const id = p.backend.id;
    const t = out.get(id) ?? { active: 0, idle: 0, opened: 0, reused: 0 };
    t.active += p.active;
    t.idle += p.idle;
    t.opened += p.opened;
    t.reused += p.reused;
    out.set(id, t);
  }
  return out;
}

function poolFamilies(out: TextFormat, lb: AdminSource): void {
  const pools = [...poolTotals(lb)];
  out.family("unload_pool_connections", "gauge", "Backend connections by state (active, idle).");
  for (const [id, p] of pools) {
    out.sample("unload_pool_connections", { backend: id, state: "active" }, p.active);
    out.sample("unload_pool_connections", { backend: id, state: "idle" }, p.idle);
  }
  out.family("unload_pool_connections_opened_total", "counter", "Backend connections opened.");
  for (const [id, p] of pools) {
    out.sample("unload_pool_connections_opened_total", { backend: id }, p.opened);
  }
  out.family("unload_pool_reuses_total", "counter", "Requests sent on a reused connection.");
  for (const [id, p] of pools) out.sample("unload_pool_reuses_total", { backend: id }, p.reused);
}

function srvFamilies(out: TextFormat, lb: AdminSource, now: number): void {
  const states = [...lb.srvStates()];
  out.family("unload_srv_lookups_total", "counter", "SRV lookups attempted.");
  for (const [route, s] of states) {
    out.sample("unload_srv_lookups_total", { route, name: s.name }, s.lookups);
  }
  out.family("unload_srv_lookup_failures_total", "counter", "SRV lookups that failed.");
  for (const [route, s] of states) {
    out.sample("unload_srv_lookup_failures_total", { route, name: s.name }, s.failures);
  }
  out.family(
    "unload_srv_stale",
    "gauge",
    "1 when the latest lookup failed and the last good set is in use.",
  );
  for (const [route, s] of states) {
    out.sample("unload_srv_stale", { route, name: s.name }, s.stale ? 1 : 0);
  }
  out.family(
    "unload_srv_last_success_age_seconds",
    "gauge",
    "Seconds since the latest successful lookup (absent before the first).",
  );
  for (const [route, s] of states) {
    if (s.lastSuccess === undefined) continue;
    const age = Math.max(0, now - s.lastSuccess) / 1000;
    out.sample("unload_srv_last_success_age_seconds", { route, name: s.name }, age);
  }
  out.family("unload_srv_backends", "gauge", "Backends in the last good set.");
  for (const [route, s] of states) {
    out.sample("unload_srv_backends", { route, name: s.name }, s.backends.length);
  }
}

// Seconds until each served certificate expires, one series per name it serves.
function certificateFamily(out: TextFormat, certs: readonly CertificateView[], now: number): void {
  out.family(
    "unload_tls_certificate_expiry_seconds",
    "gauge",
    "Seconds until a certificate listen.https serves expires (negative: expired), by file and name.",
  );
  for (const c of certs) {
    const left = (c.notAfter.getTime() - now) / 1000;
    const names = c.names.length > 0 ? c.names : [""];
    for (const name of names) {
      out.sample("unload_tls_certificate_expiry_seconds", { file: c.cert, name }, left);
    }
  }
}

// Sockets Deno keeps for TLS handshakes that ran out of time (docs/tls.md).
function tlsStallFamilies(out: TextFormat, t: TlsStallCounts | undefined): void {
  out.family(
    "unload_tls_handshakes_stalled",
    "gauge",
    "TLS handshakes past timeouts.head (client) or timeouts.connect (backend) and not " +
      "finished: each holds a socket the runtime cannot close until the peer goes away.",
  );
  for (const side of ["client", "backend"] as const) {
    out.sample("unload_tls_handshakes_stalled", { side }, t?.stalled[side] ?? 0);
  }
  out.family(
    "unload_tls_handshake_timeouts_total",
    "counter",
    "TLS handshakes that did not finish within timeouts.head (client) or timeouts.connect (backend).",
  );
  for (const side of ["client", "backend"] as const) {
    out.sample("unload_tls_handshake_timeouts_total", { side }, t?.timedOut[side] ?? 0);
  }
}

// compress: responses encoded, and body bytes in and out (their ratio is the compression ratio).
function compressFamilies(out: TextFormat, m: Metrics): void {
  const families = [
    [
      "unload_compressed_responses_total",
      "Responses a route's compress encoded, by route and coding.",
    ],
    [
      "unload_compress_in_bytes_total",
      "Response body bytes compress took in from the backends, by route and coding.",
    ],
    [
      "unload_compress_out_bytes_total",
      "Encoded body bytes compress sent (out / in is the compression ratio), by route and coding.",
    ],
  ] as const;
  families.forEach(([name, help], i) => {
    out.family(name, "counter", help);
    for (const [route, s] of m.routes()) {
      for (const [encoding, c] of s.compressed ?? []) out.sample(name, { route, encoding }, c[i]!);
    }
  });
}
