import { assert, assertEquals, assertLess, assertThrows } from "@std/assert";
import {
  backend,
  counts,
  indexPicks,
  nginxSwrr,
  picks,
  random,
  relookup,
  seed,
} from "./_scheduler.ts";
import {
  isSchedulerMode,
  SCHEDULER_MODES,
  type SchedulerMode,
} from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { markDown, markUp } from "../src/upstream/backend_state.ts";

// ------------------------------------------------- cases shared by every mode

interface Case {
  name: string;
  /** Modes the case applies to; all when absent. */
  modes?: readonly SchedulerMode[];
  fn(mode: SchedulerMode): void;
}

const COMMON_CASES: readonly Case[] = [
  {
    name: "returns undefined for an empty set",
    fn(mode) {
      assertEquals(createScheduler(mode, []).next(), undefined);
    },
  },
  {
    name: "always returns a single backend",
    fn(mode) {
      const only = backend("only", 5, 7);
      const s = createScheduler(mode, [only]);
      for (let i = 0; i < 10; i++) assertEquals(s.next(), only);
    },
  },
  {
    name: "returns undefined when every backend is unhealthy",
    fn(mode) {
      const list = seed();
      const s = createScheduler(mode, list);
      picks(s, 4);
      for (const b of list) markDown(b);
      assertEquals(picks(s, 20), Array(20).fill("-"));
    },
  },
  {
    name: "skips an unhealthy backend",
    fn(mode) {
      const list = seed();
      markDown(list[1]!);
      const c = counts(createScheduler(mode, list), 90);
      assertEquals(c.b2, undefined);
      assert(c.b1! > 0, "b1 is picked");
    },
  },
  {
    name: "picks a backend again once it is healthy",
    fn(mode) {
      const list = [backend("a"), backend("b"), backend("c")];
      const s = createScheduler(mode, list);
      markDown(list[1]!);
      assert(!picks(s, 10).includes("b"));
      markUp(list[1]!);
      assert(picks(s, 6).includes("b"));
    },
  },
  {
    name: "rotates evenly over equal priorities and weights",
    fn(mode) {
      const s = createScheduler(mode, [backend("a"), backend("b"), backend("c")]);
      for (let round = 0; round < 5; round++) {
        assertEquals(picks(s, 3).sort(), ["a", "b", "c"]);
      }
    },
  },
  {
    name: "keeps the sequence when a re-lookup returns the same set shuffled",
    fn(mode) {
      const plain = createScheduler(mode, seed());
      const list = seed();
      const updated = createScheduler(mode, list);
      const expected = picks(plain, 40);
      const got = picks(updated, 4);
      updated.update(relookup([list[2]!, list[0]!, list[1]!]));
      got.push(...picks(updated, 3));
      updated.update(relookup([list[1]!, list[2]!, list[0]!]));
      got.push(...picks(updated, 33));
      assertEquals(got, expected);
    },
  },
  {
    name: "returns the objects passed to the latest update",
    fn(mode) {
      const s = createScheduler(mode, seed());
      picks(s, 3);
      const fresh = relookup(seed());
      s.update(fresh);
      for (let i = 0; i < 20; i++) assert(fresh.includes(s.next()!));
      assertEquals([...s.backends].sort((a, b) => a.id.localeCompare(b.id)), fresh);
    },
  },
  {
    name: "stops picking a backend removed by update",
    fn(mode) {
      const list = seed();
      const s = createScheduler(mode, list);
      picks(s, 2);
      s.update([list[0]!, list[2]!]);
      assert(!picks(s, 50).includes("b2"));
      assertEquals(s.backends.map((b) => b.name), ["b1", "b3"]);
    },
  },
  {
    name: "picks a backend added by update",
    fn(mode) {
      const list = seed();
      const s = createScheduler(mode, list);
      picks(s, 3);
      s.update([backend("b4", 0, 10), ...list]);
      assert(picks(s, 50).includes("b4"));
      assertEquals(s.backends.map((b) => b.name), ["b1", "b2", "b3", "b4"]);
    },
  },
  {
    name: "ignores a repeated id",
    fn(mode) {
      const list = seed();
      const s = createScheduler(mode, [...list, backend("b1", 0, 65535)]);
      assertEquals(s.backends, list);
    },
  },
  {
    name: "rejects a weight over 65535",
    fn(mode) {
      assertThrows(
        () => createScheduler(mode, [backend("a", 0, 70000)]),
        RangeError,
        "weight must be an integer 0..65535: received 70000",
      );
      const s = createScheduler(mode, []);
      assertThrows(() => s.update([backend("a", -1, 1)]), RangeError, "priority");
    },
  },
];

