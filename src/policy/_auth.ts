/**
 * What the two `auth` steps share: where their decisions are counted, and how a
 * field is found on the request.
 *
 * @module
 */

/** gRPC's UNAUTHENTICATED: what a gRPC client that did not pass auth gets. */
export const GRPC_UNAUTHENTICATED = 16;

/** Where an auth step reports its decisions. */
export interface AuthContext {
  /** The route's name. */
  route: string;
  /**
   * Counts one decision of `route`'s auth step: `kind` is `basic` or `forward`,
   * `result` what happened (`cached`, `verified`, `refused`, `missing`, `busy`;
   * `allowed`, `denied`, `timeout`, `unreachable`).
   */
  onAuth?: ((route: string, kind: string, result: string) => void) | undefined;
  /** A warning line (the auth service failed). */
  log?: { warn(message: string): void } | undefined;
}

/**
 * The value of the first field named `name` (lower case) in flat `name, value, ...`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { fieldValue } from "./_auth.ts";
 * assertEquals(fieldValue(["Host", "a", "Authorization", "Basic x"], "authorization"), "Basic x");
 * assertEquals(fieldValue(["Host", "a"], "authorization"), undefined);
 * ```
 */
export function fieldValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toLowerCase() === name) return fields[i + 1]!;
  }
  return undefined;
}
