/**
 * Validation of a decoded HTTP/2 response header list (RFC 9113 §8.3.2,
 * §8.2.2): `:status` and nothing else pseudo, valid names and values, no
 * connection-specific fields.
 *
 * @module
 */
import { checkRegularFields, removeFirst } from "./request_fields.ts";

/** What {@linkcode parseResponseFields} reads out of a response head. */
export interface ResponsePseudo {
  /** `:status`, 100..599. */
  status: number;
  /** Value of content-length, -1 when absent. */
  contentLength: number;
}

const STATUS_REGEXP = /^[1-5][0-9][0-9]$/;

/**
 * Checks a decoded response header list (flat `name, value, ...`), fills `out`
 * and removes `:status` from `list`, leaving the regular fields.
 *
 * @returns "" when well-formed, else why the response is malformed.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseResponseFields, type ResponsePseudo } from "./response_fields.ts";
 * const out: ResponsePseudo = { status: 0, contentLength: -1 };
 * const list = [":status", "200", "content-type", "application/grpc"];
 * assertEquals(parseResponseFields(list, out), "");
 * assertEquals([out.status, list], [200, ["content-type", "application/grpc"]]);
 * assertEquals(parseResponseFields([":status", "200", ":path", "/"], out), "unexpected pseudo-header :path");
 * assertEquals(parseResponseFields(["server", "x"], out), "missing :status");
 * ```
 */
export function parseResponseFields(list: string[], out: ResponsePseudo): string {
  out.status = 0;
  out.contentLength = -1;
  let i = 0;
  for (; i < list.length; i += 2) {
    const name = list[i]!;
    if (name.charCodeAt(0) !== 0x3a) break; // ':'
    if (name !== ":status") return `unexpected pseudo-header ${name}`;
    if (out.status !== 0 || !STATUS_REGEXP.test(list[i + 1]!)) return "bad :status";
    out.status = Number(list[i + 1]!);
  }
  const why = checkRegularFields(list, i, out);
  if (why !== "") return why;
  if (out.status === 0) return "missing :status";
  removeFirst(list, i);
  return "";
}
