/**
 * Passive health: consecutive failures eject a backend for a back-off period,
 * after which it gets traffic again (and is ejected again at once if it still fails).
 * With active checks on for it (`active.ts`), an ejected backend has no back-off:
 * it stays out until the active check brings it back. A backend record that carries
 * its route's checks (`backend.checks`) is counted with its route's `failures` and
 * `backoff`, and has active checks exactly when its route has a probe.
 *
 * A timeout (a connect that did not finish) counts only when the backend
 * answered nothing else while it was waited for: a backend that served other
 * requests meanwhile is up, and the wait was this process's (an event loop
 * saturated by a thousand clients can sit on a finished connect for seconds).
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import { markDown, markUp } from "../backend_state.ts";

/** Passive health settings. */
export interface PassiveHealthOptions {
  /** Consecutive failures that eject a backend (one without `checks`). @default {3} */
  failures: number;
  /** How long an ejected backend (one without `checks`) gets no traffic, in ms. @default {10000} */
  backoff: number;
  /**
   * Active checks run in this process and decide when an ejected backend comes back
   * (no back-off timer): for a backend with `checks`, when they have a probe; for one
   * without, always. @default {false}
   */
  activeChecks?: boolean;
  /** Told when a backend changes state. */
  onChange?: (backend: Backend, healthy: boolean, reason: string) => void;
}

/**
 * Counts consecutive failures per backend.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { PassiveHealth } from "./passive.ts";
 * import { createBackend } from "../backend.ts";
 * const h = new PassiveHealth({ failures: 2, backoff: 50 });
 * const b = createBackend({ hostname: "127.0.0.1", port: 9 });
 * h.failure(b, "refused"); h.failure(b, "refused");
 * assert(!b.healthy);
 * const c = createBackend({ hostname: "127.0.0.1", port: 10 });
 * const waitedSince = Date.now();
 * h.success(c); // another request to c succeeded while one waited on a connect
 * h.failure(c, "connect timed out", waitedSince); h.failure(c, "connect timed out", waitedSince);
 * assert(c.healthy);
 * h.close();
 * ```
 */
export class PassiveHealth {
  #options: PassiveHealthOptions;
  // per backend: consecutive failures, and when it last answered (epoch ms, -1: never)
  readonly #tally = new Map<Backend, { fails: number; lastSuccess: number }>();
  readonly #timers = new Map<Backend, ReturnType<typeof setTimeout>>();

  /** Creates the tracker. */
  constructor(options: PassiveHealthOptions) {
    this.#options = options;
  }

  /**
   * Records a failed exchange (connect refused, reset, timeout, malformed response).
   *
   * @param waitedSince For a timeout: when the wait began (epoch ms). It does not
   * count when the backend answered another request successfully since then.
   */
  failure(backend: Backend, reason: string, waitedSince?: number): void {
    const tally = this.#of(backend);
    if (waitedSince !== undefined && tally.lastSuccess >= waitedSince) return;
    const n = ++tally.fails;
    if (n < this.#failures(backend) || !markDown(backend)) return;
    this.#options.onChange?.(backend, false, `${n} consecutive failures, last: ${reason}`);
    if (!this.probed(backend)) this.backOff(backend);
  }

  /** True when active checks (run in this process) bring `backend` back, not a back-off. */
  probed(backend: Backend): boolean {
    if (!this.#options.activeChecks) return false;
    return backend.checks === undefined || backend.checks.probe !== undefined;
  }

  #failures(backend: Backend): number {
    return backend.checks?.failures ?? this.#options.failures;
  }

  /**
   * Starts the back-off of an ejected backend: it gets traffic again once it is over.
   * For a backend ejected while active checks were on, when they are turned off.
   */
  backOff(backend: Backend): void {
    if (this.#timers.has(backend)) return;
    const t = setTimeout(() => {
      this.#timers.delete(backend);
      this.#of(backend).fails = this.#failures(backend) - 1; // one more failure ejects again
      if (markUp(backend)) this.#options.onChange?.(backend, true, "back-off over");
    }, backend.checks?.backoff ?? this.#options.backoff);
    Deno.unrefTimer(t);
    this.#timers.set(backend, t);
  }

  /** True when `backend` answered a request successfully at or after `time` (epoch ms). */
  answeredSince(backend: Backend, time: number): boolean {
    return (this.#tally.get(backend)?.lastSuccess ?? -1) >= time;
  }

  /** Records a successful exchange. */
  success(backend: Backend): void {
    const tally = this.#of(backend);
    tally.lastSuccess = Date.now();
    tally.fails = 0;
  }

  #of(backend: Backend): { fails: number; lastSuccess: number } {
    let tally = this.#tally.get(backend);
    if (tally === undefined) {
      tally = { fails: 0, lastSuccess: -1 };
      this.#tally.set(backend, tally);
    }
    return tally;
  }

  /**
   * Applies new settings (a reload). Turning active checks on cancels the pending
   * back-offs of backends they now probe: the active check brings those back.
   */
  configure(options: Omit<PassiveHealthOptions, "onChange">): void {
    this.#options = { ...this.#options, ...options };
    for (const [b, t] of this.#timers) {
      if (!this.probed(b)) continue;
      clearTimeout(t);
      this.#timers.delete(b);
    }
  }

  /** Cancels pending back-off timers. */
  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}
