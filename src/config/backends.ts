/**
 * A list of static backends in the config file (`routes[].backends`, and a
 * mirror's `backends`), read into entries: every mistake a `file:line` error.
 *
 * @module
 */
import type { Node } from "./_yaml.ts";
import type { Source } from "./_source.ts";
import type { StaticBackendEntry } from "../upstream/discovery/static.ts";

/**
 * Reads the `backends` list at `path` (`routes[0]`, `routes[0].mirror`).
 *
 * @param src The config source errors are reported through.
 * @param node The YAML sequence.
 * @param path Where the list's owner is, for messages.
 * @returns One entry per item (a bad one is reported and kept with what could be read).
 */
export function readBackends(
  src: Source,
  node: Node | undefined,
  path: string,
): StaticBackendEntry[] {
  return src.seq(node, `${path}.backends`).map((b, j) => {
    const p = `${path}.backends[${j}]`;
    const m = src.map(b, p, ["address", "priority", "weight"]);
    const address = src.address(m.get("address"), `${p}.address`);
    if (!m.has("address")) src.fail(b, p, "needs an address (host:port)");
    if (address?.port === 0) src.fail(m.get("address"), `${p}.address`, "port must be 1..65535");
    const entry: StaticBackendEntry = {
      address: src.string(m.get("address"), `${p}.address`) ?? "",
    };
    const priority = src.int(m.get("priority"), `${p}.priority`, 0, 65535);
    const weight = src.int(m.get("weight"), `${p}.weight`, 0, 65535);
    if (priority !== undefined) entry.priority = priority;
    if (weight !== undefined) entry.weight = weight;
    return entry;
  });
}
