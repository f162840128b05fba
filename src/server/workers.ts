/**
 * `workers: N`: N event loops sharing the listening ports through `SO_REUSEPORT`,
 * the kernel spreading connections between them. The first one runs in the main
 * thread (with the admin listener); the others are Web Workers running
 * {@linkcode Balancer} on the same config file, so no permission beyond
 * `--allow-net --allow-read` is needed.
 *
 * @module
 */
import type { WorkerStats } from "../admin/combined.ts";
import type { ReloadResult } from "./balancer.ts";
import type { SharedSet } from "../upstream/discovery/shared.ts";
import { within } from "../_async.ts";

/**
 * Messages to a worker. The main thread does the SRV lookups and active health checks
 * for every worker: `sets` carries a route's discovered backends, `probed` the backends
 * the active checks hold down (both also in `start`).
 */
export type ToWorker =
  | { type: "start"; file: string; index: number; sets: SharedSet[]; down: string[] }
  | { type: "sets"; set: SharedSet }
  | { type: "probed"; down: string[] }
  | { type: "reload" }
  | { type: "stats" }
  | { type: "close" };

/** Messages from a worker; `aside` asks the main thread to set an address aside. */
export type FromWorker =
  | { type: "ready" }
  | { type: "error"; message: string }
  | { type: "reloaded"; result: ReloadResult }
  | { type: "stats"; stats: WorkerStats | undefined }
  | { type: "aside"; route: string; id: string; reason: string }
  | { type: "closed" };

/** What the main thread shares with its workers (see {@linkcode startWorkers}). */
export interface WorkerShare {
  /** Every SRV route's current set. */
  sets(): SharedSet[];
  /** The backends the active checks hold down. */
  down(): string[];
  /** A worker could not connect to `id`, an address of `route`'s SRV target. */
  setAside(route: string, id: string, reason: string): void;
}

/** The extra workers of a balancer. */
export interface WorkerGroup {
  /** Passes a route's newly discovered set on to every worker. */
  share(set: SharedSet): void;
  /** Passes the backends the active checks hold down on to every worker. */
  probed(down: string[]): void;
  /** Asks every worker to re-read the config file. */
  reload(): Promise<ReloadResult[]>;
  /** Every worker's counters, for the admin listener; a worker silent for 1 s is left out. */
  stats(): Promise<WorkerStats[]>;
  /** Drains and stops every worker. */
  close(): Promise<void>;
}

/**
 * Starts `count` workers on `file`; resolves once each is serving. They look nothing
 * up and probe nothing themselves: `share` gives them the main thread's sets and
 * health at start, {@linkcode WorkerGroup.share} and {@linkcode WorkerGroup.probed}
 * later.
 *
 * @throws {Error} with the first worker's start error (the others are stopped).
 * @example
 * ```ts ignore
 * const group = await startWorkers(1, "unload.yaml", {
 *   sets: () => lb.sharedSets(),
 *   down: () => lb.probedDown(),
 *   setAside: (route, id, why) => lb.setAside(route, id, why),
 * });
 * await group.close();
 * ```
 */
export async function startWorkers(
  count: number,
  file: string,
  share: WorkerShare,
): Promise<WorkerGroup> {
  const workers: Array<
    { w: Worker; next: () => Promise<FromWorker>; stats: Array<(s?: WorkerStats) => void> }
  > = [];
  for (let i = 1; i <= count; i++) {
    const w = new Worker(new URL("./worker_entry.ts", import.meta.url), { type: "module" });
    const queue: FromWorker[] = [];
    const waiting: Array<(m: FromWorker) => void> = [];
    const deliver = (m: FromWorker) => {
      const take = waiting.shift();
      if (take) take(m);
      else queue.push(m);
    };
    // stats answers go to their own waiters, one answer per request (a scrape may
    // overlap a reload)
    const stats: Array<(s?: WorkerStats) => void> = [];
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "stats") stats.shift()?.(m.stats);
      else if (m.type === "aside") share.setAside(m.route, m.id, m.reason);
      else deliver(m);
    };
    w.onerror = (e) => {
      e.preventDefault();
      deliver({ type: "error", message: e.message });
    };
    const next = () =>
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : new Promise<FromWorker>((r) => waiting.push(r));
    workers.push({ w, next, stats });
    w.postMessage(
      { type: "start", file, index: i, sets: share.sets(), down: share.down() } satisfies ToWorker,
    );
  }
  const started = await Promise.all(workers.map((x) => x.next()));
  const close = async () => {
    await Promise.all(workers.map(async (x) => {
      x.w.postMessage({ type: "close" } satisfies ToWorker);
      await x.next();
      x.w.terminate();
    }));
  };
  const failed = started.find((m) => m.type === "error");
  if (failed?.type === "error") {
    for (const x of workers) x.w.terminate();
    throw new Error(`worker failed to start: ${failed.message}`);
  }
  const post = (m: ToWorker) => {
    for (const x of workers) x.w.postMessage(m);
  };
  return {
    share: (set) => post({ type: "sets", set }),
    probed: (down) => post({ type: "probed", down }),
    async reload() {
      return await Promise.all(workers.map(async (x) => {
        x.w.postMessage({ type: "reload" } satisfies ToWorker);
        const m = await x.next();
        return m.type === "reloaded" ? m.result : { ok: false, error: "worker did not answer" };
      }));
    },
    async stats() {
      const answers = await Promise.all(workers.map((x) =>
        within(
          new Promise<WorkerStats | undefined>((resolve) => {
            x.stats.push(resolve);
            x.w.postMessage({ type: "stats" } satisfies ToWorker);
          }),
          1000,
        )
      ));
      return answers.filter((s) => s !== undefined);
    },
    close,
  };
}
