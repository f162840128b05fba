// deno-lint-ignore-file no-console
/**
 * Fails when a doc example under src/ asserts nothing: every ```ts block in a JSDoc
 * comment must call an `@std/assert` function (`deno test --doc` runs it, and only
 * a thrown assertion makes it fail), or be marked `ignore`. `console.assert` only
 * prints, so it is refused too.
 *
 * ```sh
 * deno run --allow-read _tools/check_docs.ts
 * ```
 *
 * @module
 */

const FENCE_REGEXP = /```(ts|typescript|js|javascript)([^\n]*)\n([\s\S]*?)```/g;
const COMMENT_REGEXP = /\/\*\*[\s\S]*?\*\//g;
const ASSERTION_REGEXP = /\bassert(?:[A-Z]\w*)?\s*\(/;
const IMPORTS_ASSERT_REGEXP = /from\s+"@std\/assert"/;

/** The problems of one file's doc examples, each as `file:line: message`. */
export function checkExamples(file: string, text: string): string[] {
  const problems: string[] = [];
  for (const comment of text.matchAll(COMMENT_REGEXP)) {
    const body = comment[0].replace(/^\s*\* ?/gm, "");
    for (const fence of body.matchAll(FENCE_REGEXP)) {
      const info = fence[2] ?? "";
      if (/\bignore\b/.test(info)) continue;
      const code = fence[3] ?? "";
      const offset = comment.index! + comment[0].indexOf(code.split("\n")[0] ?? "");
      const line = text.slice(0, offset).split("\n").length;
      if (/\bconsole\.assert\s*\(/.test(code)) {
        problems.push(`${file}:${line}: doc example uses console.assert, which only prints`);
      } else if (!ASSERTION_REGEXP.test(code) || !IMPORTS_ASSERT_REGEXP.test(code)) {
        problems.push(
          `${file}:${line}: doc example asserts nothing: assert with @std/assert, or mark it \`ts ignore\``,
        );
      }
    }
  }
  return problems;
}

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* walk(url);
    else if (e.name.endsWith(".ts")) yield url;
  }
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const problems: string[] = [];
  let files = 0;
  for await (const url of walk(new URL("src/", root))) {
    files++;
    problems.push(...checkExamples(url.href.slice(root.href.length), await Deno.readTextFile(url)));
  }
  for (const p of problems) console.error(p);
  if (problems.length > 0) {
    console.error(`${problems.length} doc examples assert nothing`);
    Deno.exit(1);
  }
  console.log(`every doc example in ${files} files asserts`);
}
