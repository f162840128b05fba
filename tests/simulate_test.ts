import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { createBackend } from "../src/upstream/backend.ts";
import { markDown } from "../src/upstream/backend_state.ts";
import type { SchedulerMode } from "../src/scheduler/scheduler.ts";
import { formatSimulation, parseSrvSpec, simulate } from "../src/cli/simulate.ts";

const SEED = "b1:0:30,b2:0:20,b3:10:40";

Deno.test("simulate parseSrvSpec reads target:priority:weight entries", () => {
  const backends = parseSrvSpec(SEED);
  assertEquals(
    backends.map((b) => [b.name, b.priority, b.weight, b.healthy, b.inflight]),
    [["b1", 0, 30, true, 0], ["b2", 0, 20, true, 0], ["b3", 10, 40, true, 0]],
  );
  assertEquals(parseSrvSpec(" app-1.example.com:65535:0 ").map((b) => b.name), [
    "app-1.example.com",
  ]);
});

Deno.test("simulate parseSrvSpec rejects malformed entries with the entry in the message", () => {
  const cases: [string, ErrorConstructor, string][] = [
    ["", TypeError, 'Invalid --srv: expected "target:priority:weight"'],
    ["b1:x:30", RangeError, 'Invalid --srv entry "b1:x:30": priority must be an integer 0..65535'],
    ["b1:0:70000", RangeError, 'Invalid --srv entry "b1:0:70000": weight must be an integer'],
    ["b1:-1:3", RangeError, "priority must be an integer 0..65535"],
    ["b1:0:1.5", RangeError, "weight must be an integer 0..65535"],
    ["b1:0:", RangeError, "weight must be an integer"],
    ["b1:0", TypeError, 'Invalid --srv entry "b1:0": expected target:priority:weight'],
    ["b1:0:1:2", TypeError, "expected target:priority:weight"],
    ["b1:0:1,", TypeError, 'Invalid --srv entry "": expected target:priority:weight'],
    [":0:1", TypeError, "target must be a host name"],
    ["b 1:0:1", TypeError, "target must be a host name"],
    ["b1:0:1,b1:10:2", TypeError, 'Invalid --srv entry "b1:10:2": duplicate target "b1"'],
  ];
  for (const [spec, ErrorClass, message] of cases) {
    assertThrows(() => parseSrvSpec(spec), ErrorClass, message);
  }
});

Deno.test("simulate srv mode prints the seed's 9-pick order on one line", () => {
  const text = formatSimulation(simulate(parseSrvSpec(SEED), { mode: "srv", n: 9 }));
  assertEquals(text.split("\n"), [
    "srv scheduler, 9 picks:",
    "b1 b2 b1 b2 b1 b3 b3 b3 b3",
    "",
    "backend  priority  weight  picks  share  expected",
    "b1              0      30      3  33.3%     33.3%",
    "b2              0      20      2  22.2%     22.2%",
    "b3             10      40      4  44.4%     44.4%",
  ]);
});

Deno.test("simulate reports picks and shares against the mode's expected shares", () => {
  const rows = (mode: SchedulerMode) =>
    simulate(parseSrvSpec(SEED), { mode, n: 9000 }).shares.map((s) => [
      s.name,
      s.picks,
      Number(s.share.toFixed(4)),
      Number(s.expected.toFixed(4)),
    ]);
  assertEquals(rows("srv"), [
    ["b1", 3000, 0.3333, 0.3333],
    ["b2", 2000, 0.2222, 0.2222],
    ["b3", 4000, 0.4444, 0.4444],
  ]);
  assertEquals(rows("rfc2782"), [
    ["b1", 5400, 0.6, 0.6],
    ["b2", 3600, 0.4, 0.4],
    ["b3", 0, 0, 0],
  ]);
  for (const mode of ["round_robin", "least_conn"] as const) {
    assertEquals(rows(mode), [
      ["b1", 3000, 0.3333, 0.3333],
      ["b2", 3000, 0.3333, 0.3333],
      ["b3", 3000, 0.3333, 0.3333],
    ]);
  }
});

Deno.test("simulate expects weight 0 to count only when its whole group is 0", () => {
  const result = simulate(parseSrvSpec("a:0:3,z:0:0,y1:5:0,y2:5:0"), { n: 5 });
  assertEquals(result.shares.map((s) => [s.name, s.picks, s.expected]), [
    ["a", 3, 0.6],
    ["z", 0, 0],
    ["y1", 1, 0.2],
    ["y2", 1, 0.2],
  ]);
});

Deno.test("simulate defaults to srv and 18 picks", () => {
  const result = simulate(parseSrvSpec(SEED));
  assertEquals(result.mode, "srv");
  assertEquals(result.order.join(" "), Array(2).fill("b1 b2 b1 b2 b1 b3 b3 b3 b3").join(" "));
});

Deno.test("simulate leaves the backends untouched and marks picks with nothing healthy", () => {
  const down = createBackend({ hostname: "10.0.0.1", port: 80, name: "down" });
  markDown(down);
  const result = simulate([down], { mode: "round_robin", n: 2 });
  assertEquals(result.order, ["-", "-"]);
  assertEquals(result.shares[0]?.picks, 0);
  assertEquals([down.healthy, down.inflight], [false, 0]);
});

Deno.test("simulate rejects a negative or fractional pick count", () => {
  assertThrows(() => simulate([], { n: -1 }), RangeError, "received -1");
  assertThrows(() => simulate([], { n: 1.5 }), RangeError, "non-negative integer");
});

Deno.test("simulate formatSimulation shortens a long order and handles no picks", () => {
  const long = formatSimulation(simulate(parseSrvSpec(SEED), { n: 1000 }), { maxOrder: 4 });
  assertStringIncludes(long, "\nb1 b2 b1 b2 … (996 more)\n");
  const none = formatSimulation(simulate(parseSrvSpec(SEED), { n: 0 }));
  assertStringIncludes(none, "srv scheduler, 0 picks:\n(no picks)\n");
  assertStringIncludes(none, "b1              0      30      0   0.0%     33.3%");
});

Deno.test("simulate hash mode maps generated keys and reports their shares", () => {
  const result = simulate(parseSrvSpec(SEED), { mode: "hash", n: 100_000 });
  const [b1, b2, b3] = result.shares;
  assertEquals([b1!.expected, b2!.expected, b3!.expected], [0.6, 0.4, 0]);
  for (const s of result.shares) {
    assertEquals(Math.abs(s.share - s.expected) < 0.02, true, `${s.name}: ${s.share}`);
  }
  const again = simulate(parseSrvSpec("b3:10:40,b2:0:20,b1:0:30"), { mode: "hash", n: 1000 });
  assertEquals(again.order, result.order.slice(0, 1000), "key-i maps the same whatever the order");
  const text = formatSimulation(simulate(parseSrvSpec(SEED), { mode: "hash", n: 3 }));
  assertEquals(text.split("\n").slice(0, 2), [
    "hash scheduler, 3 keys (key-0 to key-2), in order:",
    result.order.slice(0, 3).join(" "),
  ]);
});
