/**
 * Input checks shared by every scheduler mode.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";

/**
 * Checks weights and priorities and drops later duplicates of an id.
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { uniqueBackends } from "./_validate.ts";
 *
 * const a = createBackend({ hostname: "a", port: 1 });
 * assertEquals(uniqueBackends([a, { ...a, weight: 5 }]), [a]);
 * assertThrows(() => uniqueBackends([{ ...a, weight: 70000 }]), RangeError);
 * ```
 *
 * @param backends The backends as given.
 * @returns The backends with each id once, first occurrence kept, in the given order.
 * @throws {RangeError} If a weight or priority is not an integer 0..65535.
 */
export function uniqueBackends(backends: readonly Backend[]): Backend[] {
  const seen = new Set<string>();
  const out: Backend[] = [];
  for (const b of backends) {
    checkField(b, "weight", b.weight);
    checkField(b, "priority", b.priority);
    if (seen.has(b.id)) continue;
    seen.add(b.id);
    out.push(b);
  }
  return out;
}

function checkField(b: Backend, field: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new RangeError(
      `Backend ${field} must be an integer 0..65535: received ${value} for "${b.id}"`,
    );
  }
}
