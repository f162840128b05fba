/**
 * `npm:yaml`, made safe to run with only `--allow-net --allow-read`.
 *
 * The package's Node build reads `process.env.LOG_TOKENS` and `LOG_STREAM` (its
 * debug switches) inside every parse, which would demand `--allow-env`. While
 * {@linkcode parseDocument} runs (a synchronous call), `process.env` is swapped
 * for a view that answers those two names as unset and every other variable as
 * before; the real `process.env` is put back before the call returns. Outside
 * the call, importing this module changes nothing.
 *
 * @module
 */
import process from "node:process";
import {
  type Document,
  type DocumentOptions,
  parseDocument as yamlParseDocument,
  type ParseOptions,
  type SchemaOptions,
} from "yaml";

const DEBUG_SWITCHES = new Set<string | symbol>(["LOG_TOKENS", "LOG_STREAM"]);

/** `env` without the debug switches; an empty target so the engine's invariant checks never touch `env`. */
function quiet(env: typeof process.env): typeof process.env {
  return new Proxy({}, {
    get: (_, key) => DEBUG_SWITCHES.has(key) ? undefined : Reflect.get(env, key),
    set: (_, key, value) => Reflect.set(env, key, value),
    has: (_, key) => !DEBUG_SWITCHES.has(key) && Reflect.has(env, key),
    deleteProperty: (_, key) => Reflect.deleteProperty(env, key),
    ownKeys: () => Reflect.ownKeys(env),
    getOwnPropertyDescriptor: (_, key) =>
      DEBUG_SWITCHES.has(key) ? undefined : Reflect.getOwnPropertyDescriptor(env, key),
  });
}

/**
 * `yaml`'s `parseDocument`, with `process.env` hiding the package's debug
 * switches for the duration of the (synchronous) call only.
 *
 * @param source The YAML text.
 * @param options The package's parse, document and schema options.
 * @returns The parsed document; syntax errors are in its `errors`.
 *
 * @example Parse a mapping
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import process from "node:process";
 * import { parseDocument } from "./_yaml.ts";
 *
 * const env = process.env;
 * const doc = parseDocument("a: 1\n");
 * assertEquals(doc.toJS(), { a: 1 });
 * assert(process.env === env);
 * ```
 */
export function parseDocument(
  source: string,
  options?: ParseOptions & DocumentOptions & SchemaOptions,
): Document.Parsed {
  const env = process.env;
  process.env = quiet(env);
  try {
    return yamlParseDocument(source, options);
  } finally {
    process.env = env;
  }
}

export { isMap, isScalar, isSeq, LineCounter, type Node } from "yaml";
