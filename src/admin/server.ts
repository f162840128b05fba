/**
 * The admin listener: `GET /metrics` (Prometheus), `GET /status` (JSON), `GET /`
 * (the live dashboard), `GET /healthz` and `GET /readyz` (probes) and `POST /reload`.
 *
 * @module
 */
import { addrKey, type HostPort } from "../config/address.ts";
import { sleep } from "../_async.ts";
import { EXHAUSTED_PAUSE, exhaustionHint } from "../observe/exhaustion.ts";
import { combined, type WorkerStats } from "./combined.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";
import { type AdminSource, renderMetrics } from "./prometheus.ts";
import { buildStatus } from "./status.ts";
import { healthz, type ReadinessSource, readyz } from "./probes.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./_text_format.ts";

/** A running admin listener. */
export interface AdminServer {
  /** The bound address (port 0 in the config picks a free one). */
  readonly addr: Deno.NetAddr;
  /** Stops listening and waits for open requests to end. */
  close(): Promise<void>;
}

/** Extra endpoints served before the built-in ones (the demo adds its controls). */
export type AdminHandler = (
  req: Request,
  url: URL,
) => Response | undefined | Promise<Response | undefined>;

/**
 * What the admin listener needs of a running balancer: what it reports, where it
 * logs, and a way to reload. The balancer satisfies it; admin never imports it.
 */
export type AdminTarget = AdminSource & ReadinessSource & {
  /** Where admin's own errors go. */
  readonly log: { error(message: string): void };
  /** Where running out of descriptors on the admin listener is reported. */
  readonly exhaustion: AdminSource["exhaustion"] & { report(where: string, e: unknown): void };
  /** Re-reads the config file and applies it. */
  reloadFromFile(): Promise<{ ok: boolean; error?: string }>;
};

/** Options for {@linkcode startAdmin}. */
export interface AdminOptions {
  /** Asked first for every request; `undefined` falls through to the built-in endpoints. */
  handle?: AdminHandler;
  /** With `workers: N`, the other workers' counters, added to the balancer's (`combined.ts`). */
  others?: (() => Promise<WorkerStats[]>) | undefined;
}

const NO_STORE = { "cache-control": "no-store" };

/**
 * Starts the admin listener for `lb` on `addr`.
 *
 * `Deno.serve` stops for good at an accept error (out of descriptors, say):
 * the listener is then bound again on the same address, every
 * {@linkcode EXHAUSTED_PAUSE} ms until that works, so `/metrics` comes back
 * with the descriptors.
 *
 * @param lb The balancer to report on and reload.
 * @param addr Where to listen.
 * @param options Extra endpoints.
 * @returns The bound address and a way to stop it.
 * @throws {Error} when the address cannot be bound.
 *
 * @example
 * ```ts ignore
 * const admin = startAdmin(lb, { hostname: "127.0.0.1", port: 9090 });
 * await admin.close();
 * ```
 */
export function startAdmin(
  lb: AdminTarget,
  addr: HostPort,
  options: AdminOptions = {},
): AdminServer {
  const ac = new AbortController();
  const others = options.others;
  // what /metrics and /status report: this balancer, plus the other workers' counters
  const source = async () => others ? combined(lb, await others()) : lb;
  const serve = (port: number) =>
    Deno.serve({
      hostname: addr.hostname,
      port,
      signal: ac.signal,
      onListen: () => {},
      onError: (e) => {
        lb.log.error(`admin: ${(e as Error)?.stack ?? e}`);
        return new Response("internal error\n", { status: 500 });
      },
    }, async (req) => {
      const url = new URL(req.url);
      const extra = await options.handle?.(req, url);
      if (extra) return extra;
      return route(lb, source, req, url.pathname);
    });
  let server = serve(addr.port);
  const bound = server.addr as Deno.NetAddr;
  const where = `admin accept on ${addrKey(bound)}`;
  const watching = (async () => {
    while (!ac.signal.aborted) {
      try {
        await server.finished;
        continue; // ends without an error only when aborted
      } catch (e) {
        if (ac.signal.aborted) break;
        if (exhaustionHint(e) !== undefined) lb.exhaustion.report(where, e);
        else lb.log.error(`${where} failed: ${(e as Error).message}; listening again`);
      }
      for (;;) {
        await sleep(EXHAUSTED_PAUSE, ac.signal);
        if (ac.signal.aborted) break;
        try {
          server = serve(bound.port);
          break;
        } catch { /* still out of descriptors, or the port is taken: try again */ }
      }
    }
  })();
  return {
    addr: bound,
    async close() {
      ac.abort();
      await watching;
      await server.finished.catch(() => {});
    },
  };
}

async function route(
  lb: AdminTarget,
  source: () => Promise<AdminSource>,
  req: Request,
  path: string,
): Promise<Response> {
  const read = req.method === "GET" || req.method === "HEAD";
  switch (path) {
    case "/":
      if (!read) return notAllowed("GET, HEAD");
      return new Response(DASHBOARD_HTML, {
        headers: { "content-type": "text/html; charset=utf-8", ...NO_STORE },
      });
    case "/metrics":
      if (!read) return notAllowed("GET, HEAD");
      return new Response(renderMetrics(await source()), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE, ...NO_STORE },
      });
    case "/status":
      if (!read) return notAllowed("GET, HEAD");
      return Response.json(buildStatus(await source()), { headers: NO_STORE });
    case "/healthz":
      return read ? healthz() : notAllowed("GET, HEAD");
    case "/readyz":
      return read ? readyz(lb) : notAllowed("GET, HEAD");
    case "/reload": {
      if (req.method !== "POST") return notAllowed("POST");
      const result = await lb.reloadFromFile();
      return Response.json(result, { status: result.ok ? 200 : 400 });
    }
    default:
      return new Response("not found\n", { status: 404 });
  }
}

/**
 * A 405 answer naming the methods allowed.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { notAllowed } from "./server.ts";
 * assert(notAllowed("POST").headers.get("allow") === "POST");
 * ```
 */
export function notAllowed(allow: string): Response {
  return new Response("method not allowed\n", { status: 405, headers: { allow } });
}
