/**
 * Where an accepted connection goes: HTTP/2 when TLS negotiated `h2` (ALPN), or
 * when a plain connection opens with the HTTP/2 preface and `listen.h2c` is on;
 * HTTP/1.x otherwise.
 *
 * @module
 */
import type { ProxyContext } from "./context.ts";
import type { Timed } from "../timer/watchdog.ts";
import { serveConn } from "./session.ts";
import { serveH2 } from "./h2_session.ts";
import { BufReader, SMALL_READ_BUFFER } from "../http1/io.ts";
import { CLIENT_PREFACE } from "../h2/frame.ts";
import { inAny, ipBytes } from "../config/cidr.ts";
import { ProxyHeaderError, readProxyHeader } from "./proxy_header.ts";
import type { ClientOrigin } from "./client.ts";

/**
 * Serves one accepted connection in the protocol it speaks; always closes
 * `conn`, and resolves to it (never rejects).
 *
 * @example
 * ```ts ignore
 * for await (const conn of Deno.listen({ port: 8080 })) serveConnection(conn, ctx);
 * ```
 *
 * @param conn The accepted connection (a `Deno.TlsConn` on an https listener).
 * @param ctx The listener's proxy context.
 * @returns `conn`, once closed.
 */
export function serveConnection(conn: Deno.Conn, ctx: ProxyContext): Promise<Deno.Conn> {
  if (ctx.proto === "https") return negotiated(conn as Deno.TlsConn, ctx);
  if (ctx.proxyProtocol) return proxied(conn, ctx);
  if (ctx.h2c) return sniffed(conn, ctx);
  return serveConn(conn, ctx);
}

// `listen.proxy_protocol`: a peer in trusted_proxies names the client in a PROXY
// header first; any other peer, and any connection without a valid header, is closed.
async function proxied(conn: Deno.Conn, ctx: ProxyContext): Promise<Deno.Conn> {
  const read = await readOrigin(conn, ctx);
  if (read === undefined) return conn;
  if (ctx.h2c) return sniffed(conn, ctx, read.reader, read.origin);
  return serveConn(conn, ctx, read.reader, read.origin);
}

/**
 * Reads the PROXY header a connection must begin with (`listen.proxy_protocol`):
 * from a peer in `trusted_proxies`, within `timeouts.head`. A connection from any
 * other peer, or without a valid header, is told to `ctx.onProxyRefused` and closed.
 *
 * @example
 * ```ts ignore
 * const read = await readOrigin(conn, ctx);
 * if (read !== undefined) serveConn(conn, ctx, read.reader, read.origin);
 * ```
 *
 * @param conn A fresh connection.
 * @param ctx The listener's context.
 * @returns A reader holding the bytes after the header, and the origin it named
 * (undefined for `LOCAL`: serve as the peer); undefined once `conn` was closed.
 */
export async function readOrigin(
  conn: Deno.Conn,
  ctx: ProxyContext,
): Promise<{ reader: BufReader; origin: ClientOrigin | undefined } | undefined> {
  const peer = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
  const trusted = ctx.trustedProxies;
  const bytes = ipBytes(peer);
  if (trusted === undefined || bytes === undefined || !inAny(bytes, trusted)) {
    ctx.onProxyRefused?.(
      peer,
      "untrusted",
      "not in listen.trusted_proxies: its PROXY header is not believed",
    );
    closeQuietly(conn);
    return undefined;
  }
  const reader = new BufReader(conn, SMALL_READ_BUFFER);
  const guard = new FirstBytes(conn, ctx);
  let origin: ClientOrigin | undefined;
  try {
    const header = await readProxyHeader(reader, ctx.limits.max_head);
    if (header.kind === "proxy") {
      origin = {
        ip: header.client,
        port: header.port,
        dest: header.dest,
        destPort: header.destPort,
      };
    }
  } catch (e) {
    const [reason, detail] = guard.fired
      ? ["timeout", "no whole PROXY header within timeouts.head"]
      : e instanceof ProxyHeaderError
      ? [e.reason, e.message]
      : ["closed", `the connection failed before a whole PROXY header: ${(e as Error).message}`];
    ctx.onProxyRefused?.(peer, reason, detail);
    closeQuietly(conn);
    return undefined;
  } finally {
    guard.done();
  }
  return { reader, origin };
}

