/**
 * Entry point of an extra worker (see {@linkcode startWorkers} in workers.ts):
 * runs a {@linkcode Balancer} that joins the main thread's ports.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { workerStats } from "../admin/combined.ts";
import { Balancer } from "./balancer.ts";
import { SharedSets } from "../upstream/discovery/shared.ts";
import { loadConfig } from "../config/config.ts";
import { createLogger } from "../observe/log.ts";
import type { FromWorker, ToWorker } from "./workers.ts";

let lb: Balancer | undefined;
const reply = (m: FromWorker) => self.postMessage(m);
// what the main thread discovered and probed, for this worker's routes
const sets = new SharedSets();
let down: string[] = [];

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "sets") {
    sets.put(m.set);
  } else if (m.type === "probed") {
    down = m.down;
    lb?.applyProbed(down);
  } else if (m.type === "start") {
    try {
      for (const set of m.sets) sets.put(set);
      down = m.down;
      const config = await loadConfig(m.file);
      const logger = createLogger({ access: config.log.access, worker: m.index });
      const setAside = (route: string, id: string, reason: string) =>
        reply({ type: "aside", route, id, reason });
      lb = await Balancer.start(config, { logger, reusePort: "join", shared: { sets, setAside } });
      lb.applyProbed(down);
      reply({ type: "ready" });
    } catch (err) {
      reply({ type: "error", message: (err as Error).message });
    }
  } else if (m.type === "stats") {
    reply({ type: "stats", stats: lb ? workerStats(lb) : undefined }); // always one answer
  } else if (m.type === "reload") {
    const result = lb ? await lb.reloadFromFile() : { ok: false, error: "not started" };
    reply({ type: "reloaded", result });
  } else {
    await lb?.close();
    reply({ type: "closed" });
  }
};