for (const mode of SCHEDULER_MODES) {
  for (const c of COMMON_CASES) {
    if (c.modes !== undefined && !c.modes.includes(mode)) continue;
    Deno.test(`scheduler ${mode} mode ${c.name}`, () => c.fn(mode));
  }
}

Deno.test("scheduler createScheduler reports its mode and rejects unknown ones", () => {
  for (const mode of SCHEDULER_MODES) assertEquals(createScheduler(mode, []).mode, mode);
  assertThrows(
    () => createScheduler("random" as SchedulerMode, []),
    RangeError,
    'received "random"',
  );
  assert(isSchedulerMode("srv") && !isSchedulerMode("weighted"));
});

// ------------------------------------------------------------------ srv mode

Deno.test("scheduler srv mode follows the seed's 9-pick order", () => {
  const s = createScheduler("srv", seed());
  const round = "b1 b2 b1 b2 b1 b3 b3 b3 b3";
  for (let i = 0; i < 4; i++) assertEquals(picks(s, 9).join(" "), round);
});

Deno.test("scheduler srv mode splits 9000 picks 3000/2000/4000", () => {
  assertEquals(counts(createScheduler("srv", seed()), 9000), { b1: 3000, b2: 2000, b3: 4000 });
});

Deno.test("scheduler srv mode serves priority groups in ascending order whatever the input order", () => {
  const [b1, b2, b3] = seed();
  const s = createScheduler("srv", [b3!, b2!, b1!]);
  assertEquals(
    picks(s, 9).join(" "),
    "b1 b2 b1 b2 b1 b3 b3 b3 b3",
  );
});

Deno.test("scheduler srv mode reduces weights by their gcd", () => {
  const small = createScheduler("srv", [
    backend("b1", 0, 3),
    backend("b2", 0, 2),
    backend("b3", 10, 4),
  ]);
  assertEquals(picks(createScheduler("srv", seed()), 27), picks(small, 27));
});

Deno.test("scheduler srv mode interleaves 5:1 as b1 b1 b1 b2 b1 b1", () => {
  const s = createScheduler("srv", [backend("b1", 0, 5), backend("b2", 0, 1)]);
  assertEquals(picks(s, 12).join(" "), "b1 b1 b1 b2 b1 b1 b1 b1 b1 b2 b1 b1");
});

Deno.test("scheduler srv mode matches nginx smooth weighted round-robin for two backends", () => {
  const rand = random(7);
  for (let t = 0; t < 300; t++) {
    const weights = [1 + Math.floor(rand() * 40), 1 + Math.floor(rand() * 40)];
    const n = 2 * (weights[0]! + weights[1]!);
    assertEquals(indexPicks(weights, n), nginxSwrr(weights, n), `weights ${weights}`);
  }
});

Deno.test("scheduler srv mode interleaves larger groups smoothly, not always as nginx does", () => {
  // Documented difference (src/scheduler/_edf.ts): same counts, one pick placed differently.
  assertEquals(indexPicks([5, 2, 6], 13).join(""), "2012020201202");
  assertEquals(nginxSwrr([5, 2, 6], 13).join(""), "2012020202102");

  const rand = random(11);
  for (let t = 0; t < 300; t++) {
    const weights = Array.from(
      { length: 2 + Math.floor(rand() * 6) },
      () => 1 + Math.floor(rand() * 20),
    );
    const total = weights.reduce((a, b) => a + b, 0);
    const seen = weights.map(() => 0);
    const order = indexPicks(weights, 2 * total);
    order.forEach((i, p) => {
      seen[i]!++;
      const inRound = (p % total) + 1;
      const round = Math.floor(p / total);
      weights.forEach((w, j) => {
        const lag = Math.abs(seen[j]! - round * w - (inRound * w) / total);
        assertLess(lag, 2, `weights ${weights}, pick ${p}`);
      });
    });
    assertEquals(seen, weights.map((w) => 2 * w), `weights ${weights}`);
  }
});

