/**
 * The traffic policy keys of a route (DESIGN.md "Traffic policy"): read from
 * the config file into plain data, every mistake a `file:line` error. They are
 * compiled into a route's steps by `src/policy/compile.ts`.
 *
 * @module
 */
import { isMap, isScalar, type Node } from "./_yaml.ts";
import type { YAMLMap } from "yaml";
import type { Source } from "./_source.ts";
import { parseCidr } from "./cidr.ts";
import { type AuthConfig, FRAMING_FIELDS, readAuth } from "./auth.ts";
import { TOKEN_REGEXP } from "./hash_key.ts";
import { readBackends } from "./backends.ts";
import type { StaticBackendEntry } from "../upstream/discovery/static.ts";
import { SCHEDULER_MODES, type SchedulerMode } from "../scheduler/scheduler.ts";

/** Header changes on one direction: `set` replaces, `add` appends, `remove` deletes. */
export interface HeaderEdits {
  /** Fields to replace (every existing one of that name goes), `[name, value]`. */
  set: [string, string][];
  /** Fields to append, `[name, value]`. */
  add: [string, string][];
  /** Field names to delete (lower case). */
  remove: string[];
}

/** How the path the backend gets is changed; exactly one kind. */
export type RewriteConfig =
  | { strip_prefix: string }
  | { prefix: string }
  | { regex: string; replace: string };

/** A route's policy keys, as read (validated; nothing compiled). */
export interface PolicyConfig {
  /** Client address blocks let through; others get 403. */
  allow?: string[];
  /** Client address blocks refused with 403 (checked first: deny wins). */
  deny?: string[];
  /** The route answers every request with this redirect (it has no backends). */
  redirect?: { to: string; code: number };
  /** The path the backend gets. */
  rewrite?: RewriteConfig;
  /** Header changes on the request to the backend and the response to the client. */
  headers?: { request?: HeaderEdits; response?: HeaderEdits };
  /** A token bucket per key: past it, 429. */
  rate_limit?: RateLimitConfig;
  /** Basic auth from an htpasswd file, or a forward auth service: past it, 401 (or its answer). */
  auth?: AuthConfig;
  /** A copy of each sampled request goes to other backends; their answer is discarded. */
  mirror?: MirrorConfig;
  /** Response bodies compressed by the client's Accept-Encoding. */
  compress?: CompressConfig;
}

/** A route's `compress`, as read (`compress: true` is the defaults). */
export interface CompressConfig {
  /** Media types compressed: `text/html`, `text/*`, `application/*+json`. */
  types: string[];
  /** Bodies whose Content-Length is below this many bytes go as they are. */
  min_size: number;
  /** Responses of the route (per worker) compressed at once at most; past it, bodies go as they are. */
  max_active: number;
}

/**
 * Default `compress.types`: text, and the structured text formats a site serves
 * (JSON, JavaScript, XML, SVG, WebAssembly, TrueType/OpenType fonts); images,
 * video, archives and WOFF fonts are compressed already.
 */
export const COMPRESS_TYPES: readonly string[] = Object.freeze([
  "text/*",
  "application/json",
  "application/*+json",
  "application/javascript",
  "application/x-javascript",
  "application/xml",
  "application/*+xml",
  "application/wasm",
  "image/svg+xml",
  "image/x-icon",
  "font/ttf",
  "font/otf",
]);
/** Default `compress.min_size`, in bytes: smaller bodies gain little and cost a coder each. */
export const COMPRESS_MIN_SIZE = 1024;
/**
 * Default `compress.max_active`: responses of a route compressed at once (each
 * holds 0.3 to 0.9 MiB of coder memory while its body moves).
 */
export const COMPRESS_MAX_ACTIVE = 256;

/** A route's `mirror`, as read: where copies go, how many, how large. */
export interface MirrorConfig {
  /** Static mirror backends (exclusive with `srv`). */
  backends?: StaticBackendEntry[];
  /** A DNS SRV name the mirror backends are discovered from (exclusive with `backends`). */
  srv?: string;
  /** How the mirror backends are picked (`hash` is not offered: a copy has no key). */
  scheduler: SchedulerMode;
  /** Share of the route's requests copied, 0..100 (decimals allowed). */
  percent: number;
  /** Largest request body copied, in bytes; a request with a larger one is not mirrored. */
  max_body: number;
  /** Copies outstanding at most (being read, sent, or waiting for the answer); past it, dropped. */
  queue: number;
  /** How long one copy may take, connect to last byte of the answer, in ms. */
  timeout: number;
}

