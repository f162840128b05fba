/**
 * Request routing: Host (exact or `*.suffix`) and the longest URI path prefix.
 *
 * @module
 */

/** What a route matches on. */
export interface RouteMatch {
  /** Exact host (`app.test`), a wildcard (`*.example.com`), or undefined for any host. */
  host?: string | undefined;
  /** Path prefix; `/` matches everything. @default {"/"} */
  path?: string | undefined;
}

interface Entry<T> {
  value: T;
  exact: string | undefined;
  suffix: string | undefined; // ".example.com" for "*.example.com"
  path: string;
  /** Host specificity: exact > longer wildcard > shorter wildcard > any host. */
  hostRank: number;
}

/**
 * Picks the route for a request: the most specific host (exact, then the longest
 * wildcard, then any), then the longest path prefix (a plain string prefix, as
 * nginx's `location /api`).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { Router } from "./router.ts";
 * const r = new Router<string>();
 * r.add({ path: "/" }, "web");
 * r.add({ host: "app.test", path: "/api" }, "api");
 * assert(r.match("app.test:8080", "/api/users") === "api");
 * assert(r.match("other.test", "/api") === "web");
 * ```
 */
export class Router<T> {
  readonly #entries: Entry<T>[] = [];
  #lastHost = "";
  #lastNormal = "";

  /** Adds a route. */
  add(match: RouteMatch, value: T): void {
    const host = match.host?.toLowerCase();
    const wildcard = host?.startsWith("*.") ?? false;
    const entry: Entry<T> = {
      value,
      exact: wildcard ? undefined : host,
      suffix: wildcard ? host!.slice(1) : undefined,
      path: match.path ?? "/",
      hostRank: 0,
    };
    entry.hostRank = entry.exact !== undefined
      ? Number.MAX_SAFE_INTEGER
      : (entry.suffix?.length ?? 0);
    this.#entries.push(entry);
    // most specific first: host, then path length (a path never outranks a host)
    this.#entries.sort((a, b) => b.hostRank - a.hostRank || b.path.length - a.path.length);
  }

  /**
   * The best route for `host` (a Host header value; port and case ignored) and
   * `path` (the request target), or undefined.
   */
  match(host: string, path: string): T | undefined {
    // keep-alive clients repeat their Host: the last one is normalised once
    if (host !== this.#lastHost) {
      this.#lastHost = host;
      this.#lastNormal = normalizeHost(host);
    }
    const h = this.#lastNormal;
    for (const e of this.#entries) {
      if (e.exact !== undefined && e.exact !== h) continue;
      if (e.suffix !== undefined && !(h.endsWith(e.suffix) && h.length > e.suffix.length)) {
        continue;
      }
      if (path.startsWith(e.path)) return e.value;
    }
    return undefined;
  }
}

/**
 * Lower-cases a Host value and removes its port (keeps IPv6 brackets' content).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { normalizeHost } from "./router.ts";
 * assert(normalizeHost("App.Test:8080") === "app.test");
 * assert(normalizeHost("[::1]:80") === "[::1]");
 * ```
 */
export function normalizeHost(host: string): string {
  let h = host;
  if (h.charCodeAt(0) === 91) { // "[v6]:port"
    const close = h.indexOf("]");
    h = close === -1 ? h : h.slice(0, close + 1);
  } else {
    const colon = h.lastIndexOf(":");
    if (colon !== -1) h = h.slice(0, colon);
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 65 && c <= 90) return h.toLowerCase();
  }
  return h;
}
