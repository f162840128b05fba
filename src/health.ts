/**
 * Passive health: consecutive failures eject a backend for a back-off period,
 * after which it gets traffic again (and is ejected again at once if it still fails).
 *
 * @module
 */
import type { Backend } from "./backend.ts";

/** Passive health settings. */
export interface PassiveHealthOptions {
  /** Consecutive failures that eject a backend. @default {3} */
  failures: number;
  /** How long an ejected backend gets no traffic, in ms. @default {10000} */
  backoff: number;
  /** Told when a backend changes state. */
  onChange?: (backend: Backend, healthy: boolean, reason: string) => void;
}

/**
 * Counts consecutive failures per backend.
 *
 * @example
 * ```ts
 * import { PassiveHealth } from "./health.ts";
 * import { createBackend } from "./backend.ts";
 * const h = new PassiveHealth({ failures: 2, backoff: 50 });
 * const b = createBackend({ hostname: "127.0.0.1", port: 9 });
 * h.failure(b, "refused"); h.failure(b, "refused");
 * console.assert(!b.healthy);
 * h.close();
 * ```
 */
export class PassiveHealth {
  readonly #options: PassiveHealthOptions;
  readonly #fails = new Map<Backend, number>();
  readonly #timers = new Map<Backend, ReturnType<typeof setTimeout>>();

  /** Creates the tracker. */
  constructor(options: PassiveHealthOptions) {
    this.#options = options;
  }

  /** Records a failed exchange (connect refused, reset, timeout, malformed response). */
  failure(backend: Backend, reason: string): void {
    const n = (this.#fails.get(backend) ?? 0) + 1;
    this.#fails.set(backend, n);
    if (n < this.#options.failures || !backend.healthy) return;
    backend.healthy = false;
    this.#options.onChange?.(backend, false, `${n} consecutive failures, last: ${reason}`);
    const t = setTimeout(() => {
      this.#timers.delete(backend);
      this.#fails.set(backend, this.#options.failures - 1); // one more failure ejects again
      if (!backend.healthy) {
        backend.healthy = true;
        this.#options.onChange?.(backend, true, "back-off over");
      }
    }, this.#options.backoff);
    Deno.unrefTimer(t);
    this.#timers.set(backend, t);
  }

  /** Records a successful exchange. */
  success(backend: Backend): void {
    if (this.#fails.get(backend)) this.#fails.set(backend, 0);
  }

  /** Cancels pending back-off timers. */
  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}
