/**
 * Accept loops on `Deno.listen` / `Deno.listenTls`, tracking open connections so
 * that shutdown can wait for them.
 *
 * @module
 */
import type { HostPort } from "../config/address.ts";
import { sleep } from "../_async.ts";
import { EXHAUSTED_PAUSE, exhaustionHint } from "../observe/exhaustion.ts";

/** A running accept loop. */
export interface Acceptor {
  /** The bound address (port 0 resolved). */
  readonly addr: Deno.NetAddr;
  /** Stops accepting; open connections carry on. */
  stop(): void;
  /** Settles when every connection's handler has returned (after `stop`). */
  readonly done: Promise<void>;
  /** Handlers running now. */
  readonly open: number;
}

/**
 * Accepts connections from `listener` and runs `handle` on each, concurrently;
 * `handle` resolves to the connection once done with it, and never rejects.
 *
 * When an accept fails because this process is out of descriptors (or the
 * kernel out of socket memory), the waiting connection stays queued and the
 * next accept would fail at once: the loop tells `onExhausted` and pauses
 * {@linkcode EXHAUSTED_PAUSE} ms instead of spinning. Other accept errors (a
 * client that reset, a failed TLS handshake) are skipped.
 *
 * @example
 * ```ts ignore
 * const acceptor = accept(Deno.listen({ port: 0 }), async (conn) => conn.close());
 * acceptor.stop();
 * await acceptor.done;
 * ```
 */
export function accept(
  listener: Deno.Listener,
  handle: (conn: Deno.Conn) => Promise<Deno.Conn>,
  onExhausted?: (e: unknown) => void,
): Acceptor {
  const conns = new Set<Deno.Conn>();
  let stopped = false;
  const stopping = new AbortController();
  let allDone: (() => void) | undefined;
  // One shared settle handler, not a closure chain per connection: idle keep-alive
  // connections are many, and each should cost as little as possible.
  const settled = (conn: Deno.Conn) => {
    conns.delete(conn);
    if (conns.size === 0) allDone?.();
  };
  const failed = () => {}; // handlers resolve to their connection and never reject
  const loop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (stopped || e instanceof Deno.errors.BadResource) break;
        if (exhaustionHint(e) !== undefined) {
          onExhausted?.(e);
          await sleep(EXHAUSTED_PAUSE, stopping.signal);
        }
        continue;
      }
      try {
        if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      } catch { /* closed already */ }
      conns.add(conn);
      handle(conn).then(settled, failed);
    }
    if (conns.size > 0) await new Promise<void>((resolve) => allDone = resolve);
  })();
  return {
    addr: listener.addr as Deno.NetAddr,
    get open() {
      return conns.size;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      stopping.abort();
      try {
        listener.close();
      } catch { /* already closed */ }
    },
    done: loop,
  };
}

/** Thrown when the balancer cannot start (a port in use, an unreadable certificate). */
export class StartError extends Error {
  /** Wraps the reason. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StartError";
  }
}

/** Binds a plain HTTP listener, exclusively or shareably (see BalancerOptions.reusePort). */
export function listenHttp(addr: HostPort, reusePort: "first" | "join" | undefined): Deno.Listener {
  if (reusePort === undefined) return Deno.listen(addr);
  if (reusePort === "first") ensureFree(addr);
  return Deno.listen({ ...addr, reusePort: true });
}

/**
 * Throws if another socket holds `addr` (port 0 always is free): a listener bound
 * with reusePort would share the port with it silently.
 *
 * @throws {Deno.errors.AddrInUse} when the address is taken.
 */
export function ensureFree(addr: HostPort): void {
  if (addr.port !== 0) Deno.listen(addr).close();
}

/**
 * Runs `open`, turning a bind failure into a {@linkcode StartError} naming `what`.
 *
 * @throws {StartError} e.g. `listen.http 127.0.0.1:8080: address already in use`.
 */
export function bind<T>(what: string, addr: HostPort, open: () => T): T {
  try {
    return open();
  } catch (e) {
    throw bindError(what, addr, e);
  }
}

/**
 * The {@linkcode StartError} for `e`, a failure to bind `addr` for `what`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { bindError } from "./listener.ts";
 * const e = bindError("listen.http", { hostname: "127.0.0.1", port: 80 }, new Error("denied"));
 * assert(e.message === "listen.http 127.0.0.1:80: denied");
 * ```
 */
export function bindError(what: string, addr: HostPort, e: unknown): StartError {
  const why = e instanceof Deno.errors.AddrInUse ? "address already in use" : (e as Error).message;
  return new StartError(`${what} ${addr.hostname}:${addr.port}: ${why}`, { cause: e });
}
