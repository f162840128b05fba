/**
 * Compiles a route's policy keys into its steps, once at config load, in the
 * order of DESIGN.md: deny/allow → redirect → (auth → rate_limit, to come) →
 * rewrite → request headers → proxy → response headers.
 *
 * @module
 */
import type { PolicyConfig } from "../config/policy.ts";
import { accessStep } from "./access.ts";
import { headersStep } from "./headers.ts";
import { type PolicyStep, RoutePolicy } from "./policy.ts";
import { redirectStep } from "./redirect.ts";
import { rewriteStep } from "./rewrite.ts";

/**
 * The compiled policy of a route, or undefined when it has none (then the proxy
 * does nothing more per request than look at this one property).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { compilePolicy } from "./compile.ts";
 * assertEquals(compilePolicy(undefined), undefined);
 * const p = compilePolicy({ rewrite: { prefix: "/v2" }, deny: ["10.0.0.0/8"] })!;
 * assertEquals(p.steps.map((s) => s.name), ["deny", "rewrite"]);
 * ```
 */
export function compilePolicy(config: PolicyConfig | undefined): RoutePolicy | undefined {
  if (config === undefined) return undefined;
  const steps: PolicyStep[] = [];
  if (config.allow !== undefined || config.deny !== undefined) {
    steps.push(accessStep(config.allow, config.deny));
  }
  if (config.redirect !== undefined) {
    steps.push(redirectStep(config.redirect.to, config.redirect.code));
  }
  if (config.rewrite !== undefined) steps.push(rewriteStep(config.rewrite));
  const h = config.headers;
  if (h !== undefined && (h.request !== undefined || h.response !== undefined)) {
    steps.push(headersStep(h.request, h.response));
  }
  return steps.length === 0 ? undefined : new RoutePolicy(steps);
}
