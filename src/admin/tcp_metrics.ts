/**
 * Metrics of the `tcp:` routes: connections (over time and open now) and bytes
 * each way by route and backend, moved live by the data path, and finished
 * connections by how they ended. Rendered into `/metrics` as the `unload_tcp_*`
 * families, and summed into `/status`.
 *
 * @module
 */
import {
  CONNECTION_ENDS,
  type ConnectionCounters,
  type ConnectionRecord,
} from "../observe/connection_record.ts";
import type { MetricType, TextFormat } from "./_text_format.ts";
import { TCP_REFUSALS, type TcpRefusal } from "../tcp/refusal.ts";

/**
 * Counters of the TCP routes.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { TcpMetrics } from "./tcp_metrics.ts";
 * const m = new TcpMetrics();
 * const c = m.counters("pg", "127.0.0.1:5432");
 * c.connections++;
 * c.bytesIn += 10;
 * m.observe({ time: 0, client: "127.0.0.1", route: "pg", backend: "127.0.0.1:5432",
 *   bytesIn: 10, bytesOut: 0, duration: 1, end: "closed" });
 * assertEquals(m.route("pg")?.ends.get("closed"), 1);
 * assertEquals(m.counters("pg", "127.0.0.1:5432").bytesIn, 10);
 * ```
 */
export class TcpMetrics {
  readonly #routes = new Map<
    string,
    { backends: Map<string, ConnectionCounters>; ends: Map<string, number> }
  >();

  /**
   * The counters of `route` and `backend`, created (all zero) on first use.
   *
   * @param backend A backend id, or "" for connections that reached none.
   */
  counters(route: string, backend: string): ConnectionCounters {
    const r = this.#route(route);
    let c = r.backends.get(backend);
    if (c === undefined) {
      c = { connections: 0, active: 0, bytesIn: 0, bytesOut: 0 };
      r.backends.set(backend, c);
    }
    return c;
  }

  /**
   * Connections a listen address closed before they reached a route (an address of
   * `sni` routes, or a `tls` route's), by the address (as configured) and why.
   */
  readonly refused: Map<string, Map<TcpRefusal, number>> = new Map();

  /** Counts a connection a listen address closed before it reached a route. */
  refuse(listen: string, reason: TcpRefusal): void {
    let r = this.refused.get(listen);
    if (r === undefined) this.refused.set(listen, r = new Map());
    r.set(reason, (r.get(reason) ?? 0) + 1);
  }

  /** Counts a finished connection by how it ended. */
  observe(record: ConnectionRecord): void {
    const ends = this.#route(record.route).ends;
    ends.set(record.end, (ends.get(record.end) ?? 0) + 1);
  }

  /** The series of `route`, if any connection or exporter touched it. */
  route(
    route: string,
  ):
    | { backends: ReadonlyMap<string, ConnectionCounters>; ends: ReadonlyMap<string, number> }
    | undefined {
    return this.#routes.get(route);
  }

  /** Every route's series, by route name, in creation order. */
  routes(): IterableIterator<
    [string, { backends: Map<string, ConnectionCounters>; ends: Map<string, number> }]
  > {
    return this.#routes.entries();
  }

  #route(route: string) {
    let r = this.#routes.get(route);
    if (r === undefined) {
      r = { backends: new Map(), ends: new Map() };
      this.#routes.set(route, r);
    }
    return r;
  }
}

/** The families counted by route and backend: name, type, help and the counter each shows. */
const BACKEND_FAMILIES: ReadonlyArray<
  readonly [string, MetricType, string, (c: ConnectionCounters) => number]
> = [
  [
    "unload_tcp_connections_total",
    "counter",
    'Connections of tcp routes, by route and backend ("" = none could be connected to).',
    (c) => c.connections,
  ],
  [
    "unload_tcp_connections_active",
    "gauge",
    "Connections of tcp routes open now.",
    (c) => c.active,
  ],
  [
    "unload_tcp_received_bytes_total",
    "counter",
    "Bytes tcp routes carried from clients to backends.",
    (c) => c.bytesIn,
  ],
  [
    "unload_tcp_sent_bytes_total",
    "counter",
    "Bytes tcp routes carried from backends to clients.",
    (c) => c.bytesOut,
  ],
];

/**
 * Writes the `unload_tcp_*` families of `m` to `out`.
 *
 * @param routes The configured TCP routes with their backend ids: each gets zero
 * series before its first connection.
 */
export function tcpFamilies(
  out: TextFormat,
  m: TcpMetrics,
  routes: ReadonlyArray<{ name: string; backends: readonly string[] }>,
): void {
  for (const r of routes) for (const b of r.backends) m.counters(r.name, b);
  const all = [...m.routes()];
  for (const [name, type, help, value] of BACKEND_FAMILIES) {
    out.family(name, type, help);
    for (const [route, s] of all) {
      for (const [backend, c] of s.backends) out.sample(name, { route, backend }, value(c));
    }
  }
  out.family(
    "unload_tcp_connections_ended_total",
    "counter",
    "Finished connections of tcp routes, by how they ended: closed, client_reset, " +
      "backend_reset, idle_timeout, connect_failed, no_backend, drain.",
  );
  for (const [route, s] of all) {
    for (const end of CONNECTION_ENDS) {
      out.sample("unload_tcp_connections_ended_total", { route, end }, s.ends.get(end) ?? 0);
    }
  }
  out.family(
    "unload_tcp_refused_total",
    "counter",
    "Connections to a tcp listen address of sni or tls routes, closed before reaching a " +
      "route, by why: not_tls, malformed, too_large (no whole ClientHello in 16 KiB), closed, " +
      "timeout (timeouts.head), no_route (an unknown server name and no default route), " +
      "tls_handshake (a failed handshake on a tls route).",
  );
  for (const [listen, reasons] of m.refused) {
    for (const reason of TCP_REFUSALS) {
      out.sample("unload_tcp_refused_total", { listen, reason }, reasons.get(reason) ?? 0);
    }
  }
}
