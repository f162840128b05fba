/**
 * The import graph of the modules under src/, type imports included, as Deno
 * itself resolves it (`deno info --json`): walked from main.ts and from every
 * src/ module that main.ts does not reach (worker entry points). Shared by
 * `check_cycles.ts` and `check_layers.ts`.
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

/** The repository root, as a file URL ending in "/". */
export const ROOT: URL = new URL("../", import.meta.url);
const SRC = new URL("src/", ROOT).href;

/** Every local module's local imports, as Deno resolves them. */
async function graphFrom(entry: string, into: Map<string, Set<string>>): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
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

/**
 * Module URL → the src/ module URLs it imports.
 *
 * @returns The graph of every module under src/.
 */
export async function moduleGraph(): Promise<Map<string, Set<string>>> {
  const graph = new Map<string, Set<string>>();
  await graphFrom("main.ts", graph);
  for await (const file of walk(new URL("src/", ROOT))) {
    if (!graph.has(file)) await graphFrom(file, graph);
  }
  return graph;
}

/** A module URL relative to the repository root (`src/h2/server.ts`). */
export function rel(url: string): string {
  return url.slice(ROOT.href.length);
}
