/**
 * The client's `Accept-Encoding` (RFC 9110 §12.5.3), read for `compress`: the
 * coding it prefers among those the balancer can apply.
 *
 * @module
 */
import { type Coding, CODINGS } from "./encoder.ts";

/**
 * The coding to apply for a request's `Accept-Encoding` value, or undefined
 * for none (the body goes as it is).
 *
 * - Each coding's q-value is its own, else `*`'s, else 0 (not accepted); q=0
 *   excludes it; `x-gzip` is gzip.
 * - The highest q wins; when q-values tie, the server's order: br, then zstd, then gzip.
 * - An `identity` with an explicit q above every coding's keeps the body as it is.
 * - No header at all (or an empty one) means no coding: a client that does
 *   not ask for compression does not get it (as nginx and Caddy do).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { chooseCoding } from "./accept_encoding.ts";
 * assertEquals(chooseCoding("gzip, deflate, br, zstd"), "br");
 * assertEquals(chooseCoding("gzip;q=1, br;q=0.5"), "gzip");
 * assertEquals(chooseCoding("br;q=0, *"), "zstd");
 * assertEquals(chooseCoding("gzip;q=0.5, identity"), undefined);
 * assertEquals(chooseCoding("deflate"), undefined);
 * assertEquals(chooseCoding("gzip", ["br"]), undefined);
 * ```
 *
 * @param value The `Accept-Encoding` field value(s), joined by ", ".
 * @param codings The codings allowed, in preference order. @default {CODINGS}
 * @returns The coding, or undefined for none.
 */
export function chooseCoding(
  value: string | undefined,
  codings: readonly Coding[] = CODINGS,
): Coding | undefined {
  if (value === undefined || value === "") return undefined;
  let star = -1;
  let identity = -1;
  const q: Record<string, number> = {};
  for (const item of value.split(",")) {
    const parts = item.split(";");
    const name = parts[0]!.trim().toLowerCase();
    if (name === "") continue;
    let weight = 1;
    for (let i = 1; i < parts.length; i++) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(parts[i]!);
      if (m) weight = Math.min(1, Number(m[1]) || 0);
    }
    if (name === "*") star = weight;
    else if (name === "identity") identity = weight;
    else q[name === "x-gzip" ? "gzip" : name] = weight;
  }
  let best: Coding | undefined;
  let bestQ = 0;
  for (const c of codings) {
    const w = q[c] ?? (star >= 0 ? star : 0);
    if (w > bestQ) {
      best = c;
      bestQ = w;
    }
  }
  if (best !== undefined && identity > bestQ) return undefined;
  return best;
}
