/**
 * `compress`: the response body in gzip, br or zstd, as the client's
 * `Accept-Encoding` asks (nginx `gzip`, Caddy `encode`, Traefik Compress). The
 * last step on the way out, after the response headers.
 *
 * A body is compressed only when all of these hold: the request is not HEAD and
 * has no `Range`; the status is not 1xx, 204, 206 or 304; the media type is
 * among `types` (never gRPC); there is no `Content-Encoding` (nor a transfer
 * coding other than chunked); `Cache-Control` has no `no-transform`; the
 * `Content-Length`, when there is one, is at least `min_size` (a body of
 * unknown length is compressed); fewer than `max_active` of the route's
 * responses are being compressed (each holds its coder's memory). Such a response gets `Vary: Accept-Encoding`
 * whether or not this client accepted a coding (a cache must keep the two
 * apart); a compressed one also gets `Content-Encoding`, loses its
 * `Content-Length` and `Accept-Ranges`, and its strong `ETag` becomes weak
 * (`W/`), as nginx does.
 *
 * @module
 */
import type { CompressConfig } from "../config/policy.ts";
import { chooseCoding } from "./accept_encoding.ts";
import { type Coding, CODINGS, StreamEncoder } from "./encoder.ts";
import type { BodyEncoder, PolicyRequest, PolicyStep, ResponseContext } from "./policy.ts";
import { removeField } from "./rewrite.ts";

/**
 * The compress step of a route.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { compressStep } from "./compress.ts";
 * const step = compressStep({ types: ["text/*"], min_size: 1024, max_active: 1 });
 * const res = { method: "GET", status: 200, changed: false, requestField: (n: string) =>
 *   n === "accept-encoding" ? "gzip, br" : undefined };
 * const fields = ["Content-Type", "text/html", "Content-Length", "5000", "ETag", '"v1"'];
 * const enc = step.onResponseBody!(fields, res)!;
 * assertEquals(enc.coding, "br");
 * const busy = ["Content-Type", "text/html"]; // max_active: 1, and one is open
 * assertEquals(step.onResponseBody!(busy, res), undefined);
 * enc.close();
 * assertEquals(fields, [
 *   "Content-Type", "text/html", "ETag", 'W/"v1"', "Vary", "Accept-Encoding",
 *   "Content-Encoding", "br",
 * ]);
 * const small = ["Content-Type", "text/html", "Content-Length", "100"];
 * assertEquals(step.onResponseBody!(small, res), undefined);
 * assertEquals(small, ["Content-Type", "text/html", "Content-Length", "100"]);
 * ```
 *
 * @param config The route's `compress`.
 */
export function compressStep(config: CompressConfig): PolicyStep {
  const match = typeMatcher(config.types);
  let active = 0; // encoders of this route not closed yet
  const release = () => active--;
  const summary = `gzip, br or zstd by Accept-Encoding (preferring ${
    CODINGS.join(" > ")
  } when equal), for ${config.types.join(" ")} of ${config.min_size} bytes or more`;
  return {
    name: "compress",
    summary,
    explainResponse: explainRequest,
    onResponseBody(fields: string[], res: ResponseContext): BodyEncoder | undefined {
      if (res.method === "HEAD" || res.requestField("range") !== undefined) return undefined;
      const s = res.status;
      if (s < 200 || s === 204 || s === 206 || s === 304) return undefined;
      let type = "";
      let length = -1;
      let vary = -1;
      let etag = -1;
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const name = fields[i]!.toLowerCase();
        const value = fields[i + 1]!;
        switch (name) {
          case "content-type":
            type = mediaType(value);
            break;
          case "content-length":
            length = Number(value);
            break;
          case "content-encoding":
            if (value.trim() !== "") return undefined;
            break;
          case "transfer-encoding":
            if (value.trim().toLowerCase() !== "chunked") return undefined;
            break;
          case "cache-control":
            if (/(^|[\s,])no-transform(\s*(,|$))/i.test(value)) return undefined;
            break;
          case "vary":
            vary = i;
            break;
          case "etag":
            etag = i;
            break;
        }
      }
      if (type.startsWith("application/grpc") || !match(type)) return undefined;
      if (length >= 0 && length < config.min_size) return undefined;
      res.changed = addVary(fields, vary) || res.changed;
      const coding = chooseCoding(res.requestField("accept-encoding"));
      if (coding === undefined) return undefined;
      // past max_active the body goes as it is (its Vary is there already)
      if (active >= config.max_active) return undefined;
      res.changed = true;
      active++;
      if (etag >= 0 && fields[etag + 1]!.startsWith('"')) {
        fields[etag + 1] = `W/${fields[etag + 1]}`;
      }
      removeField(fields, "content-length");
      removeField(fields, "accept-ranges");
      fields.push("Content-Encoding", coding);
      return new StreamEncoder(coding, type.startsWith("text/") || type.includes("json"), release);
    },
    responseSummary: summary,
  };
}

