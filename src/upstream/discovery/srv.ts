/**
 * Backend discovery through DNS SRV records (RFC 2782): a one-shot {@linkcode resolveSrv}
 * and a {@linkcode SrvWatcher} that re-looks up on a ticker and keeps the last good set.
 *
 * @module
 */
import { type Backend, createBackend } from "../backend.ts";
import { isIpLiteral } from "../../config/address.ts";
import { sleep } from "../../_async.ts";

/** A DNS server to ask instead of the system resolver, e.g. `{ ipAddr: "127.0.0.1", port: 5353 }`. */
export interface NameServer {
  /** IP address of the server. */
  ipAddr: string;
  /** UDP/TCP port of the server. */
  port: number;
}

/** Options for {@linkcode resolveSrv}. */
export interface ResolveSrvOptions {
  /** Server to query for the SRV records and the targets' addresses. @default {system resolver} */
  nameServer?: NameServer;
  /** Aborts the lookup; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Gives up on the whole lookup (SRV plus addresses) after this many ms. @default {5000} */
  timeout?: number;
}

const DEFAULT_TIMEOUT = 5_000;

/**
 * Looks up the SRV records of `name`, then the A and AAAA records of every target (an IP
 * literal target is used as is), through the same name server. Returns one backend per
 * (address, port) with the record's priority and weight and `name` set to the target
 * (without trailing dot), sorted by priority, target, address, port. When two records lead
 * to the same address and port, the first in that order wins. Targets that have no address
 * records are left out; a target `.` ("service not available") is ignored.
 *
 * @param name The SRV name, e.g. `_http._tcp.app.test`.
 * @param options Name server, abort signal and timeout.
 * @returns The backends, never empty.
 * @throws {Error} `SRV lookup <name> failed: <reason>` when the lookup fails, times out,
 * returns no records, or no target has an address.
 *
 * @example
 * ```ts ignore
 * import { resolveSrv } from "./srv.ts";
 * const backends = await resolveSrv("_http._tcp.app.test", {
 *   nameServer: { ipAddr: "127.0.0.1", port: 5353 },
 * });
 * ```
 */
