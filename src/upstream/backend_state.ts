/**
 * The one writer of a backend's changing state (`healthy`, `inflight`), after
 * HAProxy's lb_ops: a request takes load and drops it, a health check takes a
 * server up or down, and every scheduler watching that backend is told at once,
 * whichever route or health checker made the change. Schedulers that order by
 * load therefore never hold a stale load, even for a backend record shared by
 * several routes (or by the old and new routes of a reload).
 *
 * @module
 */
import type { Backend } from "./backend.ts";

/** What a watcher of a backend (a scheduler) is told; both hooks are optional. */
export interface BackendWatcher {
  /** `backend.inflight` just changed (a request started or ended). */
  loadChanged?(backend: Backend): void;
  /** `backend.healthy` just changed. */
  healthChanged?(backend: Backend): void;
}

type Writable = { healthy: boolean; inflight: number };

// Watchers by backend record. A watcher is held weakly: a scheduler retired by a
// reload stops being told once nothing else holds it, without having to say so.
const WATCHERS = new WeakMap<Backend, WeakRef<BackendWatcher>[]>();

/**
 * Tells `watcher` about every later change of `backend` (once, however often
 * it is called), until {@linkcode unwatchBackend} or until the watcher is
 * garbage.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { beginRequest, endRequest, watchBackend } from "./backend_state.ts";
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * const seen: number[] = [];
 * const watcher = { loadChanged: (x: typeof b) => seen.push(x.inflight) };
 * watchBackend(b, watcher);
 * beginRequest(b);
 * endRequest(b);
 * assertEquals(seen, [1, 0]);
 * ```
 */
export function watchBackend(backend: Backend, watcher: BackendWatcher): void {
  let list = WATCHERS.get(backend);
  if (list === undefined) WATCHERS.set(backend, list = []);
  for (const ref of list) if (ref.deref() === watcher) return;
  list.push(new WeakRef(watcher));
}

/**
 * Stops telling `watcher` about `backend` (a scheduler whose set lost it).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { beginRequest, unwatchBackend, watchBackend } from "./backend_state.ts";
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * let told = 0;
 * const watcher = { loadChanged: () => told++ };
 * watchBackend(b, watcher);
 * unwatchBackend(b, watcher);
 * beginRequest(b);
 * assertEquals(told, 0);
 * ```
 */
export function unwatchBackend(backend: Backend, watcher: BackendWatcher): void {
  const list = WATCHERS.get(backend);
  if (list === undefined) return;
  const i = list.findIndex((ref) => ref.deref() === watcher);
  if (i !== -1) list.splice(i, 1);
}

/**
 * A request to `backend` starts: its load rises by one and its watchers are
 * told. Pair it with {@linkcode endRequest} in a `finally`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { beginRequest, endRequest } from "./backend_state.ts";
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * beginRequest(b);
 * try {
 *   assertEquals(b.inflight, 1);
 * } finally {
 *   endRequest(b);
 * }
 * assertEquals(b.inflight, 0);
 * ```
 */
export function beginRequest(backend: Backend): void {
  (backend as Writable).inflight++;
  tell(backend, LOAD);
}

/** A request to `backend` ended (see {@linkcode beginRequest}, with its example). */
export function endRequest(backend: Backend): void {
  (backend as Writable).inflight--;
  tell(backend, LOAD);
}

/**
 * Takes `backend` out of rotation and tells its watchers.
 *
 * @returns false when it was out already (nothing changed, nobody is told).
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { markDown, markUp } from "./backend_state.ts";
 * const b = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * assert(markDown(b) && !b.healthy && !markDown(b));
 * assert(markUp(b) && b.healthy);
 * ```
 */
export function markDown(backend: Backend): boolean {
  return setHealthy(backend, false);
}

/**
 * Puts `backend` back in rotation and tells its watchers (see
 * {@linkcode markDown}, with its example).
 *
 * @returns false when it was in rotation already.
 */
export function markUp(backend: Backend): boolean {
  return setHealthy(backend, true);
}

function setHealthy(backend: Backend, healthy: boolean): boolean {
  if (backend.healthy === healthy) return false;
  (backend as Writable).healthy = healthy;
  tell(backend, HEALTH);
  return true;
}

const LOAD = 0;
const HEALTH = 1;

// No closure, no iterator: this runs twice per proxied request.
function tell(backend: Backend, what: number): void {
  const list = WATCHERS.get(backend);
  if (list === undefined) return;
  for (let i = 0; i < list.length;) {
    const w = list[i]!.deref();
    if (w === undefined) {
      list.splice(i, 1); // its scheduler is gone
      continue;
    }
    if (what === LOAD) w.loadChanged?.(backend);
    else w.healthChanged?.(backend);
    i++;
  }
}
