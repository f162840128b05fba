/**
 * Orchestrator probes on the admin listener: `GET /healthz` (liveness: the
 * process answers) and `GET /readyz` (readiness: listeners bound, every route
 * with a healthy backend unless `routes[].optional`, not draining).
 *
 * The admin listener starts last, after the config is loaded, the routes built
 * (SRV names looked up once) and the listeners bound: a `/readyz` answer at all
 * means the config is loaded.
 *
 * @module
 */
import type { HostPort } from "../config/address.ts";

/** What readiness is judged from (the running `Balancer` is one). */
export interface ReadinessSource {
  /** True from the shutdown signal until the process ends. */
  readonly draining: boolean;
  /** The configuration in force: the listeners it asks for. */
  readonly config: { readonly listen: { readonly http?: HostPort; readonly https?: HostPort } };
  /** The listeners bound now. */
  readonly addrs: { readonly http?: Deno.NetAddr; readonly https?: Deno.NetAddr };
  /** Routes with their backends. */
  readonly routes: readonly {
    readonly name: string;
    readonly config: { readonly optional?: boolean };
    readonly scheduler: { readonly backends: readonly { readonly healthy: boolean }[] };
  }[];
}

const TEXT = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };

/**
 * Why `lb` should get no traffic now, one short line per reason; empty when ready.
 * While draining the only reason is `draining`.
 *
 * @param lb The balancer (or anything shaped like it).
 * @returns Reasons, e.g. `route app: no healthy backend (1 down)`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { notReady } from "./probes.ts";
 * const lb = {
 *   draining: false,
 *   config: { listen: { http: { hostname: "127.0.0.1", port: 8080 } } },
 *   addrs: { http: { transport: "tcp" as const, hostname: "127.0.0.1", port: 8080 } },
 *   routes: [
 *     { name: "app", config: {}, scheduler: { backends: [{ healthy: false }] } },
 *     { name: "extra", config: { optional: true }, scheduler: { backends: [] } },
 *   ],
 * };
 * assertEquals(notReady(lb), ["route app: no healthy backend (1 down)"]);
 * assertEquals(notReady({ ...lb, draining: true }), ["draining"]);
 * ```
 */
export function notReady(lb: ReadinessSource): string[] {
  if (lb.draining) return ["draining"];
  const why: string[] = [];
  const { listen } = lb.config;
  for (const proto of ["http", "https"] as const) {
    const want = listen[proto];
    if (want !== undefined && lb.addrs[proto] === undefined) {
      why.push(`listen.${proto} ${want.hostname}:${want.port}: not bound`);
    }
  }
  for (const r of lb.routes) {
    if (r.config.optional) continue;
    const all = r.scheduler.backends;
    if (all.some((b) => b.healthy)) continue;
    const detail = all.length === 0 ? "none discovered" : `${all.length} down`;
    why.push(`route ${r.name}: no healthy backend (${detail})`);
  }
  return why;
}

/**
 * The `GET /readyz` answer: 200 `ok`, or 503 with the reasons of
 * {@linkcode notReady}, one per line.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { readyz } from "./probes.ts";
 * const res = readyz({ draining: true, config: { listen: {} }, addrs: {}, routes: [] });
 * assertEquals([res.status, await res.text()], [503, "draining\n"]);
 * ```
 */
export function readyz(lb: ReadinessSource): Response {
  const why = notReady(lb);
  if (why.length === 0) return new Response("ok\n", { headers: TEXT });
  return new Response(why.join("\n") + "\n", { status: 503, headers: TEXT });
}

/**
 * The `GET /healthz` answer: 200 `ok` for as long as the process answers at
 * all (draining included).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { healthz } from "./probes.ts";
 * const res = healthz();
 * assertEquals([res.status, await res.text()], [200, "ok\n"]);
 * ```
 */
export function healthz(): Response {
  return new Response("ok\n", { headers: TEXT });
}
