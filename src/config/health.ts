/**
 * The `health:` section, top-level and per route (`routes[].health`): read strictly,
 * a route's keys laid over the top-level ones, and the probe each route's backends get.
 *
 * @module
 */
import type { Node } from "./_yaml.ts";
import { join, type Source } from "./_source.ts";
import type { Health } from "./defaults.ts";
import { isProbePath } from "../upstream/health/active.ts";

/** The keys of `health:` and of `routes[].health:`. */
export const HEALTH_KEYS = [
  "failures",
  "rise",
  "backoff",
  "path",
  "interval",
  "timeout",
  "grpc",
  "grpc_service",
  "tcp",
  "active",
] as const;

/**
 * Reads a `health:` mapping laid over `base` (the defaults for the top level, the
 * top-level section for a route). A mapping that names `path` or `grpc: true` sets
 * the kind of probe for itself: a route's `path` replaces a top-level `grpc: true`,
 * its `grpc: true` replaces a top-level `path`; `grpc: false` keeps only the `path`.
 *
 * @param at where the mapping is, e.g. `health` or `routes[2].health`.
 * @returns the merged settings (errors go to `src`).
 */
export function readHealth(src: Source, node: Node | undefined, at: string, base: Health): Health {
  const m = src.map(node, at, HEALTH_KEYS);
  const out: Health = { ...base };
  for (const k of ["failures", "rise"] as const) {
    out[k] = src.int(m.get(k), join(at, k), 1, 1000) ?? out[k];
  }
  for (const k of ["backoff", "interval", "timeout"] as const) {
    const v = src.duration(m.get(k), join(at, k));
    if (v === undefined) continue;
    out[k] = v;
    if (k !== "backoff" && v === 0) src.fail(m.get(k), join(at, k), "must be more than 0ms");
  }
  const path = src.string(m.get("path"), join(at, "path"));
  const grpc = src.bool(m.get("grpc"), join(at, "grpc"));
  const tcp = src.bool(m.get("tcp"), join(at, "tcp"));
  if (path !== undefined || grpc !== undefined || tcp === true) { // this mapping says what the probe is
    if (path !== undefined || grpc === true || tcp === true) delete out.path; // `grpc: false` keeps a path
    delete out.grpc;
    delete out.grpc_service;
  }
  if (path !== undefined || grpc === true || tcp !== undefined) delete out.tcp;
  if (tcp === true) {
    out.tcp = true;
    if (path !== undefined || grpc === true) {
      src.fail(
        m.get("tcp"),
        join(at, "tcp"),
        "tcp: true probes by connecting: leave out path and grpc",
      );
    }
  }
  if (path !== undefined) {
    out.path = path;
    if (!isProbePath(path)) {
      src.fail(m.get("path"), join(at, "path"), `must be a path like /healthz: received "${path}"`);
    }
  }
  if (grpc !== undefined) out.grpc = grpc;
  if (path !== undefined && grpc === true) {
    src.fail(m.get("grpc"), join(at, "grpc"), "grpc: true probes Health/Check: leave out path");
  }
  const service = src.string(m.get("grpc_service"), join(at, "grpc_service"));
  if (service !== undefined) {
    out.grpc_service = service;
    if (out.grpc !== true) {
      src.fail(m.get("grpc_service"), join(at, "grpc_service"), "needs grpc: true");
    }
  }
  const active = src.bool(m.get("active"), join(at, "active"));
  if (active !== undefined) out.active = active;
  if (active === true && out.path === undefined && out.grpc !== true && out.tcp !== true) {
    src.fail(
      m.get("active"),
      join(at, "active"),
      "needs path, grpc: true or tcp: true (what to probe)",
    );
  }
  return out;
}

/**
 * A route's settings as its backends get them: without `active`, and with `path`,
 * `grpc`, `grpc_service` and `tcp` only while active checks are on, so active checks
 * are on exactly when `path`, `grpc` or `tcp` is present.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { DEFAULTS } from "./defaults.ts";
 * import { routeHealth } from "./health.ts";
 * const off = routeHealth({ ...DEFAULTS.health, path: "/healthz", active: false });
 * assertEquals(off.path, undefined);
 * assertEquals(routeHealth({ ...DEFAULTS.health, grpc: false }).grpc, undefined);
 * ```
 */
export function routeHealth(h: Health): Health {
  const { active, path, grpc, grpc_service, tcp, ...rest } = h;
  const out: Health = { ...rest };
  if (active === false) return out;
  if (tcp === true) out.tcp = true;
  else if (grpc === true) {
    out.grpc = true;
    if (grpc_service !== undefined) out.grpc_service = grpc_service;
  } else if (path !== undefined) out.path = path;
  return out;
}
