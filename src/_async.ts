/**
 * Waiting: an abortable delay (for the loops that pause between rounds: the SRV
 * watcher, the active health checker, the demo's traffic generator) and a
 * promise raced against a timer (for waits that give up).
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
 * import { sleep } from "./_async.ts";
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

/**
 * Waits for `p` at most `ms`: settles like `p` if it settles first, else
 * resolves to `undefined` once `ms` have passed. The timer is cleared either
 * way; `p` itself is not cancelled.
 *
 * @example A promise that settles in time, and one that never does
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { within } from "./_async.ts";
 *
 * assertEquals(await within(Promise.resolve("ok"), 60_000), "ok");
 * assertEquals(await within(new Promise<string>(() => {}), 1), undefined);
 * ```
 *
 * @param p The promise to wait for.
 * @param ms The most to wait, in ms.
 * @returns `p`'s value, or `undefined` when the time ran out first.
 */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
