/**
 * SRV targets and the backends made of them. An SRV record's weight belongs to its
 * target: the target's addresses (A and AAAA) share it, they do not each get it.
 *
 * @module
 */
import { type Backend, createBackend } from "../backend.ts";

/** One SRV record with the addresses its target resolved to. */
export interface SrvTarget {
  /** The target name, without trailing dot (an IP literal target is its own name). */
  name: string;
  /** The record's port. */
  port: number;
  /** The record's priority. */
  priority: number;
  /** The record's weight, shared by `addresses`. */
  weight: number;
  /** The target's addresses (IPv6 without brackets), never empty. */
  addresses: string[];
}

/** Options for {@linkcode targetBackends}. */
export interface TargetBackendsOptions {
  /**
   * Backend ids (`host:port`) set aside because they do not connect while a sibling
   * address of the same target does: they get no traffic and their share goes to
   * the target's other addresses. A target whose addresses are all set aside keeps
   * them all. @default {none}
   */
  aside?: ReadonlySet<string>;
}

const MAX_WEIGHT = 65535;

/**
 * Makes one backend per (target, address in use). A target's weight is split
 * evenly between its addresses in use; every weight is then scaled by the least
 * common multiple of the address counts so that weights stay integers. Targets
 * with one address each keep their record weights exactly. Should a scaled weight
 * exceed 65535, all are scaled down to fit, rounded (a non-zero weight stays at
 * least 1). When two targets lead to the same address and port, the first wins.
 *
 * @param targets The targets, in the order the backends should come in.
 * @param options Addresses set aside.
 * @returns The backends, named after their target.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { targetBackends } from "./targets.ts";
 * const backends = targetBackends([
 *   { name: "t1", port: 80, priority: 0, weight: 1, addresses: ["127.0.0.1"] },
 *   { name: "t2", port: 80, priority: 0, weight: 3, addresses: ["127.0.0.2", "::1"] },
 * ]);
 * // t1 : t2 = 2 : (3 + 3) = 1 : 3
 * assertEquals(backends.map((b) => `${b.id} w${b.weight}`), [
 *   "127.0.0.1:80 w2",
 *   "127.0.0.2:80 w3",
 *   "[::1]:80 w3",
 * ]);
 * ```
 */
export function targetBackends(
  targets: readonly SrvTarget[],
  options: TargetBackendsOptions = {},
): Backend[] {
  const aside = options.aside;
  const used = targets.map((t) => {
    const kept = aside ? t.addresses.filter((a) => !aside.has(idOf(a, t.port))) : t.addresses;
    return kept.length > 0 ? kept : t.addresses;
  });
  let scale = 1;
  for (const [i, t] of targets.entries()) {
    if (t.weight > 0) scale = lcm(scale, used[i]!.length);
  }
  const raw = targets.map((t, i) => (t.weight * scale) / used[i]!.length);
  const max = Math.max(0, ...raw);
  const fit = max > MAX_WEIGHT ? MAX_WEIGHT / max : 1;
  const byId = new Map<string, Backend>();
  for (const [i, t] of targets.entries()) {
    const weight = fit === 1
      ? raw[i]!
      : t.weight === 0
      ? 0
      : Math.max(1, Math.round(raw[i]! * fit));
    for (const address of used[i]!) {
      const backend = createBackend({
        hostname: address,
        port: t.port,
        priority: t.priority,
        weight,
        name: t.name,
      });
      if (!byId.has(backend.id)) byId.set(backend.id, backend);
    }
  }
  return [...byId.values()];
}

/**
 * The backend id of an address and port, as {@linkcode createBackend} makes it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { idOf } from "./targets.ts";
 * assertEquals(idOf("::1", 80), "[::1]:80");
 * ```
 */
export function idOf(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
