/**
 * `_tools/check_layers.ts`, which `deno task check` runs: the imports that point up
 * the layers are the ones it reports.
 *
 * @module
 */
import { assertEquals } from "@std/assert";
import { wrongWayImports } from "../_tools/check_layers.ts";

const graph = (edges: Record<string, string[]>) =>
  new Map(Object.entries(edges).map(([from, tos]) => [from, new Set(tos)]));

Deno.test("check_layers reports the two imports issue 22 found, and accepts their replacements", () => {
  const before = graph({
    "h2/_connection.ts": ["proxy/watchdog.ts", "http1/io.ts"],
    "admin/server.ts": ["server/listener.ts", "observe/exhaustion.ts"],
    "proxy/watchdog.ts": [],
  });
  assertEquals(wrongWayImports(before), [
    "src/admin/server.ts (admin) imports src/server/listener.ts (accept), a layer above it",
    "src/h2/_connection.ts (parse: HTTP/2) imports src/proxy/watchdog.ts (route), a layer above it",
  ]);
  const after = graph({
    "h2/_connection.ts": ["timer/watchdog.ts", "http1/io.ts"],
    "admin/server.ts": ["config/address.ts", "observe/exhaustion.ts"],
    "server/balancer.ts": ["admin/server.ts", "proxy/context.ts", "timer/watchdog.ts"],
    "timer/watchdog.ts": [],
  });
  assertEquals(wrongWayImports(after), []);
});

Deno.test("check_layers: config.ts may read the scheduler's and upstream's option names, but they may not import it back", () => {
  assertEquals(
    wrongWayImports(graph({ "config/config.ts": ["scheduler/scheduler.ts", "config/address.ts"] })),
    [],
  );
  assertEquals(wrongWayImports(graph({ "upstream/pool_set.ts": ["config/config.ts"] })), [
    "src/upstream/pool_set.ts (pool) imports src/config/config.ts (config), a layer above it",
  ]);
  assertEquals(wrongWayImports(graph({ "newdir/x.ts": [] })), [
    "src/newdir/x.ts: in no layer (add its folder to LAYERS in _tools/check_layers.ts)",
  ]);
});
