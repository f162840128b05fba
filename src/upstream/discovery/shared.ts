/**
 * `workers: N` shares one process's discovery: the main thread runs the SRV lookups
 * and posts each route's set to the workers, whose routes are fed by a
 * {@linkcode SharedSrv} instead of a watcher of their own.
 *
 * @module
 */
import { type Backend, type BackendInit, createBackend } from "../backend.ts";
import type { SrvSource, SrvWatcherState } from "./srv.ts";

/** One route's discovered set as posted between threads (plain data). */
export interface SharedSet {
  /** The route's name. */
  route: string;
  /** The SRV name looked up. */
  srv: string;
  /** The backends in use (addresses set aside are not among them). */
  backends: Required<BackendInit>[];
  /** The lookups' state as the main thread sees it (without the backends). */
  state: Omit<SrvWatcherState, "backends">;
}

/**
 * Turns backends into the plain fields a {@linkcode SharedSet} carries.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../backend.ts";
 * import { shareBackends } from "./shared.ts";
 * const b = createBackend({ hostname: "::1", port: 80, weight: 3, name: "t" });
 * assertEquals(shareBackends([b]), [{ hostname: "::1", port: 80, priority: 0, weight: 3, name: "t" }]);
 * ```
 */
export function shareBackends(backends: readonly Backend[]): Required<BackendInit>[] {
  return backends.map(({ hostname, port, priority, weight, name }) => ({
    hostname,
    port,
    priority,
    weight,
    name,
  }));
}

/**
 * A worker's copy of the sets the main thread posted, the latest per route and SRV
 * name, with listeners.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { SharedSets } from "./shared.ts";
 * const sets = new SharedSets();
 * const seen: number[] = [];
 * const state = { name: "_a._tcp.t", stale: false, lastSuccess: 1, lastError: undefined, lookups: 1, failures: 0, aside: [] };
 * sets.put({ route: "app", srv: "_a._tcp.t", backends: [], state });
 * sets.listen("app", "_a._tcp.t", (s) => seen.push(s.backends.length), AbortSignal.abort());
 * assertEquals(seen, [0]);
 * ```
 */
export class SharedSets {
  readonly #latest = new Map<string, SharedSet>();
  readonly #listeners = new Map<string, Set<(set: SharedSet) => void>>();

  /** Keeps `set` as the latest for its route and tells its listeners. */
  put(set: SharedSet): void {
    const key = `${set.route}\n${set.srv}`;
    this.#latest.set(key, set);
    for (const fn of this.#listeners.get(key) ?? []) fn(set);
  }

  /**
   * Calls `fn` with the latest set of `route` looking up `srv` (at once, when there is
   * one) and with every later one, until `signal` aborts.
   */
  listen(route: string, srv: string, fn: (set: SharedSet) => void, signal: AbortSignal): void {
    const key = `${route}\n${srv}`;
    const latest = this.#latest.get(key);
    if (latest !== undefined) fn(latest);
    if (signal.aborted) return;
    let set = this.#listeners.get(key);
    if (set === undefined) this.#listeners.set(key, set = new Set());
    set.add(fn);
    signal.addEventListener("abort", () => set.delete(fn), { once: true });
  }
}

/** Options for {@linkcode SharedSrv}. */
export interface SharedSrvOptions {
  /** The route's name. */
  route: string;
  /** The SRV name the main thread looks up for it. */
  srv: string;
  /** Where the main thread's sets arrive. */
  sets: SharedSets;
  /** Stops listening. */
  signal: AbortSignal;
  /** Gives up waiting for a first set after this many ms (the route then has none, stale). */
  timeout: number;
  /** Called with every set posted (new Backend objects). */
  onUpdate(backends: Backend[]): void;
  /** Asks the main thread to set an address aside. */
  setAside(id: string, reason: string): void;
}

/**
 * A {@linkcode SrvSource} fed by the main thread: no lookups of its own.
 *
 * @example
 * ```ts ignore
 * const srv = new SharedSrv({ route: "app", srv: "_http._tcp.app.test", sets, signal, timeout: 5000,
 *   onUpdate: (b) => scheduler.update(b), setAside: (id, why) => postMessage({ type: "aside", id, why }) });
 * await srv.ready;
 * ```
 */
export class SharedSrv implements SrvSource {
  /** Settles once the first set arrived, or `timeout` passed. */
  readonly ready: Promise<void>;
  /** Settles once `signal` aborted. */
  readonly closed: Promise<void>;
  readonly #options: SharedSrvOptions;
  #backends: readonly Backend[] = [];
  #state: Omit<SrvWatcherState, "backends">;

  /** Listens to `sets` at once. */
  constructor(options: SharedSrvOptions) {
    this.#options = options;
    this.#state = {
      name: options.srv,
      stale: true,
      lastSuccess: undefined,
      lastError: "no set from the main thread yet",
      lookups: 0,
      failures: 0,
      aside: [],
    };
    const first = Promise.withResolvers<void>();
    const timer = setTimeout(first.resolve, options.timeout);
    const { signal } = options;
    options.sets.listen(options.route, options.srv, (set) => {
      this.#state = set.state;
      this.#backends = set.backends.map((b) => createBackend(b));
      clearTimeout(timer);
      first.resolve();
      options.onUpdate([...this.#backends]);
    }, signal);
    this.ready = first.promise;
    const { promise, resolve } = Promise.withResolvers<void>();
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      first.resolve();
      resolve();
    }, { once: true });
    this.closed = promise;
  }

  /** The main thread's state, with the backends posted last. */
  get state(): SrvWatcherState {
    return { ...this.#state, backends: this.#backends };
  }

  /** Forwards the request to the main thread, which decides and posts the new set. */
  setAside(id: string, reason: string): boolean {
    this.#options.setAside(id, reason);
    return true;
  }
}
