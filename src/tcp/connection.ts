/**
 * One accepted connection on a TCP listen address: its route is chosen, a backend
 * is picked by the route's scheduler and connected to (another one tried after a
 * failed connect, up to the route's `retries`; failures count towards passive
 * health), then bytes are carried both ways ({@linkcode TcpPair}) until both sides
 * are done. When it ends, one record goes to the access log and the metrics.
 *
 * A listen address holds one or more routes; how a connection picks one is the
 * listener's {@linkcode ChooseRoute}. With plain TCP there is one route per address
 * ({@linkcode onlyRoute}); SNI passthrough reads the ClientHello to choose, and TLS
 * termination hands on the decrypted connection.
 *
 * @module
 */
import type { BodyBufferPool } from "../http1/body_buffers.ts";
import type {
  ConnectionCounters,
  ConnectionEnd,
  ConnectionRecord,
} from "../observe/connection_record.ts";
import { exhaustionHint } from "../observe/exhaustion.ts";
import type { Watchdog } from "../timer/watchdog.ts";
import type { Backend } from "../upstream/backend.ts";
import { beginRequest, endRequest } from "../upstream/backend_state.ts";
import { connectBackend, ConnectError } from "../upstream/connect.ts";
import type { PassiveHealth } from "../upstream/health/passive.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import { TcpPair } from "./pair.ts";
import type { TcpRoute } from "./route_set.ts";

/** What a listener's {@linkcode ChooseRoute} decided for a connection. */
export interface Chosen {
  /** The route that carries it. */
  route: TcpRoute;
  /**
   * The connection to carry: the accepted one, or one wrapped around it (TLS
   * terminated here).
   */
  conn: Deno.Conn;
  /** Bytes already read from `conn` to choose (a ClientHello): sent to the backend first. */
  preface?: Uint8Array;
}

/**
 * Picks the route of an accepted connection among its listen address's routes;
 * undefined closes the connection (nothing matched).
 */
export type ChooseRoute = (
  conn: Deno.Conn,
  routes: readonly TcpRoute[],
  signal: AbortSignal,
) => Promise<Chosen | undefined>;

/**
 * The choice of a listen address that has one route: that route, for every connection.
 *
 * @example
 * ```ts ignore
 * const chosen = await onlyRoute(conn, [route], signal);
 * ```
 */
export function onlyRoute(
  conn: Deno.Conn,
  routes: readonly TcpRoute[],
): Promise<Chosen | undefined> {
  const route = routes[0];
  return Promise.resolve(route === undefined ? undefined : { route, conn });
}

/** What the connections of one TCP listen address share; the balancer swaps `routes` on reload. */
export interface TcpListenerContext {
  /** The routes on this address (one for plain TCP), as the running config has them. */
  routes: readonly TcpRoute[];
  /** How a connection picks one of `routes`. */
  choose: ChooseRoute;
  /** Counts connect failures and successes (passive health). */
  health: PassiveHealth;
  /** Lends the read buffers. */
  buffers: BodyBufferPool;
  /** Fires idle timeouts. */
  watchdog: Watchdog;
  /** Connections open now, on every TCP listener (a drain stops those left). */
  pairs: Set<TcpPair>;
  /** The live counters of a route and backend. */
  counters(route: string, backend: string): ConnectionCounters;
  /** Told each finished connection. */
  onConnection(record: ConnectionRecord): void;
  /** Takes TLS handshakes to backends (`backend_tls`) given up before they finished. */
  stalls?: HandshakeStalls;
  /** Told a connect that failed for lack of local descriptors or ports. */
  onExhausted?(where: string, e: unknown): void;
}

/**
 * Serves one accepted connection to its end.
 *
 * @returns `conn`, once done with it (never rejects), as `accept` wants.
 */
