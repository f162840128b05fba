/**
 * The configuration's sections with fixed keys, and their defaults (the ones
 * README documents).
 *
 * @module
 */

/** Timeouts in milliseconds. */
export interface Timeouts {
  /** Whole request head must arrive within this (slowloris). @default {10000} */
  head: number;
  /** Idle keep-alive client connections are closed after this. @default {60000} */
  idle: number;
  /** Connecting to a backend. @default {5000} */
  connect: number;
  /**
   * From request sent to response head received (→ 504; gRPC: UNAVAILABLE); 0 = none.
   * @default {60000}
   */
  response: number;
  /**
   * No byte moving in either direction of a body for this long aborts it; PINGs
   * from an HTTP/2 client count as movement for its streams; 0 = none.
   * @default {60000}
   */
  body_idle: number;
  /**
   * A request/response exchange ends after this long whatever it does (→ 504 before
   * the response head; gRPC: DEADLINE_EXCEEDED); 0 = none (Envoy's `max_stream_duration`).
   * @default {0}
   */
  max_stream_duration: number;
  /**
   * Cap on a gRPC request's `grpc-timeout`, which bounds its exchange (→ gRPC
   * DEADLINE_EXCEEDED); 0 = the header is respected without a cap (Envoy's
   * `max_grpc_timeout`).
   * @default {0}
   */
  max_grpc_timeout: number;
  /** Idle pooled backend connections are closed after this. @default {15000} */
  pool_idle: number;
  /** On shutdown, in-flight requests get this long to finish. @default {10000} */
  drain: number;
}

/** The timeouts a route may set for itself (`routes[].timeouts`), in milliseconds. */
export type RouteTimeouts = Pick<
  Timeouts,
  "response" | "body_idle" | "max_stream_duration" | "max_grpc_timeout"
>;

/** The keys of {@linkcode RouteTimeouts}. */
export const ROUTE_TIMEOUT_KEYS = [
  "response",
  "body_idle",
  "max_stream_duration",
  "max_grpc_timeout",
] as const satisfies ReadonlyArray<keyof RouteTimeouts>;

/** Size and count limits. */
export interface Limits {
  /** Largest request/response head. @default {16384} */
  max_head: number;
  /** Longest request line. @default {8192} */
  max_request_line: number;
  /** Largest request body; 0 = unlimited (bodies are streamed). @default {0} */
  max_body: number;
  /**
   * Idle pooled connections kept per backend (beyond it a released connection is
   * closed); idle ones also close after `timeouts.pool_idle`. @default {1024}
   */
  pool_idle: number;
  /** Connections per backend. @default {1024} */
  pool_max: number;
  /** HTTP/2 streams a client may have open at once on one connection. @default {100} */
  max_concurrent_streams: number;
}

/** Passive and active health checks. */
export interface Health {
  /** Consecutive failures (passive or active) that take a backend out. @default {3} */
  failures: number;
  /** Consecutive passed active probes that bring a backend back. @default {2} */
  rise: number;
  /** How long a passively ejected backend stays out (ms). @default {10000} */
  backoff: number;
  /**
   * Path the active checks probe (`GET path` in the route's backend protocol);
   * active checks are off when neither this nor `grpc` is set.
   */
  path?: string;
  /**
   * Probe with the gRPC health checking protocol (`grpc.health.v1.Health/Check`,
   * HTTP/2 routes only) instead of `GET path`. @default {false}
   */
  grpc?: boolean;
  /** The service the gRPC check asks about. @default {"" (the server as a whole)} */
  grpc_service?: string;
  /**
   * Probe by opening a TCP connection and closing it (no request): the check of
   * `tcp:` routes, usable by HTTP routes too. @default {false}
   */
  tcp?: boolean;
  /** `false` turns active checks off even with `path`, `grpc` or `tcp` set. @default {true} */
  active?: boolean;
  /** Time between two rounds of active probes (ms). @default {5000} */
  interval: number;
  /** How long one probe may take (ms). @default {2000} */
  timeout: number;
}

/** The defaults documented in README. */
export const DEFAULTS = {
  timeouts: {
    head: 10_000,
    idle: 60_000,
    connect: 5_000,
    response: 60_000,
    body_idle: 60_000,
    max_stream_duration: 0,
    max_grpc_timeout: 0,
    pool_idle: 15_000,
    drain: 10_000,
  } satisfies Timeouts,
  limits: {
    max_head: 16_384,
    max_request_line: 8_192,
    max_body: 0,
    pool_idle: 1024, // as many as were needed at once: a smaller cap reconnects under bursts
    pool_max: 1024,
    max_concurrent_streams: 100,
  } satisfies Limits,
  dns: { refresh: 10_000, family: "auto" },
  health: {
    failures: 3,
    rise: 2,
    backoff: 10_000,
    interval: 5_000,
    timeout: 2_000,
  } satisfies Health,
  retry: { attempts: 1 },
  log: { access: "off" },
  reload: { watch: true, interval: 1_000 },
} as const;
