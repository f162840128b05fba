/**
 * TLS termination on a `tcp:` route (`tls: { cert, key }`): the listener is a
 * `Deno.listenTls`, each connection's handshake must finish within
 * `timeouts.head`, and then the decrypted bytes are carried as any TCP route's.
 *
 * A handshake that runs out of time is not closed but handed to the
 * {@linkcode HandshakeStalls} counter, as on `listen.https`: Deno cannot release
 * the socket of an unfinished handshake (docs/tls.md), so it is counted until its
 * client goes away, and closed then.
 *
 * @module
 */
import type { Timed, Watchdog } from "../timer/watchdog.ts";
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import type { OnRefused } from "./refusal.ts";

/** Options of {@linkcode terminating}. */
export interface TerminatingOptions {
  /** Fires the deadline. */
  watchdog: Watchdog;
  /** Milliseconds a handshake may take (`timeouts.head`), read per connection. */
  timeout: () => number;
  /** Takes the connections whose handshake ran out of time (absent: they are closed). */
  stalls?: HandshakeStalls | undefined;
  /** What the listener is, for the stalls warning: `tcp route NAME ADDR`. */
  where: string;
  /** Told each connection whose handshake failed (`tls_handshake`) or ran out of time (`timeout`). */
  onRefused: OnRefused;
}

/**
 * Wraps `serve` (which carries a connection) so that it gets only connections
 * whose TLS handshake finished in time.
 *
 * @example
 * ```ts ignore
 * const handle = terminating((conn) => serveTcp(conn, ctx), { watchdog, timeout, where, onRefused });
 * await TlsAcceptor.start({ addr, tls, handle, log, alpnProtocols: [] });
 * ```
 *
 * @param serve Carries one connection; resolves to it when done.
 * @param options The deadline, the stalls counter and where refusals go.
 * @returns The handler of the TLS listener's accepted connections.
 */
export function terminating(
  serve: (conn: Deno.Conn) => Promise<Deno.Conn>,
  options: TerminatingOptions,
): (conn: Deno.Conn) => Promise<Deno.Conn> {
  return async (accepted) => {
    const conn = accepted as Deno.TlsConn;
    const client = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
    const handshake = conn.handshake();
    handshake.catch(() => {}); // it may fail after the deadline, when nobody awaits it
    const deadline = new HandshakeDeadline(options.watchdog, options.timeout());
    let done: Deno.TlsHandshakeInfo | undefined;
    try {
      done = await Promise.race([handshake, deadline.expired]);
    } catch (e) {
      closeQuietly(conn);
      options.onRefused(client, "tls_handshake", `TLS handshake failed: ${(e as Error).message}`);
      return conn;
    } finally {
      deadline.done();
    }
    if (done === undefined) {
      options.onRefused(client, "timeout", "no whole TLS handshake within timeouts.head");
      if (options.stalls) options.stalls.hold("client", conn, handshake, options.where);
      else closeQuietly(conn);
      return conn;
    }
    return serve(conn);
  };
}

/** Settles `expired` (to undefined) when the handshake takes too long. */
class HandshakeDeadline implements Timed {
  deadline: number;
  readonly #watchdog: Watchdog;
  readonly #expired = Promise.withResolvers<undefined>();

  constructor(watchdog: Watchdog, timeout: number) {
    this.#watchdog = watchdog;
    this.deadline = timeout > 0 ? watchdog.now + timeout : 0;
    if (this.deadline !== 0) watchdog.add(this);
  }

  get expired(): Promise<undefined> {
    return this.#expired.promise;
  }

  expire(): void {
    this.done();
    this.#expired.resolve(undefined);
  }

  done(): void {
    this.#watchdog.delete(this);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}
