/**
 * Test helper: an HTTP/2 origin (node:http2, h2c) that logs the protocol of every
 * request it gets, answering `/healthz` with a settable status; and a TLS front
 * (ALPN h2) that pipes to it and logs the ALPN protocol of every connection.
 *
 * @module
 */
import http2 from "node:http2";

/** One request the origin got. */
export interface SeenRequest {
  /** `2.0` for HTTP/2. */
  httpVersion: string;
  method: string;
  path: string;
  userAgent: string;
}

/** A running origin; `await using` closes it. */
export interface H2Origin extends AsyncDisposable {
  port: number;
  /** The status `/healthz` answers. @default {200} */
  status: number;
  /** Requests so far, in order. */
  readonly seen: SeenRequest[];
  /** Requests for `/healthz` so far. */
  probes(): SeenRequest[];
}

/** Starts an h2c origin on 127.0.0.1; other paths answer 200 `NAME PATH`. */
export async function startH2Origin(name: string): Promise<H2Origin> {
  const seen: SeenRequest[] = [];
  const origin = {
    status: 200,
    seen,
    probes: () => seen.filter((r) => r.path === "/healthz"),
  };
  const server = http2.createServer((req, res) => {
    const path = req.url ?? "";
    seen.push({
      httpVersion: req.httpVersion,
      method: req.method ?? "",
      path,
      userAgent: String(req.headers["user-agent"] ?? ""),
    });
    if (path === "/healthz") {
      res.writeHead(origin.status);
      return res.end("hc");
    }
    res.writeHead(200, { "x-backend": name });
    res.end(`${name} ${path}`);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return Object.assign(origin, {
    port,
    [Symbol.asyncDispose]: () => new Promise<void>((r) => server.close(() => r())),
  });
}

/** A TLS listener in front of a cleartext port; `await using` closes it. */
export interface TlsFront extends AsyncDisposable {
  port: number;
  /** The ALPN protocol each TLS connection negotiated (null: none). */
  readonly alpn: (string | null)[];
}

/** Accepts TLS (ALPN h2 only) with `files` and pipes the bytes to `port`. */
export function tlsFront(port: number, files: { cert: string; key: string }): TlsFront {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(files.cert),
    key: Deno.readTextFileSync(files.key),
    alpnProtocols: ["h2"],
  });
  const alpn: (string | null)[] = [];
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  const accepting = (async () => {
    for await (const tls of listener) {
      conns.add(tls);
      pipes.push(
        (async () => {
          const info = await tls.handshake();
          alpn.push(info.alpnProtocol);
          const plain = await Deno.connect({ hostname: "127.0.0.1", port });
          conns.add(plain);
          const close = () => [tls, plain].forEach((c) => ignore(() => c.close()));
          await Promise.all([
            tls.readable.pipeTo(plain.writable).catch(close),
            plain.readable.pipeTo(tls.writable).catch(close),
          ]);
        })().catch(() => ignore(() => tls.close())),
      );
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    alpn,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) ignore(() => c.close());
      await accepting;
      await Promise.allSettled(pipes);
    },
  };
}

function ignore(f: () => void): void {
  try {
    f();
  } catch { /* closed already */ }
}
