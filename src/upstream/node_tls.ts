/**
 * A TLS connection to a backend that presents a client certificate, made with
 * `node:tls` and seen as a `Deno.TlsConn`. Deno has one call that presents a
 * client certificate, `Deno.connectTls`, and its socket cannot have TCP_NODELAY
 * (`setNoDelay` exists on `Deno.TcpConn` only): a request whose body follows its
 * head in a second write then waits for the backend's delayed ACK (measured: 22 ms
 * per small POST against 1 ms without a client certificate). `node:tls` takes a
 * certificate and its socket takes `setNoDelay`.
 *
 * @module
 */
import { connect, type TLSSocket } from "node:tls";
import type { Buffer } from "node:buffer";

/** What {@linkcode connectNodeTls} needs. */
export interface NodeTlsOptions {
  /** The backend's address. */
  hostname: string;
  /** Its port. */
  port: number;
  /** The name verified in its certificate and sent as SNI. */
  serverName: string;
  /** Trust roots (PEM) besides the default ones. */
  caCerts?: string[] | undefined;
  /** The client certificate chain and key (PEM). */
  cert: string;
  /** The client certificate's private key (PEM). */
  key: string;
  /** ALPN protocols offered. */
  alpn: string[];
  /** Aborts the connect and the handshake (the socket is destroyed). */
  signal: AbortSignal;
}

// Bytes read and not yet taken past which the socket stops reading (backpressure).
const HIGH_WATER = 64 * 1024;

/**
 * Connects, completes the handshake (the backend's certificate verified for
 * `serverName`) and returns the connection.
 *
 * @example
 * ```ts ignore
 * const conn = await connectNodeTls({ hostname: "10.0.0.5", port: 443, serverName: "api.internal",
 *   cert, key, alpn: ["http/1.1"], signal: AbortSignal.timeout(5000) });
 * ```
 *
 * @param options Where, whom to verify, what to present, and when to give up.
 * @returns The connection, as a `Deno.TlsConn` (read, write, closeWrite, close,
 * handshake, addresses).
 * @throws {Error} when connecting or the handshake fails, or `signal`'s reason.
 */
export function connectNodeTls(options: NodeTlsOptions): Promise<Deno.TlsConn> {
  const { signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason);
  const socket = connect({
    host: options.hostname,
    port: options.port,
    servername: options.serverName,
    ...(options.caCerts ? { ca: options.caCerts } : {}),
    cert: options.cert,
    key: options.key,
    ALPNProtocols: options.alpn,
  });
  socket.setNoDelay(true);
  return new Promise<Deno.TlsConn>((resolve, reject) => {
    const abort = () => {
      socket.destroy();
      reject(signal.reason);
    };
    const failed = (e: Error) => {
      signal.removeEventListener("abort", abort);
      socket.destroy();
      reject(e);
    };
    signal.addEventListener("abort", abort, { once: true });
    socket.once("error", failed);
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", abort);
      socket.off("error", failed);
      resolve(new NodeTlsConn(socket, options) as unknown as Deno.TlsConn);
    });
  });
}

// The part of Deno.TlsConn the pools, the HTTP/2 client and the relays use.
class NodeTlsConn {
  readonly #socket: TLSSocket;
  readonly #chunks: Buffer[] = [];
  #queued = 0;
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #waiting: (() => void) | undefined;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;

  constructor(socket: TLSSocket, options: NodeTlsOptions) {
    this.#socket = socket;
    this.remoteAddr = { transport: "tcp", hostname: options.hostname, port: options.port };
    this.localAddr = {
      transport: "tcp",
      hostname: socket.localAddress ?? "",
      port: socket.localPort ?? 0,
    };
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued >= HIGH_WATER) socket.pause();
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (e: Error) => {
      this.#error = e;
      this.#wake();
    });
  }

  handshake(): Promise<Deno.TlsHandshakeInfo> {
    const alpn = this.#socket.alpnProtocol;
    return Promise.resolve({ alpnProtocol: typeof alpn === "string" ? alpn : null });
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiting = resolve);
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length, p.length - n);
      p.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#queued -= n;
    if (this.#queued < HIGH_WATER && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#socket.destroyed || this.#socket.writableEnded) {
      return Promise.reject(new Deno.errors.BrokenPipe("the connection is closed"));
    }
    const copy = p.slice(); // the caller reuses its buffer once this resolves
    return new Promise((resolve, reject) => {
      this.#socket.write(copy, (e?: Error | null) => e ? reject(e) : resolve(copy.length));
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("the connection is closed");
    this.#closed = true;
    this.#socket.destroy();
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.();
  }
}
