/**
 * `workers: N`: the admin listener runs in the main thread only, so on each
 * scrape it asks the other workers for their counters and reports the sum.
 * Request metrics, pool counters, resource exhaustion and requests in flight
 * are summed; a backend counts as up only while every worker sends it
 * traffic (passive health is each worker's own). SRV state and reloads are
 * the main thread's (every worker runs the same lookups).
 *
 * @module
 */
import { Metrics, type MetricsSnapshot } from "./metrics.ts";
import {
  type AdminSource,
  type PoolTotals,
  poolTotals,
  type TlsStallCounts,
} from "./prometheus.ts";

/** One worker's counters, as plain data for `postMessage`. */
export interface WorkerStats {
  /** Its request metrics. */
  metrics: MetricsSnapshot;
  /** Its pools, summed by backend id. */
  pools: Array<[string, PoolTotals]>;
  /** Its resource exhaustion counts, by error code. */
  exhausted: Array<[string, number]>;
  /** HTTP/2 client connections and streams open now, and those closed for abuse by reason. */
  h2: { connections: number; streams: number; closed: Record<string, number> };
  /** Connections closed for their PROXY header, by reason. */
  proxyRefused?: Record<string, number>;
  /** Backend connections opened and reused by client connections' private pools. */
  privateCounts?: { opened: number; reused: number };
  /** Body buffers lent now, and the bytes of the large ones. */
  bodyBuffers: { inUse: number; largeBytes: number };
  /** TLS handshakes past their deadline (stalled now, timed out so far), by side. */
  tls?: TlsStallCounts;
  /** Requests in flight and health of each route's backends: `[route, id, inflight, healthy]`. */
  backends: Array<[string, string, number, boolean]>;
}

/**
 * The counters of a worker's balancer, to send to the main thread.
 *
 * @param lb The worker's balancer.
 * @returns Its counters.
 *
 * @example
 * ```ts ignore
 * self.postMessage({ type: "stats", stats: workerStats(lb) });
 * ```
 */
export function workerStats(lb: AdminSource): WorkerStats {
  return {
    metrics: lb.metrics.snapshot(),
    pools: [...poolTotals(lb)],
    exhausted: [...lb.exhaustion.counts],
    h2: { connections: lb.h2.connections, streams: lb.h2.streams, closed: { ...lb.h2.closed } },
    bodyBuffers: { inUse: lb.bodyBuffers.inUse, largeBytes: lb.bodyBuffers.largeBytes },
    proxyRefused: { ...lb.proxyRefused },
    privateCounts: { opened: lb.privateCounts?.opened ?? 0, reused: lb.privateCounts?.reused ?? 0 },
    ...(lb.tlsStalls ? { tls: copyStalls(lb.tlsStalls) } : {}),
    backends: lb.routes.flatMap((r) =>
      r.scheduler.backends.map((b): WorkerStats["backends"][number] => [
        r.name,
        b.id,
        b.inflight,
        b.healthy,
      ])
    ),
  };
}

/**
 * The main thread's balancer with the other workers' counters added.
 *
 * @param lb The main thread's balancer.
 * @param others The other workers' counters.
 * @returns A source for the exporters; `lb` itself is not changed.
 *
 * @example
 * ```ts ignore
 * const text = renderMetrics(combined(lb, await workers.stats()));
 * ```
 */
export function combined(lb: AdminSource, others: readonly WorkerStats[]): AdminSource {
  if (others.length === 0) return lb;
  const metrics = new Metrics();
  metrics.add(lb.metrics.snapshot());
  const pools = new Map<string, PoolTotals & { backend: { id: string } }>(lb.pools);
  const counts = new Map(lb.exhaustion.counts);
  const states = new Map<string, { inflight: number; healthy: boolean }>();
  const h2 = {
    connections: lb.h2.connections,
    streams: lb.h2.streams,
    closed: { ...lb.h2.closed },
  };
  const bodyBuffers = { inUse: lb.bodyBuffers.inUse, largeBytes: lb.bodyBuffers.largeBytes };
  const tls = copyStalls(lb.tlsStalls);
  const proxyRefused: Record<string, number> = { ...lb.proxyRefused };
  const privateCounts = {
    opened: lb.privateCounts?.opened ?? 0,
    reused: lb.privateCounts?.reused ?? 0,
  };
  others.forEach((o, w) => {
    privateCounts.opened += o.privateCounts?.opened ?? 0;
    privateCounts.reused += o.privateCounts?.reused ?? 0;
    for (const side of ["client", "backend"] as const) {
      tls.stalled[side] += o.tls?.stalled[side] ?? 0;
      tls.timedOut[side] += o.tls?.timedOut[side] ?? 0;
    }
    metrics.add(o.metrics);
    bodyBuffers.inUse += o.bodyBuffers.inUse;
    bodyBuffers.largeBytes += o.bodyBuffers.largeBytes;
    h2.connections += o.h2.connections;
    h2.streams += o.h2.streams;
    for (const [reason, n] of Object.entries(o.h2.closed)) {
      h2.closed[reason] = (h2.closed[reason] ?? 0) + n;
    }
    for (const [reason, n] of Object.entries(o.proxyRefused ?? {})) {
      proxyRefused[reason] = (proxyRefused[reason] ?? 0) + n;
    }
    for (const [id, t] of o.pools) pools.set(`worker ${w + 1} ${id}`, { ...t, backend: { id } });
    for (const [code, n] of o.exhausted) counts.set(code, (counts.get(code) ?? 0) + n);
    for (const [route, id, inflight, healthy] of o.backends) {
      const s = states.get(`${route} ${id}`) ?? { inflight: 0, healthy: true };
      states.set(`${route} ${id}`, {
        inflight: s.inflight + inflight,
        healthy: s.healthy && healthy,
      });
    }
  });
  const routes = lb.routes.map((r) => ({
    name: r.name,
    config: r.config,
    ...(r.checks ? { checks: r.checks } : {}),
    scheduler: {
      mode: r.scheduler.mode,
      backends: r.scheduler.backends.map((b) => {
        const s = states.get(`${r.name} ${b.id}`);
        return s ? { ...b, inflight: b.inflight + s.inflight, healthy: b.healthy && s.healthy } : b;
      }),
    },
  }));
  return {
    config: lb.config,
    routes,
    srvStates: () => lb.srvStates(),
    reloads: lb.reloads,
    started: lb.started,
    metrics,
    pools,
    h2,
    bodyBuffers,
    proxyRefused,
    privateCounts,
    tlsStalls: tls,
    ...(lb.certificates ? { certificates: lb.certificates } : {}), // every worker serves the same
    exhaustion: { counts },
    lastProbe: (b) => lb.lastProbe?.(b), // the main thread probes for every worker
    // tcp routes are served by the main thread only
    ...(lb.tcpRoutes ? { tcpRoutes: lb.tcpRoutes } : {}),
    ...(lb.tcpMetrics ? { tcpMetrics: lb.tcpMetrics } : {}),
    ...(lb.tcpAddrs ? { tcpAddrs: () => lb.tcpAddrs!() } : {}),
  };
}

// A plain, mutable copy (zeros when there is nothing to copy).
function copyStalls(t: TlsStallCounts | undefined) {
  return {
    stalled: { client: t?.stalled.client ?? 0, backend: t?.stalled.backend ?? 0 },
    timedOut: { client: t?.timedOut.client ?? 0, backend: t?.timedOut.backend ?? 0 },
  };
}