/** Default `mirror.max_body`: request bodies up to 1 MiB are copied. */
export const MIRROR_MAX_BODY = 1024 * 1024;
/** Default `mirror.queue`: copies outstanding at once per route. */
export const MIRROR_QUEUE = 64;
/** Default `mirror.timeout`: how long one copy may take, in ms. */
export const MIRROR_TIMEOUT = 5000;

/** What a rate limit counts by: the client address, a header's value or a cookie's. */
export type RateLimitKey =
  | { kind: "client_ip" }
  | { kind: "header"; name: string }
  | { kind: "cookie"; name: string };

/** A route's `rate_limit`, as read. */
export interface RateLimitConfig {
  /** Tokens added per second (`100/s` is 100, `60/m` is 1). */
  perSecond: number;
  /** The rate as written (`100/s`). */
  rate: string;
  /** Tokens a bucket holds at most (requests let through at once). */
  burst: number;
  /** What a bucket belongs to. */
  key: RateLimitKey;
  /** `local` (this process's memory) or a Redis server shared by every instance. */
  store: "local" | { host: string; port: number };
  /** What a request gets when the Redis store fails or is slow. */
  on_store_error: "allow" | "deny";
  /** How long a decision waits for Redis, in ms. */
  timeout: number;
  /** Buckets kept in memory at most (`store: local`). */
  max_keys: number;
}

/** Default `rate_limit.max_keys`: buckets one route keeps in memory at most. */
export const RATE_LIMIT_MAX_KEYS = 100_000;
/** Default `rate_limit.timeout`: how long a decision waits for Redis, in ms. */
export const RATE_LIMIT_STORE_TIMEOUT = 100;

/** The route keys this file reads. */
export const POLICY_KEYS = [
  "allow",
  "deny",
  "redirect",
  "rewrite",
  "headers",
  "rate_limit",
  "auth",
  "mirror",
  "compress",
] as const;
/** Policy keys of DESIGN.md not implemented yet: named in their error. */
export const FUTURE_POLICY_KEYS: readonly string[] = [];
/** Redirect codes a `redirect` may use. */
export const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;

// Fields the balancer writes or frames by itself: no policy may touch them.
const OWN_FIELDS = new Set([
  ...FRAMING_FIELDS,
  "via",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
]);
const PLACEHOLDER_REGEXP = /\{([a-z]*)\}/g;
const PLACEHOLDERS = ["host", "path", "query", "uri"];

/**
 * Reads a list of address blocks (`10.0.0.0/8`, `2001:db8::/32`, bare addresses), each checked
 * with {@linkcode parseCidr}; a bad one is reported at its own line and left out.
 *
 * @param src The config source errors are reported through.
 * @param node The YAML sequence.
 * @param path Where the list is, for messages (`routes[0].allow`).
 * @returns The blocks as written.
 */
export function readCidrs(src: Source, node: Node, path: string): string[] {
  const blocks: string[] = [];
  src.seq(node, path).forEach((item, i) => {
    const at = `${path}[${i}]`;
    const text = src.string(item, at);
    if (text === undefined) return;
    try {
      parseCidr(text);
      blocks.push(text);
    } catch (e) {
      src.fail(item, at, (e as Error).message);
    }
  });
  return blocks;
}

/**
 * Reads the policy keys of one route mapping `m` (at `path`, e.g. `routes[0]`).
 *
 * @returns The policies found, or undefined when the route has none.
 */
