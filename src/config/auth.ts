/**
 * A route's `auth` key (DESIGN.md "Traffic policy"): `basic` with a bcrypt
 * htpasswd file, read here at load (and so again on every reload), or `forward`
 * to an auth service. Every mistake is a `file:line` error, in the config or in
 * the htpasswd file.
 *
 * @module
 */
import type { Node } from "./_yaml.ts";
import type { Source } from "./_source.ts";
import { TOKEN_REGEXP } from "./hash_key.ts";

/** `auth.basic`: users and their bcrypt hashes, from an htpasswd file. */
export interface BasicAuthConfig {
  /** The realm named in `WWW-Authenticate`. */
  realm: string;
  /** The htpasswd file as written in the config. */
  htpasswd: string;
  /** `[user, bcrypt hash]`, in file order (a list, so that a changed file is a changed config). */
  users: [string, string][];
}

/** `auth.forward`: an auth service asked about every request. */
export interface ForwardAuthConfig {
  /** The URL as written (`http://auth:9100/check`). */
  url: string;
  /** Host (name or IP literal, no brackets) to connect to. */
  hostname: string;
  /** Port to connect to. */
  port: number;
  /** Path and query of the URL: the auth request's target prefix. */
  path: string;
  /** Fields copied from a 2xx answer onto the request to the backend (as written). */
  copy_headers: string[];
  /** How long the auth service has to answer, in ms. */
  timeout: number;
}

/** A route's `auth`: exactly one kind. */
export type AuthConfig = { basic: BasicAuthConfig } | { forward: ForwardAuthConfig };

/** Default `auth.forward.timeout`, in ms. */
export const FORWARD_AUTH_TIMEOUT = 2000;

// `$2y$` (Apache htpasswd -B), `$2a$` (Caddy hash-password, older tools), `$2b$` (OpenBSD)
const BCRYPT_REGEXP = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const URL_REGEXP = /^http:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\/[^\s#]*)?$/;
/**
 * Fields the balancer frames and forwards a request by (and its Host): a forward auth
 * answer may not put them on the request, nor a `headers` policy set them.
 */
export const FRAMING_FIELDS: readonly string[] = [
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "host",
];
const OWN_FIELDS = new Set(FRAMING_FIELDS);

/**
 * Reads `auth` at `at` (`routes[0].auth`); a `basic` one's htpasswd file is read now.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { Source } from "./_source.ts";
 * import { readAuth } from "./auth.ts";
 * const src = new Source("u.yaml", 'auth: { forward: { url: "http://127.0.0.1:9100/check", copy_headers: [X-User] } }');
 * const m = src.map(src.root, "", ["auth"]);
 * const a = readAuth(src, m.get("auth"), "auth");
 * assertEquals(src.errors, []);
 * assertEquals(a, { forward: {
 *   url: "http://127.0.0.1:9100/check", hostname: "127.0.0.1", port: 9100, path: "/check",
 *   copy_headers: ["X-User"], timeout: 2000,
 * } });
 * ```
 *
 * @param src The config source errors are reported through.
 * @param node The `auth` mapping.
 * @param at Where it is, for messages.
 * @returns The auth settings, or undefined after an error.
 */
export function readAuth(src: Source, node: Node | undefined, at: string): AuthConfig | undefined {
  const m = src.map(node, at, ["basic", "forward"]);
  if (m.size !== 1) {
    return src.fail(node, at, "needs exactly one of basic or forward");
  }
  if (m.has("basic")) {
    const basic = readBasic(src, m.get("basic"), `${at}.basic`);
    return basic && { basic };
  }
  const forward = readForward(src, m.get("forward"), `${at}.forward`);
  return forward && { forward };
}

function readBasic(src: Source, node: Node | undefined, at: string): BasicAuthConfig | undefined {
  const b = src.map(node, at, ["realm", "htpasswd"]);
  const realm = src.string(b.get("realm"), `${at}.realm`) ?? "restricted";
  if ([...realm].some((c) => c < " " || c === "\x7f" || c === '"' || c === "\\")) {
    src.fail(
      b.get("realm"),
      `${at}.realm`,
      "cannot hold a quote, a backslash or a control character",
    );
  }
  if (!b.has("htpasswd")) return src.fail(node, at, "needs htpasswd (a file of bcrypt lines)");
  const file = src.string(b.get("htpasswd"), `${at}.htpasswd`);
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    return src.fail(
      b.get("htpasswd"),
      `${at}.htpasswd`,
      `cannot read ${file}: ${(e as Error).message}`,
    );
  }
  const users = parseHtpasswd(text, file, src.errors);
  if (users.length === 0 && !src.errors.some((e) => e.startsWith(`${file}:`))) {
    src.fail(b.get("htpasswd"), `${at}.htpasswd`, `${file} holds no user`);
  }
  return { realm, htpasswd: file, users };
}

