/**
 * A client connection and its backend connection, carried both ways: each
 * direction reads into its own buffer and writes it all out before the next read
 * (backpressure: a slow reader slows the writer down, nothing queues), and an end
 * of stream from one side is passed on as a FIN (`closeWrite`) while the other
 * direction keeps flowing until it ends too (half-close). One AbortController per
 * pair: a reset, a failed write, the idle timeout or a drain stops both directions
 * and closes both sockets; the first reason is the one reported.
 *
 * Buffers come from the body buffer pool: 16 KiB, grown to 64 and then 256 KiB while
 * reads come back full (bulk transfers take fewer, larger ops), within the pool's
 * byte budget.
 *
 * @module
 */
import type { BodyBufferPool } from "../http1/body_buffers.ts";
import type { ConnectionCounters, ConnectionEnd } from "../observe/connection_record.ts";
import type { Timed, Watchdog } from "../timer/watchdog.ts";
import type { Backend } from "../upstream/backend.ts";
import { ConnectError } from "../upstream/connect.ts";

/** Options of {@linkcode TcpPair}. */
export interface TcpPairOptions {
  /** Lends the read buffers. */
  buffers: BodyBufferPool;
  /** Fires the idle timeout (absent, or `idle` 0: none). */
  watchdog?: Watchdog | undefined;
  /**
   * A pair on which no byte moved either way for this many ms is closed; 0 = never.
   * It may be set until {@linkcode TcpPair.run} (once the route is known).
   */
  idle: number;
}

const LAST_STEP = 2; // BODY_BUFFER_SIZES: 16, 64, 256 KiB

/**
 * One client connection and what it is carried to.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BodyBufferPool } from "../http1/body_buffers.ts";
 * import { TcpPair } from "./pair.ts";
 * // an echo backend, a client that sends "ping" and shuts its write side
 * const backendListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const echo = (async () => {
 *   const c = await backendListener.accept();
 *   const buf = new Uint8Array(64);
 *   for (let n; (n = await c.read(buf)) !== null;) await c.write(buf.subarray(0, n));
 *   c.close(); // after the FIN it got, it replies and closes
 * })();
 * const front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
 * const accepted = await front.accept();
 * const pair = new TcpPair(accepted, { buffers: new BodyBufferPool(), idle: 0 });
 * pair.attach(await Deno.connect({ hostname: "127.0.0.1", port: backendListener.addr.port }));
 * const carried = pair.run();
 * await client.write(new TextEncoder().encode("ping"));
 * await client.closeWrite();
 * const got = new Uint8Array(4);
 * assertEquals(await client.read(got), 4);
 * assertEquals(await client.read(got), null);
 * assertEquals(await carried, "closed");
 * assertEquals([pair.bytesIn, pair.bytesOut], [4, 4]);
 * client.close();
 * await echo;
 * front.close();
 * backendListener.close();
 * ```
 */
export class TcpPair implements Timed {
  /**
   * The client connection: the accepted one, or (set before {@linkcode TcpPair.run})
   * one wrapped around it, e.g. with TLS terminated.
   */
  client: Deno.Conn;
  /** The backend connection, once {@linkcode TcpPair.attach}ed. */
  backend: Deno.Conn | undefined;
  /** Bytes carried from the client. */
  bytesIn = 0;
  /** Bytes carried to the client. */
  bytesOut = 0;
  /** Epoch ms after which the idle timeout fires; 0 = none (see `Timed`). */
  deadline = 0;
  /** Aborted when the pair stops (its reason is the {@linkcode ConnectionEnd}). */
  readonly #ac = new AbortController();
  #end: ConnectionEnd | undefined;
  #error: string | undefined;
  #counters: ConnectionCounters | undefined;
  // the connect in progress, aborted by its deadline (the watchdog) or by stop()
  #attempt: { ac: AbortController; timedOut: boolean } | undefined;
  readonly #options: TcpPairOptions; // idle may change before run()

  /** A pair for `client`; its backend comes later ({@linkcode TcpPair.attach}). */
  constructor(client: Deno.Conn, options: TcpPairOptions) {
    this.client = client;
    this.#options = options;
  }

  /** Sets the idle timeout (ms, 0 = none) of a pair not yet running: its route's. */
  set idle(ms: number) {
    this.#options.idle = ms;
  }

  /** Aborts when the pair is stopped (drain, reset, idle): a connect in progress gives up. */
  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  /** How it ended, once it did (or was stopped). */
  get end(): ConnectionEnd | undefined {
    return this.#end;
  }

  /** What failed, when something did. */
  get error(): string | undefined {
    return this.#error;
  }