export function readPolicy(
  src: Source,
  m: Map<string, Node>,
  path: string,
): PolicyConfig | undefined {
  const out: PolicyConfig = {};
  for (const key of ["allow", "deny"] as const) {
    const node = m.get(key);
    if (node !== undefined) out[key] = readCidrs(src, node, `${path}.${key}`);
  }
  if (m.has("redirect")) out.redirect = readRedirect(src, m.get("redirect"), `${path}.redirect`);
  if (m.has("rewrite")) {
    const r = readRewrite(src, m.get("rewrite"), `${path}.rewrite`);
    if (r !== undefined) out.rewrite = r;
  }
  if (m.has("headers")) {
    const at = `${path}.headers`;
    const h = src.map(m.get("headers"), at, ["request", "response"]);
    const headers: NonNullable<PolicyConfig["headers"]> = {};
    for (const side of ["request", "response"] as const) {
      if (h.has(side)) headers[side] = readEdits(src, h.get(side), `${at}.${side}`);
    }
    out.headers = headers;
  }
  if (m.has("rate_limit")) {
    const r = readRateLimit(src, m.get("rate_limit"), `${path}.rate_limit`);
    if (r !== undefined) out.rate_limit = r;
  }
  if (m.has("auth")) {
    const a = readAuth(src, m.get("auth"), `${path}.auth`);
    if (a !== undefined) out.auth = a;
  }
  if (m.has("mirror")) {
    const r = readMirror(src, m.get("mirror"), `${path}.mirror`);
    if (r !== undefined) out.mirror = r;
  }
  if (m.has("compress")) {
    const c = readCompress(src, m.get("compress"), `${path}.compress`);
    if (c !== undefined) out.compress = c;
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

const MIRROR_SCHEDULERS = SCHEDULER_MODES.filter((m) => m !== "hash");

function readMirror(src: Source, node: Node | undefined, at: string): MirrorConfig | undefined {
  const r = src.map(node, at, [
    "backends",
    "srv",
    "scheduler",
    "percent",
    "max_body",
    "queue",
    "timeout",
  ]);
  if (r.has("srv") === r.has("backends")) {
    return src.fail(node, at, "needs exactly one of srv (a DNS SRV name) or backends (a list)");
  }
  let percent = 100;
  const p = r.get("percent");
  if (p !== undefined) {
    const v = isScalar(p) ? p.value : undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 100) {
      src.fail(p, `${at}.percent`, "must be a number 0..100 (decimals allowed, e.g. 12.5)");
    } else percent = v;
  }
  const out: MirrorConfig = {
    scheduler: src.choice(r.get("scheduler"), `${at}.scheduler`, MIRROR_SCHEDULERS) ?? "srv",
    percent,
    max_body: src.size(r.get("max_body"), `${at}.max_body`) ?? MIRROR_MAX_BODY,
    queue: src.int(r.get("queue"), `${at}.queue`, 1, 100_000) ?? MIRROR_QUEUE,
    timeout: src.duration(r.get("timeout"), `${at}.timeout`) ?? MIRROR_TIMEOUT,
  };
  if (out.timeout <= 0) src.fail(r.get("timeout"), `${at}.timeout`, "must be more than 0");
  const srv = src.string(r.get("srv"), `${at}.srv`);
  if (srv !== undefined) out.srv = srv;
  if (r.has("backends")) {
    out.backends = readBackends(src, r.get("backends"), at);
    if (out.backends.length === 0) src.fail(r.get("backends"), `${at}.backends`, "is empty");
  }
  return out;
}

const MEDIA_PATTERN =
  /^[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|\*\+[a-z0-9!#$&^_.+-]+|[a-z0-9][a-z0-9!#$&^_.+-]*)$/;

// `compress: true | false` or `{ types: [...], min_size: 1KiB }`.
function readCompress(src: Source, node: Node | undefined, at: string): CompressConfig | undefined {
  if (node !== undefined && isScalar(node) && typeof node.value === "boolean") {
    if (!node.value) return undefined;
    return {
      types: [...COMPRESS_TYPES],
      min_size: COMPRESS_MIN_SIZE,
      max_active: COMPRESS_MAX_ACTIVE,
    };
  }
  if (node === undefined || !isMap(node)) {
    return src.fail(
      node,
      at,
      "must be true, false or a mapping { types: [...], min_size: 1KiB, max_active: 256 }",
    );
  }
  const c = src.map(node, at, ["types", "min_size", "max_active"]);
  let types = [...COMPRESS_TYPES];
  if (c.has("types")) {
    types = [];
    src.seq(c.get("types"), `${at}.types`).forEach((item, i) => {
      const p = `${at}.types[${i}]`;
      const t = src.string(item, p);
      if (t === undefined) return;
      const lower = t.trim().toLowerCase();
      if (!MEDIA_PATTERN.test(lower)) {
        src.fail(
          item,
          p,
          `must be a media type like text/html, text/* or application/*+json: received "${t}"`,
        );
      } else if (lower.startsWith("application/grpc")) {
        src.fail(
          item,
          p,
          "gRPC is never compressed by the balancer (its messages carry their own compression)",
        );
      } else types.push(lower);
    });
    if (types.length === 0) {
      src.fail(c.get("types"), `${at}.types`, "must name at least one media type");
    }
  }
  const min = src.size(c.get("min_size"), `${at}.min_size`) ?? COMPRESS_MIN_SIZE;
  const maxActive = src.int(c.get("max_active"), `${at}.max_active`, 1, 1_000_000) ??
    COMPRESS_MAX_ACTIVE;
  return { types, min_size: min, max_active: maxActive };
}

const RATE_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600 };

function readRateLimit(
  src: Source,
  node: Node | undefined,
  at: string,
): RateLimitConfig | undefined {
  const r = src.map(node, at, [
    "rate",
    "burst",
    "key",
    "store",
    "on_store_error",
    "timeout",
    "max_keys",
  ]);
  if (!r.has("rate")) return src.fail(node, at, "needs rate (e.g. 100/s, 60/m, 1000/h)");
  const rate = scalar(src, r.get("rate"), `${at}.rate`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/.exec(rate ?? "");
  if (rate === undefined || !m || Number(m[1]) <= 0) {
    return src.fail(
      r.get("rate"),
      `${at}.rate`,
      `must be N/s, N/m or N/h with N > 0 (e.g. 100/s): received "${rate ?? ""}"`,
    );
  }
  const perSecond = Number(m[1]) / RATE_UNITS[m[2]!]!;
  const burst = src.int(r.get("burst"), `${at}.burst`, 1, 1_000_000_000) ??
    Math.max(1, Math.ceil(Number(m[1])));
  let key: RateLimitKey = { kind: "client_ip" };
  const keyText = src.string(r.get("key"), `${at}.key`);
  if (keyText !== undefined) {
    const k = /^(header|cookie):(.+)$/.exec(keyText);
    if (keyText === "client_ip") key = { kind: "client_ip" };
    else if (k && TOKEN_REGEXP.test(k[2]!)) {
      key = {
        kind: k[1] as "header" | "cookie",
        name: k[1] === "header" ? k[2]!.toLowerCase() : k[2]!,
      };
    } else {
      src.fail(
        r.get("key"),
        `${at}.key`,
        `must be client_ip, header:NAME or cookie:NAME: received "${keyText}"`,
      );
    }
  }
  let store: RateLimitConfig["store"] = "local";
  const storeText = src.string(r.get("store"), `${at}.store`);
  if (storeText !== undefined && storeText !== "local") {
    const s = /^redis:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(storeText);
    const port = Number(s?.[2]);
    if (!s || port < 1 || port > 65535) {
      src.fail(
        r.get("store"),
        `${at}.store`,
        `must be local or redis://host:port: received "${storeText}"`,
      );
    } else store = { host: s[1]!.replace(/^\[|\]$/g, ""), port };
  }
  const onError = src.choice(
    r.get("on_store_error"),
    `${at}.on_store_error`,
    [
      "allow",
      "deny",
    ] as const,
  ) ?? "allow";
  if (r.has("on_store_error") && store === "local") {
    src.fail(
      r.get("on_store_error"),
      `${at}.on_store_error`,
      "only applies with store: redis://...",
    );
  }
  const timeout = src.duration(r.get("timeout"), `${at}.timeout`) ?? RATE_LIMIT_STORE_TIMEOUT;
  if (r.has("timeout") && store === "local") {
    src.fail(r.get("timeout"), `${at}.timeout`, "only applies with store: redis://...");
  }
  const maxKeys = src.int(r.get("max_keys"), `${at}.max_keys`, 1, 10_000_000) ??
    RATE_LIMIT_MAX_KEYS;
  return {
    perSecond,
    rate: `${m[1]}/${m[2]}`,
    burst,
    key,
    store,
    on_store_error: onError,
    timeout,
    max_keys: maxKeys,
  };
}

function readRedirect(src: Source, node: Node | undefined, at: string) {
  const r = src.map(node, at, ["to", "code"]);
  const to = src.string(r.get("to"), `${at}.to`);
  if (!r.has("to")) src.fail(node, at, 'needs to (e.g. "https://new.example.com{uri}")');
  for (const match of (to ?? "").matchAll(PLACEHOLDER_REGEXP)) {
    if (!PLACEHOLDERS.includes(match[1]!)) {
      src.fail(
        r.get("to"),
        `${at}.to`,
        `unknown placeholder ${match[0]} (use {host} {path} {query} {uri})`,
      );
    }
  }
  const code = src.int(r.get("code"), `${at}.code`, 100, 999) ?? 301;
  if (!(REDIRECT_CODES as readonly number[]).includes(code)) {
    src.fail(r.get("code"), `${at}.code`, `must be one of ${REDIRECT_CODES.join(", ")}`);
  }
  return { to: to ?? "", code };
}

function readRewrite(src: Source, node: Node | undefined, at: string): RewriteConfig | undefined {
  const r = src.map(node, at, ["strip_prefix", "prefix", "regex", "replace"]);
  const kinds = ["strip_prefix", "prefix", "regex"].filter((k) => r.has(k));
  if (kinds.length !== 1) {
    src.fail(node, at, "needs exactly one of strip_prefix, prefix or regex (with replace)");
    return undefined;
  }
  const kind = kinds[0]!;
  if (kind !== "regex" && r.has("replace")) {
    src.fail(r.get("replace"), `${at}.replace`, "only applies with regex");
  }
  if (kind === "regex") {
    const regex = src.string(r.get("regex"), `${at}.regex`);
    const replace = scalar(src, r.get("replace"), `${at}.replace`);
    if (!r.has("replace")) src.fail(node, at, 'regex needs replace (e.g. "/v2/$1")');
    if (regex === undefined || replace === undefined) return undefined;
    try {
      new RegExp(regex);
    } catch (e) {
      src.fail(
        r.get("regex"),
        `${at}.regex`,
        `invalid regular expression: ${(e as Error).message}`,
      );
      return undefined;
    }
    if (!replace.startsWith("/") && !replace.startsWith("$")) {
      src.fail(r.get("replace"), `${at}.replace`, 'must start with "/" (or a $group that does)');
    }
    return { regex, replace };
  }
  const value = src.string(r.get(kind), `${at}.${kind}`);
  if (value === undefined) return undefined;
  if (!value.startsWith("/") || value.length < 2 || value.includes("?")) {
    src.fail(r.get(kind), `${at}.${kind}`, 'must be a path like "/api" (starting with "/")');
    return undefined;
  }
  return kind === "prefix" ? { prefix: value } : { strip_prefix: value };
}

function readEdits(src: Source, node: Node | undefined, at: string): HeaderEdits {
  const e = src.map(node, at, ["set", "add", "remove"]);
  const edits: HeaderEdits = { set: [], add: [], remove: [] };
  for (const op of ["set", "add"] as const) {
    const opNode = e.get(op);
    if (opNode === undefined) continue;
    if (!isMap(opNode)) src.fail(opNode, `${at}.${op}`, "must be a mapping (Name: value)");
    else {
      for (const [name, valueNode, keyNode] of pairs(opNode)) {
        const p = `${at}.${op}.${name}`;
        if (!fieldName(src, keyNode, p, name)) continue;
        const value = scalar(src, valueNode, p);
        if (value === undefined) continue;
        if (/[\r\n\0]/.test(value)) {
          src.fail(valueNode, p, "a header value cannot hold CR, LF or NUL");
          continue;
        }
        edits[op].push([name, value]);
      }
    }
  }
  src.seq(e.get("remove"), `${at}.remove`).forEach((item, i) => {
    const p = `${at}.remove[${i}]`;
    const name = src.string(item, p);
    if (name !== undefined && fieldName(src, item, p, name)) edits.remove.push(name.toLowerCase());
  });
  return edits;
}

function pairs(node: YAMLMap): [string, Node | undefined, Node][] {
  return node.items.map((p) => {
    const k = p.key as Node;
    const name = isScalar(k) ? String(k.value) : "";
    return [name, (p.value as Node | null) ?? undefined, k];
  });
}

function fieldName(src: Source, node: Node | undefined, at: string, name: string): boolean {
  if (!TOKEN_REGEXP.test(name)) {
    src.fail(node, at, `"${name}" is not a valid header name`);
    return false;
  }
  if (OWN_FIELDS.has(name.toLowerCase())) {
    src.fail(
      node,
      at,
      `${name} is the balancer's own (framing, hop-by-hop or forwarding): it cannot be changed by a policy`,
    );
    return false;
  }
  return true;
}

// A header value: a string, number or boolean scalar (`max-age=63072000`, `1`).
function scalar(src: Source, node: Node | undefined, at: string): string | undefined {
  if (node === undefined) return undefined;
  const v = isScalar(node) ? node.value : undefined;
  if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") return String(v);
  return src.fail(node, at, "must be a string");
}
