/**
 * Cost of a scheduler pick, per mode, for 3, 100 and 1000 backends with random
 * weights 1..65535 in four priority groups. Each iteration makes {@linkcode PICKS}
 * picks: divide the time per iteration by 1000 for the time per pick.
 *
 * `least_conn` runs against a busy pool (every backend has 1..8 requests in
 * flight, no load changes between picks), against an idle pool (every backend at
 * 0, so every pick is a tie), and as the proxy drives it: each pick starts a
 * request (`beginRequest`, which tells the scheduler) and ends the one started
 * {@linkcode WINDOW} picks earlier (`endRequest`), so the time per pick includes
 * two load changes.
 *
 * `hash` runs keyless in the loop over modes (its `rfc2782` fallback) and, in
 * its own group, with a key per pick (`user-0` …, cycling over
 * {@linkcode KEYS}) for 10 and 1000 backends; "hash table build" is `update()`
 * to a set of 1000 whose weights changed, so every Maglev table is rebuilt
 * (divide nothing: one build per iteration).
 *
 *     deno bench bench/scheduler_bench.ts
 *
 * @module
 */
import { type Backend, createBackend } from "../src/upstream/backend.ts";
import { SCHEDULER_MODES } from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { beginRequest, endRequest } from "../src/upstream/backend_state.ts";
import { HashScheduler } from "../src/scheduler/hash.ts";
import { random } from "../tests/_scheduler.ts";

const PICKS = 1000;
/** Requests in flight at once in the proxy-driven `least_conn` bench. */
const WINDOW = 64;
/** Distinct keys the keyed `hash` bench cycles through. */
const KEYS = Array.from({ length: 4096 }, (_, i) => `user-${i}`);

/** `size` backends, each with 1..8 requests in flight unless `busy` is false. */
function backends(size: number, { busy = true } = {}): Backend[] {
  const rand = random(size);
  return Array.from({ length: size }, (_, i) => {
    const b = createBackend({
      hostname: `10.0.${i >> 8}.${i & 255}`,
      port: 8080,
      priority: 10 * Math.floor(rand() * 4),
      weight: 1 + Math.floor(rand() * 65535),
    });
    if (busy) { for (let n = 1 + Math.floor(rand() * 8); n > 0; n--) beginRequest(b); }
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
  const driven = createScheduler("least_conn", backends(size));
  const started: (Backend | undefined)[] = Array(WINDOW).fill(undefined);
  let slot = 0;
  Deno.bench({
    name: `least_conn (proxy load changes), ${size} backends, ${PICKS} picks`,
    group: `${size} backends`,
    fn() {
      for (let i = 0; i < PICKS; i++) {
        const b = driven.next()!;
        beginRequest(b);
        const done = started[slot];
        if (done !== undefined) endRequest(done);
        started[slot] = b;
        slot = slot + 1 === WINDOW ? 0 : slot + 1;
      }
    },
  });
  const idle = backends(size, { busy: false });
  const scheduler = createScheduler("least_conn", idle);
  Deno.bench({
    name: `least_conn (idle pool), ${size} backends, ${PICKS} picks`,
    group: `${size} backends`,
    fn() {
      for (let i = 0; i < PICKS; i++) scheduler.next();
    },
  });
}

for (const size of [10, 1000]) {
  const hash = new HashScheduler(backends(size));
  let k = 0;
  Deno.bench({
    name: `hash with a key, ${size} backends, ${PICKS} picks`,
    group: "hash",
    fn() {
      for (let i = 0; i < PICKS; i++) {
        hash.next(undefined, KEYS[k]);
        k = (k + 1) & (KEYS.length - 1);
      }
    },
  });
}
{
  const a = backends(1000);
  const b = a.map((x) => ({ ...x, weight: x.weight === 65535 ? 1 : x.weight + 1 }));
  const hash = new HashScheduler(a);
  let flip = false;
  Deno.bench({
    name: "hash table build, 1000 backends (four priority groups)",
    group: "hash build",
    fn() {
      flip = !flip;
      hash.update(flip ? b : a);
    },
  });
}
