/**
 * TLS handshakes that ran out of time, and the sockets they keep.
 *
 * Deno (2.9) cannot release the socket of a TLS connection whose handshake has
 * not finished: the handshake runs in a task of its own that holds the socket
 * until the peer sends the rest or goes away, and `close()` only stops the JS
 * side from waiting for it (docs/tls.md has the source references). So a
 * client that opens a connection to `listen.https` and sends nothing, or a
 * backend that accepts and never answers, keeps one descriptor each for as
 * long as it likes.
 *
 * What can be done is to see them: a handshake that ran out of time is handed
 * here. It stays counted as stalled while its handshake is still pending and
 * is closed as soon as that settles (the peer left, sent garbage or finished
 * late), when it really is gone. When many pile up, a warning names the cause.
 *
 * @module
 */

/** Which end of the balancer a handshake is on. */
export type HandshakeSide = "client" | "backend";

/** Options of {@linkcode HandshakeStalls}. */
export interface HandshakeStallsOptions {
  /** Stalled handshakes on one side at which a warning is logged. @default {100} */
  threshold?: number;
  /** Milliseconds between two warnings while they stay at or above the threshold. @default {60000} */
  interval?: number;
  /** The open files limit, named in the warning. @default {undefined} (not named) */
  openFiles?: number | undefined;
}

/** A connection whose handshake is pending past its deadline. */
type Held = { close(): void };

/**
 * Counts, per side, TLS handshakes that ran out of time and those still
 * holding their socket; closes each once its handshake settles.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { HandshakeStalls } from "./tls_stalls.ts";
 * const lines: string[] = [];
 * const stalls = new HandshakeStalls((m) => lines.push(m), { threshold: 2 });
 * let closed = 0;
 * const pending = Promise.withResolvers<void>();
 * stalls.hold("client", { close: () => closed++ }, pending.promise, "listen.https");
 * assertEquals([stalls.stalled.client, lines.length], [1, 0]);
 * stalls.hold("client", { close() {} }, new Promise(() => {}), "listen.https");
 * assertEquals(lines.length, 1); // "tls: 2 client connections to listen.https are stuck ..."
 * pending.resolve(); // the first client finished late, or went away: closed now
 * await pending.promise;
 * await Promise.resolve();
 * assertEquals([stalls.stalled.client, stalls.timedOut.client, closed], [1, 2, 1]);
 * stalls.close(); // shutdown: the rest are closed (their sockets go with the process)
 * assertEquals(stalls.stalled.client, 0);
 * ```
 */
export class HandshakeStalls {
  /** Handshakes pending past their deadline now, by side. */
  readonly stalled: Record<HandshakeSide, number> = { client: 0, backend: 0 };
  /** Handshakes that ran out of time so far, by side. */
  readonly timedOut: Record<HandshakeSide, number> = { client: 0, backend: 0 };
  readonly #warn: (message: string) => void;
  readonly #threshold: number;
  readonly #interval: number;
  readonly #openFiles: number | undefined;
  readonly #held = new Map<Held, HandshakeSide>();
  readonly #lastWarning: Record<HandshakeSide, number> = { client: -Infinity, backend: -Infinity };

  /**
   * Creates the counters.
   *
   * @param warn Writes one warning line.
   * @param options Threshold and interval of the warning.
   */
  constructor(warn: (message: string) => void, options: HandshakeStallsOptions = {}) {
    this.#warn = warn;
    this.#threshold = options.threshold ?? 100;
    this.#interval = options.interval ?? 60_000;
    this.#openFiles = options.openFiles;
  }

  /**
   * Takes over `conn`, whose handshake ran out of time: it counts as stalled
   * until `handshake` settles, and is closed then.
   *
   * @param side `client` (a connection to `listen.https`) or `backend`.
   * @param conn The connection (its handshake still pending).
   * @param handshake Its pending handshake.
   * @param where What it is, for the warning: `listen.https ADDR` or `backend ID`.
   */
  hold(side: HandshakeSide, conn: Held, handshake: Promise<unknown>, where: string): void {
    this.timedOut[side]++;
    this.stalled[side]++;
    this.#held.set(conn, side);
    const settled = () => this.#release(conn);
    handshake.then(settled, settled);
    if (this.stalled[side] >= this.#threshold) this.#maybeWarn(side, where);
  }

  /** Closes every connection still held (shutdown; their sockets go with the process). */
  close(): void {
    for (const conn of [...this.#held.keys()]) this.#release(conn);
  }

  #release(conn: Held): void {
    const side = this.#held.get(conn);
    if (side === undefined) return;
    this.#held.delete(conn);
    this.stalled[side]--;
    try {
      conn.close();
    } catch { /* closed already */ }
  }

  #maybeWarn(side: HandshakeSide, where: string): void {
    const now = performance.now();
    if (now - this.#lastWarning[side] < this.#interval) return;
    this.#lastWarning[side] = now;
    const n = this.stalled[side];
    const limit = this.#openFiles === undefined || !isFinite(this.#openFiles)
      ? ""
      : ` (open files limit ${this.#openFiles})`;
    const who = side === "client"
      ? `${n} client connections to ${where} are stuck in a TLS handshake past timeouts.head`
      : `${n} backend connections (last: ${where}) are stuck in a TLS handshake past timeouts.connect`;
    const until = side === "client" ? "its client goes away" : "the backend closes it";
    const fix = side === "client"
      ? "put a TCP proxy with a handshake timeout in front (docs/tls.md)"
      : "check that backend";
    this.#warn(
      `tls: ${who}: Deno cannot close a socket whose TLS handshake has not finished, so each ` +
        `keeps a descriptor until ${until}${limit}; ${fix}`,
    );
  }
}
