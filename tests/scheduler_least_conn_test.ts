import { assert, assertEquals } from "@std/assert";
import type { Backend } from "../src/upstream/backend.ts";
import { type Scheduler } from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { backend, picks, random, seed } from "./_scheduler.ts";

// ----------------------------------------------------------- least_conn mode

Deno.test("scheduler least_conn mode picks the backend with the fewest requests in flight", () => {
  const list = seed();
  const s = createScheduler("least_conn", list);
  list[0]!.inflight = 4;
  list[1]!.inflight = 2;
  list[2]!.inflight = 3;
  assertEquals(s.next(), list[1]);
  list[1]!.inflight = 5;
  assertEquals(s.next(), list[2]);
  list[2]!.healthy = false;
  list[2]!.inflight = 0;
  assertEquals(s.next(), list[0]);
});

Deno.test("scheduler least_conn mode spreads equal loads in turn", () => {
  const list = seed();
  for (const b of list) b.inflight = 7;
  const s = createScheduler("least_conn", list);
  assertEquals(picks(s, 6).join(" "), "b1 b2 b3 b1 b2 b3");
  // As the proxy does: count each pick in flight until it is released.
  for (const b of list) b.inflight = 0;
  for (let i = 0; i < 30; i++) s.next()!.inflight++;
  assertEquals(list.map((b) => b.inflight), [10, 10, 10]);
});

/** As the proxy does when a request starts: pick, count it in flight, report the change. */
function start(s: Scheduler): Backend {
  const b = s.next()!;
  b.inflight++;
  s.loadChanged?.(b);
  return b;
}

/** As the proxy does when a request ends. */
function end(s: Scheduler, b: Backend): void {
  b.inflight--;
  s.loadChanged?.(b);
}

/** Sets a load and reports it, as a run of starts or ends would. */
function load(s: Scheduler, b: Backend, inflight: number): void {
  b.inflight = inflight;
  s.loadChanged?.(b);
}

Deno.test("scheduler least_conn mode follows the loads reported through loadChanged", () => {
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", [a, b, c]);
  const order = [start(s), start(s), start(s), start(s), start(s)].map((x) => x.name);
  assertEquals(order.join(" "), "a b c a b"); // equal loads take turns, least recently picked first
  assertEquals([a, b, c].map((x) => x.inflight), [2, 2, 1]);
  assertEquals(start(s), c);
  end(s, b);
  assertEquals(start(s), b);
  end(s, a);
  end(s, a);
  assertEquals(start(s), a);
  assertEquals(start(s), a); // a at 1 is still below b and c at 2
  load(s, b, 0);
  assertEquals(picks(s, 3).join(" "), "b b b"); // next() alone does not change a load
});

Deno.test("scheduler least_conn mode does not prefer a backend whose load rose unreported", () => {
  const list = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", list);
  for (const x of list) load(s, x, 2);
  list[0]!.inflight = 9; // another route's scheduler started requests on the shared object
  assertEquals(picks(s, 6).join(" "), "b c b c b c");
});

Deno.test("scheduler least_conn mode finds a backend whose load fell unreported within n picks", () => {
  const list = [backend("a"), backend("b"), backend("c"), backend("d")];
  const s = createScheduler("least_conn", list);
  for (const x of list) load(s, x, 5);
  load(s, list[3]!, 6);
  list[3]!.inflight = 0; // its requests ended through another route's scheduler
  assertEquals(picks(s, 6).join(" "), "a b c d d d");
});

Deno.test("scheduler least_conn mode stays within its bound when two routes share backends", () => {
  // Two schedulers over the same objects, each told only of its own requests' load changes.
  // Each key was read within the scheduler's last n picks, so a pick's load is at most the
  // highest load every other backend had since then.
  const n = 12;
  const list = Array.from({ length: n }, (_, i) => backend(`n${i}`));
  const routes = [createScheduler("least_conn", list), createScheduler("least_conn", list)];
  const running: [number, Backend][] = [];
  const loads: number[][] = []; // every state the loads went through, one row per change
  const snapshot = () => loads.push(list.map((b) => b.inflight));
  const pickStarts: number[][] = [[], []]; // per route: index in `loads` at each pick
  const rand = random(17);
  snapshot();
  for (let op = 0; op < 20_000; op++) {
    const r = rand() < 0.5 ? 0 : 1;
    const s = routes[r]!;
    if (running.length > 0 && rand() < running.length / (3 * n)) {
      const [i, b] = running.splice(Math.floor(rand() * running.length), 1)[0]!;
      end(routes[i]!, b);
      snapshot();
      continue;
    }
    const starts = pickStarts[r]!;
    starts.push(loads.length - 1);
    const from = starts[Math.max(0, starts.length - n)]!;
    const b = s.next()!;
    for (let j = 0; j < n; j++) {
      let most = 0;
      for (let t = from; t < loads.length; t++) most = Math.max(most, loads[t]![j]!);
      assert(b.inflight <= most, `op ${op}: ${b.name} at ${b.inflight}, n${j} at most ${most}`);
    }
    b.inflight++;
    s.loadChanged?.(b);
    snapshot();
    running.push([r, b]);
  }
});

