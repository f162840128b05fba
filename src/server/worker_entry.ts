/**
 * Entry point of an extra worker (see {@linkcode startWorkers} in workers.ts):
 * runs a {@linkcode Balancer} that joins the main thread's ports.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { workerStats } from "../admin/combined.ts";
import { Balancer } from "./balancer.ts";
import { loadConfig } from "../config/config.ts";
import { createLogger } from "../observe/log.ts";
import type { FromWorker, ToWorker } from "./workers.ts";

let lb: Balancer | undefined;
const reply = (m: FromWorker) => self.postMessage(m);

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "start") {
    try {
      const config = await loadConfig(m.file);
      const logger = createLogger({ access: config.log.access, worker: m.index });
      lb = await Balancer.start(config, { logger, reusePort: "join" });
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
