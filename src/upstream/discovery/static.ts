/**
 * Backends listed in the config file (`routes[].backends`) instead of discovered by SRV.
 *
 * @module
 */
import { type Backend, createBackend } from "../backend.ts";
import { parseHostPort } from "../../config/address.ts";

export { parseHostPort } from "../../config/address.ts";

/** One configured backend, e.g. `{ address: "127.0.0.1:9001", weight: 30 }`. */
export interface StaticBackendEntry {
  /** `host:port`, `1.2.3.4:port` or `[ipv6]:port`; the port must be 1..65535. */
  address: string;
  /** Lower is preferred, 0..65535. @default {0} */
  priority?: number;
  /** 0..65535. @default {1} */
  weight?: number;
}

/**
 * Turns configured entries into backends, in the order given. The backend `name` is the
 * address as written.
 *
 * @param entries The configured backends.
 * @returns One healthy backend per entry.
 * @throws {RangeError} On a bad address (the message names it), a port of 0, a
 * priority or weight outside 0..65535, or two entries with the same address.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { staticBackends } from "./static.ts";
 * const [b] = staticBackends([{ address: "[::1]:9001", weight: 30 }]);
 * assert(b?.id === "[::1]:9001" && b.hostname === "::1" && b.weight === 30);
 * ```
 */
export function staticBackends(entries: readonly StaticBackendEntry[]): Backend[] {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const { hostname, port } = parseHostPort(entry.address);
    if (port === 0) {
      throw new RangeError(`Backend port must be 1..65535: received "${entry.address}"`);
    }
    const priority = checkUint16("Priority", entry.priority ?? 0, entry.address);
    const weight = checkUint16("Weight", entry.weight ?? 1, entry.address);
    const backend = createBackend({ hostname, port, priority, weight, name: entry.address });
    if (seen.has(backend.id)) {
      throw new RangeError(`Backend address is listed twice: received "${entry.address}"`);
    }
    seen.add(backend.id);
    return backend;
  });
}

function checkUint16(what: string, value: number, address: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new RangeError(`${what} must be 0..65535: received ${value} for "${address}"`);
  }
  return value;
}
