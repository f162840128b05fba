/**
 * The TCP connect check (`health: { tcp: true }`): a probe passes when a connection
 * to the backend opens (and, for a backend reached over TLS, its handshake completes)
 * within the timeout. Nothing is sent; the connection is closed at once. It is the
 * check of `tcp:` routes, whose backends speak protocols unload does not know.
 *
 * @module
 */
import type { HandshakeStalls } from "../../observe/tls_stalls.ts";
import type { Backend } from "../backend.ts";
import { connectBackend } from "../connect.ts";
import { connectFailed, errorText, type ProbeResult } from "./_probe_result.ts";

/**
 * Opens a connection to `backend` and closes it.
 *
 * @returns `ok` with the reason `connected` when it opened; the reason it did not otherwise.
 * Never throws.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "../backend.ts";
 * import { probeTcp } from "./tcp_probe.ts";
 * const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const backend = createBackend({ hostname: "127.0.0.1", port: l.addr.port });
 * assertEquals((await probeTcp(backend, { timeout: 1000 })).reason, "connected");
 * l.close();
 * assertEquals((await probeTcp(backend, { timeout: 1000 })).ok, false);
 * ```
 */
export async function probeTcp(
  backend: Backend,
  options: { timeout: number; signal?: AbortSignal; stalls?: HandshakeStalls | undefined },
): Promise<ProbeResult> {
  const { timeout, signal } = options;
  const expired = AbortSignal.timeout(timeout);
  const stop = signal ? AbortSignal.any([signal, expired]) : expired;
  const why = (e: unknown) => expired.aborted ? `timed out after ${timeout}ms` : errorText(e);
  try {
    const { conn } = await connectBackend(backend, {
      connectTimeout: timeout,
      signal: stop,
      stalls: options.stalls,
    });
    try {
      conn.close();
    } catch { /* closed */ }
    return { ok: true, status: 0, reason: "connected" };
  } catch (e) {
    return connectFailed(e, why);
  }
}
