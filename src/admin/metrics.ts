/**
 * Request metrics collected from the data path's exchange records: counts by
 * route, backend and status class, and a latency histogram per route. Fed once per
 * finished request, so {@linkcode Metrics.observe} only does map lookups and
 * increments once a route/backend pair has been seen.
 *
 * @module
 */
import type { ExchangeRecord } from "../observe/exchange_record.ts";

/** Upper bounds of the latency histogram buckets, in seconds (`+Inf` is implied). */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

const BUCKETS_MS = new Float64Array(LATENCY_BUCKETS.map((s) => s * 1000));

/**
 * Status class labels, indexed by `Math.floor(status / 100)`; index 0 (`none`) counts
 * exchanges that ended before any response status was set (the client went away).
 */
export const STATUS_CLASSES: readonly string[] = Object.freeze([
  "none",
  "1xx",
  "2xx",
  "3xx",
  "4xx",
  "5xx",
]);

/** Requests of one route: latency histogram, bytes and per-backend status counts. */
export class RouteSeries {
  /** Non-cumulative bucket counts; the last one is `+Inf`. */
  readonly buckets: Float64Array = new Float64Array(LATENCY_BUCKETS.length + 1);
  /** Requests observed. */
  count = 0;
  /** Sum of durations, in seconds. */
  sum = 0;
  /** Request body bytes received. */
  bytesIn = 0;
  /** Response bytes sent. */
  bytesOut = 0;
  /** Counts by status class ({@linkcode STATUS_CLASSES} order), by backend id ("" = none). */
  readonly backends: Map<string, Float64Array> = new Map();
  /**
   * Requests a traffic policy answered instead of a backend, by `policy status`
   * (`allow 403`, `redirect 301`); made on the first such answer.
   */
  policies: Map<string, number> | undefined;
  /**
   * Rate limit decisions the route's Redis store could not make, by what the
   * request got (`allow` or `deny`); made on the first one.
   */
  storeErrors: Map<string, number> | undefined;
  /**
   * Decisions of the route's auth step, by `kind result` (`basic cached`,
   * `forward denied`); made on the first one.
   */
  authDecisions: Map<string, number> | undefined;
  /**
   * What became of requests on a mirrored route, by result (`mirrored`,
   * `dropped`, `failed`, `too_large`, ...); made on the first one.
   */
  mirror: Map<string, number> | undefined;
  /**
   * Responses `compress` encoded, by coding: `[responses, body bytes in, encoded
   * bytes out]`; made on the first one.
   */
  compressed: Map<string, Float64Array> | undefined;

  /**
   * The counts of `backend`, created (all zero) on first use.
   *
   * @param backend A backend id, or "" for requests answered without a backend.
   * @returns Its counts by status class.
   */
  codes(backend: string): Float64Array {
    let codes = this.backends.get(backend);
    if (codes === undefined) {
      codes = new Float64Array(STATUS_CLASSES.length);
      this.backends.set(backend, codes);
    }
    return codes;
  }
}

/** A {@linkcode Metrics} as plain data, as a worker sends it to the main thread. */
export interface MetricsSnapshot {
  /** Requests observed. */
  requests: number;
  /** Requests observed, by the protocol they came in on. */
  protocols: Array<[string, number]>;
  /** Errors no code handled (unhandled rejections), each logged with its stack. */
  internalErrors: number;
  /** Each route's series, by route name. */
  routes: Array<{
    name: string;
    buckets: number[];
    count: number;
    sum: number;
    bytesIn: number;
    bytesOut: number;
    /** Counts by status class, by backend id. */
    backends: Array<[string, number[]]>;
    /** Policy answers by `policy status`. */
    policies: Array<[string, number]>;
    /** Rate limit store errors by outcome. */
    storeErrors?: Array<[string, number]>;
    /** Auth decisions by `kind result`. */
    authDecisions?: Array<[string, number]>;
    /** Mirror copies by result. */
    mirror?: Array<[string, number]>;
    /** Compressed responses by coding: `[responses, bytes in, bytes out]`. */
    compressed?: Array<[string, number[]]>;
  }>;
}

