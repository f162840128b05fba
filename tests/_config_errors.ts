/**
 * The errors a config gives, for tests of its `file:line` messages.
 *
 * @module
 */
import { assert } from "@std/assert";
import { type ConfigError, parseConfig } from "../src/config/config.ts";

/**
 * Parses `yaml` as `file` and keeps the errors it gives (none when it parses);
 * `has(prefix, text)` asserts one error starts with `prefix` and holds `text`.
 */
export function configErrors(
  yaml: string,
  file = "unload.yaml",
): { errors: string[]; has(prefix: string, text: string): void } {
  let errors: string[] = [];
  try {
    parseConfig(yaml, file);
  } catch (e) {
    errors = (e as ConfigError).errors;
  }
  const has = (prefix: string, text: string) =>
    assert(errors.some((e) => e.startsWith(prefix) && e.includes(text)), errors.join("\n"));
  return { errors, has };
}
