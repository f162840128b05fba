/**
 * What one finished TCP connection (a `tcp:` route's) leaves behind for the access
 * log and metrics, and the live counters it moves while it runs. They live here,
 * with their readers, so that observing needs nothing from the layers it observes.
 *
 * @module
 */

/**
 * How a TCP connection ended: `closed` (both sides finished, each with a FIN),
 * `client_reset` / `backend_reset` (a side reset or failed a write), `idle_timeout`
 * (no byte moved either way for the route's `timeouts.idle`), `connect_failed` (no
 * backend could be connected to, retries included), `no_backend` (none healthy),
 * `drain` (still open when a shutdown's `timeouts.drain` ran out).
 */
export type ConnectionEnd =
  | "closed"
  | "client_reset"
  | "backend_reset"
  | "idle_timeout"
  | "connect_failed"
  | "no_backend"
  | "drain";

/** Every {@linkcode ConnectionEnd}, in the order metrics list them. */
export const CONNECTION_ENDS: readonly ConnectionEnd[] = Object.freeze([
  "closed",
  "client_reset",
  "backend_reset",
  "idle_timeout",
  "connect_failed",
  "no_backend",
  "drain",
]);

/** One finished TCP connection. */
export interface ConnectionRecord {
  /** Epoch ms it was accepted. */
  time: number;
  /** The client's IP address. */
  client: string;
  /** The `tcp:` route that carried it. */
  route: string;
  /** The backend id it was carried to (the last one tried when none connected), or "". */
  backend: string;
  /** Bytes the client sent (carried to the backend). */
  bytesIn: number;
  /** Bytes the backend sent (carried to the client). */
  bytesOut: number;
  /** Milliseconds from accept to close. */
  duration: number;
  /** How it ended. */
  end: ConnectionEnd;
  /** Why it ended, when something failed (e.g. the last connect error). */
  error?: string;
}

/**
 * The live counters of one route and backend pair, moved by the data path while
 * connections run (bytes as they are carried, not when a connection ends).
 */
export interface ConnectionCounters {
  /** Connections carried to this backend, over time. */
  connections: number;
  /** Connections open now. */
  active: number;
  /** Bytes carried from clients. */
  bytesIn: number;
  /** Bytes carried to clients. */
  bytesOut: number;
}
