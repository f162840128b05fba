/**
 * Active probes of HTTP/2 backends (`backend_protocol: h2c | h2`): over a fresh
 * connection (prior knowledge for h2c, TLS with ALPN h2 for h2, verified as the
 * route's pool verifies), either `GET path` (2xx or 3xx passes) or the gRPC health
 * check `grpc.health.v1.Health/Check` (only `SERVING` passes).
 *
 * @module
 */
import type { HandshakeStalls } from "../../observe/tls_stalls.ts";
import type { Backend } from "../backend.ts";
import { connectBackend } from "../connect.ts";
import { H2ClientConnection, type H2ClientStream } from "../../h2/client.ts";
import type { ProbeSpec } from "./checks.ts";
import { connectFailed, errorText, fail, hostHeader, type ProbeResult } from "./_probe_result.ts";
import {
  GRPC_STATUS,
  HEALTH_CHECK_PATH,
  healthCheckRequest,
  SERVING,
  SERVING_STATUS,
  servingStatus,
} from "./grpc_health.ts";

const H2_ALPN = ["h2"];
// A health check response is two bytes of protobuf; anything much larger is not one.
const MAX_GRPC_BODY = 4096;

/**
 * Probes `backend` in HTTP/2 with `probe`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import http2 from "node:http2";
 * import { createBackend } from "../backend.ts";
 * import { probeH2 } from "./h2_probe.ts";
 * const server = http2.createServer((req, res) => res.end(req.httpVersion));
 * await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
 * const port = (server.address() as { port: number }).port;
 * const backend = { ...createBackend({ hostname: "127.0.0.1", port }), h2: true as const };
 * const r = await probeH2(backend, { probe: { kind: "path", path: "/healthz" }, timeout: 2000 });
 * assert(r.ok && r.reason === "GET /healthz answered 200 over h2c", r.reason);
 * await new Promise((r) => server.close(r));
 * ```
 * @returns the outcome; never throws.
 */
export async function probeH2(
  backend: Backend,
  options: {
    probe: Exclude<ProbeSpec, { kind: "tcp" }>;
    timeout: number;
    signal?: AbortSignal;
    stalls?: HandshakeStalls | undefined;
  },
): Promise<ProbeResult> {
  const { probe, timeout, signal } = options;
  const tls = backend.tls !== undefined;
  const expired = AbortSignal.timeout(timeout);
  const stop = signal ? AbortSignal.any([signal, expired]) : expired;
  let conn: Deno.Conn | undefined;
  let h2: H2ClientConnection | undefined;
  const close = () => {
    if (h2 !== undefined) return h2.close();
    try {
      conn?.close();
    } catch { /* closed */ }
  };
  stop.addEventListener("abort", close, { once: true });
  const why = (e: unknown) => expired.aborted ? `timed out after ${timeout}ms` : errorText(e);
  const what = probe.kind === "path" ? `GET ${probe.path}` : "gRPC health check";
  try {
    let alpn: string | null;
    try {
      ({ conn, alpnProtocol: alpn } = await connectBackend(backend, {
        connectTimeout: timeout,
        signal: stop,
        ...(tls ? { alpn: H2_ALPN } : {}),
        stalls: options.stalls,
      }));
    } catch (e) {
      return connectFailed(e, why);
    }
    if (stop.aborted) return fail(why(stop.reason));
    if (tls && alpn !== "h2") return fail(`TLS: the backend chose ALPN ${alpn ?? "none"}, not h2`);
    h2 = new H2ClientConnection(conn, { settingsTimeout: timeout });
    try {
      await h2.start();
    } catch (e) {
      return fail(`HTTP/2: ${why(h2.error ?? e)}`);
    }
    const proto = tls ? "h2" : "h2c";
    const head = {
      scheme: tls ? "https" : "http",
      authority: hostHeader(backend),
      fields: ["user-agent", "unload-health-check"],
    };
    try {
      if (probe.kind === "path") {
        const s = h2.request({
          ...head,
          method: "GET",
          path: probe.path,
          fields: [...head.fields, "accept", "*/*"],
          endStream: true,
        });
        const { status } = await s.response();
        const ok = status >= 200 && status < 400;
        return { ok, status, reason: `${what} answered ${status} over ${proto}` };
      }
      const s = h2.request({
        ...head,
        method: "POST",
        path: HEALTH_CHECK_PATH,
        fields: [...head.fields, "content-type", "application/grpc", "te", "trailers"],
        endStream: false,
      });
      await s.write(healthCheckRequest(probe.service));
      await s.end();
      return await grpcAnswer(s, probe.service);
    } catch (e) {
      return fail(`${what} over ${proto}: ${why(e)}`);
    }
  } finally {
    stop.removeEventListener("abort", close);
    close();
    await h2?.done;
  }
}

// Reads a Health/Check answer: HTTP 200, then SERVING in the body and grpc-status 0
// in the trailers (or a trailers-only answer with its grpc-status).
async function grpcAnswer(s: H2ClientStream, service: string): Promise<ProbeResult> {
  const of = service === "" ? "" : ` of ${JSON.stringify(service)}`;
  const head = await s.response();
  const status = head.status;
  if (status !== 200) {
    return { ok: false, status, reason: `gRPC health check answered HTTP ${status}` };
  }
  let trailers: readonly string[] = head.fields;
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (!head.endStream) {
    for (let chunk = await s.read(); chunk !== null; chunk = await s.read()) {
      size += chunk.length;
      if (size > MAX_GRPC_BODY) {
        return fail(`gRPC health check${of}: an answer over ${MAX_GRPC_BODY} bytes`);
      }
      chunks.push(chunk);
    }
    trailers = s.trailers ?? [];
  }
  const code = field(trailers, "grpc-status");
  if (code === undefined) return fail(`gRPC health check${of}: no grpc-status in the answer`);
  if (code !== "0") {
    const name = GRPC_STATUS[Number(code)] ?? "";
    const message = field(trailers, "grpc-message");
    const text = message === undefined ? "" : `: ${percentDecode(message)}`;
    return fail(`gRPC health check${of} failed: grpc-status ${code}${name && ` ${name}`}${text}`);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  const serving = servingStatus(body);
  if (typeof serving === "string") return fail(`gRPC health check${of}: ${serving}`);
  const name = SERVING_STATUS[serving] ?? `status ${serving}`;
  return { ok: serving === SERVING, status, reason: `gRPC health check${of} answered ${name}` };
}

function field(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

// grpc-message is percent-encoded (gRPC over HTTP/2, "Responses").
function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
