// deno-lint-ignore-file no-console
/**
 * Fails when the modules under src/ import each other in a cycle, type imports
 * included. The graph is Deno's own (`deno info --json`), walked from main.ts and
 * from every src/ module that main.ts does not reach (worker entry points).
 *
 * ```sh
 * deno run --allow-read --allow-run _tools/check_cycles.ts
 * ```
 *
 * @module
 */

interface Dependency {
  specifier: string;
  code?: { specifier: string };
  type?: { specifier: string };
}
interface ModuleInfo {
  specifier: string;
  dependencies?: Dependency[];
}

const root = new URL("../", import.meta.url);
const SRC = new URL("src/", root).href;

/** Every local module's local imports, as Deno resolves them. */
async function graphFrom(entry: string, into: Map<string, Set<string>>): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: ModuleInfo[] };
  for (const m of info.modules) {
    if (!m.specifier.startsWith(SRC)) continue;
    const edges = into.get(m.specifier) ?? new Set<string>();
    for (const d of m.dependencies ?? []) {
      for (const to of [d.code?.specifier, d.type?.specifier]) {
        if (to !== undefined && to.startsWith(SRC)) edges.add(to);
      }
    }
    into.set(m.specifier, edges);
  }
}

async function* walk(dir: URL): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* walk(url);
    else if (e.name.endsWith(".ts")) yield url.href;
  }
}

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
  const graph = new Map<string, Set<string>>();
  await graphFrom("main.ts", graph);
  for await (const file of walk(new URL("src/", root))) {
    if (!graph.has(file)) await graphFrom(file, graph);
  }
  const rel = (s: string) => s.slice(root.href.length);
  const found = cycles(graph);
  for (const scc of found) {
    console.error(`import cycle: ${scc.map(rel).sort().join(" <-> ")}`);
  }
  if (found.length > 0) Deno.exit(1);
  console.log(`no import cycles among ${graph.size} modules`);
}
