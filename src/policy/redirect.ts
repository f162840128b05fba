/**
 * `redirect`: the route answers every request with a redirect whose `Location`
 * is built from `{host}` (without its port), `{path}`, `{query}` (without its
 * "?") and `{uri}` (path and query, as the client sent them).
 *
 * @module
 */
import type { PolicyAnswer, PolicyRequest, PolicyStep } from "./policy.ts";

/**
 * The redirect step of a route.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { redirectStep } from "./redirect.ts";
 * import { PolicyRequest } from "./policy.ts";
 * const step = redirectStep("https://new.test{uri}", 301);
 * const a = step.onRequest!(new PolicyRequest("GET", "old.test:80", "/a?b=1", "::1", () => []));
 * assertEquals(a?.headers, ["location: https://new.test/a?b=1"]);
 * assertEquals(redirectStep("https://{host}/x?{query}", 308).onRequest!(
 *   new PolicyRequest("GET", "Old.test:8080", "/a?b=1", "::1", () => []),
 * )?.headers, ["location: https://old.test/x?b=1"]);
 * ```
 *
 * @param to The Location template.
 * @param code 301, 302, 303, 307 or 308.
 */
export function redirectStep(to: string, code: number): PolicyStep {
  return {
    name: "redirect",
    summary: `${code} to ${to}`,
    onRequest(req: PolicyRequest, notes?: string[]): PolicyAnswer {
      const location = to.replace(/\{(host|path|query|uri)\}/g, (_, key: string) => {
        switch (key) {
          case "host":
            return hostOnly(req.host);
          case "path":
            return req.path;
          case "query":
            return req.query.slice(1);
          default:
            return req.target;
        }
      });
      notes?.push(`redirect: ${code} to ${location}`);
      return {
        policy: "redirect",
        status: code,
        message: `moved to ${location}`,
        headers: [`location: ${location}`],
      };
    },
  };
}

// The host without its port, lower-cased ("[::1]:80" → "[::1]").
function hostOnly(host: string): string {
  let h = host;
  if (h.startsWith("[")) h = h.slice(0, h.indexOf("]") + 1);
  else if (h.includes(":")) h = h.slice(0, h.lastIndexOf(":"));
  return h.toLowerCase();
}