Deno.test("scheduler least_conn mode skips an unhealthy least loaded backend and takes it back", () => {
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", [a, b, c]);
  load(s, b, 3);
  load(s, c, 3);
  a.healthy = false;
  assertEquals(picks(s, 4).join(" "), "b c b c");
  load(s, a, 5); // its load changes while it is out: read again when it returns
  a.healthy = true;
  assertEquals(picks(s, 4).join(" "), "b c b c");
  load(s, a, 1);
  assertEquals(picks(s, 2).join(" "), "a a");
});

Deno.test("scheduler least_conn mode takes back a backend skipped for one pick, as a retry does", () => {
  const [a, b] = [backend("a"), backend("b")];
  const s = createScheduler("least_conn", [a, b]);
  load(s, b, 4);
  a.healthy = false; // the proxy hides a backend that just failed for one pick
  assertEquals(s.next(), b);
  a.healthy = true;
  assertEquals(picks(s, 3).join(" "), "a a a");
});

Deno.test("scheduler least_conn mode serves again as soon as a backend is healthy after all were down", () => {
  const list = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", list);
  for (const x of list) x.healthy = false;
  assertEquals(picks(s, 3).join(" "), "- - -");
  list[2]!.healthy = true;
  assertEquals(s.next(), list[2]);
});

Deno.test("scheduler least_conn mode matches a brute-force least_conn at 1000 backends", () => {
  const n = 1000;
  const list = Array.from({ length: n }, (_, i) => backend(`n${i}`));
  const index = new Map(list.map((b, i) => [b, i]));
  const s = createScheduler("least_conn", list);
  const lastPick = list.map((_, i) => i); // reference tie order: least recently picked first
  let clock = n;
  let pickCount = 0;
  const pending = new Map<number, number>(); // healthy again, maybe still parked → pick deadline
  const running: Backend[] = [];
  const rand = random(23);
  const before = (i: number, j: number) =>
    list[i]!.inflight < list[j]!.inflight ||
    (list[i]!.inflight === list[j]!.inflight && lastPick[i]! < lastPick[j]!);
  for (let op = 0; op < 30_000; op++) {
    const roll = rand();
    if (roll < 0.01) {
      const i = Math.floor(rand() * n);
      const b = list[i]!;
      if (b.healthy) {
        b.healthy = false;
        pending.delete(i);
        for (const [j, deadline] of pending) pending.set(j, deadline + 1); // one more to park
      } else {
        b.healthy = true;
        // A parked backend is re-checked within as many picks as there are parked ones.
        const parked = list.filter((x) => !x.healthy).length + pending.size + 1;
        pending.set(i, pickCount + parked);
      }
      continue;
    }
    if (running.length > 0 && roll < 0.5) {
      const b = running.splice(Math.floor(rand() * running.length), 1)[0]!;
      end(s, b);
      continue;
    }
    pickCount++;
    for (const [i, deadline] of pending) if (pickCount >= deadline) pending.delete(i);
    let best = -1;
    for (let i = 0; i < n; i++) {
      if (!list[i]!.healthy || pending.has(i)) continue;
      if (best < 0 || before(i, best)) best = i;
    }
    const b = s.next()!;
    const got = index.get(b)!;
    if (pending.has(got)) assert(best < 0 || before(got, best), `op ${op}: revived n${got}`);
    else assertEquals(got, best, `op ${op}`);
    lastPick[got] = ++clock;
    b.inflight++;
    s.loadChanged?.(b);
    running.push(b);
  }
});
