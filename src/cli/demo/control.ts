/**
 * Demo-only admin endpoints that stop and restart the demo backends, so an outage can
 * be staged and watched on the dashboard:
 *
 * - `GET /demo/backends`: each backend's name, port, whether it runs, requests answered
 *   (over its whole life: a stop and a start do not reset it)
 * - `POST /demo/backends/NAME/stop`: stops it (the balancer sees refused connections)
 * - `POST /demo/backends/NAME/start`: starts it again on the same port
 * - `POST /reload`: the demo has no config file, so its embedded config is applied again
 *   (when `reload` is given)
 *
 * @module
 */
import { type AdminHandler, notAllowed } from "../../admin/server.ts";
import { type DemoBackend, startDemoBackend } from "./backends.ts";

const ACTION_REGEXP = /^\/demo\/backends\/([^/]+)\/(stop|start)$/;

/** A demo backend slot: the same name and port, running or not. */
export interface DemoSlot {
  /** Backend name (`b1`). */
  name: string;
  /** Its port, kept across restarts (the SRV records point there). */
  port: number;
  /** The running server, or undefined while stopped. */
  backend: DemoBackend | undefined;
  /** Requests answered by the servers of this slot that have stopped. @default {0} */
  served?: number;
}

/** Options for {@linkcode demoControl}. */
export interface DemoControlOptions {
  /** Applies the demo's embedded config again: what `POST /reload` does in the demo. */
  reload?: () => Promise<{ ok: boolean; error?: string }>;
}

/**
 * The admin handler for the demo's controls over `slots` (mutated as backends stop
 * and start).
 *
 * @param slots The demo backends.
 * @param options What `POST /reload` does.
 * @returns A handler for {@linkcode startAdmin}'s `handle` option.
 *
 * @example
 * ```ts ignore
 * startAdmin(lb, addr, { handle: demoControl(slots) });
 * // curl -X POST http://127.0.0.1:9090/demo/backends/b1/stop
 * ```
 */
export function demoControl(slots: DemoSlot[], options: DemoControlOptions = {}): AdminHandler {
  let busy = Promise.resolve();
  const reload = options.reload;
  return async (req, url) => {
    if (url.pathname === "/reload" && req.method === "POST" && reload !== undefined) {
      const result = await reload();
      const note = "the demo has no config file: its embedded config was applied again";
      return Response.json({ ...result, note }, { status: result.ok ? 200 : 500 });
    }
    if (url.pathname === "/demo/backends" && req.method === "GET") {
      return Response.json(slots.map((s) => ({
        name: s.name,
        port: s.port,
        running: s.backend !== undefined,
        requests: (s.served ?? 0) + (s.backend?.count ?? 0),
      })));
    }
    const m = ACTION_REGEXP.exec(url.pathname);
    if (m === null) return undefined;
    if (req.method !== "POST") return notAllowed("POST");
    const slot = slots.find((s) => s.name === m[1]);
    if (slot === undefined) return new Response(`no demo backend ${m[1]}\n`, { status: 404 });
    const run = async (): Promise<Response> => {
      if (m[2] === "stop") {
        if (slot.backend === undefined) return Response.json({ name: slot.name, running: false });
        const b = slot.backend;
        slot.backend = undefined;
        await b.close();
        slot.served = (slot.served ?? 0) + b.count; // the next server counts from 0
      } else if (slot.backend === undefined) {
        try {
          slot.backend = await startDemoBackend(slot.name, slot.port);
        } catch (e) {
          return new Response(`cannot start ${slot.name}: ${(e as Error).message}\n`, {
            status: 500,
          });
        }
      }
      return Response.json({ name: slot.name, running: slot.backend !== undefined });
    };
    // one change at a time: a stop and a start racing would leave two servers
    const p = busy.then(run);
    busy = p.then(() => {}, () => {});
    return p;
  };
}