// TLS: the handshake tells the protocol (it must end within timeouts.head). One that
// does not is handed to ctx.stalls rather than closed: Deno cannot release its socket
// before the handshake ends, so it is counted until then (see HandshakeStalls).
async function negotiated(conn: Deno.TlsConn, ctx: ProxyContext): Promise<Deno.Conn> {
  const handshake = conn.handshake();
  const guard = new HandshakeDeadline(ctx);
  let info: Deno.TlsHandshakeInfo | undefined;
  try {
    info = await Promise.race([handshake, guard.expired]);
  } catch {
    closeQuietly(conn);
    return conn;
  } finally {
    guard.done();
  }
  const hops = ctx.tlsHops;
  if (info === undefined) {
    // behind the PROXY hop: closing the hop ends the handshake (EOF) at once
    hops?.abort(conn);
    if (ctx.stalls) ctx.stalls.hold("client", conn, handshake, "listen.https");
    else closeQuietly(conn);
    return conn;
  }
  let origin: ClientOrigin | undefined;
  if (hops !== undefined) {
    origin = hops.origin(conn);
    if (origin === undefined) { // not one of the hop's own connections
      closeQuietly(conn);
      return conn;
    }
  }
  return info.alpnProtocol === "h2"
    ? serveH2(conn, ctx, undefined, origin)
    : serveConn(conn, ctx, undefined, origin);
}

// Cleartext: read until the bytes either match the HTTP/2 preface or cannot.
async function sniffed(
  conn: Deno.Conn,
  ctx: ProxyContext,
  reader = new BufReader(conn, SMALL_READ_BUFFER),
  origin?: ClientOrigin,
): Promise<Deno.Conn> {
  const guard = new FirstBytes(conn, ctx);
  let h2 = false;
  try {
    for (;;) {
      const n = Math.min(reader.buffered, CLIENT_PREFACE.length);
      let same = true;
      for (let i = 0; i < n && same; i++) {
        same = reader.buf[reader.start + i] === CLIENT_PREFACE[i];
      }
      if (!same) break;
      if (n === CLIENT_PREFACE.length) {
        h2 = true;
        break;
      }
      if (!(await reader.fill())) break;
    }
  } catch {
    closeQuietly(conn);
    return conn;
  } finally {
    guard.done();
  }
  return h2 ? serveH2(conn, ctx, reader, origin) : serveConn(conn, ctx, reader, origin);
}

/** Closes a connection whose first bytes take over timeouts.head. */
class FirstBytes implements Timed {
  deadline: number;
  /** Set when the time ran out. */
  fired = false;
  readonly #conn: Deno.Conn;
  readonly #ctx: ProxyContext;

  constructor(conn: Deno.Conn, ctx: ProxyContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.deadline = ctx.watchdog.now + ctx.timeouts.head;
    ctx.watchdog.add(this);
  }

  expire(): void {
    this.fired = true;
    this.done();
    closeQuietly(this.#conn);
  }

  done(): void {
    this.#ctx.watchdog.delete(this);
  }
}

/** Settles `expired` (to undefined) when a TLS handshake takes over timeouts.head. */
class HandshakeDeadline implements Timed {
  deadline: number;
  readonly #ctx: ProxyContext;
  readonly #expired = Promise.withResolvers<undefined>();

  constructor(ctx: ProxyContext) {
    this.#ctx = ctx;
    this.deadline = ctx.watchdog.now + ctx.timeouts.head;
    ctx.watchdog.add(this);
  }

  get expired(): Promise<undefined> {
    return this.#expired.promise;
  }

  expire(): void {
    this.done();
    this.#expired.resolve(undefined);
  }

  done(): void {
    this.#ctx.watchdog.delete(this);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}
