/**
 * Validation of a decoded HTTP/2 request header list (RFC 9113 §8.2, §8.3):
 * pseudo-header fields, field names and values, connection-specific fields.
 *
 * @module
 */

/** The pseudo-header fields of a request, split from its regular fields. */
export interface RequestPseudo {
  /** `:method`. */
  method: string;
  /** `:scheme` ("" when absent, as in CONNECT). */
  scheme: string;
  /** `:authority` ("" when absent). */
  authority: string;
  /** `:path` ("" when absent, as in CONNECT). */
  path: string;
  /** Value of content-length, -1 when absent. */
  contentLength: number;
}

// 1 = a valid lowercase token character (RFC 9110 §5.6.2).
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TOKEN[c.charCodeAt(0)] = 1;

/**
 * True when `name` is a non-empty lowercase token (a valid HTTP/2 field name).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { validName } from "./request_fields.ts";
 * assert(validName("grpc-status") && !validName("Host") && !validName(""));
 * ```
 */
export function validName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TOKEN[c] === 0) return false;
  }
  return true;
}

/**
 * True when `value` has no NUL, CR or LF and no leading or trailing whitespace.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { validValue } from "./request_fields.ts";
 * assert(validValue("a b") && !validValue(" a") && !validValue("a\r\nb"));
 * ```
 */
export function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  for (let i = 0; i < n; i++) {
    c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** True for the connection-specific fields HTTP/2 forbids (§8.2.2). */
function connectionSpecific(name: string): boolean {
  switch (name) {
    case "connection":
    case "keep-alive":
    case "proxy-connection":
    case "transfer-encoding":
    case "upgrade":
      return true;
    default:
      return false;
  }
}

const DIGITS_REGEXP = /^[0-9]{1,15}$/;

/**
 * Checks a decoded request header list (flat `name, value, ...`), fills `out`
 * with its pseudo-header fields and removes them from `list`, leaving the
 * regular fields.
 *
 * @returns "" when well-formed, else why the request is malformed.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRequestFields, type RequestPseudo } from "./request_fields.ts";
 * const out: RequestPseudo = { method: "", scheme: "", authority: "", path: "", contentLength: -1 };
 * const list = [":method", "GET", ":scheme", "https", ":path", "/", "accept", "*\/*"];
 * assertEquals(parseRequestFields(list, out), "");
 * assertEquals([out.method, out.path, list], ["GET", "/", ["accept", "*\/*"]]);
 * assertEquals(parseRequestFields([":method", "GET", ":path", "/"], out), "missing :scheme");
 * ```
 */
export function parseRequestFields(list: string[], out: RequestPseudo): string {
  out.method =
    out.scheme =
    out.authority =
    out.path =
      "";
  out.contentLength = -1;
  let hasAuthority = false;
  let i = 0;
  for (; i < list.length; i += 2) {
    const name = list[i]!;
    if (name.charCodeAt(0) !== 0x3a) break; // ':'
    const value = list[i + 1]!;
    switch (name) {
      case ":method":
        if (out.method !== "" || !validName(value.toLowerCase())) return "bad :method";
        out.method = value;
        break;
      case ":scheme":
        if (out.scheme !== "" || value === "") return "bad :scheme";
        out.scheme = value;
        break;
      case ":path":
        // a #fragment is never part of a request target (RFC 9112 §3.2): rejected, as in HTTP/1.1
        if (out.path !== "" || value === "" || value.includes("#")) return "bad :path";
        out.path = value;
        break;
      case ":authority":
        if (hasAuthority) return "duplicate :authority";
        hasAuthority = true;
        out.authority = value;
        break;
      default:
        return `unknown pseudo-header ${name}`;
    }
    if (!validValue(value)) return `bad value of ${name}`;
  }
  const why = checkRegularFields(list, i, out, { request: true });
  if (why !== "") return why;
  if (out.method === "") return "missing :method";
  if (out.method !== "CONNECT") {
    if (out.scheme === "") return "missing :scheme";
    if (out.path === "") return "missing :path";
    if (out.path === "*" && out.method !== "OPTIONS") return ":path * without OPTIONS";
  }
  removeFirst(list, i);
  return "";
}

/**
 * Checks a decoded trailer list: no pseudo-header, valid names and values.
 *
 * @returns "" when well-formed, else why not.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { checkTrailerFields } from "./request_fields.ts";
 * assertEquals(checkTrailerFields(["grpc-status", "0"]), "");
 * assertEquals(checkTrailerFields([":status", "200"]), "pseudo-header in trailers");
 * ```
 */
export function checkTrailerFields(list: readonly string[]): string {
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    if (name.charCodeAt(0) === 0x3a) return "pseudo-header in trailers";
    if (!validName(name)) return "bad field name";
    if (!validValue(list[i + 1]!)) return `bad value of ${name}`;
    if (connectionSpecific(name)) return `connection-specific field ${name}`;
  }
  return "";
}

