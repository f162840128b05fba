/**
 * The demo's traffic generator: a few requests at a time to the balancer, every few
 * milliseconds, so the dashboard has something to show. Bounded in concurrency and
 * rate, and stopped by a signal.
 *
 * @module
 */
import { sleep } from "../../_async.ts";

/** Options for {@linkcode startTraffic}. */
export interface TrafficOptions {
  /** Stops the generator; `done` settles once the requests in flight have ended. */
  signal: AbortSignal;
  /** Requests sent together in each round. @default {3} */
  concurrency?: number;
  /** Pause between rounds, in ms. @default {25} */
  interval?: number;
}

/** A running generator. */
export interface Traffic {
  /** Settles (never rejects) once stopped. */
  readonly done: Promise<void>;
}

/**
 * Sends rounds of `concurrency` GET requests to `url` until `signal` aborts: at most
 * `concurrency` requests are in flight, and rounds are `interval` ms apart.
 *
 * @param url Where to send the requests (the balancer).
 * @param options Signal, concurrency and pace.
 * @returns Counters and a promise of its end.
 *
 * @example
 * ```ts ignore
 * const ac = new AbortController();
 * const traffic = startTraffic("http://127.0.0.1:8080/", { signal: ac.signal });
 * ac.abort();
 * await traffic.done;
 * ```
 */
export function startTraffic(url: string, options: TrafficOptions): Traffic {
  const { signal } = options;
  const concurrency = Math.max(1, options.concurrency ?? 3);
  const interval = Math.max(1, options.interval ?? 25);
  const one = async (i: number) => {
    try {
      const res = await fetch(`${url}demo/${i}`, { signal });
      await res.arrayBuffer();
    } catch { /* the dashboard shows what the balancer answered */ }
  };
  const done = (async () => {
    let n = 0;
    while (!signal.aborted) {
      const round = [];
      for (let i = 0; i < concurrency; i++) round.push(one(n++));
      await Promise.all(round);
      await sleep(interval, signal);
    }
  })();
  return { done };
}