export async function resolveSrv(
  name: string,
  options: ResolveSrvOptions = {},
): Promise<Backend[]> {
  const { signal } = options;
  signal?.throwIfAborted();
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  const deadline = new AbortController();
  const timer = Number.isFinite(timeout) && timeout > 0
    ? setTimeout(() => deadline.abort(), timeout)
    : undefined;
  const dns: Deno.ResolveDnsOptions = {
    signal: signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal,
  };
  if (options.nameServer) dns.nameServer = options.nameServer;
  try {
    return await lookup(name, dns);
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    const reason = deadline.signal.aborted ? `timed out after ${timeout}ms` : messageOf(error);
    throw new Error(`SRV lookup ${name} failed: ${reason}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

async function lookup(name: string, dns: Deno.ResolveDnsOptions): Promise<Backend[]> {
  let records: Deno.SrvRecord[];
  try {
    records = await Deno.resolveDns(name, "SRV", dns);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error("returned no records");
    throw error;
  }
  if (records.length === 0) throw new Error("returned no records");
  const usable = records.filter((r) => trimDot(r.target) !== "");
  if (usable.length === 0) throw new Error(`service is not available (target ".")`);
  const targets = [...new Set(usable.map((r) => trimDot(r.target)))].sort(compare);
  const addresses = new Map(
    await Promise.all(targets.map(async (t) => [t, await resolveAddresses(t, dns)] as const)),
  );
  const rows: { record: Deno.SrvRecord; target: string; address: string }[] = [];
  for (const record of usable) {
    const target = trimDot(record.target);
    for (const address of addresses.get(target) ?? []) rows.push({ record, target, address });
  }
  if (rows.length === 0) throw new Error(`no address records for ${targets.join(", ")}`);
  rows.sort((a, b) =>
    a.record.priority - b.record.priority || compare(a.target, b.target) ||
    compare(a.address, b.address) || a.record.port - b.record.port
  );
  const byId = new Map<string, Backend>();
  for (const { record, target, address } of rows) {
    const backend = createBackend({
      hostname: address,
      port: record.port,
      priority: record.priority,
      weight: record.weight,
      name: target,
    });
    if (!byId.has(backend.id)) byId.set(backend.id, backend);
  }
  return [...byId.values()];
}

async function resolveAddresses(target: string, dns: Deno.ResolveDnsOptions): Promise<string[]> {
  if (isIpLiteral(target)) return [target];
  const [v4, v6] = await Promise.all([
    resolveOrNone(target, "A", dns),
    resolveOrNone(target, "AAAA", dns),
  ]);
  return [...v4, ...v6];
}

async function resolveOrNone(
  target: string,
  type: "A" | "AAAA",
  dns: Deno.ResolveDnsOptions,
): Promise<string[]> {
  try {
    return await Deno.resolveDns(target, type, dns);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw new Error(`resolving ${target} ${type}: ${messageOf(error)}`, { cause: error });
  }
}

/** Options for {@linkcode SrvWatcher}. */
export interface SrvWatcherOptions {
  /** The SRV name, e.g. `_http._tcp.app.test`. */
  name: string;
  /** Server to query instead of the system resolver. @default {system resolver} */
  nameServer?: NameServer;
  /** Ms between the end of one lookup and the start of the next. */
  refresh: number;
  /** Per-lookup timeout in ms. @default {Math.min(refresh, 5000)} */
  timeout?: number;
  /** The first re-lookup waits `refresh * (1 + jitter * random)` to spread names out. @default {0.1} */
  jitter?: number;
  /** Stops the watcher: no further lookups, the in-flight one is aborted, no timer is left. */
  signal: AbortSignal;
  /** Called on the first successful lookup and whenever the set (id, priority, weight) changes. */
  onUpdate(backends: Backend[]): void;
  /** Called on every failed lookup (the last good set stays in effect), or when `onUpdate` throws. */
  onError(error: Error): void;
}

/** A snapshot of a {@linkcode SrvWatcher}, for status pages and metrics. */
export interface SrvWatcherState {
  /** The SRV name watched. */
  name: string;
  /** The last good set (empty until a lookup succeeds). */
  backends: readonly Backend[];
  /** True when the latest lookup failed, so `backends` may be out of date. */
  stale: boolean;
  /** Epoch ms of the latest successful lookup. */
  lastSuccess: number | undefined;
  /** Message of the latest failed lookup; kept after a later success (see `stale`). */
  lastError: string | undefined;
  /** Lookups attempted (a lookup cut short by `signal` counts, but not as a failure). */
  lookups: number;
  /** Lookups that failed. */
  failures: number;
}

/**
 * Watches one SRV name: looks it up at once, then again `refresh` ms after each lookup ends
 * (lookups never overlap), until `signal` aborts. A failed or empty lookup calls `onError`
 * and keeps the last good set. Each update brings new `Backend` objects (healthy, no
 * requests in flight): callers merge them by `id` to keep health and counters.
 *
 * @example
 * ```ts ignore
 * import { SrvWatcher } from "./srv.ts";
 * const controller = new AbortController();
 * const watcher = new SrvWatcher({
 *   name: "_http._tcp.app.test",
 *   refresh: 10_000,
 *   signal: controller.signal,
 *   onUpdate: (backends) => console.log(backends.map((b) => b.id)),
 *   onError: (error) => console.error(error.message),
 * });
 * await watcher.ready;
 * controller.abort();
 * await watcher.closed;
 * ```
 */
export class SrvWatcher {
  /** Settles (never rejects) once the first lookup has finished, successful or not. */
  readonly ready: Promise<void>;
  /** Settles (never rejects) once the watcher has stopped after `signal` aborted. */
  readonly closed: Promise<void>;
  #options: SrvWatcherOptions;
  #timeout: number;
  #backends: readonly Backend[] = [];
  #key: string | undefined;
  #stale = false;
  #lastSuccess: number | undefined;
  #lastError: string | undefined;
  #lookups = 0;
  #failures = 0;

  /**
   * Starts watching at once.
   *
   * @param options What to watch, how often, and where to report.
   * @throws {RangeError} When `refresh` is not a positive finite number of ms.
   */
  constructor(options: SrvWatcherOptions) {
    if (!Number.isFinite(options.refresh) || options.refresh <= 0) {
      throw new RangeError(`Refresh must be a positive number of ms: received ${options.refresh}`);
    }
    this.#options = options;
    this.#timeout = options.timeout ?? Math.min(options.refresh, DEFAULT_TIMEOUT);
    const { promise, resolve } = Promise.withResolvers<void>();
    this.ready = promise;
    this.closed = this.#run(resolve);
  }

  /** A snapshot of the watcher's state. */
  get state(): SrvWatcherState {
    return {
      name: this.#options.name,
      backends: this.#backends,
      stale: this.#stale,
      lastSuccess: this.#lastSuccess,
      lastError: this.#lastError,
      lookups: this.#lookups,
      failures: this.#failures,
    };
  }

  async #run(onFirstLookup: () => void): Promise<void> {
    const { signal, refresh, jitter = 0.1 } = this.#options;
    try {
      if (!signal.aborted) await this.#lookupOnce();
    } finally {
      onFirstLookup();
    }
    let delay = refresh * (1 + Math.max(0, jitter) * Math.random());
    while (!signal.aborted) {
      await sleep(delay, signal);
      if (signal.aborted) break;
      await this.#lookupOnce();
      delay = refresh;
    }
  }

  async #lookupOnce(): Promise<void> {
    const { name, nameServer, signal } = this.#options;
    this.#lookups++;
    let backends: Backend[];
    try {
      const options: ResolveSrvOptions = { signal, timeout: this.#timeout };
      if (nameServer) options.nameServer = nameServer;
      backends = await resolveSrv(name, options);
    } catch (error) {
      if (signal.aborted) return;
      this.#failures++;
      this.#stale = true;
      this.#lastError = messageOf(error);
      this.#report(error);
      return;
    }
    this.#stale = false;
    this.#lastSuccess = Date.now();
    const key = backends.map((b) => `${b.id}/${b.priority}/${b.weight}`).join(",");
    if (key === this.#key) return;
    this.#key = key;
    this.#backends = backends;
    try {
      this.#options.onUpdate(backends);
    } catch (error) {
      this.#report(error);
    }
  }

  #report(error: unknown): void {
    try {
      this.#options.onError(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // A throwing onError must not stop the watcher; there is nowhere left to report to.
    }
  }
}

function trimDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