/** True for response fields that must not be sent over HTTP/2 (§8.2.2). */
export function isConnectionSpecific(name: string): boolean {
  return connectionSpecific(name);
}

/**
 * Checks the regular fields of a request or response head, `list[from..]`
 * (flat `name, value, ...`): no pseudo-header among them, valid names and
 * values, none connection-specific, a content-length that is digits and agrees
 * with any other (its value goes to `out.contentLength`), and for a `request`
 * no `te` other than `trailers`.
 *
 * @returns "" when the fields are acceptable, else why not.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { checkRegularFields } from "./request_fields.ts";
 * const out = { contentLength: -1 };
 * assertEquals(checkRegularFields([":status", "200", "content-length", "5"], 2, out), "");
 * assertEquals(out.contentLength, 5);
 * assertEquals(checkRegularFields(["te", "gzip"], 0, out, { request: true }), "te other than trailers");
 * assertEquals(checkRegularFields(["upgrade", "h2c"], 0, out), "connection-specific field upgrade");
 * ```
 */
export function checkRegularFields(
  list: readonly string[],
  from: number,
  out: { contentLength: number },
  options?: { request?: boolean },
): string {
  const request = options?.request === true;
  for (let i = from; i < list.length; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) return "pseudo-header after a regular field";
    if (!validName(name)) return "bad field name";
    if (!validValue(value)) return `bad value of ${name}`;
    if (connectionSpecific(name)) return `connection-specific field ${name}`;
    if (request && name === "te" && value !== "trailers") return "te other than trailers";
    if (name === "content-length") {
      if (!DIGITS_REGEXP.test(value)) return "bad content-length";
      const n = Number(value);
      if (out.contentLength !== -1 && out.contentLength !== n) return "conflicting content-length";
      out.contentLength = n;
    }
  }
  return "";
}

/**
 * Removes the first `n` entries of `list` (the pseudo-header fields of a head
 * whose regular fields follow).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { removeFirst } from "./request_fields.ts";
 * const list = [":status", "200", "server", "x"];
 * removeFirst(list, 2);
 * assertEquals(list, ["server", "x"]);
 * ```
 */
export function removeFirst(list: string[], n: number): void {
  if (n >= list.length) list.length = 0;
  else if (n > 0) list.splice(0, n);
}

const UPPER_REGEXP = /[A-Z]/;

/**
 * Appends `fields` (flat `name, value, ...`) to `list` as HTTP/2 wants them
 * sent: names lowercased, connection-specific fields left out, and with
 * `dropPseudo` pseudo-header fields too.
 *
 * @returns `list`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { appendH2Fields } from "./request_fields.ts";
 * const fields = ["Content-Type", "text/plain", "Connection", "close", ":x", "y"];
 * assertEquals(appendH2Fields([":status", "200"], fields), [":status", "200", "content-type", "text/plain", ":x", "y"]);
 * assertEquals(appendH2Fields([], fields, { dropPseudo: true }), ["content-type", "text/plain"]);
 * ```
 */
export function appendH2Fields(
  list: string[],
  fields: readonly string[],
  options?: { dropPseudo?: boolean },
): string[] {
  const dropPseudo = options?.dropPseudo === true;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    let name = fields[i]!;
    if (UPPER_REGEXP.test(name)) name = name.toLowerCase();
    if (connectionSpecific(name) || (dropPseudo && name.charCodeAt(0) === 0x3a)) continue;
    list.push(name, fields[i + 1]!);
  }
  return list;
}
