/**
 * `headers`: `set` replaces a field, `add` appends one, `remove` deletes one,
 * on the request to the backend and on the response to the client. Fields the
 * balancer frames or forwards by itself are refused at config load.
 *
 * @module
 */
import type { HeaderEdits } from "../config/policy.ts";
import type { PolicyRequest, PolicyStep } from "./policy.ts";
import { removeField } from "./rewrite.ts";

/**
 * The headers step of a route: an `onRequest` when `request` has edits, an
 * `onResponse` when `response` has.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { headersStep } from "./headers.ts";
 * const step = headersStep(undefined, {
 *   set: [["Strict-Transport-Security", "max-age=60"]], add: [], remove: ["x-powered-by"],
 * });
 * const fields = ["X-Powered-By", "php", "Content-Type", "text/html"];
 * step.onResponse!(fields);
 * assertEquals(fields, ["Content-Type", "text/html", "Strict-Transport-Security", "max-age=60"]);
 * ```
 *
 * @param request Edits of the request to the backend.
 * @param response Edits of the response to the client.
 */
export function headersStep(
  request: HeaderEdits | undefined,
  response: HeaderEdits | undefined,
): PolicyStep {
  const parts: string[] = [];
  if (request !== undefined) parts.push(`request ${describe(request)}`);
  if (response !== undefined) parts.push(`response ${describe(response)}`);
  const step: PolicyStep = { name: "headers", summary: parts.join("; ") };
  if (request !== undefined) {
    step.onRequest = (req: PolicyRequest, notes?: string[]) => {
      edit(req.fields, request);
      req.changed = true;
      notes?.push(`headers: request ${describe(request)}`);
      return undefined;
    };
  }
  if (response === undefined) return step;
  return {
    ...step,
    responseSummary: `response ${describe(response)}`,
    onResponse: (fields) => edit(fields, response),
  };
}

function edit(fields: string[], edits: HeaderEdits): void {
  for (const name of edits.remove) removeField(fields, name);
  for (const [name] of edits.set) removeField(fields, name);
  for (const [name, value] of edits.set) fields.push(name, value);
  for (const [name, value] of edits.add) fields.push(name, value);
}

function describe(e: HeaderEdits): string {
  const out: string[] = [];
  if (e.remove.length > 0) out.push(`remove ${e.remove.join(", ")}`);
  if (e.set.length > 0) out.push(`set ${e.set.map(([n, v]) => `${n}: ${v}`).join(", ")}`);
  if (e.add.length > 0) out.push(`add ${e.add.map(([n, v]) => `${n}: ${v}`).join(", ")}`);
  return out.join(", ");
}
