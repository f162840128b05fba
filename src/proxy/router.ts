/**
 * Request routing: Host (exact or `*.suffix`) and the longest URI path prefix.
 *
 * @module
 */
import { PrefixTree } from "./_prefix_tree.ts";

/** What a route matches on. */
export interface RouteMatch {
  /** Exact host (`app.test`), a wildcard (`*.example.com`), or undefined for any host. */
  host?: string | undefined;
  /** Path prefix; `/` matches everything. @default {"/"} */
  path?: string | undefined;
}

/** The routes of one exact host. */
interface HostRoutes<T> {
  paths: PrefixTree<T>;
  /** The trees a request for this host tries, in order: `paths`, wildcards, any host (built on first use). */
  chain: PrefixTree<T>[] | undefined;
  /** The router's generation `chain` was built in (an `add` since then makes it stale). */
  built: number;
}

/**
 * Picks the route for a request: the most specific host (exact, then the longest
 * wildcard, then any), then the longest path prefix (a plain string prefix, as
 * nginx's `location /api`). When the most specific host has no route for the path,
 * the next one is tried. Of equal routes the first added wins.
 *
 * The cost of a match does not depend on the number of routes: an exact host is
 * one hash lookup, wildcards one lookup per label of the host (`a.b.example.com`
 * tries `*.b.example.com`, then `*.example.com`, then `*.com`), and the path one
 * walk down a radix tree of that host's prefixes.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { Router } from "./router.ts";
 * const r = new Router<string>();
 * r.add({ path: "/" }, "web");
 * r.add({ host: "app.test", path: "/api" }, "api");
 * r.add({ host: "*.test", path: "/" }, "tenants");
 * assert(r.match("app.test:8080", "/api/users") === "api");
 * assert(r.match("app.test", "/other") === "tenants");
 * assert(r.match("other.example", "/api") === "web");
 * ```
 */
export class Router<T> {
  /** Exact hosts (lower-cased). */
  readonly #exact = new Map<string, HostRoutes<T>>();
  /** Wildcards by their suffix: `.example.com` for `*.example.com`. */
  readonly #wild = new Map<string, PrefixTree<T>>();
  #any: PrefixTree<T> | undefined;
  #generation = 0;
  #lastHost: string | undefined; // undefined until a match, and again after an add
  #lastChain: PrefixTree<T>[] = [];

  /** Adds a route. Costs O(length of its host and path). */
  add(match: RouteMatch, value: T): void {
    const host = match.host?.toLowerCase();
    const path = match.path ?? "/";
    if (host === undefined) {
      (this.#any ??= new PrefixTree()).add(path, value);
    } else if (host.startsWith("*.")) {
      const suffix = host.slice(1);
      let paths = this.#wild.get(suffix);
      if (paths === undefined) this.#wild.set(suffix, paths = new PrefixTree());
      paths.add(path, value);
    } else {
      let routes = this.#exact.get(host);
      if (routes === undefined) {
        routes = { paths: new PrefixTree(), chain: undefined, built: -1 };
        this.#exact.set(host, routes);
      }
      routes.paths.add(path, value);
    }
    // what was worked out for hosts before may now miss this route
    this.#generation++;
    this.#lastHost = undefined;
    this.#lastChain = [];
  }

  /**
   * The best route for `host` (a Host header value; port and case ignored) and
   * `path` (the request target), or undefined.
   */
  match(host: string, path: string): T | undefined {
    // keep-alive clients repeat their Host: the last one's trees are kept
    let chain = this.#lastChain;
    if (host !== this.#lastHost) {
      chain = this.#chainFor(normalizeHost(host));
      this.#lastHost = host;
      this.#lastChain = chain;
    }
    for (let i = 0; i < chain.length; i++) {
      const value = chain[i]!.longest(path);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  // The trees a request for `host` (normalised) tries, most specific first.
  #chainFor(host: string): PrefixTree<T>[] {
    const exact = this.#exact.get(host);
    if (exact === undefined) return this.#chain(host, undefined);
    if (exact.built !== this.#generation) {
      exact.chain = this.#chain(host, exact.paths).slice(); // kept: no spare capacity
      exact.built = this.#generation;
    }
    return exact.chain!;
  }

  #chain(host: string, exact: PrefixTree<T> | undefined): PrefixTree<T>[] {
    const chain: PrefixTree<T>[] = [];
    if (exact !== undefined) chain.push(exact);
    if (this.#wild.size > 0) {
      // "*.example.com" is held as ".example.com" and needs at least one character before it
      for (let dot = host.indexOf(".", 1); dot !== -1; dot = host.indexOf(".", dot + 1)) {
        const paths = this.#wild.get(host.slice(dot));
        if (paths !== undefined) chain.push(paths);
      }
    }
    if (this.#any !== undefined) chain.push(this.#any);
    return chain;
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