Deno.test("scheduler srv mode gives weight-0 backends nothing next to weighted ones", () => {
  const s = createScheduler("srv", [backend("a", 0, 3), backend("z", 0, 0), backend("c", 10, 1)]);
  assertEquals(counts(s, 400), { a: 300, c: 100 });
});

Deno.test("scheduler srv mode counts weight 0 as 1 when the whole group has weight 0", () => {
  const s = createScheduler("srv", [
    backend("a", 0, 2),
    backend("z1", 10, 0),
    backend("z2", 10, 0),
  ]);
  assertEquals(picks(s, 8).join(" "), "a a z1 z2 a a z1 z2");
});

Deno.test("scheduler srv mode falls back to weight-0 backends when no weighted one is healthy", () => {
  const list = [backend("a", 0, 5), backend("z1", 0, 0), backend("b", 10, 5), backend("z2", 10, 0)];
  const s = createScheduler("srv", list);
  markDown(list[0]!);
  markDown(list[2]!);
  assertEquals(picks(s, 4).join(" "), "z1 z2 z1 z2");
  markUp(list[2]!);
  assertEquals(picks(s, 3).join(" "), "b b b");
});

Deno.test("scheduler srv mode skips an unhealthy backend's slots and keeps the others' shares", () => {
  const list = seed();
  const s = createScheduler("srv", list);
  markDown(list[0]!);
  assertEquals(picks(s, 6).join(" "), "b2 b2 b3 b3 b3 b3");
  assertEquals(counts(s, 600), { b2: 200, b3: 400 });
});

Deno.test("scheduler srv mode handles weights 65535 and 1", () => {
  const s = createScheduler("srv", [backend("big", 0, 65535), backend("small", 0, 1)]);
  const order = picks(s, 65536 * 2);
  assertEquals(order.filter((n) => n === "small").length, 2);
  assertEquals(order.indexOf("small"), 32768);
  assertEquals(order.lastIndexOf("small"), 65536 + 32768);
});

Deno.test("scheduler srv mode keeps 1000 backends with large weights in proportion", () => {
  const rand = random(3);
  const list = Array.from(
    { length: 1000 },
    (_, i) => backend(`n${i}`, 10 * Math.floor(rand() * 4), 1 + Math.floor(rand() * 65535)),
  );
  const total = list.reduce((a, b) => a + b.weight, 0);
  const s = createScheduler("srv", list);
  const n = 200_000;
  const c = counts(s, n);
  // A round is ~33M picks, served group by group: within the first group, shares are smooth.
  const firstGroup = list.filter((b) => b.priority === 0);
  const groupTotal = firstGroup.reduce((a, b) => a + b.weight, 0);
  assert(n < groupTotal);
  for (const b of firstGroup) {
    assertLess(Math.abs((c[b.name] ?? 0) - (n * b.weight) / groupTotal), 3, b.name);
  }
  assert(total > groupTotal);
});

Deno.test("scheduler srv mode keeps its place when a re-lookup repeats the set at every pick", () => {
  const s = createScheduler("srv", seed());
  const order: string[] = [];
  const rand = random(5);
  for (let i = 0; i < 27; i++) {
    const next = relookup(seed()).sort(() => rand() - 0.5);
    s.update(next);
    order.push(s.next()!.name);
  }
  assertEquals(order.join(" "), Array(3).fill("b1 b2 b1 b2 b1 b3 b3 b3 b3").join(" "));
});

