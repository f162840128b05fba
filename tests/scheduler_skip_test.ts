/**
 * `Scheduler.next(skip)`: a retry passes over the backends that failed it,
 * without costing them their share.
 */
import { assert, assertEquals, assertLess } from "@std/assert";
import { backend, seed } from "./_scheduler.ts";
import { type Backend } from "../src/upstream/backend.ts";
import { type Scheduler, SCHEDULER_MODES } from "../src/scheduler/scheduler.ts";
import { createScheduler } from "../src/scheduler/create.ts";
import { markDown } from "../src/upstream/backend_state.ts";

function name(b: Backend | undefined): string {
  return b?.name ?? "-";
}

for (const mode of SCHEDULER_MODES) {
  Deno.test(`scheduler ${mode}: a pick never returns a skipped backend, and none is left when all are skipped`, () => {
    const list = [backend("a"), backend("b"), backend("c")];
    const s = createScheduler(mode, list);
    for (let i = 0; i < 12; i++) {
      const skip = [list[i % 3]!];
      const b = s.next(skip);
      assertEquals(b !== undefined && b.id !== skip[0]!.id, true, `pick ${i}: ${name(b)}`);
    }
    assertEquals(s.next(list), undefined);
    markDown(list[0]!);
    assertEquals(s.next(list.slice(1)), undefined, "the rest unhealthy or skipped");
    const after = name(s.next());
    assert(after === "b" || after === "c", `skipping is for one pick only: ${after}`);
  });

  Deno.test(`scheduler ${mode}: a skip matches by id, so a re-lookup's fresh objects are still skipped`, () => {
    const s = createScheduler(mode, [backend("a"), backend("b")]);
    for (let i = 0; i < 6; i++) assertEquals(name(s.next([backend("a")])), "b");
  });
}

/** Picks `n` times; before each pick `skipAt(i)` says what that pick skips. */
function run(
  s: Scheduler,
  n: number,
  skipAt: (i: number, last?: Backend) => Backend[] | undefined,
): string[] {
  const out: string[] = [];
  let last: Backend | undefined;
  for (let i = 0; i < n; i++) {
    last = s.next(skipAt(i, last));
    out.push(name(last));
  }
  return out;
}

Deno.test("scheduler srv: a retry that skips the backend just picked gets the next one due, and the round is unchanged", () => {
  const s = createScheduler("srv", seed());
  // the second pick is the retry of the first: b1 failed it
  const order = run(s, 9, (i, last) => i === 1 ? [last!] : undefined);
  assertEquals(order.join(" "), "b1 b2 b1 b2 b1 b3 b3 b3 b3");
});

for (const mode of ["srv", "rfc2782"] as const) {
  Deno.test(`scheduler ${mode}: retries keep every backend's weighted share, round after round`, () => {
    const list = seed();
    const s = createScheduler(mode, list);
    // every fourth pick retries the pick before it
    const order = run(s, 9 * 40, (i, last) => i % 4 === 3 ? [last!] : undefined);
    // picks per backend as the weights say, ± the one slot a retry may borrow from the next round
    const share = mode === "srv"
      ? { b1: 3 / 9, b2: 2 / 9, b3: 4 / 9 }
      : { b1: 0.6, b2: 0.4, b3: 0 };
    for (const [b, part] of Object.entries(share)) {
      const got = order.filter((x) => x === b).length;
      assertLess(Math.abs(got - part * order.length), 1.01, `${b}: ${got} of ${order.length}`);
    }
  });
}

Deno.test("scheduler rfc2782: a retry that skips the whole lowest priority goes to the next one, once", () => {
  const list = seed();
  const s = createScheduler("rfc2782", list);
  assertEquals(name(s.next(list.slice(0, 2))), "b3");
  assertEquals(run(s, 5, () => undefined).join(" "), "b1 b2 b1 b2 b1");
});

Deno.test("scheduler least_conn: a skipped backend keeps its turn among equal loads", () => {
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const s = createScheduler("least_conn", [a!, b!, c!]);
  assertEquals(name(s.next()), "a");
  assertEquals(name(s.next([b!])), "c");
  assertEquals(run(s, 3, () => undefined).join(" "), "b a c");
});
