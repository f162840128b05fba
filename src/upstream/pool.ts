/**
 * Keep-alive connections to one backend: idle ones reused newest-first, a bound
 * on idle and on total connections, idle connections closed after a timeout.
 *
 * @module
 */
import { type Backend, tlsServerName } from "./backend.ts";
import { BufReader, BufWriter } from "../http1/io.ts";
import { upstreamHandshake } from "./tls.ts";

/** Pool bounds and timeouts. */
export interface PoolOptions {
  /** Idle connections kept per backend. @default {1024} */
  maxIdle: number;
  /** Connections (idle + busy) per backend; callers wait for a free one beyond. @default {1024} */
  maxConns: number;
  /** Idle connections are closed after this many ms. @default {15000} */
  idleTimeout: number;
  /** Connecting (and the TLS handshake, for a backend with `tls`) gives up after this many ms. @default {5000} */
  connectTimeout: number;
}

/** A connection to a backend with its reusable buffers. */
export class BackendConn {
  /** The socket. */
  readonly conn: Deno.Conn;
  /** Reads responses. */
  readonly reader: BufReader;
  /** Writes requests. */
  readonly writer: BufWriter;
  /** Requests sent on it before the current one. */
  uses = 0;
  /** Epoch ms it went idle; 0 while in use. */
  idleSince = 0;
  /** Set by its pool: the read kept pending while idle has ended. */
  idleReadEnded: () => void = () => {};
  #closed = false;

  /** Wraps a connected socket. */
  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.reader = new BufReader(conn);
    this.writer = new BufWriter(conn);
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed by the peer */ }
  }
}

/** Thrown when a backend cannot be connected to. */
export class ConnectError extends Error {
  /** True when the connect timed out (answered with 504 rather than 502). */
  readonly timedOut: boolean;
  /** Wraps the failure to reach `backend`. */
  constructor(backend: Backend, cause: unknown, timedOut: boolean) {
    const why = timedOut ? "timed out" : (cause as Error)?.message ?? String(cause);
    super(`Connect to ${backend.id} failed: ${why}`, { cause });
    this.name = "ConnectError";
    this.timedOut = timedOut;
  }
}

/**
 * Opens a connection to `backend`: TCP without Nagle's delay, then TLS for a
 * backend with `tls` (the handshake closes the socket when it fails). The pool
 * and the active health probe both connect through it.
 *
 * @example Connect to a local listener
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createBackend } from "./backend.ts";
 * import { connectBackend } from "./pool.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const backend = createBackend({ hostname: "127.0.0.1", port: listener.addr.port });
 * using conn = await connectBackend(backend, { signal: AbortSignal.timeout(5000) });
 * using peer = await listener.accept();
 * await conn.write(new Uint8Array([42]));
 * const got = new Uint8Array(1);
 * assertEquals(await peer.read(got), 1);
 * assertEquals(got[0], 42);
 * ```
 *
 * @param backend The backend to reach.
 * @param options `signal` aborts connecting and the TLS handshake.
 * @returns The connection, ready for a request.
 * @throws What `Deno.connect` or {@linkcode upstreamHandshake} throws: the
 * signal's reason once it aborts.
 */
export async function connectBackend(
  backend: Backend,
  options: { signal: AbortSignal },
): Promise<Deno.Conn> {
  const { hostname, port, tls } = backend;
  const tcp = await Deno.connect({ hostname, port, signal: options.signal });
  try {
    tcp.setNoDelay(true);
  } catch { /* not a TCP socket */ }
  if (tls === undefined) return tcp;
  return await upstreamHandshake(tcp, {
    tls,
    serverName: tlsServerName(backend),
    signal: options.signal,
  });
}

/**
 * The connection pool of one backend.
 *
 * @example
 * ```ts ignore
 * const pool = new Pool(backend, { maxIdle: 8, maxConns: 100, idleTimeout: 15_000, connectTimeout: 5_000 });
 * const c = await pool.acquire();
 * // ... one request/response ...
 * pool.release(c, true); // clean response: keep it
 * ```
 */
