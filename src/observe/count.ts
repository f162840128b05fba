/**
 * Counts in log lines and messages: "1 route", "2 routes".
 *
 * @module
 */

/**
 * `n` and `noun`, the noun plural (an added "s") unless `n` is 1.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { count } from "./count.ts";
 * assertEquals(count(1, "route"), "1 route");
 * assertEquals([count(0, "backend"), count(3, "worker")], ["0 backends", "3 workers"]);
 * ```
 *
 * @param n How many.
 * @param noun What, in the singular.
 * @returns The count with its noun.
 */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
