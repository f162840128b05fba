// deno-lint-ignore-file no-console
/**
 * Fails when a module under src/ imports one in a layer above its own (type
 * imports included), so that the folder tree reads as the dependency order.
 * A module may import its own layer and every layer below it.
 *
 * ```sh
 * deno run --allow-read --allow-run _tools/check_layers.ts
 * ```
 *
 * @module
 */

import { moduleGraph, rel } from "./_module_graph.ts";

/**
 * The layers, top (imports the most) to bottom (imports nothing of ours), each with
 * the paths under src/ it holds. The longest matching path decides a module's layer;
 * a module matching none is an error, so a new folder has to be placed here.
 */
const LAYERS: readonly { name: string; paths: readonly string[] }[] = [
  { name: "command line", paths: ["cli/"] },
  { name: "accept", paths: ["server/"] },
  { name: "admin", paths: ["admin/"] },
  { name: "route", paths: ["proxy/"] },
  // `tcp:` routes: whole connections carried to backends (layer 4), beside the HTTP proxy.
  { name: "route: tcp", paths: ["tcp/"] },
  // A route's traffic policy steps, compiled from the config's policy keys; the proxy runs them.
  { name: "policy", paths: ["policy/"] },
  // The config file's schema knows the option names of the scheduler and the
  // upstream side (modes, address families, probe paths), so it sits above them.
  { name: "config", paths: ["config/"] },
  { name: "schedule", paths: ["scheduler/"] },
  { name: "pool", paths: ["upstream/"] },
  { name: "parse: HTTP/2", paths: ["h2/"] },
  { name: "parse: HTTP/1", paths: ["http1/"] },
  { name: "observe", paths: ["observe/"] },
  // Values every layer shares: addresses, durations, defaults, PEM files, the clock.
  {
    name: "base",
    paths: [
      "_async.ts",
      "timer/",
      "config/address.ts",
      "config/duration.ts",
      "config/defaults.ts",
      "config/hash_key.ts",
      "config/pem.ts",
      "config/x509.ts",
      "config/key_pair.ts",
      "config/cidr.ts",
    ],
  },
];

/** The layer index of `path` (relative to src/; 0 = top), or -1 when no layer holds it. */
function layerOf(path: string): number {
  let best = -1;
  let bestLength = -1;
  LAYERS.forEach((layer, i) => {
    for (const p of layer.paths) {
      if ((p.endsWith("/") ? path.startsWith(p) : path === p) && p.length > bestLength) {
        best = i;
        bestLength = p.length;
      }
    }
  });
  return best;
}

/**
 * Every import in `graph` (module path under src/ → the paths it imports) that points
 * up the layers, and every module in no layer, as one message each, sorted.
 *
 * @param graph Paths relative to src/ (`h2/server.ts`), each with the paths it imports.
 * @returns The problems, empty when the imports all point down.
 */
export function wrongWayImports(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const problems: string[] = [];
  for (const [fromPath, tos] of graph) {
    const a = layerOf(fromPath);
    if (a < 0) {
      problems.push(
        `src/${fromPath}: in no layer (add its folder to LAYERS in _tools/check_layers.ts)`,
      );
      continue;
    }
    for (const toPath of tos) {
      const b = layerOf(toPath);
      if (b >= 0 && b < a) {
        problems.push(
          `src/${fromPath} (${LAYERS[a]!.name}) imports src/${toPath} (${LAYERS[b]!.name}), ` +
            `a layer above it`,
        );
      }
    }
  }
  return problems.sort();
}

if (import.meta.main) {
  const graph = await moduleGraph();
  const under = (url: string) => rel(url).slice("src/".length);
  const paths = new Map(
    [...graph].map(([from, tos]) => [under(from), new Set([...tos].map(under))] as const),
  );
  const problems = wrongWayImports(paths);
  for (const p of problems) console.error(`wrong-way import: ${p}`);
  if (problems.length > 0) Deno.exit(1);
  console.log(`imports point down the ${LAYERS.length} layers in all ${graph.size} modules`);
}
