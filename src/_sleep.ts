/**
 * An abortable delay, shared by the loops that pause between rounds (the SRV
 * watcher, the active health checker, the demo's traffic generator).
 *
 * @module
 */

/**
 * Resolves after `ms`, or as soon as `signal` aborts (at once if it already
 * has); never rejects, and leaves no timer or listener behind.
 *
 * @example
 * ```ts
 * import { assertLess } from "@std/assert";
 * import { sleep } from "./_sleep.ts";
 *
 * const ac = new AbortController();
 * const start = Date.now();
 * setTimeout(() => ac.abort(), 10);
 * await sleep(60_000, ac.signal);
 * assertLess(Date.now() - start, 60_000);
 * ```
 *
 * @param ms How long to wait, in ms.
 * @param signal Cuts the wait short.
 * @returns A promise that settles when the wait is over.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
