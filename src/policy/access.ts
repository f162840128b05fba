/**
 * `allow` and `deny`: client address blocks (v4 and v6). A client in a `deny`
 * block gets 403, whatever `allow` says; with `allow`, a client in none of its
 * blocks gets 403 too. The client is the connection's peer.
 *
 * @module
 */
import { type Cidr, inAny, ipBytes, parseCidr } from "../config/cidr.ts";
import type { PolicyAnswer, PolicyRequest, PolicyStep } from "./policy.ts";

/**
 * The access step of a route.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { accessStep } from "./access.ts";
 * import { PolicyRequest } from "./policy.ts";
 * const step = accessStep(["10.0.0.0/8"], ["10.6.0.0/16"]);
 * const from = (ip: string) => new PolicyRequest("GET", "a", "/", ip, () => []);
 * assertEquals(step.onRequest!(from("10.1.2.3")), undefined);
 * assertEquals(step.onRequest!(from("10.6.2.3"))?.policy, "deny");
 * assertEquals(step.onRequest!(from("192.0.2.1"))?.status, 403);
 * ```
 *
 * @param allow Blocks let through (undefined: everyone not denied).
 * @param deny Blocks refused (checked first).
 */
export function accessStep(
  allow: readonly string[] | undefined,
  deny: readonly string[] | undefined,
): PolicyStep {
  const allowed = allow?.map(parseCidr);
  const denied = deny?.map(parseCidr) ?? [];
  const parts: string[] = [];
  if (denied.length > 0) parts.push(`deny ${list(denied)}`);
  if (allowed !== undefined) parts.push(`allow only ${list(allowed)}`);
  const name = allowed !== undefined ? "allow" : "deny";
  const summary = parts.join(", then ");
  return {
    name,
    summary,
    onRequest(req: PolicyRequest, notes?: string[]): PolicyAnswer | undefined {
      const ip = ipBytes(req.client);
      // an address that is no IP literal (a Unix socket) is in no block
      if (ip !== undefined && denied.length > 0 && inAny(ip, denied)) {
        notes?.push(`${name}: client ${req.client} is in deny ${list(denied)}: 403`);
        return refuse("deny", req.client);
      }
      if (allowed !== undefined && (ip === undefined || !inAny(ip, allowed))) {
        notes?.push(`${name}: client ${req.client} is not in allow ${list(allowed)}: 403`);
        return refuse("allow", req.client);
      }
      notes?.push(`${name}: client ${req.client} may pass (${summary})`);
      return undefined;
    },
  };
}

function refuse(policy: string, client: string): PolicyAnswer {
  return { policy, status: 403, message: `access from ${client} is not allowed`, headers: [] };
}

function list(blocks: readonly Cidr[]): string {
  return `[${blocks.map((b) => b.text).join(", ")}]`;
}
