/**
 * The backends a pick passes over: the ones a request has already tried.
 *
 * @module
 */
import type { Backend } from "../upstream/backend.ts";

/**
 * Tells whether `backend` is one of `skip`, by id (a re-lookup between two
 * picks may have replaced the objects).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { createBackend } from "../upstream/backend.ts";
 * import { skipped } from "./_skip.ts";
 * const a = createBackend({ hostname: "127.0.0.1", port: 9001 });
 * assert(skipped({ ...a }, [a]) && !skipped(a, undefined));
 * ```
 *
 * @param backend The candidate.
 * @param skip The backends to pass over, if any.
 * @returns Whether the candidate is to be passed over.
 */
export function skipped(backend: Backend, skip: readonly Backend[] | undefined): boolean {
  if (skip === undefined) return false;
  for (const s of skip) if (s.id === backend.id) return true;
  return false;
}