Deno.test("scheduler srv mode lets a backend added mid-round join without restarting", () => {
  const list = seed();
  const s = createScheduler("srv", list);
  assertEquals(picks(s, 2).join(" "), "b1 b2");
  s.update([...list, backend("b4", 10, 40)]);
  assertEquals(picks(s, 11).join(" "), "b1 b2 b1 b3 b4 b3 b4 b3 b4 b3 b4");
  assertEquals(picks(s, 13).join(" "), "b1 b2 b1 b2 b1 b3 b4 b3 b4 b3 b4 b3 b4");
});

Deno.test("scheduler srv mode drops a backend removed mid-round without restarting", () => {
  const list = seed();
  const s = createScheduler("srv", list);
  assertEquals(picks(s, 1).join(" "), "b1");
  s.update([list[0]!, list[2]!]);
  assertEquals(picks(s, 6).join(" "), "b1 b1 b3 b3 b3 b3");
  assertEquals(picks(s, 7).join(" "), "b1 b1 b1 b3 b3 b3 b3");
});

Deno.test("scheduler srv mode follows a new gcd after update", () => {
  const list = seed();
  const s = createScheduler("srv", list);
  picks(s, 4);
  s.update([...list, backend("b4", 20, 5)]); // gcd 10 → 5: weights 6, 4, 8, 1
  picks(s, 19); // finish whatever round is in progress
  const c = counts(s, 19 * 20);
  assertEquals(
    Object.fromEntries(Object.entries(c).map(([k, v]) => [k, Math.round(v / 20)])),
    { b1: 6, b2: 4, b3: 8, b4: 1 },
  );
});

Deno.test("scheduler srv mode moves a backend whose priority changed", () => {
  const list = seed();
  const s = createScheduler("srv", list);
  picks(s, 3);
  s.update([list[0]!, backend("b2", 10, 20), list[2]!]);
  const c = counts(s, 900);
  assert(Math.abs(c.b1! - 300) <= 3 && Math.abs(c.b2! - 200) <= 3 && Math.abs(c.b3! - 400) <= 3);
  assertEquals(
    picks(createScheduler("srv", s.backends), 9).join(" "),
    "b1 b1 b1 b3 b2 b3 b3 b2 b3",
  );
});

// -------------------------------------------------------------- rfc2782 mode

Deno.test("scheduler rfc2782 mode splits 9000 picks 5400/3600/0", () => {
  assertEquals(counts(createScheduler("rfc2782", seed()), 9000), { b1: 5400, b2: 3600 });
});

Deno.test("scheduler rfc2782 mode interleaves the lowest priority smoothly", () => {
  assertEquals(
    picks(createScheduler("rfc2782", seed()), 10).join(" "),
    "b1 b2 b1 b2 b1 b1 b2 b1 b2 b1",
  );
});

Deno.test("scheduler rfc2782 mode fails over to priority 10 when priority 0 is all unhealthy", () => {
  const list = seed();
  const s = createScheduler("rfc2782", list);
  picks(s, 3);
  markDown(list[0]!);
  markDown(list[1]!);
  assertEquals(picks(s, 5).join(" "), "b3 b3 b3 b3 b3");
  markUp(list[0]!);
  markUp(list[1]!);
  picks(s, 2); // each pick re-checks one parked backend
  assertEquals(counts(s, 500), { b1: 300, b2: 200 });
});

Deno.test("scheduler rfc2782 mode uses weight 0 only when alone or all are 0", () => {
  const list = [backend("a", 0, 5), backend("z", 0, 0), backend("b", 10, 5)];
  const s = createScheduler("rfc2782", list);
  assertEquals(counts(s, 50), { a: 50 });
  markDown(list[0]!);
  assertEquals(counts(s, 50), { z: 50 });
  markDown(list[1]!);
  assertEquals(counts(s, 50), { b: 50 });

  const zeros = createScheduler("rfc2782", [backend("z1", 0, 0), backend("z2", 0, 0), list[2]!]);
  assertEquals(picks(zeros, 4).join(" "), "z1 z2 z1 z2");
});

// ---------------------------------------------------------- round_robin mode

Deno.test("scheduler round_robin mode ignores weight and priority", () => {
  const s = createScheduler("round_robin", seed());
  assertEquals(picks(s, 6).join(" "), "b1 b2 b3 b1 b2 b3");
});
