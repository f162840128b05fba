/**
 * Cost of a scheduler pick, per mode, for 3, 100 and 1000 backends with random
 * weights 1..65535 in four priority groups. Each iteration makes {@linkcode PICKS}
 * picks: divide the time per iteration by 1000 for the time per pick.
 *
 * `least_conn` runs against a busy pool (every backend has requests in flight),
 * its worst case where the O(n) scan cannot stop early at an idle backend, and
 * against an idle pool, its best case.
 *
 *     deno bench bench/scheduler_bench.ts
 *
 * @module
 */
import { type Backend, createBackend } from "../src/backend.ts";
import { createScheduler, SCHEDULER_MODES } from "../src/scheduler.ts";

const PICKS = 1000;

function random(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function backends(size: number): Backend[] {
  const rand = random(size);
  return Array.from({ length: size }, (_, i) => {
    const b = createBackend({
      hostname: `10.0.${i >> 8}.${i & 255}`,
      port: 8080,
      priority: 10 * Math.floor(rand() * 4),
      weight: 1 + Math.floor(rand() * 65535),
    });
    b.inflight = 1 + Math.floor(rand() * 8);
    return b;
  });
}

for (const size of [3, 100, 1000]) {
  for (const mode of SCHEDULER_MODES) {
    const scheduler = createScheduler(mode, backends(size));
    Deno.bench({
      name: `${mode}, ${size} backends, ${PICKS} picks`,
      group: `${size} backends`,
      baseline: mode === "srv",
      fn() {
        for (let i = 0; i < PICKS; i++) scheduler.next();
      },
    });
  }
  const idle = backends(size);
  for (const b of idle) b.inflight = 0;
  const scheduler = createScheduler("least_conn", idle);
  Deno.bench({
    name: `least_conn (idle pool), ${size} backends, ${PICKS} picks`,
    group: `${size} backends`,
    fn() {
      for (let i = 0; i < PICKS; i++) scheduler.next();
    },
  });
}
