/**
 * Backend discovery through DNS SRV records (RFC 2782): a one-shot {@linkcode resolveSrv}
 * and a {@linkcode SrvWatcher} that re-looks up on a ticker and keeps the last good set.
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import { isIpLiteral } from "../../config/address.ts";
import { sleep } from "../../_async.ts";
import { type AddressFamily, inFamily } from "./family.ts";
import { idOf, type SrvTarget, targetBackends } from "./targets.ts";

export type { SrvTarget } from "./targets.ts";
export type { AddressFamily } from "./family.ts";

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
  /** Address records asked for: `auto` A and AAAA, `ipv4` A, `ipv6` AAAA. @default {"auto"} */
  family?: AddressFamily;
}

const DEFAULT_TIMEOUT = 5_000;
// A set-aside address is tried again with a connect this long at most, once per refresh.
const PROBE_TIMEOUT = 1_000;

/**
 * Looks up the SRV records of `name`, then the A and AAAA records of every target (an IP
 * literal target is used as is), through the same name server. Returns one backend per
 * (address, port) with the record's priority, `name` set to the target (without trailing
 * dot), and the record's weight split between the target's addresses (see
 * {@linkcode targetBackends}: a target with one address keeps its weight), sorted by
 * priority, target, port, address. When two records lead to the same address and port,
 * the first in that order wins. Targets that have no address records are left out; a
 * target `.` ("service not available") is ignored.
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
  return targetBackends(await resolveSrvTargets(name, options));
}

/**
 * Like {@linkcode resolveSrv}, but returns the SRV records with their addresses, one
 * entry per record that has addresses, sorted by priority, target, port; addresses sorted.
 *
 * @param name The SRV name, e.g. `_http._tcp.app.test`.
 * @param options Name server, family, abort signal and timeout.
 * @returns The targets, never empty.
 * @throws {Error} As {@linkcode resolveSrv}.
 *
 * @example
 * ```ts ignore
 * import { resolveSrvTargets } from "./srv.ts";
 * const targets = await resolveSrvTargets("_http._tcp.app.test", { family: "ipv4" });
 * ```
 */
