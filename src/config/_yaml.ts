/**
 * `npm:yaml`, made safe to run with only `--allow-net --allow-read`.
 *
 * The package's Node build reads `process.env.LOG_TOKENS` and `LOG_STREAM` (its
 * debug switches) on every parse, which would demand `--allow-env`. Those two
 * names are answered here as unset; every other variable reads as before.
 *
 * @module
 */
import process from "node:process";

const DEBUG_SWITCHES = new Set<string | symbol>(["LOG_TOKENS", "LOG_STREAM"]);
const env = process.env;
Object.defineProperty(process, "env", {
  configurable: true,
  enumerable: true,
  // An empty target: the engine's invariant checks must not touch the real env.
  value: new Proxy({}, {
    get: (_, key) => DEBUG_SWITCHES.has(key) ? undefined : Reflect.get(env, key),
    set: (_, key, value) => Reflect.set(env, key, value),
    has: (_, key) => !DEBUG_SWITCHES.has(key) && Reflect.has(env, key),
    deleteProperty: (_, key) => Reflect.deleteProperty(env, key),
    ownKeys: () => Reflect.ownKeys(env),
    getOwnPropertyDescriptor: (_, key) =>
      DEBUG_SWITCHES.has(key) ? undefined : Reflect.getOwnPropertyDescriptor(env, key),
  }),
});

export { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
