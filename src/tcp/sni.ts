/**
 * TLS passthrough by server name: the routes sharing a listen address are chosen
 * by the `server_name` of each connection's ClientHello, which is read but not
 * answered; the bytes read are replayed to the chosen backend, which terminates
 * TLS itself (the client sees the backend's certificate).
 *
 * A route's `sni` is an exact name or a `*.` wildcard (as nginx's `server_name`:
 * `*.example.com` takes `a.example.com` and `a.b.example.com`, not `example.com`).
 * An exact name wins, then the longest wildcard; a name no route has, and a
 * client that sends none, go to the route without `sni` (the default), or are
 * closed when there is none.
 *
 * @module
 */
import type { Timed, Watchdog } from "../timer/watchdog.ts";
import { CLIENT_HELLO_LIMIT, type ClientHelloError, readClientHello } from "./client_hello.ts";
import type { ChooseRoute } from "./connection.ts";
import type { TcpRoute } from "./route_set.ts";
import type { OnRefused } from "./refusal.ts";

/**
 * The routes of one listen address, indexed by server name.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { SniIndex } from "./sni.ts";
 * const index = new SniIndex([
 *   { sni: "a.test" }, { sni: "*.example.com" }, { sni: "*.eu.example.com" }, {},
 * ]);
 * const pick = (name?: string) => index.pick(name)?.sni ?? "default";
 * assertEquals(pick("a.test"), "a.test");
 * assertEquals(pick("x.y.example.com"), "*.example.com"); // a wildcard takes deeper names
 * assertEquals(pick("x.eu.example.com"), "*.eu.example.com"); // the longest wins
 * assertEquals(pick("example.com"), "default");
 * assertEquals(pick(undefined), "default"); // no SNI sent
 * assertEquals(new SniIndex([{ sni: "a.test" }]).pick("b.test"), undefined);
 * ```
 */
export class SniIndex<R extends { sni?: string | undefined }> {
  readonly #exact = new Map<string, R>();
  /** By the part after `*.` (with its dot: `.example.com`). */
  readonly #wild = new Map<string, R>();
  readonly #fallback: R | undefined;

  /**
   * @param routes The routes of one listen address (their `sni` lower case); the
   * first without `sni` is the default.
   */
  constructor(routes: readonly R[]) {
    let fallback: R | undefined;
    for (const r of routes) {
      if (r.sni === undefined) fallback ??= r;
      else if (r.sni.startsWith("*.")) {
        if (!this.#wild.has(r.sni.slice(1))) this.#wild.set(r.sni.slice(1), r);
      } else if (!this.#exact.has(r.sni)) this.#exact.set(r.sni, r);
    }
    this.#fallback = fallback;
  }

  /**
   * The route for `serverName`.
   *
   * @param serverName The ClientHello's server name, lower case; undefined when it sent none.
   * @returns The route, or undefined when none takes it and there is no default.
   */
  pick(serverName: string | undefined): R | undefined {
    if (serverName === undefined) return this.#fallback;
    const exact = this.#exact.get(serverName);
    if (exact !== undefined) return exact;
    if (this.#wild.size > 0) {
      // the longest suffix first: from the first dot on
      for (let dot = serverName.indexOf("."); dot > 0; dot = serverName.indexOf(".", dot + 1)) {
        const wild = this.#wild.get(serverName.slice(dot));
        if (wild !== undefined) return wild;
      }
    }
    return this.#fallback;
  }
}

/** Options of {@linkcode sniChooser}. */
export interface SniChooserOptions {
  /** Fires the deadline. */
  watchdog: Watchdog;
  /** Milliseconds a client has to send its whole ClientHello (`timeouts.head`), read per connection. */
  timeout: () => number;
  /** The most bytes read before the ClientHello must be whole. @default {16384} */
  limit?: number;
  /** Told each connection closed before reaching a route (`no_route` or its ClientHello's fault). */
  onRefused: OnRefused;
}

/**
 * How a connection to an SNI listen address picks its route: it reads the
 * ClientHello (within `timeout`) and looks its server name up among the
 * address's routes; the bytes read go to the backend first.
 *
 * @example
 * ```ts ignore
 * const choose = sniChooser({ watchdog, timeout: () => 10_000, onRefused: (c, r) => log(c, r) });
 * const chosen = await choose(conn, routes, signal); // { route, conn, preface } or undefined
 * ```
 *
 * @returns A {@linkcode ChooseRoute} for the listener's context.
 */
export function sniChooser(options: SniChooserOptions): ChooseRoute {
  const indexes = new WeakMap<readonly TcpRoute[], SniIndex<RouteBySni>>();
  const limit = options.limit ?? CLIENT_HELLO_LIMIT;
  return async (conn, routes, signal) => {
    const client = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
    const deadline = new Deadline(options.watchdog, options.timeout(), signal);
    let hello;
    try {
      hello = await readClientHello(conn, { limit, signal: deadline.signal });
    } catch (e) {
      if (signal.aborted) return undefined; // a drain: not the client's doing
      const error = e as ClientHelloError;
      options.onRefused(client, error.reason ?? "closed", error.message);
      return undefined;
    } finally {
      deadline.done();
    }
    let index = indexes.get(routes);
    if (index === undefined) {
      index = new SniIndex(routes.map((route) => new RouteBySni(route)));
      indexes.set(routes, index);
    }
    const found = index.pick(hello.serverName);
    if (found === undefined) {
      const asked = hello.serverName === undefined
        ? "a ClientHello without a server name"
        : `server name "${hello.serverName}"`;
      options.onRefused(client, "no_route", `no route for ${asked}, and no default route`);
      return undefined;
    }
    return { route: found.route, conn, preface: hello.bytes };
  };
}

// A route as the index sees it.
class RouteBySni {
  readonly route: TcpRoute;
  readonly sni: string | undefined;
  constructor(route: TcpRoute) {
    this.route = route;
    this.sni = route.config.sni;
  }
}

/** Aborts `signal` when the ClientHello takes too long, or when the connection is stopped. */
class Deadline implements Timed {
  deadline: number;
  readonly #ac = new AbortController();
  readonly #watchdog: Watchdog;
  readonly #outer: AbortSignal;
  readonly #onOuter = () => this.#ac.abort();

  constructor(watchdog: Watchdog, timeout: number, outer: AbortSignal) {
    this.#watchdog = watchdog;
    this.#outer = outer;
    this.deadline = timeout > 0 ? watchdog.now + timeout : 0;
    if (this.deadline !== 0) watchdog.add(this);
    if (outer.aborted) this.#ac.abort();
    else outer.addEventListener("abort", this.#onOuter, { once: true });
  }

  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  expire(): void {
    this.done();
    this.#ac.abort();
  }

  done(): void {
    this.#watchdog.delete(this);
    this.#outer.removeEventListener("abort", this.#onOuter);
  }
}