export async function serveTcp(conn: Deno.Conn, ctx: TcpListenerContext): Promise<Deno.Conn> {
  const time = Date.now();
  const started = performance.now();
  const client = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
  const carried = new TcpPair(conn, { buffers: ctx.buffers, watchdog: ctx.watchdog, idle: 0 });
  ctx.pairs.add(carried);
  try {
    const chosen = await ctx.choose(conn, ctx.routes, carried.signal);
    if (chosen === undefined || carried.signal.aborted) {
      carried.stop("closed");
      if (chosen !== undefined && chosen.conn !== conn) close(chosen.conn);
      return conn;
    }
    const { route } = chosen;
    carried.client = chosen.conn;
    carried.idle = route.config.timeouts.idle;
    const record = (backend: string, end: ConnectionEnd, error?: string): ConnectionRecord => {
      const r: ConnectionRecord = {
        time,
        client,
        route: route.name,
        backend,
        bytesIn: carried.bytesIn,
        bytesOut: carried.bytesOut,
        duration: performance.now() - started,
        end,
      };
      if (error !== undefined) r.error = error;
      return r;
    };
    const connected = await connect(route, carried, client, ctx);
    if ("end" in connected) {
      carried.stop(connected.end, connected.error);
      ctx.counters(route.name, connected.backend).connections++;
      ctx.onConnection(record(connected.backend, carried.end!, carried.error));
      return conn;
    }
    const { backend } = connected;
    const counters = ctx.counters(route.name, backend.id);
    counters.connections++;
    counters.active++;
    try {
      carried.attach(connected.conn, counters);
      if (chosen.preface !== undefined && chosen.preface.length > 0) {
        await writeAll(connected.conn, chosen.preface).catch((e) =>
          carried.stop("backend_reset", (e as Error).message)
        );
        carried.bytesIn += chosen.preface.length;
        counters.bytesIn += chosen.preface.length;
      }
      const end = carried.end ?? await carried.run();
      ctx.onConnection(record(backend.id, end, carried.error));
    } finally {
      counters.active--;
      endRequest(backend);
    }
    return conn;
  } catch (e) {
    carried.stop("client_reset", (e as Error)?.message);
    close(conn);
    return conn;
  } finally {
    ctx.pairs.delete(carried);
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

const NO_ALPN: string[] = [];

type Connected =
  | { backend: Backend; conn: Deno.Conn }
  | { end: ConnectionEnd; backend: string; error?: string };

// Picks and connects, trying other backends after a failed connect (up to the route's
// `retries`). The backend's load is up from the first attempt (`least_conn` counts
// connections); on success it stays up until the caller ends it.
async function connect(
  route: TcpRoute,
  pair: TcpPair,
  client: string,
  ctx: TcpListenerContext,
): Promise<Connected> {
  const { retries, timeouts, scheduler } = route.config;
  const key = scheduler === "hash" ? client : undefined;
  const tried: Backend[] = [];
  let last: { backend: string; error: string } | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const backend = route.scheduler.next(tried, key);
    if (backend === undefined) break;
    tried.push(backend);
    beginRequest(backend);
    const since = Date.now();
    try {
      // plain TCP is timed by the watchdog; TLS (backend_tls) through connectBackend
      const conn = backend.tls === undefined
        ? await pair.connect(backend, timeouts.connect)
        : (await connectBackend(backend, {
          connectTimeout: timeouts.connect,
          signal: pair.signal,
          alpn: NO_ALPN, // backend_tls: the bytes are the client's, no protocol is offered
          stalls: ctx.stalls,
        })).conn;
      ctx.health.success(backend);
      return { backend, conn };
    } catch (e) {
      endRequest(backend);
      if (pair.signal.aborted) return { end: pair.end ?? "drain", backend: backend.id };
      const cause = e instanceof ConnectError ? e.cause : e;
      const error = (e as Error).message;
      last = { backend: backend.id, error };
      if (exhaustionHint(cause) !== undefined) {
        ctx.onExhausted?.(`connect to ${backend.id} (tcp route ${route.name})`, cause);
        continue;
      }
      const timedOut = e instanceof ConnectError && e.timedOut;
      ctx.health.failure(backend, error, timedOut ? since : undefined);
    }
  }
  if (last === undefined) return { end: "no_backend", backend: "", error: "no healthy backend" };
  return { end: "connect_failed", ...last };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
