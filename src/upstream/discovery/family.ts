/**
 * Which address families (`dns.family`) an SRV target's addresses are taken from.
 *
 * @module
 */

/**
 * `auto`: A and AAAA; `ipv4`: A only; `ipv6`: AAAA only.
 */
export type AddressFamily = "auto" | "ipv4" | "ipv6";

/**
 * Every {@linkcode AddressFamily}, the default (`auto`) first.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ADDRESS_FAMILIES } from "./family.ts";
 * assertEquals(ADDRESS_FAMILIES[0], "auto");
 * ```
 */
export const ADDRESS_FAMILIES: readonly AddressFamily[] = Object.freeze([
  "auto",
  "ipv4",
  "ipv6",
]);

/**
 * Whether an IP literal (IPv6 without brackets) belongs to `family`.
 *
 * @param address An IPv4 or IPv6 literal.
 * @param family The family asked for.
 * @returns True for `auto`, or when the literal is of that family.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { inFamily } from "./family.ts";
 * assert(inFamily("::1", "ipv6") && !inFamily("::1", "ipv4") && inFamily("127.0.0.1", "auto"));
 * ```
 */
export function inFamily(address: string, family: AddressFamily): boolean {
  if (family === "auto") return true;
  return address.includes(":") === (family === "ipv6");
}
