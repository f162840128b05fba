/**
 * HTTP/2 connections to one backend (`backend_protocol: h2c | h2`): streams
 * are multiplexed over a few connections, a new one opened only when every
 * open one is at the server's stream limit.
 *
 * @module
 */
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import type { Backend } from "./backend.ts";
import { connectBackend, ConnectError } from "./connect.ts";
import {
  H2ClientConnection,
  type H2ClientOptions,
  type H2ClientStream,
  type H2RequestHead,
  RefusedError,
} from "../h2/client.ts";

/** Options of {@linkcode H2Pool}. */
export interface H2PoolOptions {
  /** Connections to the backend at most; streams wait for room beyond. @default {4} */
  maxConnections?: number;
  /** A connection without streams for this many ms is closed. @default {15000} */
  idleTimeout?: number;
  /** Connecting, the TLS handshake and the server's SETTINGS give up after this many ms. @default {5000} */
  connectTimeout?: number;
  /** Settings of each connection (windows, header list size, body idle timeout, watchdog). */
  client?: Omit<H2ClientOptions, "onChange" | "settingsTimeout">;
  /** Takes TLS handshakes given up before they finished (see `upstreamHandshake`). */
  stalls?: HandshakeStalls | undefined;
  /**
   * The PROXY header each new connection begins with, for a backend with `proxy`
   * set (a pool of one client's connections: see `PrivatePools`).
   */
  proxyHeader?: Uint8Array | undefined;
}

const H2_ALPN = ["h2"];

/**
 * The HTTP/2 connection pool of one backend: h2c for a backend without TLS,
 * h2 (ALPN) over verified TLS for one with.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import http2 from "node:http2";
 * import { createBackend } from "./backend.ts";
 * import { H2Pool } from "./h2_pool.ts";
 * const server = http2.createServer((_req, res) => res.end("ok"));
 * await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
 * const port = (server.address() as { port: number }).port;
 * const pool = new H2Pool(createBackend({ hostname: "127.0.0.1", port }));
 * const s = await pool.open({ method: "GET", scheme: "http", authority: "a", path: "/", fields: [], endStream: true });
 * assertEquals((await s.response()).status, 200);
 * await s.read(); // the body, to its end
 * const again = await pool.open({ method: "GET", scheme: "http", authority: "a", path: "/", fields: [], endStream: true });
 * assertEquals((await again.response()).status, 200);
 * assertEquals([pool.connections, pool.opened, pool.reused], [1, 1, 1]);
 * pool.close();
 * await new Promise((r) => server.close(r));
 * ```
 */
export class H2Pool {
  /** The backend connected to. */
  readonly backend: Backend;
  readonly #max: number;
  readonly #idleTimeout: number;
  readonly #connectTimeout: number;
  readonly #stalls: HandshakeStalls | undefined;
  readonly #proxyHeader: Uint8Array | undefined;
  readonly #client: H2ClientOptions;
  readonly #conns: H2ClientConnection[] = [];
  readonly #idleSince = new Map<H2ClientConnection, number>();
  readonly #retiring = new Set<H2ClientConnection>();
  #connecting: Promise<void> | undefined;
  #waiters: Array<() => void> = [];
  #draining = false;
  #sweeper: ReturnType<typeof setTimeout> | undefined;
  readonly #used = new WeakSet<H2ClientConnection>(); // connections that carried a stream
  /** Connections opened over the pool's life. */
  opened = 0;
  /** Streams sent on a connection that had carried one before (as HTTP/1.1 pools count reuse). */
  reused = 0;

  /** Creates an empty pool for `backend`. */
  constructor(backend: Backend, options: H2PoolOptions = {}) {
    this.backend = backend;
    this.#max = Math.max(1, options.maxConnections ?? 4);
    this.#idleTimeout = options.idleTimeout ?? 15_000;
    this.#connectTimeout = options.connectTimeout ?? 5_000;
    this.#stalls = options.stalls;
    this.#proxyHeader = options.proxyHeader;
    this.#client = { ...options.client, onChange: (c) => this.#onChange(c) };
  }

  /** Open connections, those finishing their last streams after GOAWAY included. */
  get connections(): number {
    return this.#conns.length + this.#retiring.size;
  }

