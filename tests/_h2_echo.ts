/**
 * Test helper: a tiny HTTP/2 server on {@linkcode H2ServerConnection}, over
 * cleartext (prior knowledge) or TLS with ALPN "h2".
 *
 * Routes: `POST /echo` streams the request body back; `POST /hash` answers the
 * body's length and SHA-256; `GET /bytes/N` sends N pattern bytes; `/trailers`
 * answers with trailers; anything else answers a JSON summary of the request.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { H2ServerConnection, type H2ServerOptions } from "../src/h2/server.ts";
import type { H2Stream } from "../src/h2/stream.ts";

/** A running echo server. */
export interface H2Echo extends AsyncDisposable {
  /** The port on 127.0.0.1. */
  port: number;
  /** Streams handed to onStream so far. */
  streams: number;
  /** Connections accepted so far. */
  connections: number;
  /** Resolves once every accepted connection's serve() has returned. */
  settled(): Promise<void>;
}

/** Deterministic body bytes: byte i of a body is `i % 251`. */
export function patternChunk(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (offset + i) % 251;
  return out;
}

async function handle(s: H2Stream): Promise<void> {
  try {
    if (s.path === "/echo") {
      s.respond(200, ["content-type", "application/octet-stream"]);
      for (let c = await s.read(); c !== null; c = await s.read()) await s.write(c);
      await s.end();
    } else if (s.path === "/hash") {
      const h = createHash("sha256");
      let n = 0;
      for (let c = await s.read(); c !== null; c = await s.read()) {
        h.update(c);
        n += c.length;
      }
      const body = new TextEncoder().encode(`${n} ${h.digest("hex")}\n`);
      s.respond(200, ["content-type", "text/plain", "content-length", String(body.length)]);
      await s.write(body);
      await s.end();
    } else if (s.path.startsWith("/bytes/")) {
      const total = Number(s.path.slice(7));
      s.respond(200, ["content-length", String(total)]);
      // one buffer reused: period 251 * 261 = a multiple of 251 near 64 KiB
      const block = patternChunk(0, 251 * 261);
      let sent = 0;
      while (sent < total) {
        const n = Math.min(block.length, total - sent);
        await s.write(block, 0, n);
        sent += n;
      }
      await s.end();
    } else if (s.path === "/trailers") {
      s.respond(200, ["content-type", "text/plain"]);
      await s.write(new TextEncoder().encode("body\n"));
      await s.end(["x-checksum", "abc"]);
    } else {
      let body = 0;
      for (let c = await s.read(); c !== null; c = await s.read()) body += c.length;
      const info = JSON.stringify({
        method: s.method,
        scheme: s.scheme,
        authority: s.authority,
        path: s.path,
        fields: s.fields,
        body,
        trailers: s.trailers ?? null,
      });
      const bytes = new TextEncoder().encode(info + "\n");
      s.respond(200, ["content-type", "application/json", "content-length", String(bytes.length)]);
      await s.write(bytes);
      await s.end();
    }
  } catch {
    if (!s.signal.aborted) s.reset(2);
  }
}

/**
 * Starts the echo server on 127.0.0.1:0 (TLS with ALPN h2/http1.1 when `tls`
 * holds PEM file paths).
 */
export function startH2Echo(
  options: {
    tls?: { cert: string; key: string };
    h2?: Partial<Omit<H2ServerOptions, "onStream">>;
  } = {},
): H2Echo {
  const listener: Deno.Listener = options.tls
    ? Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(options.tls.cert),
      key: Deno.readTextFileSync(options.tls.key),
      alpnProtocols: ["h2", "http/1.1"],
    })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = new Set<Promise<void>>();
  const state: H2Echo = {
    port: (listener.addr as Deno.NetAddr).port,
    streams: 0,
    connections: 0,
    async settled() {
      while (serving.size > 0) await Promise.all(serving);
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await state.settled();
    },
  };
  const serveOne = async (conn: Deno.Conn) => {
    if (options.tls) {
      const hs = await (conn as Deno.TlsConn).handshake().catch(() => undefined);
      if (hs?.alpnProtocol !== "h2") {
        conn.close();
        return;
      }
    }
    const h2 = new H2ServerConnection(conn, {
      ...options.h2,
      onStream: (s) => {
        state.streams++;
        handle(s);
      },
    });
    await h2.serve();
  };
  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      state.connections++;
      if (!options.tls) (conn as Deno.TcpConn).setNoDelay(true);
      const p = serveOne(conn).finally(() => serving.delete(p));
      serving.add(p);
    }
  })();
  return state;
}

/**
 * Accepts one connection on `listener` and serves it with `handle` for each
 * stream; resolves once the connection has ended and the last handler finished.
 */
export async function serveOneConnection(
  listener: Deno.Listener,
  handle: (stream: H2Stream) => Promise<void>,
): Promise<void> {
  const conn = await listener.accept();
  let handler: Promise<void> = Promise.resolve();
  await new H2ServerConnection(conn, { onStream: (s) => handler = handle(s) }).serve();
  await handler;
}
