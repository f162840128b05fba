/**
 * A route's health settings compiled for its backend records: passive `failures`
 * and `backoff`, and the active probe (`GET path` or the gRPC health check) with its
 * `interval`, `timeout` and `rise`. Records of routes whose checks are equal are
 * shared; records of routes whose checks differ are not, so each is probed and taken
 * out on its own.
 *
 * @module
 */
import type { Health } from "../../config/defaults.ts";

/**
 * What an active probe asks: `GET path`, `grpc.health.v1.Health/Check` for `service`,
 * or nothing (`tcp`: a connect that succeeds passes).
 */
export type ProbeSpec =
  | { readonly kind: "path"; readonly path: string }
  | { readonly kind: "grpc"; readonly service: string }
  | { readonly kind: "tcp" };

/** How the backend records of one route are checked. */
export interface BackendChecks {
  /** Consecutive failures (passive or active) that take a backend out. */
  readonly failures: number;
  /** Consecutive passed probes that bring it back. */
  readonly rise: number;
  /** How long a passively ejected backend stays out without active checks, ms. */
  readonly backoff: number;
  /** Time between the end of one round of probes and the next, ms. */
  readonly interval: number;
  /** How long one probe may take, ms. */
  readonly timeout: number;
  /** The active probe; undefined when active checks are off. */
  readonly probe: ProbeSpec | undefined;
  /** Identity: equal keys, equal checks. */
  readonly key: string;
}

/**
 * Compiles a route's effective `health` settings (see `routeHealth` in config/health.ts).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { compileChecks } from "./checks.ts";
 * const base = { failures: 3, rise: 2, backoff: 10_000, interval: 5_000, timeout: 2_000 };
 * const grpc = compileChecks({ ...base, grpc: true, grpc_service: "app" });
 * assertEquals(grpc.probe, { kind: "grpc", service: "app" });
 * assertEquals(compileChecks(base).probe, undefined);
 * assertEquals(compileChecks(base).key === grpc.key, false);
 * ```
 */
export function compileChecks(h: Health): BackendChecks {
  const probe: ProbeSpec | undefined = h.tcp === true
    ? { kind: "tcp" }
    : h.grpc === true
    ? { kind: "grpc", service: h.grpc_service ?? "" }
    : h.path !== undefined
    ? { kind: "path", path: h.path }
    : undefined;
  const what = probe === undefined
    ? "passive"
    : probe.kind === "grpc"
    ? `grpc ${JSON.stringify(probe.service)}`
    : probe.kind === "tcp"
    ? "tcp"
    : `path ${probe.path}`;
  return {
    failures: h.failures,
    rise: h.rise,
    backoff: h.backoff,
    interval: h.interval,
    timeout: h.timeout,
    probe,
    key: `${what} ${h.interval} ${h.timeout} ${h.failures} ${h.rise} ${h.backoff}`,
  };
}

/**
 * How a probe reads in `/status` and log lines: `GET /healthz`,
 * `grpc.health.v1.Health/Check` (with the service in quotes when there is one) or
 * `TCP connect`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { describeProbe } from "./checks.ts";
 * assertEquals(describeProbe({ kind: "path", path: "/healthz" }), "GET /healthz");
 * assertEquals(describeProbe({ kind: "grpc", service: "" }), "grpc.health.v1.Health/Check");
 * assertEquals(describeProbe({ kind: "tcp" }), "TCP connect");
 * ```
 */
export function describeProbe(probe: ProbeSpec): string {
  if (probe.kind === "path") return `GET ${probe.path}`;
  if (probe.kind === "tcp") return "TCP connect";
  const service = probe.service === "" ? "" : ` ${JSON.stringify(probe.service)}`;
  return `grpc.health.v1.Health/Check${service}`;
}