/**
 * Counters and histograms fed by every finished request.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { Metrics } from "./metrics.ts";
 * const m = new Metrics();
 * m.observe({
 *   time: Date.now(), client: "127.0.0.1", proto: "h2", method: "GET", host: "app.test", path: "/",
 *   status: 200, bytesIn: 0, bytesOut: 120, duration: 2.5, route: "app", backend: "127.0.0.1:9001",
 * });
 * assert(m.requests === 1 && m.route("app")!.codes("127.0.0.1:9001")[2] === 1);
 * assert(m.protocols.get("h2") === 1);
 * ```
 */
export class Metrics {
  /** Requests observed. */
  requests = 0;
  readonly #protocols = new Map<string, number>(); // other than HTTP/1.1
  #http11 = 0; // the usual protocol, counted without a map look-up
  /**
   * Errors no code handled (unhandled promise rejections): the process-wide
   * handler keeps the balancer serving, logs each with its stack and counts it here.
   */
  internalErrors = 0;
  readonly #routes = new Map<string, RouteSeries>();

  /** Records one finished request. */
  observe(record: ExchangeRecord): void {
    this.requests++;
    if (record.proto === "http/1.1") this.#http11++;
    else this.#protocols.set(record.proto, (this.#protocols.get(record.proto) ?? 0) + 1);
    const series = this.series(record.route);
    const cls = (record.status / 100) | 0;
    series.codes(record.backend)[cls >= 1 && cls <= 5 ? cls : 0]!++;
    const ms = record.duration;
    let i = 0;
    while (i < BUCKETS_MS.length && ms > BUCKETS_MS[i]!) i++;
    series.buckets[i]!++;
    series.count++;
    series.sum += ms / 1000;
    series.bytesIn += record.bytesIn;
    series.bytesOut += record.bytesOut;
    if (record.policy !== undefined) {
      const key = `${record.policy} ${record.status}`;
      const policies = series.policies ??= new Map();
      policies.set(key, (policies.get(key) ?? 0) + 1);
    }
    if (record.encoding !== undefined) {
      const c = compressedOf(series, record.encoding);
      c[0]!++;
      c[1]! += record.encodedIn ?? 0;
      c[2]! += record.encodedOut ?? 0;
    }
  }

  /** Requests observed, by the protocol they came in on (`http/1.1`, `h2`, ...): a copy. */
  get protocols(): Map<string, number> {
    const all = new Map(this.#protocols);
    if (this.#http11 > 0) all.set("http/1.1", this.#http11);
    return all;
  }

  /**
   * The series of `route`, created (all zero) on first use; exporters call it for every
   * configured route and backend so that series exist before their first request.
   *
   * @param route A route name, or "" for requests no route matched.
   * @returns The route's series.
   */
  series(route: string): RouteSeries {
    let series = this.#routes.get(route);
    if (series === undefined) {
      series = new RouteSeries();
      this.#routes.set(route, series);
    }
    return series;
  }

  /** The series of `route`, if any request or exporter touched it. */
  route(route: string): RouteSeries | undefined {
    return this.#routes.get(route);
  }

  /** Every route series, by route name, in creation order. */
  routes(): IterableIterator<[string, RouteSeries]> {
    return this.#routes.entries();
  }

  /**
   * Copies every counter out as plain data.
   *
   * @returns The snapshot; {@linkcode Metrics.add} sums it into another Metrics.
   */
  snapshot(): MetricsSnapshot {
    return {
      requests: this.requests,
      protocols: [...this.protocols],
      internalErrors: this.internalErrors,
      routes: [...this.#routes].map(([name, s]) => ({
        name,
        buckets: Array.from(s.buckets),
        count: s.count,
        sum: s.sum,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
        backends: [...s.backends].map(([id, codes]) => [id, Array.from(codes)]),
        policies: [...s.policies ?? []],
        storeErrors: [...s.storeErrors ?? []],
        authDecisions: [...s.authDecisions ?? []],
        mirror: [...s.mirror ?? []],
        compressed: [...s.compressed ?? []].map(([coding, c]) => [coding, Array.from(c)]),
      })),
    };
  }