  /**
   * Sets the backend connection, and the counters of its route and backend, which
   * are moved as bytes are carried.
   */
  attach(backend: Deno.Conn, counters?: ConnectionCounters): void {
    this.backend = backend;
    this.#counters = counters;
    if (this.#ac.signal.aborted) close(backend); // stopped while it connected
  }

  /**
   * Stops both directions and closes both sockets; the first call's `end` is the
   * one reported.
   */
  stop(end: ConnectionEnd, error?: string): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    if (error !== undefined) this.#error = error;
    this.#ac.abort(end);
    this.#attempt?.ac.abort(end);
    close(this.client);
    if (this.backend !== undefined) close(this.backend);
  }

  /** The connect timeout, or the idle timeout (called by the watchdog). */
  expire(): void {
    const attempt = this.#attempt;
    if (attempt === undefined) return this.stop("idle_timeout");
    attempt.timedOut = true;
    attempt.ac.abort("connect timeout");
  }

  /**
   * Opens a TCP connection to `backend` (TCP_NODELAY on) within `timeout` ms, timed by
   * the watchdog: no timer of its own, as a thousand new connections a second would
   * otherwise arm and clear. Aborted when the pair is stopped.
   *
   * @throws {ConnectError} when it fails, times out or is aborted.
   */
  async connect(backend: Backend, timeout: number): Promise<Deno.TcpConn> {
    const watchdog = this.#options.watchdog;
    const attempt = { ac: new AbortController(), timedOut: false };
    if (this.#ac.signal.aborted) attempt.ac.abort(this.#end);
    this.#attempt = attempt;
    if (watchdog !== undefined) {
      this.deadline = watchdog.now + timeout;
      watchdog.add(this);
    }
    try {
      const { hostname, port } = backend;
      const conn = await Deno.connect({ hostname, port, signal: attempt.ac.signal });
      try {
        conn.setNoDelay(true);
      } catch { /* closed already */ }
      return conn;
    } catch (e) {
      throw new ConnectError(backend, e, attempt.timedOut);
    } finally {
      this.#attempt = undefined;
      if (watchdog !== undefined) {
        watchdog.delete(this);
        this.deadline = 0;
      }
    }
  }

  /**
   * Carries bytes both ways until both directions ended or the pair was stopped;
   * closes both connections.
   *
   * @returns how it ended.
   */
  async run(): Promise<ConnectionEnd> {
    const backend = this.backend!;
    const { watchdog, idle } = this.#options;
    const timed = watchdog !== undefined && idle > 0;
    if (timed) {
      this.deadline = watchdog.now + idle;
      watchdog.add(this);
    }
    try {
      await Promise.all([
        this.#pump(this.client, backend, true),
        this.#pump(backend, this.client, false),
      ]);
    } finally {
      if (timed) watchdog.delete(this);
    }
    this.stop("closed"); // closes both; a reason set before stays
    return this.#end!;
  }

  // One direction: read, write it all, repeat; an end of stream becomes a FIN on the
  // other side. `up` is client → backend.
  async #pump(from: Deno.Conn, to: Deno.Conn, up: boolean): Promise<void> {
    const { buffers, watchdog, idle } = this.#options;
    const signal = this.#ac.signal;
    let step = 0;
    let buf = buffers.take(0)!;
    try {
      for (;;) {
        let n: number | null;
        try {
          n = await from.read(buf);
        } catch (e) {
          return this.stop(up ? "client_reset" : "backend_reset", errorText(e));
        }
        if (signal.aborted) return;
        if (n === null) {
          try {
            await to.closeWrite();
          } catch (e) {
            if (!isClosedAlready(e)) this.stop(up ? "backend_reset" : "client_reset", errorText(e));
          }
          return;
        }
        if (idle > 0 && watchdog !== undefined) this.deadline = watchdog.now + idle;
        const counters = this.#counters;
        if (up) {
          this.bytesIn += n;
          if (counters !== undefined) counters.bytesIn += n;
        } else {
          this.bytesOut += n;
          if (counters !== undefined) counters.bytesOut += n;
        }
        try {
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        } catch (e) {
          return this.stop(up ? "backend_reset" : "client_reset", errorText(e));
        }
        if (n === buf.length && step < LAST_STEP) { // full: a bulk transfer, read more at once
          const bigger = buffers.take(step + 1);
          if (bigger !== undefined) {
            buffers.give(buf);
            buf = bigger;
            step++;
          }
        }
      }
    } finally {
      buffers.give(buf);
    }
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

// closeWrite on a socket the peer has fully closed: nothing left to tell it.
function isClosedAlready(e: unknown): boolean {
  return e instanceof Deno.errors.NotConnected;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
