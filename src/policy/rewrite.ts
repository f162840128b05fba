/**
 * `rewrite`: the path the backend gets. `strip_prefix` removes a leading path
 * segment (whole segments only) and says what it removed in `X-Forwarded-Prefix`
 * (as Traefik does); `prefix` puts one in front; `regex` + `replace` substitutes
 * (`$1` for groups), the regex compiled once here. The query is kept.
 *
 * @module
 */
import type { RewriteConfig } from "../config/policy.ts";
import type { PolicyRequest, PolicyStep } from "./policy.ts";

/**
 * The rewrite step of a route.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { rewriteStep } from "./rewrite.ts";
 * import { PolicyRequest } from "./policy.ts";
 * const run = (c: Parameters<typeof rewriteStep>[0], target: string) => {
 *   const req = new PolicyRequest("GET", "a", target, "::1", () => []);
 *   rewriteStep(c).onRequest!(req);
 *   return [req.target, req.fieldsRead ? req.fields : []];
 * };
 * assertEquals(run({ strip_prefix: "/api" }, "/api/u?x=1"), ["/u?x=1", ["X-Forwarded-Prefix", "/api"]]);
 * assertEquals(run({ strip_prefix: "/api" }, "/apix"), ["/apix", []]);
 * assertEquals(run({ prefix: "/v2" }, "/u"), ["/v2/u", []]);
 * assertEquals(run({ regex: "^/v1/(.*)$", replace: "/v2/$1" }, "/v1/a?q"), ["/v2/a?q", []]);
 * ```
 *
 * @param config One kind of rewrite.
 */
export function rewriteStep(config: RewriteConfig): PolicyStep {
  if ("strip_prefix" in config) {
    const prefix = trimSlash(config.strip_prefix);
    return {
      name: "rewrite",
      summary: `strip prefix ${prefix}`,
      onRequest(req: PolicyRequest, notes?: string[]) {
        const p = req.path;
        if (p === prefix || (p.startsWith(prefix) && p.charCodeAt(prefix.length) === 47)) {
          req.path = p.slice(prefix.length) || "/";
          setField(req.fields, "X-Forwarded-Prefix", prefix);
          req.changed = true;
          notes?.push(
            `rewrite: ${p} → ${req.path} (strip prefix ${prefix}; X-Forwarded-Prefix: ${prefix})`,
          );
        } else notes?.push(`rewrite: ${p} does not start with ${prefix}: unchanged`);
        return undefined;
      },
    };
  }
  if ("prefix" in config) {
    const prefix = trimSlash(config.prefix);
    return {
      name: "rewrite",
      summary: `add prefix ${prefix}`,
      onRequest(req: PolicyRequest, notes?: string[]) {
        const p = req.path;
        req.path = prefix + p;
        req.changed = true;
        notes?.push(`rewrite: ${p} → ${req.path} (add prefix ${prefix})`);
        return undefined;
      },
    };
  }
  const regex = new RegExp(config.regex);
  const replace = config.replace;
  return {
    name: "rewrite",
    summary: `${config.regex} → ${replace}`,
    onRequest(req: PolicyRequest, notes?: string[]) {
      const p = req.path;
      if (!regex.test(p)) {
        notes?.push(`rewrite: ${p} does not match ${config.regex}: unchanged`);
        return undefined;
      }
      let next = p.replace(regex, replace);
      if (next.charCodeAt(0) !== 47) next = "/" + next;
      req.path = next;
      req.changed = true;
      notes?.push(`rewrite: ${p} → ${next} (${config.regex} → ${replace})`);
      return undefined;
    },
  };
}

function trimSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

// Replaces every `name` field (any case) in flat `fields` with one `name: value`.
function setField(fields: string[], name: string, value: string): void {
  removeField(fields, name);
  fields.push(name, value);
}

/**
 * Removes every field called `name` (any case) from flat `fields`, in place.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { removeField } from "./rewrite.ts";
 * const f = ["A", "1", "b", "2", "a", "3"];
 * removeField(f, "a");
 * assertEquals(f, ["b", "2"]);
 * ```
 */
export function removeField(fields: string[], name: string): void {
  const lower = name.toLowerCase();
  let w = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toLowerCase() === lower) continue;
    fields[w++] = fields[i]!;
    fields[w++] = fields[i + 1]!;
  }
  fields.length = w;
}
