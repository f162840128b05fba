// deno-lint-ignore-file no-console
/**
 * Memory per route: the JavaScript heap a route keeps, measured after a full GC, for
 * N (10,000) routes `h<i>.tenant.test` + `/p<i>` with one static backend each
 * (the same backend, as many tenants behind one service have):
 * - the router alone (its hash maps and prefix trees, values excluded), every host
 *   requested once;
 * - the parsed config (`parseConfig`: the route's settings; the YAML text and its
 *   document are garbage once parsed);
 * - the running route set (`RouteSet.start`: route state, scheduler, backend records
 *   shared by key, and the router), on top of the config.
 *
 *     deno run --allow-read --v8-flags=--expose-gc bench/routes_memory.ts [N]
 *
 * @module
 */
import { parseConfig } from "../src/config/config.ts";
import { Router } from "../src/proxy/router.ts";
import { RouteSet } from "../src/server/route_table.ts";
import { createLogger } from "../src/observe/log.ts";

const N = Number(Deno.args[0] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

function heap(): number {
  for (let i = 0; i < 3; i++) gc!();
  return Deno.memoryUsage().heapUsed;
}

function perRoute(label: string, bytes: number): void {
  console.log(
    `${label}: ${(bytes / N).toFixed(0)} bytes per route (${
      (bytes / 1048576).toFixed(1)
    } MiB for ${N})`,
  );
}

function config(count: number): string {
  const lines = ["listen: { http: 127.0.0.1:0 }", "routes:"];
  for (let i = 0; i < count; i++) {
    lines.push(
      `  - { name: r${i}, host: h${i}.tenant.test, path: /p${i}, backends: [{ address: 127.0.0.1:9201 }] }`,
    );
  }
  return lines.join("\n") + "\n";
}
const log = createLogger({ access: "off", quiet: true });
// warm-up: what the first use of each module allocates once is not a route's
await (await RouteSet.start(parseConfig(config(10), "warm.yaml"), { log })).stop();
const yaml = config(N);
const values = Array.from({ length: N }, (_, i) => ({ i }));

let before = heap();
const router = new Router<{ i: number }>();
for (let i = 0; i < N; i++) router.add({ host: `h${i}.tenant.test`, path: `/p${i}` }, values[i]!);
// every host requested once: the trees each host leads to are kept from its first request
for (let i = 0; i < N; i++) router.match(`h${i}.tenant.test`, `/p${i}`);
perRoute("router (hash maps and prefix trees)", heap() - before);

before = heap();
const parsed = parseConfig(yaml, "routes.yaml");
const afterConfig = heap();
perRoute("parsed config", afterConfig - before);
const set = await RouteSet.start(parsed, { log });
perRoute("route set (state, scheduler, backends, router)", heap() - afterConfig);
perRoute("config + route set", heap() - before);
await set.stop();
console.log(`(${router.match("h0.tenant.test", "/p0")?.i === 0 ? "kept alive to the end" : "?"})`);
