/**
 * Helpers for the `tcp:` route tests: Debian redis-server on a free port, redis-cli,
 * netcat-openbsd clients from a chosen 127.0.0.x source, small TCP backends, and a
 * logger that keeps the access log's connection records.
 *
 * @module
 */
import type { Logger } from "../src/observe/log.ts";
import type { ConnectionRecord } from "../src/observe/connection_record.ts";
import { delay } from "./_http.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

/**
 * netcat-openbsd as a client: connects from `source` (a 127.0.0.x address) to
 * 127.0.0.1:`port`, sends `input`, shuts its write side (`-N`) and prints what comes back.
 */
export async function nc(port: number, input: string, source?: string): Promise<string> {
  const child = new Deno.Command("nc", {
    args: ["-N", ...(source ? ["-s", source] : []), "127.0.0.1", String(port)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(enc.encode(input));
  await w.close();
  const out = await child.output();
  return dec.decode(out.stdout);
}

/** A TCP backend on 127.0.0.1:0 serving each connection with `serve`; `await using` stops it. */
export interface TcpBackend extends AsyncDisposable {
  /** Its port. */
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** Starts a {@linkcode TcpBackend}. */
export function tcpBackend(serve: (conn: Deno.Conn) => Promise<void>): TcpBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const handlers = new Set<Promise<void>>();
  const backend = {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: 0,
    close: async () => {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
      await Promise.all(handlers);
    },
    [Symbol.asyncDispose]: () => backend.close(),
  };
  const loop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      backend.accepted++;
      conns.add(conn);
      const h = serve(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      });
      handlers.add(h);
      h.finally(() => handlers.delete(h));
    }
  })();
  return backend;
}

/** A backend that writes its `name` and a newline on each connection, then closes it. */
export function namedTcpBackend(name: string): TcpBackend {
  return tcpBackend(async (conn) => {
    await writeAll(conn, enc.encode(`${name}\n`));
  });
}

/** Writes all of `bytes` to `conn`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Reads `conn` to its end. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (let n; (n = await conn.read(buf)) !== null;) parts.push(buf.slice(0, n));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A quiet logger that keeps event lines (`info …`, `warn …`) and the TCP connection records. */
export function tcpLogger(): Logger & { lines: string[]; records: ConnectionRecord[] } {
  const lines: string[] = [];
  const records: ConnectionRecord[] = [];
  return {
    lines,
    records,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    access() {},
    connection: (r) => records.push(r),
    close() {},
  };
}

/** Resolves once `cond()` holds (checked every 20 ms); throws after `tries` checks. */
export async function until(cond: () => boolean, what: string, tries = 500): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await delay(20);
  }
  throw new Error(`never happened: ${what}`);
}
