/**
 * Waiting for the process signals that stop a server (SIGINT, SIGTERM), shared by
 * `run` and the demo.
 *
 * @module
 */

/**
 * Resolves when one of `signals` arrives (then removes the handlers).
 *
 * @example
 * ```ts ignore
 * await waitForSignal(["SIGINT", "SIGTERM"]);
 * ```
 *
 * @param signals The signals to wait for.
 * @returns The signal that arrived.
 */
export function waitForSignal(signals: Deno.Signal[]): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const handlers = signals.map((s) => {
      const h = () => {
        handlers.forEach(([sig, fn]) => Deno.removeSignalListener(sig, fn));
        resolve(s);
      };
      Deno.addSignalListener(s, h);
      return [s, h] as const;
    });
  });
}