// What `explain` says of a request: the coding it would get.
function explainRequest(req: PolicyRequest): string {
  let ae: string | undefined;
  let range = false;
  const f = req.fields;
  for (let i = 0; i + 1 < f.length; i += 2) {
    const name = f[i]!.toLowerCase();
    if (name === "accept-encoding") ae = ae === undefined ? f[i + 1]! : `${ae}, ${f[i + 1]}`;
    else if (name === "range") range = true;
  }
  if (req.method === "HEAD") return "a HEAD answer has no body: not compressed";
  if (range) return "a range request: the response is not compressed";
  const coding: Coding | undefined = chooseCoding(ae);
  const asked = ae === undefined ? "no Accept-Encoding" : `Accept-Encoding "${ae}"`;
  return coding === undefined
    ? `${asked}: the response is not compressed`
    : `${asked}: a compressible response is sent in ${coding}`;
}

// The media type of a Content-Type value, lower case, without parameters.
function mediaType(value: string): string {
  const semi = value.indexOf(";");
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
}

// `Vary: Accept-Encoding` added, or merged into the last Vary field (at `at`), unless
// that already names it or is "*"; true when a field changed.
function addVary(fields: string[], at: number): boolean {
  if (at < 0) {
    fields.push("Vary", "Accept-Encoding");
    return true;
  }
  // every Vary field counts: look at all of them
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toLowerCase() !== "vary") continue;
    for (const t of fields[i + 1]!.split(",")) {
      const token = t.trim().toLowerCase();
      if (token === "*" || token === "accept-encoding") return false;
    }
  }
  const value = fields[at + 1]!.trim();
  fields[at + 1] = value === "" ? "Accept-Encoding" : `${value}, Accept-Encoding`;
  return true;
}

/**
 * A test for media types against patterns: `text/html` (exact), `text/*` (a
 * whole type), `application/*+json` (a structured syntax suffix).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { typeMatcher } from "./compress.ts";
 * const m = typeMatcher(["text/*", "application/json", "application/*+xml"]);
 * assert(m("text/css") && m("application/json") && m("application/atom+xml"));
 * assert(!m("image/png") && !m("application/jsonx") && !m(""));
 * ```
 */
export function typeMatcher(patterns: readonly string[]): (type: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: [string, string][] = [];
  for (const p of patterns) {
    const lower = p.toLowerCase();
    if (lower.endsWith("/*")) prefixes.push(lower.slice(0, -1));
    else if (lower.includes("/*+")) {
      const [type, suffix] = lower.split("/*");
      suffixes.push([`${type}/`, suffix!]);
    } else exact.add(lower);
  }
  return (type) => {
    if (type === "") return false;
    if (exact.has(type)) return true;
    for (const p of prefixes) if (type.startsWith(p)) return true;
    for (const [t, s] of suffixes) if (type.startsWith(t) && type.endsWith(s)) return true;
    return false;
  };
}
