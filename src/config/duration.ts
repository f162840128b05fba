/**
 * Durations as written in the config file: `250ms`, `10s`, `5m`, `1h`, `1m30s`,
 * and a bare `0`.
 *
 * @module
 */

const DURATION_REGEXP = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$|^0$/;
const PART_REGEXP = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { parseDuration } from "./duration.ts";
 * assert(parseDuration("1m30s") === 90_000 && parseDuration("500ms") === 500);
 * assert(parseDuration("0") === 0);
 * ```
 * @throws {TypeError} when `text` is not a duration.
 */
export function parseDuration(text: string): number {
  if (!DURATION_REGEXP.test(text)) {
    throw new TypeError(`Duration must look like 500ms, 10s, 5m, 1h or 0: received "${text}"`);
  }
  let ms = 0;
  for (const m of text.matchAll(PART_REGEXP)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Math.round(ms);
}
