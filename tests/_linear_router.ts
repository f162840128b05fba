/**
 * Test and bench helper: the router as it was before hash maps and prefix trees, kept
 * as the reference the new one is checked against. Every route is tried in order of
 * host specificity (exact, then the longest wildcard, then any host), then path length,
 * ties in the order added; the first whose host and plain path prefix match wins.
 *
 * @module
 */
import { normalizeHost, type RouteMatch } from "../src/proxy/router.ts";

interface Entry<T> {
  value: T;
  exact: string | undefined;
  suffix: string | undefined; // ".example.com" for "*.example.com"
  path: string;
  rank: number;
}

/** A linear scan over every route, the same `add`/`match` as {@linkcode Router}. */
export class LinearRouter<T> {
  readonly #entries: Entry<T>[] = [];
  #sorted = true;

  /** Adds a route (sorted on the next match: a stable sort keeps the order added among equals). */
  add(match: RouteMatch, value: T): void {
    const host = match.host?.toLowerCase();
    const wildcard = host?.startsWith("*.") ?? false;
    const exact = wildcard ? undefined : host;
    const suffix = wildcard ? host!.slice(1) : undefined;
    const rank = exact !== undefined ? Number.MAX_SAFE_INTEGER : (suffix?.length ?? 0);
    this.#entries.push({ value, exact, suffix, path: match.path ?? "/", rank });
    this.#sorted = false;
  }

  /** The first route, in specificity order, whose host and path prefix match. */
  match(host: string, path: string): T | undefined {
    if (!this.#sorted) {
      this.#entries.sort((a, b) => b.rank - a.rank || b.path.length - a.path.length);
      this.#sorted = true;
    }
    const h = normalizeHost(host);
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