export class Pool {
  /** The backend connected to. */
  readonly backend: Backend;
  readonly #options: PoolOptions;
  readonly #idle: BackendConn[] = [];
  readonly #waiters: Array<() => void> = [];
  #total = 0;
  #draining = false;
  #sweeper: ReturnType<typeof setTimeout> | undefined;
  /** Connections opened over the pool's life. */
  opened = 0;
  /** Requests served by a reused connection. */
  reused = 0;

  /** Creates an empty pool for `backend`. */
  constructor(backend: Backend, options: PoolOptions) {
    this.backend = backend;
    this.#options = options;
  }

  /** Idle connections. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Connections handed out and not yet released. */
  get active(): number {
    return this.#total - this.#idle.length;
  }

  /** True once {@linkcode Pool.drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * A connection: the most recently idled one, or a new one.
   *
   * @param fresh skip idle connections (a retry after a stale one failed).
   * @param owner whose `signal` aborts opening a new connection; read only when one
   * has to be opened (an exchange makes its signal on first use).
   * @throws {ConnectError} when connecting fails or times out.
   */
  acquire(
    fresh = false,
    owner?: { readonly signal: AbortSignal },
  ): BackendConn | Promise<BackendConn> {
    if (!fresh) {
      const c = this.#idle.pop();
      if (c !== undefined) { // the common case stays synchronous
        c.idleSince = 0;
        c.uses++;
        this.reused++;
        return c;
      }
    }
    return this.#open(owner?.signal);
  }

  async #open(signal?: AbortSignal): Promise<BackendConn> {
    while (this.#total >= this.#options.maxConns) {
      const c = this.#idle.shift(); // at the bound: make room by closing an idle one
      if (c !== undefined) {
        this.#discard(c);
        break;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#total++;
    try {
      return await this.#connect(signal);
    } catch (e) {
      this.#total--;
      this.#wake();
      throw e;
    }
  }

  /** Gives a connection back: kept idle when `reusable`, closed otherwise. */
  release(c: BackendConn, reusable: boolean): void {
    if (
      !reusable || this.#draining || c.closed || c.reader.buffered !== 0 ||
      this.#idle.length >= this.#options.maxIdle
    ) {
      this.#discard(c);
      return;
    }
    c.idleSince = Date.now();
    this.#idle.push(c);
    // A read kept pending while idle notices the backend closing (or sending
    // unasked bytes) at once, instead of on the next request sent there.
    c.reader.prefetch().then(c.idleReadEnded, c.idleReadEnded);
    this.#sweep();
    this.#wake();
  }

  /** Stops reuse: closes idle connections now and busy ones when released. */
  drain(): void {
    this.#draining = true;
    for (const c of this.#idle.splice(0)) this.#discard(c);
    if (this.#sweeper !== undefined) clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
  }

  async #connect(signal?: AbortSignal): Promise<BackendConn> {
    const timeout = AbortSignal.timeout(this.#options.connectTimeout);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      const conn = await connectBackend(this.backend, { signal: both });
      this.opened++;
      const c = new BackendConn(conn);
      c.idleReadEnded = () => { // made once per connection, not once per request
        if (c.idleSince === 0) return; // in use again: the read belongs to its response
        const i = this.#idle.indexOf(c);
        if (i !== -1) this.#idle.splice(i, 1);
        this.#discard(c);
      };
      return c;
    } catch (e) {
      throw new ConnectError(this.backend, e, timeout.aborted);
    }
  }

  #discard(c: BackendConn): void {
    c.close();
    this.#total--;
    this.#wake();
  }

  #wake(): void {
    this.#waiters.shift()?.();
  }

  // One timer per pool, not per connection: closes the oldest idle connections.
  #sweep(): void {
    if (this.#sweeper !== undefined) return;
    const t = setTimeout(() => {
      this.#sweeper = undefined;
      const cutoff = Date.now() - this.#options.idleTimeout;
      while (this.#idle.length > 0 && this.#idle[0]!.idleSince <= cutoff) {
        this.#discard(this.#idle.shift()!);
      }
      if (this.#idle.length > 0) this.#sweep();
    }, Math.max(50, this.#options.idleTimeout / 4));
    Deno.unrefTimer(t);
    this.#sweeper = t;
  }
}
