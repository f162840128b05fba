/**
 * Runs a route's policy steps on the request and response heads: the request's
 * steps before the exchange (an answer goes to the client, a change becomes a
 * new head for the backend), the response's on the head the backend sent.
 * Nothing here knows a policy by name.
 *
 * @module
 */
import { PolicyRequest, type RoutePolicy } from "../policy/policy.ts";
import type {
  BodyEncoder,
  CopyOffer,
  PolicyAnswer,
  RequestCopy,
  ResponseContext,
} from "../policy/policy.ts";
import { type ForwardInfo, forwardRequestHead } from "./forwarded.ts";
import {
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from "../http1/parse.ts";
import type { Fields } from "../http1/fields.ts";
import type { Request } from "./client.ts";

/** The outcome of a route's request steps: an answer, or the request to forward. */
export type PolicyOutcome =
  | { answer: PolicyAnswer; req?: undefined }
  | { answer?: undefined; req: Request };

/**
 * Runs `policy`'s request steps over `req` from `client`.
 *
 * @example
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { compilePolicy } from "../policy/compile.ts";
 * import { applyRequestPolicy } from "./policy_heads.ts";
 * const head = parseRequestHead("GET /api/a?x=1 HTTP/1.1\r\nHost: a.test\r\n\r\n");
 * const req = {
 *   head, framing: { kind: "none", length: 0 } as const, host: "a.test", path: "/api/a?x=1",
 *   keepAlive: true, upgrade: undefined,
 * };
 * const out = applyRequestPolicy(compilePolicy({ rewrite: { strip_prefix: "/api" } })!, req, "::1");
 * assert(!(out instanceof Promise));
 * assertEquals(out.req?.head.target, "/a?x=1");
 * assertEquals(out.req?.head.values, ["a.test", "/api"]);
 * ```
 *
 * @param policy The route's compiled policy.
 * @param req The request as the edge checked it.
 * @param client The client's IP address.
 * @param options `notes`: when given (`explain`), each step's decision is added;
 * `scheme`: what the client spoke (http by default).
 * @returns The outcome; a promise only when a step asks a service or a store
 * (`auth`, `rate_limit` with Redis).
 */
export function applyRequestPolicy(
  policy: RoutePolicy,
  req: Request,
  client: string,
  options: { notes?: string[]; scheme?: "http" | "https" } = {},
): PolicyOutcome | Promise<PolicyOutcome> {
  const head = req.head;
  // an absolute-form target is forwarded as its path and query (`req.path`); "*" as it is
  const target = head.target === "*" ? head.target : req.path;
  const p = new PolicyRequest(head.method, req.host, target, client, () => flatFields(head));
  if (options.scheme !== undefined) p.scheme = options.scheme;
  const answer = policy.runRequest(p, options.notes);
  if (answer instanceof Promise) return answer.then((a) => outcome(a, p, req));
  return outcome(answer, p, req);
}

function outcome(answer: PolicyAnswer | undefined, p: PolicyRequest, req: Request): PolicyOutcome {
  if (answer !== undefined) return { answer };
  if (!p.changed) return { req };
  const head = req.head;
  const fields = p.fieldsRead ? p.fields : flatFields(head);
  let text = `${head.method} ${p.target} HTTP/1.${head.minor}\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) text += `${fields[i]}: ${fields[i + 1]}\r\n`;
  const next = parseRequestHead(text + "\r\n", Number.MAX_SAFE_INTEGER);
  return { req: { ...req, head: next, path: p.target } };
}

/** A response head as the response steps left it, and the body's encoder if one was chosen. */
export interface PolicyResponse<H> {
  /** The head: a new one, or the one given when no step changed it. */
  head: H;
  /** The body step's encoder, when the body is to be encoded. */
  encoder: BodyEncoder | undefined;
}

/**
 * The response head `head` with `policy`'s response steps applied (a new head;
 * `head` itself is left as it was), for a backend that spoke HTTP/1.1; given
 * `res` (a response with a body), the body step too.
 */
export function applyResponsePolicy(
  policy: RoutePolicy,
  head: ResponseHead,
  res?: ResponseContext,
): PolicyResponse<ResponseHead> {
  const fields = flatFields(head);
  const encoder = policy.runResponse(fields, res);
  // a route whose only response step is compress, which left this one alone: the head as it came
  if (policy.response.length === 0 && res?.changed !== true) return { head, encoder };
  let text = `HTTP/1.${head.minor} ${head.status} ${head.reason}\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) text += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return { head: parseResponseHead(text + "\r\n"), encoder };
}

