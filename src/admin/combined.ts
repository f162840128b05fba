/**
 * `workers: N`: the admin listener runs in the main thread only, so on each
 * scrape it asks the other workers for their counters and reports the sum.
 * Request metrics, pool counters and resource exhaustion are summed; backend
 * health, in-flight requests, SRV state and reloads are the main thread's
 * (every worker runs the same checks and lookups).
 *
 * @module
 */
import { Metrics, type MetricsSnapshot } from "./metrics.ts";
import { type AdminSource, type PoolTotals, poolTotals } from "./prometheus.ts";

/** One worker's counters, as plain data for `postMessage`. */
export interface WorkerStats {
  /** Its request metrics. */
  metrics: MetricsSnapshot;
  /** Its pools, summed by backend id. */
  pools: Array<[string, PoolTotals]>;
  /** Its resource exhaustion counts, by error code. */
  exhausted: Array<[string, number]>;
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
  others.forEach((o, w) => {
    metrics.add(o.metrics);
    for (const [id, t] of o.pools) pools.set(`worker ${w + 1} ${id}`, { ...t, backend: { id } });
    for (const [code, n] of o.exhausted) counts.set(code, (counts.get(code) ?? 0) + n);
  });
  return {
    config: lb.config,
    routes: lb.routes,
    srvStates: () => lb.srvStates(),
    reloads: lb.reloads,
    started: lb.started,
    metrics,
    pools,
    exhaustion: { counts },
  };
}