export async function resolveSrvTargets(
  name: string,
  options: ResolveSrvOptions = {},
): Promise<SrvTarget[]> {
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
    return await lookup(name, dns, options.family ?? "auto");
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    const reason = deadline.signal.aborted ? `timed out after ${timeout}ms` : messageOf(error);
    throw new Error(`SRV lookup ${name} failed: ${reason}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

async function lookup(
  name: string,
  dns: Deno.ResolveDnsOptions,
  family: AddressFamily,
): Promise<SrvTarget[]> {
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
  const names = [...new Set(usable.map((r) => trimDot(r.target)))].sort(compare);
  const addresses = new Map(
    await Promise.all(
      names.map(async (t) => [t, await resolveAddresses(t, dns, family)] as const),
    ),
  );
  const targets: SrvTarget[] = [];
  for (const r of usable) {
    const target = trimDot(r.target);
    const found = addresses.get(target) ?? [];
    if (found.length === 0) continue;
    targets.push({
      name: target,
      port: r.port,
      priority: r.priority,
      weight: r.weight,
      addresses: [...found].sort(compare),
    });
  }
  if (targets.length === 0) {
    const which = family === "auto" ? "address" : family === "ipv4" ? "A" : "AAAA";
    throw new Error(`no ${which} records for ${names.join(", ")}`);
  }
  return targets.sort((a, b) =>
    a.priority - b.priority || compare(a.name, b.name) || a.port - b.port ||
    a.weight - b.weight
  );
}

async function resolveAddresses(
  target: string,
  dns: Deno.ResolveDnsOptions,
  family: AddressFamily,
): Promise<string[]> {
  if (isIpLiteral(target)) return inFamily(target, family) ? [target] : [];
  const [v4, v6] = await Promise.all([
    family === "ipv6" ? [] : resolveOrNone(target, "A", dns),
    family === "ipv4" ? [] : resolveOrNone(target, "AAAA", dns),
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
  /** Address records asked for (see {@linkcode ResolveSrvOptions.family}). @default {"auto"} */
  family?: AddressFamily;
  /**
   * Told when an address is set aside ({@linkcode SrvWatcher.setAside}) or, after a
   * probe connected to it, back in use.
   */
  onAddress?(id: string, inUse: boolean, reason: string): void;
}

/**
 * A source of one route's SRV-discovered backends: a {@linkcode SrvWatcher} doing the
 * lookups, or a copy fed by the process that does them (`workers: N`).
 */
export interface SrvSource {
  /** Settles (never rejects) once a first set (or failure) is known. */
  readonly ready: Promise<void>;
  /** Settles (never rejects) once the source has stopped. */
  readonly closed: Promise<void>;
  /** A snapshot of the lookups' state. */
  readonly state: SrvWatcherState;
  /**
   * Sets aside an address that does not connect, when another address of the same
   * target is in use: its share of the target's weight goes to the others until a
   * probe connects to it again (one TCP connect per refresh).
   *
   * @param id The backend id (`host:port`) that failed to connect.
   * @param reason Why, for the log.
   * @returns True when it is (or already was) set aside; false when it is the
   * target's last address in use, or unknown.
   */
  setAside(id: string, reason: string): boolean;
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
  /** Addresses (`host:port`) set aside because they do not connect while a sibling does. */
  aside: readonly string[];
}

/**
 * Watches one SRV name: looks it up at once, then again `refresh` ms after each lookup ends
 * (lookups never overlap), until `signal` aborts. A failed or empty lookup calls `onError`
 * and keeps the last good set. Each update brings new `Backend` objects (healthy, no
 * requests in flight): callers merge them by `id` to keep health and counters.
 *
 * Addresses set aside with {@linkcode SrvWatcher.setAside} are left out of the set (their
 * target's weight goes to its other addresses); after each successful lookup every one of
 * them gets one TCP connect, and those that connect are back in the set.
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
export class SrvWatcher implements SrvSource {
  /** Settles (never rejects) once the first lookup has finished, successful or not. */
  readonly ready: Promise<void>;
  /** Settles (never rejects) once the watcher has stopped after `signal` aborted. */
  readonly closed: Promise<void>;
  #options: SrvWatcherOptions;
  #timeout: number;
  #backends: readonly Backend[] = [];
  #targets: SrvTarget[] = [];
  readonly #aside = new Set<string>();
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
      aside: [...this.#aside],
    };
  }

  /**
   * Sets aside an address that does not connect while another address of its
   * target is in use (see {@linkcode SrvSource.setAside}); calls `onUpdate` at once.
   */
  setAside(id: string, reason: string): boolean {
    if (this.#aside.has(id)) return true;
    const owners = this.#targets.filter((t) => t.addresses.some((a) => idOf(a, t.port) === id));
    const spare = (t: SrvTarget) =>
      t.addresses.some((a) => idOf(a, t.port) !== id && !this.#aside.has(idOf(a, t.port)));
    if (owners.length === 0 || !owners.every(spare)) return false;
    this.#aside.add(id);
    this.#tell(id, false, reason);
    this.#publish();
    return true;
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
    const { name, nameServer, signal, family } = this.#options;
    this.#lookups++;
    let targets: SrvTarget[];
    try {
      const options: ResolveSrvOptions = { signal, timeout: this.#timeout };
      if (nameServer) options.nameServer = nameServer;
      if (family) options.family = family;
      targets = await resolveSrvTargets(name, options);
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
    this.#targets = targets;
    if (this.#aside.size > 0) await this.#probeAside(signal);
    if (!signal.aborted) this.#publish();
  }

  // One connect to each address set aside: those that connect are in use again;
  // those no longer in the answer are forgotten.
  async #probeAside(signal: AbortSignal): Promise<void> {
    const present = new Map<string, { hostname: string; port: number }>();
    for (const t of this.#targets) {
      for (const a of t.addresses) present.set(idOf(a, t.port), { hostname: a, port: t.port });
    }
    await Promise.all([...this.#aside].map(async (id) => {
      const where = present.get(id);
      if (where === undefined) return void this.#aside.delete(id);
      try {
        const timeout = AbortSignal.timeout(Math.min(this.#timeout, PROBE_TIMEOUT));
        const conn = await Deno.connect({ ...where, signal: AbortSignal.any([signal, timeout]) });
        conn.close();
      } catch {
        return; // still not connecting: stays aside, nothing to say
      }
      if (signal.aborted) return;
      this.#aside.delete(id);
      this.#tell(id, true, "a probe connected");
    }));
  }

  // Makes the backends of the current targets and addresses in use; onUpdate when
  // they changed.
  #publish(): void {
    const backends = targetBackends(this.#targets, { aside: this.#aside });
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

  #tell(id: string, inUse: boolean, reason: string): void {
    try {
      this.#options.onAddress?.(id, inUse, reason);
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
