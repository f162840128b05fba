/**
 * What every probe returns, and the small helpers the HTTP/1.1 and the HTTP/2
 * probes share.
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import { ConnectError } from "../connect.ts";
import { exhaustionHint } from "../../observe/exhaustion.ts";

/** The outcome of one probe. */
export interface ProbeResult {
  /** True when it passed (2xx or 3xx; for the gRPC check, `SERVING`). */
  ok: boolean;
  /** The HTTP status received, 0 when none was. */
  status: number;
  /** Why it failed, or what passed (e.g. `GET /healthz answered 200`). */
  reason: string;
  /** Set when the probe failed for lack of local descriptors or ports: the error. */
  local?: unknown;
}

/** A failed probe's result. */
export function fail(reason: string): ProbeResult {
  return { ok: false, status: 0, reason };
}

/**
 * A probe whose connect failed: why (through `why`, which knows whether the probe
 * timed out), and the cause as `local` when this process ran out of descriptors or ports.
 */
export function connectFailed(e: unknown, why: (e: unknown) => string): ProbeResult {
  const cause = e instanceof ConnectError ? e.cause : e;
  const result = fail(`connect: ${why(cause)}`);
  if (exhaustionHint(cause) !== undefined) result.local = cause;
  return result;
}

/** An error's message. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The name the backend is known by (SRV target or configured address), with its port. */
export function hostHeader(b: Backend): string {
  const name = b.name;
  const colons = name.split(":").length - 1;
  if (name.startsWith("[") || colons === 1) return name; // "[::1]:9001", "127.0.0.1:9001"
  return colons > 1 ? `[${name}]:${b.port}` : `${name}:${b.port}`; // bare IPv6, or a host name
}
