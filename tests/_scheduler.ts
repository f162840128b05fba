/**
 * Helpers shared by the scheduler tests.
 *
 * @module
 */
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { type Scheduler } from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";

export function backend(name: string, priority = 0, weight = 1): Backend {
  return createBackend({ hostname: `${name}.test`, port: 80, priority, weight, name });
}

/** The seed table: b1(p0,w30) b2(p0,w20) b3(p10,w40). */
export function seed(): Backend[] {
  return [backend("b1", 0, 30), backend("b2", 0, 20), backend("b3", 10, 40)];
}

/** Fresh objects with the same ids, as a DNS re-lookup produces. */
export function relookup(backends: readonly Backend[]): Backend[] {
  return backends.map((b) => backend(b.name, b.priority, b.weight));
}

export function picks(s: Scheduler, n: number): string[] {
  return Array.from({ length: n }, () => s.next()?.name ?? "-");
}

export function counts(s: Scheduler, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const name = s.next()?.name ?? "-";
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

/** A deterministic PRNG so failures reproduce. */
/** A small seeded PRNG (mulberry32): the same picks on every run. */
export function random(seedValue: number): () => number {
  let x = seedValue >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** nginx's smooth weighted round-robin, O(n) per pick: the reference. */
export function nginxSwrr(weights: readonly number[], n: number): number[] {
  const current = weights.map(() => 0);
  const total = weights.reduce((a, b) => a + b, 0);
  const out: number[] = [];
  for (let p = 0; p < n; p++) {
    let best = 0;
    for (let i = 0; i < weights.length; i++) {
      current[i]! += weights[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out.push(best);
  }
  return out;
}

export function indexPicks(weights: readonly number[], n: number): number[] {
  const list = weights.map((w, i) => backend(`${i}`, 0, w));
  const s = createScheduler("srv", list);
  return Array.from({ length: n }, () => Number(s.next()!.name));
}
