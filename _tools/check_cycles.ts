// deno-lint-ignore-file no-console
/**
 * Fails when the modules under src/ import each other in a cycle, type imports
 * included. The graph is Deno's own (`deno info --json`, see `_module_graph.ts`).
 *
 * ```sh
 * deno run --allow-read --allow-run _tools/check_cycles.ts
 * ```
 *
 * @module
 */

import { moduleGraph, rel } from "./_module_graph.ts";

/** Strongly connected components with more than one module (or a self-import). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || graph.get(v)?.has(v)) found.push(scc);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

if (import.meta.main) {
  const graph = await moduleGraph();
  const found = cycles(graph);
  for (const scc of found) {
    console.error(`import cycle: ${scc.map(rel).sort().join(" <-> ")}`);
  }
  if (found.length > 0) Deno.exit(1);
  console.log(`no import cycles among ${graph.size} modules`);
}