/**
 * The `user:hash` lines of an htpasswd file; blank lines and `#` comments are
 * skipped, a line that is no bcrypt one adds a `file:line` error to `errors`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseHtpasswd } from "./auth.ts";
 * const errors: string[] = [];
 * const hash = "$2y$05$" + "a".repeat(53);
 * const users = parseHtpasswd(`# ops\nann:${hash}\nbob:$apr1$xyz$abc\n`, "u.htpasswd", errors);
 * assertEquals(users, [["ann", hash]]);
 * assertEquals(errors.length, 1);
 * assertEquals(errors[0]!.startsWith("u.htpasswd:3: user bob:"), true);
 * ```
 *
 * @param text The file's contents.
 * @param file Its name, for messages.
 * @param errors Where mistakes go.
 * @returns `[user, hash]` pairs in file order.
 */
export function parseHtpasswd(text: string, file: string, errors: string[]): [string, string][] {
  const users: [string, string][] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const where = `${file}:${i + 1}`;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      errors.push(`${where}: expected user:hash`);
      return;
    }
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    const m = BCRYPT_REGEXP.exec(hash);
    if (!m) {
      errors.push(
        `${where}: user ${user}: not a bcrypt hash ($2y$, $2a$ or $2b$); ` +
          "make it with htpasswd -B or caddy hash-password",
      );
      return;
    }
    const cost = Number(m[1]);
    if (cost < 4 || cost > 31) {
      errors.push(`${where}: user ${user}: bcrypt cost must be 4..31: received ${cost}`);
      return;
    }
    if (seen.has(user)) {
      errors.push(`${where}: user ${user}: listed twice`);
      return;
    }
    seen.add(user);
    users.push([user, hash]);
  });
  return users;
}

function readForward(
  src: Source,
  node: Node | undefined,
  at: string,
): ForwardAuthConfig | undefined {
  const f = src.map(node, at, ["url", "copy_headers", "timeout"]);
  if (!f.has("url")) return src.fail(node, at, 'needs url (e.g. "http://auth:9100/check")');
  const url = src.string(f.get("url"), `${at}.url`);
  const m = URL_REGEXP.exec(url ?? "");
  const port = Number(m?.[2] ?? 80);
  if (url !== undefined && (!m || port < 1 || port > 65535)) {
    src.fail(
      f.get("url"),
      `${at}.url`,
      `must be http://host[:port][/path] (plain HTTP/1.1): received "${url}"`,
    );
  }
  const copy: string[] = [];
  src.seq(f.get("copy_headers"), `${at}.copy_headers`).forEach((item, i) => {
    const p = `${at}.copy_headers[${i}]`;
    const name = src.string(item, p);
    if (name === undefined) return;
    if (!TOKEN_REGEXP.test(name)) src.fail(item, p, `"${name}" is not a valid header name`);
    else if (OWN_FIELDS.has(name.toLowerCase())) {
      src.fail(
        item,
        p,
        `${name} is the balancer's own (framing or hop-by-hop): it cannot be copied`,
      );
    } else copy.push(name);
  });
  const timeout = src.duration(f.get("timeout"), `${at}.timeout`) ?? FORWARD_AUTH_TIMEOUT;
  if (timeout < 1) src.fail(f.get("timeout"), `${at}.timeout`, "must be at least 1ms");
  if (url === undefined || !m || port < 1 || port > 65535) return undefined;
  return {
    url,
    hostname: m[1]!.replace(/^\[|\]$/g, ""),
    port,
    path: m[3] ?? "/",
    copy_headers: copy,
    timeout,
  };
}
