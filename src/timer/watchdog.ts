/**
 * One coarse ticker for every timeout of a running balancer: arming a deadline is
 * an assignment, not a timer per request.
 *
 * @module
 */

/** Something that can time out. */
export interface Timed {
  /** Epoch ms after which {@linkcode Timed.expire} is called; 0 = none. */
  deadline: number;
  /** Called once the deadline has passed (from the ticker). */
  expire(now: number): void;
}

/**
 * Checks registered {@linkcode Timed} objects every `resolution` ms.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { Watchdog } from "./watchdog.ts";
 * const ac = new AbortController();
 * const dog = new Watchdog({ resolution: 10, signal: ac.signal });
 * let fired = false;
 * dog.add({ deadline: Date.now() + 5, expire() { fired = true; } });
 * await new Promise((r) => setTimeout(r, 40));
 * ac.abort();
 * assert(fired);
 * ```
 */
export class Watchdog {
  readonly #items = new Set<Timed>();
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #resolution: number;
  #now = Date.now();

  /** Starts ticking; stops for good when `signal` aborts. */
  constructor(options: { resolution?: number; signal: AbortSignal }) {
    this.#resolution = options.resolution ?? 100;
    options.signal.addEventListener("abort", () => this.#stop(), { once: true });
    if (!options.signal.aborted) this.#start();
  }

  /** Watches `t` until {@linkcode Watchdog.delete}. */
  add(t: Timed): void {
    this.#items.add(t);
  }

  /** Stops watching `t`. */
  delete(t: Timed): void {
    this.#items.delete(t);
  }

  /** A clock that is at most one tick old: cheap enough for arming deadlines. */
  get now(): number {
    return this.#now;
  }

  /** Number of watched objects. */
  get size(): number {
    return this.#items.size;
  }

  #start(): void {
    const t = setInterval(() => {
      const now = this.#now = Date.now();
      for (const t of this.#items) {
        if (t.deadline !== 0 && t.deadline <= now) t.expire(now);
      }
    }, this.#resolution);
    Deno.unrefTimer(t);
    this.#timer = t;
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#items.clear();
  }
}