  /** Connections carrying streams now (those finishing theirs after GOAWAY included). */
  get active(): number {
    let n = this.#retiring.size;
    for (const c of this.#conns) if (c.activeStreams > 0) n++;
    return n;
  }

  /** Open connections carrying no stream now. */
  get idle(): number {
    let n = 0;
    for (const c of this.#conns) if (c.activeStreams === 0) n++;
    return n;
  }

  /** Streams open over every connection. */
  get activeStreams(): number {
    let n = 0;
    for (const c of this.#conns) n += c.activeStreams;
    for (const c of this.#retiring) n += c.activeStreams;
    return n;
  }

  /** Callers waiting for room on a connection. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Opens a stream on a connection with room, connecting when every one is
   * full (up to maxConnections), else waiting for a stream to finish.
   *
   * @param signal aborts the wait, and resets the stream with CANCEL once open.
   * @throws {ConnectError} when connecting fails or times out.
   * @throws {Error} when the pool is draining, or `signal`'s reason when aborted.
   */
  async open(head: H2RequestHead, signal?: AbortSignal): Promise<H2ClientStream> {
    for (;;) {
      if (this.#draining) throw new Error(`Pool of ${this.backend.id} is draining`);
      signal?.throwIfAborted();
      for (const c of this.#conns) {
        if (c.available > 0) {
          try {
            const s = c.request(head, signal);
            this.#idleSince.set(c, 0);
            if (this.#used.has(c)) this.reused++;
            else this.#used.add(c);
            return s;
          } catch (e) {
            if (!(e instanceof RefusedError)) throw e;
          }
        }
      }
      if (this.#connecting !== undefined) await this.#race(this.#connecting, signal);
      else if (this.#conns.length < this.#max) {
        this.#connecting = this.#connect().finally(() => this.#connecting = undefined);
        await this.#race(this.#connecting, signal);
      } else await this.#race(new Promise<void>((r) => this.#waiters.push(r)), signal);
    }
  }

  /** Stops new streams: connections close once their streams finish. */
  drain(): void {
    this.#draining = true;
    for (const c of [...this.#conns]) c.drain();
    this.#wakeAll();
    if (this.#sweeper !== undefined) clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** Closes every connection now; open streams fail. */
  close(): void {
    this.drain();
    for (const c of [...this.#conns, ...this.#retiring]) c.close();
  }

  /** Same as {@linkcode H2Pool.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // Waits for `p`, or rejects when `signal` aborts first.
  #race(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (signal === undefined) return p;
    return new Promise<void>((resolve, reject) => {
      const abort = () => reject(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
    });
  }

  async #connect(): Promise<void> {
    const tls = this.backend.tls !== undefined;
    const { conn, alpnProtocol } = await connectBackend(this.backend, {
      connectTimeout: this.#connectTimeout,
      ...(tls ? { alpn: H2_ALPN } : {}),
      stalls: this.#stalls,
      proxyHeader: this.#proxyHeader,
    });
    if (tls && alpnProtocol !== "h2") {
      conn.close();
      throw new ConnectError(
        this.backend,
        new Error(`the backend chose ALPN ${alpnProtocol ?? "none"}, not h2`),
        false,
      );
    }
    const c = new H2ClientConnection(conn, {
      ...this.#client,
      settingsTimeout: this.#connectTimeout,
    });
    try {
      await c.start();
    } catch (e) {
      c.close();
      throw new ConnectError(this.backend, e, false);
    }
    if (c.closed || this.#draining) {
      c.close();
      return;
    }
    this.opened++;
    this.#conns.push(c);
    this.#idleSince.set(c, Date.now());
    this.#sweep();
  }

  // A connection's room, streams or state changed.
  #onChange(c: H2ClientConnection): void {
    if (c.closed || c.retiring) {
      const i = this.#conns.indexOf(c);
      if (i !== -1) {
        this.#conns.splice(i, 1);
        this.#idleSince.delete(c);
        this.#wakeAll(); // room to connect again
      }
      if (c.closed) this.#retiring.delete(c);
      else if (i !== -1) this.#retiring.add(c); // its open streams finish there
      return;
    }
    if (!this.#conns.includes(c)) return; // still starting
    if (c.activeStreams === 0) {
      if (!this.#idleSince.get(c)) this.#idleSince.set(c, Date.now());
    } else this.#idleSince.set(c, 0);
    let room = c.available;
    while (room-- > 0 && this.#waiters.length > 0) this.#waiters.shift()!();
  }

  #wakeAll(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  // One timer per pool: closes connections idle for idleTimeout.
  #sweep(): void {
    if (this.#sweeper !== undefined || this.#draining) return;
    const t = setTimeout(() => {
      this.#sweeper = undefined;
      const cutoff = Date.now() - this.#idleTimeout;
      for (const c of [...this.#conns]) {
        const since = this.#idleSince.get(c) ?? 0;
        if (since !== 0 && since <= cutoff && c.activeStreams === 0) c.drain();
      }
      if (this.#conns.length > 0) this.#sweep();
    }, Math.max(50, this.#idleTimeout / 4));
    Deno.unrefTimer(t);
    this.#sweeper = t;
  }
}