/**
 * The fields of an HTTP/2 backend's response (flat, lower-case names) with
 * `policy`'s response steps applied: a new list, names lower-cased as HTTP/2
 * needs; given `res` (a response with a body), the body step too.
 */
export function applyResponseFieldsPolicy(
  policy: RoutePolicy,
  fields: readonly string[],
  res?: ResponseContext,
): PolicyResponse<readonly string[]> {
  const out = fields.slice();
  const encoder = policy.runResponse(out, res);
  if (policy.response.length === 0 && res?.changed !== true) return { head: fields, encoder };
  for (let i = 0; i < out.length; i += 2) out[i] = out[i]!.toLowerCase();
  return { head: out, encoder };
}

/**
 * What a body step sees of an exchange: the request's method and fields
 * (`head`), the response's status.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { responseContext } from "./policy_heads.ts";
 * const head = parseRequestHead(
 *   "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\naccept-encoding: br\r\n\r\n",
 * );
 * const res = responseContext(head, 200);
 * assertEquals(res.requestField("accept-encoding"), "gzip, br");
 * assertEquals(res.requestField("range"), undefined);
 * ```
 */
export function responseContext(head: RequestHead, status: number): ResponseContext {
  return {
    method: head.method,
    status,
    changed: false,
    requestField(name: string): string | undefined {
      let value: string | undefined;
      for (let i = 0; i < head.count; i++) {
        if (head.name(i) !== name) continue;
        value = value === undefined ? head.value(i) : `${value}, ${head.value(i)}`;
      }
      return value;
    },
  };
}

const NO_BODY = { kind: "none", length: 0 } as const;

/**
 * Offers the request about to be forwarded to the route's copying step
 * (`mirror`). A copy without a body is ended at once; one with a body is
 * returned, to be given the body as it goes to the backend.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRequestHead } from "../http1/parse.ts";
 * import { RoutePolicy } from "../policy/policy.ts";
 * import { startCopy } from "./policy_heads.ts";
 * const heads: string[] = [];
 * const policy = new RoutePolicy([{
 *   name: "mirror", summary: "",
 *   onCopy: (offer) => {
 *     heads.push(offer.head());
 *     return { push() {}, end() {}, abandon() {} };
 *   },
 * }]);
 * const head = parseRequestHead("GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n");
 * const req = {
 *   head, framing: { kind: "none", length: 0 } as const, host: "a.test", path: "/a",
 *   keepAlive: true, upgrade: undefined,
 * };
 * const info = { clientIp: "10.0.0.1", proto: "http", host: "a.test", framing: req.framing, upgrade: undefined };
 * assertEquals(startCopy(policy, req, { info, stream: false }), undefined); // no body: sent already
 * assertEquals(heads[0]!.split("\r\n")[0], "GET /a HTTP/1.1");
 * assertEquals(heads[0]!.endsWith("via: 1.1 unload\r\n\r\n"), true);
 * ```
 *
 * @param policy The route's compiled policy (its `copy` step is asked).
 * @param req The request as forwarded (after the request steps).
 * @param options What the forwarded head needs, and whether the request is a stream
 * (gRPC, an upgrade): not copied.
 * @returns The copy waiting for the request's body, or undefined (none, or sent already).
 */
export function startCopy(
  policy: RoutePolicy,
  req: Request,
  options: { info: ForwardInfo; stream: boolean },
): RequestCopy | undefined {
  const step = policy.copy;
  if (step === undefined) return undefined;
  const framing = req.framing;
  const length = framing.kind === "none" ? 0 : framing.kind === "length" ? framing.length : -1;
  const offer: CopyOffer = {
    method: req.head.method,
    // the head as the backend gets it; a body of unknown length: without framing nor blank line
    head: () =>
      length >= 0
        ? forwardRequestHead(req.head, options.info)
        : forwardRequestHead(req.head, { ...options.info, framing: NO_BODY }).slice(0, -2),
    bodyLength: length,
    stream: options.stream,
  };
  const copy = step.onCopy!(offer);
  if (copy === undefined || length !== 0) return copy;
  copy.end();
  return undefined;
}

function flatFields(head: Fields): string[] {
  const out: string[] = [];
  for (let i = 0; i < head.count; i++) out.push(head.rawName(i), head.value(i));
  return out;
}
