/**
 * Compiles a route's policy keys into its steps, once at config load, in the
 * order of DESIGN.md: deny/allow → redirect → auth → rate_limit →
 * rewrite → request headers → mirror + proxy → response headers → compress.
 *
 * @module
 */
import type { PolicyConfig } from "../config/policy.ts";
import { accessStep } from "./access.ts";
import type { AuthContext } from "./_auth.ts";
import { basicAuthStep } from "./auth_basic.ts";
import { compressStep } from "./compress.ts";
import { forwardAuthStep } from "./auth_forward.ts";
import { headersStep } from "./headers.ts";
import { type MirrorContext, mirrorStep } from "./mirror.ts";
import { type PolicyStep, RoutePolicy, type StepResult } from "./policy.ts";
import { type RateLimitContext, rateLimitStep } from "./rate_limit.ts";
import { redirectStep } from "./redirect.ts";
import { rewriteStep } from "./rewrite.ts";

/** What the steps of a route are told: its name, where they log and count. */
export type PolicyContext = RateLimitContext & AuthContext & MirrorContext;

/**
 * The compiled policy of a route, or undefined when it has none (then the proxy
 * does nothing more per request than look at this one property). `context`
 * names the route and says where a rate limit's store failures, auth
 * decisions and mirror copies are told.
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
export function compilePolicy(
  config: PolicyConfig | undefined,
  context: PolicyContext = { route: "" },
): RoutePolicy | undefined {
  if (config === undefined) return undefined;
  const steps: PolicyStep<StepResult>[] = [];
  if (config.allow !== undefined || config.deny !== undefined) {
    steps.push(accessStep(config.allow, config.deny));
  }
  if (config.redirect !== undefined) {
    steps.push(redirectStep(config.redirect.to, config.redirect.code));
  }
  const auth = config.auth;
  if (auth !== undefined) {
    steps.push(
      "basic" in auth ? basicAuthStep(auth.basic, context) : forwardAuthStep(auth.forward, context),
    );
  }
  if (config.rate_limit !== undefined) steps.push(rateLimitStep(config.rate_limit, context));
  if (config.rewrite !== undefined) steps.push(rewriteStep(config.rewrite));
  const h = config.headers;
  if (h !== undefined && (h.request !== undefined || h.response !== undefined)) {
    steps.push(headersStep(h.request, h.response));
  }
  if (config.mirror !== undefined) steps.push(mirrorStep(config.mirror, context));
  if (config.compress !== undefined) steps.push(compressStep(config.compress));
  return steps.length === 0 ? undefined : new RoutePolicy(steps);
}