  /**
   * Adds the counters of `snapshot` to these (another worker's requests).
   *
   * @param snapshot What {@linkcode Metrics.snapshot} returned, here or in a worker.
   */
  add(snapshot: MetricsSnapshot): void {
    this.requests += snapshot.requests;
    for (const [proto, n] of snapshot.protocols) {
      if (proto === "http/1.1") this.#http11 += n;
      else this.#protocols.set(proto, (this.#protocols.get(proto) ?? 0) + n);
    }
    this.internalErrors += snapshot.internalErrors;
    for (const r of snapshot.routes) {
      const series = this.series(r.name);
      r.buckets.forEach((n, i) => series.buckets[i]! += n);
      series.count += r.count;
      series.sum += r.sum;
      series.bytesIn += r.bytesIn;
      series.bytesOut += r.bytesOut;
      for (const [id, codes] of r.backends) {
        const mine = series.codes(id);
        codes.forEach((n, i) => mine[i]! += n);
      }
      for (const [key, n] of r.policies ?? []) {
        const policies = series.policies ??= new Map();
        policies.set(key, (policies.get(key) ?? 0) + n);
      }
      for (const [outcome, n] of r.storeErrors ?? []) {
        const errors = series.storeErrors ??= new Map();
        errors.set(outcome, (errors.get(outcome) ?? 0) + n);
      }
      for (const [key, n] of r.authDecisions ?? []) {
        const decisions = series.authDecisions ??= new Map();
        decisions.set(key, (decisions.get(key) ?? 0) + n);
      }
      for (const [result, n] of r.mirror ?? []) {
        const mirror = series.mirror ??= new Map();
        mirror.set(result, (mirror.get(result) ?? 0) + n);
      }
      for (const [coding, counts] of r.compressed ?? []) {
        const mine = compressedOf(series, coding);
        counts.forEach((n, i) => mine[i]! += n);
      }
    }
  }

  /**
   * Counts a rate limit decision `route`'s Redis store could not make.
   *
   * @param route The route's name.
   * @param outcome What the request got (`on_store_error`).
   */
  storeError(route: string, outcome: string): void {
    const errors = this.series(route).storeErrors ??= new Map();
    errors.set(outcome, (errors.get(outcome) ?? 0) + 1);
  }

  /**
   * Counts one decision of `route`'s auth step.
   *
   * @param route The route's name.
   * @param kind `basic` or `forward`.
   * @param result What happened (`cached`, `verified`, `refused`, `allowed`, `timeout`, ...).
   */
  authDecision(route: string, kind: string, result: string): void {
    const decisions = this.series(route).authDecisions ??= new Map();
    const key = `${kind} ${result}`;
    decisions.set(key, (decisions.get(key) ?? 0) + 1);
  }

  /**
   * Counts what became of one request on `route`'s mirror.
   *
   * @param route The route's name.
   * @param result `mirrored`, `failed`, `dropped`, `too_large`, `incomplete`, `stream` or `not_sampled`.
   */
  mirror(route: string, result: string): void {
    const mirror = this.series(route).mirror ??= new Map();
    mirror.set(result, (mirror.get(result) ?? 0) + 1);
  }
}

/**
 * Requests of `backend` in `series` (all status classes).
 *
 * @param series A route's series.
 * @param backend A backend id.
 * @returns The sum of its counts, 0 when it has none.
 */
export function backendRequests(series: RouteSeries | undefined, backend: string): number {
  const codes = series?.backends.get(backend);
  if (codes === undefined) return 0;
  let n = 0;
  for (const c of codes) n += c;
  return n;
}

/**
 * Counts by status class as an object with the non-zero classes, e.g. `{ "2xx": 40 }`.
 *
 * @param codes Counts in {@linkcode STATUS_CLASSES} order (one backend, or summed).
 * @returns The non-zero classes.
 */
export function statusObject(codes: ArrayLike<number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (codes === undefined) return out;
  for (let i = 0; i < STATUS_CLASSES.length; i++) {
    if (codes[i]) out[STATUS_CLASSES[i]!] = codes[i]!;
  }
  return out;
}

// The compress counters of `coding` in `series`, created (all zero) on first use.
function compressedOf(series: RouteSeries, coding: string): Float64Array {
  const all = series.compressed ??= new Map();
  let c = all.get(coding);
  if (c === undefined) {
    c = new Float64Array(3);
    all.set(coding, c);
  }
  return c;
}
