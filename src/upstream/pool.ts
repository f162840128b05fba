/**
 * Keep-alive connections to one backend: idle ones reused newest-first, a bound
 * on idle and on total connections, idle connections closed after a timeout.
 *
 * @module
 */
import type { HandshakeStalls } from "../observe/tls_stalls.ts";
import type { Backend } from "./backend.ts";
import { BufReader, BufWriter, type ByteConn } from "../http1/io.ts";
import { connectBackend, ConnectError } from "./connect.ts";

export { ConnectError } from "./connect.ts";

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
  /**
   * Opens a connection to `backend`, giving up when `signal` aborts (the
   * connect timeout or the exchange's end); for tests, which hand in-memory
   * connections. @default {TCP through `Deno.connect`, then TLS when `backend.tls` is set}
   */
  connect?: (backend: Backend, signal: AbortSignal) => Promise<BackendSocket>;
  /** Takes TLS handshakes given up before they finished (see `upstreamHandshake`). */
  stalls?: HandshakeStalls | undefined;
  /**
   * The PROXY header each new connection begins with, for a backend with `proxy`
   * set (a pool of one client's connections: see `PrivatePools`).
   */
  proxyHeader?: Uint8Array | undefined;
}

/** What a pooled connection needs of its socket: bytes both ways, and a close. */
export interface BackendSocket extends ByteConn {
  /** Closes the socket; anything waiting on it is unblocked. */
  close(): void;
}

/** A connection to a backend with its reusable buffers. */
export class BackendConn {
  /** The socket. */
  readonly conn: BackendSocket;
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
  constructor(conn: BackendSocket) {
    this.conn = conn;
    this.reader = new BufReader(conn);
    // the buffer a response body grew to stays for the next response (its first read takes
    // a whole 64 KiB body); given back when the connection is discarded
    this.reader.keepLent = true;
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
      const c = this.#reuse();
      if (c !== undefined) return c; // the common case stays synchronous
    }
    return this.#open(fresh, owner?.signal);
  }

  // The most recently idled connection, taken into use.
  #reuse(): BackendConn | undefined {
    const c = this.#idle.pop();
    if (c === undefined) return undefined;
    c.idleSince = 0;
    c.uses++;
    this.reused++;
    return c;
  }

  // At the bound, a request waits for a connection to come back and takes it (a
  // fresh one is wanted only after a stale one failed: then an idle one is closed
  // to make room).
  async #open(fresh: boolean, signal?: AbortSignal): Promise<BackendConn> {
    while (this.#total >= this.#options.maxConns) {
      if (!fresh) {
        const c = this.#reuse();
        if (c !== undefined) return c;
      } else {
        const c = this.#idle.shift();
        if (c !== undefined) {
          this.#discard(c);
          break;
        }
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
    let conn: BackendSocket;
    const connect = this.#options.connect;
    if (connect !== undefined) { // a test's own transport
      const timeout = AbortSignal.timeout(this.#options.connectTimeout);
      try {
        conn = await connect(this.backend, signal ? AbortSignal.any([signal, timeout]) : timeout);
      } catch (e) {
        throw new ConnectError(this.backend, e, timeout.aborted);
      }
    } else {
      const { connectTimeout, stalls, proxyHeader } = this.#options;
      conn = (await connectBackend(this.backend, { connectTimeout, signal, stalls, proxyHeader }))
        .conn;
    }
    this.opened++;
    const c = new BackendConn(conn);
    c.idleReadEnded = () => { // made once per connection, not once per request
      if (c.idleSince === 0) return; // in use again: the read belongs to its response
      const i = this.#idle.indexOf(c);
      if (i === -1) return; // discarded already (drained, swept, or closed to make room)
      this.#idle.splice(i, 1);
      this.#discard(c);
    };
    return c;
  }

  #discard(c: BackendConn): void {
    c.close();
    c.reader.restore(); // no relay reads from it now (an idle read may: then once it settles)
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
