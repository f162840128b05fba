import { assert, assertEquals } from "@std/assert";
import type { Backend } from "../src/upstream/backend.ts";
import { type Scheduler } from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { beginRequest, endRequest, markDown, markUp } from "../src/upstream/backend_state.ts";
import { backend, picks, random, relookup, seed } from "./_scheduler.ts";

// ----------------------------------------------------------- least_conn mode

/** As the proxy does when a request starts: pick, then count it in flight. */
function start(s: Scheduler): Backend {
  const b = s.next()!;
  beginRequest(b);
  return b;
}

/** Brings a backend to `inflight` requests, as a run of starts or ends would. */
function load(b: Backend, inflight: number): void {
  while (b.inflight < inflight) beginRequest(b);
  while (b.inflight > inflight) endRequest(b);
}

Deno.test("scheduler least_conn mode picks the backend with the fewest requests in flight", () => {
  const list = seed();
  const s = createScheduler("least_conn", list);
  load(list[0]!, 4);
  load(list[1]!, 2);
  load(list[2]!, 3);
  assertEquals(s.next(), list[1]);
  load(list[1]!, 5);
  assertEquals(s.next(), list[2]);
  markDown(list[2]!);
  load(list[2]!, 0);
  assertEquals(s.next(), list[0]);
});

Deno.test("scheduler least_conn mode spreads equal loads in turn", () => {
  const list = seed();
  for (const b of list) load(b, 7);
  const s = createScheduler("least_conn", list);
  assertEquals(picks(s, 6).join(" "), "b1 b2 b3 b1 b2 b3");
  for (const b of list) load(b, 0);
  for (let i = 0; i < 30; i++) start(s);
  assertEquals(list.map((b) => b.inflight), [10, 10, 10]);
});

Deno.test("scheduler least_conn mode follows every load change made by beginRequest and endRequest", () => {
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", [a, b, c]);
  const order = [start(s), start(s), start(s), start(s), start(s)].map((x) => x.name);
  assertEquals(order.join(" "), "a b c a b"); // equal loads take turns, least recently picked first
  assertEquals([a, b, c].map((x) => x.inflight), [2, 2, 1]);
  assertEquals(start(s), c);
  endRequest(b);
  assertEquals(start(s), b);
  endRequest(a);
  endRequest(a);
  assertEquals(start(s), a);
  assertEquals(start(s), a); // a at 1 is still below b and c at 2
  load(b, 0);
  assertEquals(picks(s, 3).join(" "), "b b b"); // next() alone does not change a load
});

// Two routes can hold the same backend record (same address, priority and weight), and
// a reload's new routes hold the records of the old ones: each scheduler sees the load
// changes the other route's requests make, at once.
Deno.test("scheduler least_conn mode does not prefer a backend another route loaded", () => {
  const list = [backend("a"), backend("b"), backend("c")];
  const mine = createScheduler("least_conn", list);
  const other = createScheduler("least_conn", list);
  for (const x of list) load(x, 2);
  assertEquals(start(other), list[0]); // and more of the other route's requests on a
  for (let i = 0; i < 6; i++) beginRequest(list[0]!);
  assertEquals(picks(mine, 6).join(" "), "b c b c b c");
});

Deno.test("scheduler least_conn mode prefers at once a backend whose load another route dropped", () => {
  const list = [backend("a"), backend("b"), backend("c"), backend("d")];
  const mine = createScheduler("least_conn", list);
  createScheduler("least_conn", list); // the other route, whose requests on d end
  for (const x of list) load(x, 5);
  load(list[3]!, 0);
  assertEquals(picks(mine, 3).join(" "), "d d d");
});

Deno.test("scheduler least_conn mode picks the least loaded backend when two routes share backends", () => {
  const n = 12;
  const list = Array.from({ length: n }, (_, i) => backend(`n${i}`));
  const routes = [createScheduler("least_conn", list), createScheduler("least_conn", list)];
  const running: Backend[] = [];
  const rand = random(17);
  for (let op = 0; op < 20_000; op++) {
    if (running.length > 0 && rand() < running.length / (3 * n)) {
      endRequest(running.splice(Math.floor(rand() * running.length), 1)[0]!);
      continue;
    }
    const least = Math.min(...list.map((x) => x.inflight));
    const b = start(routes[rand() < 0.5 ? 0 : 1]!);
    assertEquals(b.inflight - 1, least, `op ${op}: ${b.name} was not among the least loaded`);
    running.push(b);
  }
  for (const b of running) endRequest(b);
  assert(list.every((b) => b.inflight === 0));
});

Deno.test("scheduler least_conn mode orders a re-looked-up backend by its new record's load", () => {
  const [a, b] = [backend("a"), backend("b")];
  const s = createScheduler("least_conn", [a, b]);
  const [a2] = relookup([a]); // same id, a fresh record: the old one's requests are not its own
  s.update([a2!, b]);
  load(b, 1);
  for (let i = 0; i < 5; i++) beginRequest(a); // late requests on the old record
  assertEquals(picks(s, 2).join(" "), "a a");
  assertEquals(s.next(), a2);
});

Deno.test("scheduler least_conn mode skips an unhealthy least loaded backend and takes it back", () => {
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", [a, b, c]);
  load(b, 3);
  load(c, 3);
  markDown(a);
  assertEquals(picks(s, 4).join(" "), "b c b c");
  load(a, 5); // its load changes while it is out: read again when it returns
  markUp(a);
  assertEquals(picks(s, 4).join(" "), "b c b c");
  load(a, 1);
  assertEquals(picks(s, 2).join(" "), "a a");
});

Deno.test("scheduler least_conn mode takes back a backend skipped for one pick, as a retry does", () => {
  const [a, b] = [backend("a"), backend("b")];
  const s = createScheduler("least_conn", [a, b]);
  load(b, 4);
  markDown(a); // the proxy hides a backend that just failed for one pick
  assertEquals(s.next(), b);
  markUp(a);
  assertEquals(picks(s, 3).join(" "), "a a a");
});

Deno.test("scheduler least_conn mode serves again as soon as a backend is healthy after all were down", () => {
  const list = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", list);
  for (const x of list) markDown(x);
  assertEquals(picks(s, 3).join(" "), "- - -");
  markUp(list[2]!);
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
        markDown(b);
        pending.delete(i);
        for (const [j, deadline] of pending) pending.set(j, deadline + 1); // one more to park
      } else {
        markUp(b);
        // A parked backend is re-checked within as many picks as there are parked ones.
        const parked = list.filter((x) => !x.healthy).length + pending.size + 1;
        pending.set(i, pickCount + parked);
      }
      continue;
    }
    if (running.length > 0 && roll < 0.5) {
      const b = running.splice(Math.floor(rand() * running.length), 1)[0]!;
      endRequest(b);
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
    beginRequest(b);
    running.push(b);
  }
});
