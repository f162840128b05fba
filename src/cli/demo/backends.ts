/**
 * Small HTTP servers that say who they are: the demo's backends (and handy in tests).
 *
 * @module
 */

/** A running demo backend. */
export interface DemoBackend {
  /** The name it answers with (body and `x-backend` header). */
  name: string;
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Requests answered. */
  readonly count: number;
  /** Stops it and waits until it has stopped. */
  close(): Promise<void>;
}

/**
 * Starts a backend on 127.0.0.1 that answers every request with `"<name> hello\n"`
 * and an `x-backend: <name>` header.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { startDemoBackend } from "./backends.ts";
 * const b = await startDemoBackend("b1");
 * const res = await fetch(`http://127.0.0.1:${b.port}/`);
 * assert((await res.text()) === "b1 hello\n");
 * await b.close();
 * ```
 */
export function startDemoBackend(name: string, port = 0): Promise<DemoBackend> {
  let count = 0;
  const ac = new AbortController();
  const { promise, resolve } = Promise.withResolvers<DemoBackend>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    signal: ac.signal,
    onListen: (addr) =>
      resolve({
        name,
        port: addr.port,
        get count() {
          return count;
        },
        async close() {
          ac.abort();
          await server.finished;
        },
      }),
  }, (req) => {
    count++;
    const body = req.method === "HEAD" ? null : `${name} hello\n`;
    return new Response(body, { headers: { "x-backend": name, "content-type": "text/plain" } });
  });
  return promise;
}
