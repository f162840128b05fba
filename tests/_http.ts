/**
 * Test helpers: a raw HTTP/1.1 client over one TCP connection, raw backends that
 * count their connections, and a balancer started from YAML (alone, or with one
 * route to a backend and a client connected to it).
 *
 * @module
 */
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import { createLogger, type Logger } from "../src/observe/log.ts";
import { writeAll } from "../src/http1/io.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A parsed response as the client saw it. */
export interface RawResponse {
  status: number;
  head: string;
  headers: Map<string, string>;
  body: string;
}

/**
 * One client connection (TCP or TLS) that sends raw bytes and reads framed responses.
 * Disposable: `using c = await RawClient.connect(port)` closes it at the end of the scope.
 */
export class RawClient implements Disposable {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connects over TLS to 127.0.0.1:`port` trusting `caPem`, offering ALPN http/1.1. */
  static async tls(port: number, caPem: string): Promise<RawClient> {
    return new RawClient(
      await Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts: [caPem],
        alpnProtocols: ["http/1.1"],
      }),
    );
  }

  /** Sends `GET path` with `Host: app.test` and reads the response. */
  get(path: string): Promise<RawResponse> {
    return this.request(`GET ${path} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
  }

  /** Sends `text` (or bytes) as is. */
  async send(data: string | Uint8Array): Promise<void> {
    await writeAll(this.conn, typeof data === "string" ? enc.encode(data) : data);
  }

  /** Sends `text` and reads one response. */
  async request(text: string, method = "GET"): Promise<RawResponse> {
    await this.send(text);
    return await this.read(method);
  }

  /** Reads one response (Content-Length, chunked, or until close). */
  async read(method = "GET"): Promise<RawResponse> {
    let end: number;
    while ((end = indexOf(this.#buf, "\r\n\r\n")) === -1) {
      if (!(await this.#more())) {
        throw new Error(`closed before a response head: ${dec.decode(this.#buf)}`);
      }
    }
    const head = dec.decode(this.#buf.subarray(0, end));
    this.#buf = this.#buf.subarray(end + 4);
    const [statusLine, ...lines] = head.split("\r\n");
    const status = Number(statusLine!.split(" ")[1]);
    const headers = new Map<string, string>();
    for (const l of lines) {
      const i = l.indexOf(":");
      const k = l.slice(0, i).toLowerCase();
      const v = l.slice(i + 1).trim();
      headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v);
    }
    let body = "";
    if (method === "HEAD" || status === 204 || status === 304 || status < 200) {
      return { status, head, headers, body };
    }
    if (headers.get("transfer-encoding") === "chunked") {
      for (;;) {
        const le = await this.#line();
        const size = parseInt(le, 16);
        if (size === 0) {
          while ((await this.#line()) !== "");
          break;
        }
        body += dec.decode(await this.#take(size));
        await this.#line();
      }
    } else if (headers.has("content-length")) {
      body = dec.decode(await this.#take(Number(headers.get("content-length"))));
    } else {
      while (await this.#more());
      body = dec.decode(this.#buf);
      this.#buf = new Uint8Array(0);
    }
    return { status, head, headers, body };
  }

  /**
   * Resolves true when the server closes the connection (EOF or reset) within
   * `timeoutMs`; false on data or when it is still open after `timeoutMs`.
   */
  async closed(timeoutMs = 2000): Promise<boolean> {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      this.close();
    }, timeoutMs);
    try {
      const n = await this.conn.read(new Uint8Array(1024));
      return n === null;
    } catch {
      return !timedOut;
    } finally {
      clearTimeout(t);
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  /** Closes the connection (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }

  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  async #line(): Promise<string> {
    let i: number;
    while ((i = indexOf(this.#buf, "\r\n")) === -1) {
      if (!(await this.#more())) throw new Error("closed in a chunk line");
    }
    const s = dec.decode(this.#buf.subarray(0, i));
    this.#buf = this.#buf.subarray(i + 2);
    return s;
  }

  async #take(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) if (!(await this.#more())) throw new Error("closed in a body");
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

function indexOf(buf: Uint8Array, s: string): number {
  const first = s.charCodeAt(0);
  outer: for (
    let i = buf.indexOf(first);
    i !== -1 && i <= buf.length - s.length;
    i = buf.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < s.length; j++) if (buf[i + j] !== s.charCodeAt(j)) continue outer;
    return i;
  }
  return -1;
}

/**
 * A TCP server on 127.0.0.1 whose connections are handled by `handle`.
 * `await using` closes it (as {@linkcode RawServer.close}) at the end of the scope.
 */
export interface RawServer extends AsyncDisposable {
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  /** Bytes received over all connections. */
  readonly received: number;
  /** Stops listening, closes every connection and waits for the handlers (idempotent). */
  close(): Promise<void>;
}

/** Options for {@linkcode rawServer} and {@linkcode keepAliveBackend}. */
export interface RawServerOptions {
  /** Where connections come from, e.g. a `Deno.listenTls` listener. @default {TCP on 127.0.0.1, any free port} */
  listener?: Deno.Listener;
}

/**
 * Starts a raw server; `handle` gets each connection and a reader helper.
 */
export function rawServer(
  handle: (conn: Deno.Conn, read: () => Promise<Uint8Array | null>) => Promise<void>,
  options: RawServerOptions = {},
): RawServer {
  const listener = options.listener ?? Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  let received = 0;
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const conn of listener) {
      accepted++;
      conns.add(conn);
      const buf = new Uint8Array(64 * 1024);
      const read = async () => {
        const n = await conn.read(buf);
        if (n === null) return null;
        received += n;
        return buf.subarray(0, n);
      };
      const t = handle(conn, read).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
        tasks.delete(t);
      });
      tasks.add(t);
    }
  })();
  let closing: Promise<void> | undefined;
  const close = async () => {
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await loop;
    await Promise.all(tasks);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    get open() {
      return conns.size;
    },
    get received() {
      return received;
    },
    close() {
      return closing ??= close();
    },
    [Symbol.asyncDispose]() {
      return closing ??= close();
    },
  };
}

/**
 * A keep-alive HTTP backend on raw sockets answering each request (read up to the
 * end of its head; bodies are not expected) with {@linkcode namedResponse}.
 */
export function keepAliveBackend(name: string, options: RawServerOptions = {}): RawServer {
  return rawServer(
    (conn, read) => forEachHead(read, (head) => writeAllText(conn, namedResponse(name, head))),
    options,
  );
}

/**
 * Reads request heads (up to the blank line; bodies are not expected) with `read`
 * and hands each to `onHead`, until the peer closes or `onHead` resolves to false.
 */
export async function forEachHead(
  read: () => Promise<Uint8Array | null>,
  onHead: (head: string) => Promise<boolean | void>,
): Promise<void> {
  let pending = "";
  for (;;) {
    const chunk = await read();
    if (chunk === null) return;
    pending += dec.decode(chunk);
    let i;
    while ((i = pending.indexOf("\r\n\r\n")) !== -1) {
      const head = pending.slice(0, i);
      pending = pending.slice(i + 4);
      if ((await onHead(head)) === false) return;
    }
  }
}

/** A 200 response to the request with `head`: body `NAME PATH\n`, header `x-backend: NAME`. */
export function namedResponse(name: string, head: string): string {
  const body = `${name} ${head.split(" ")[1]}\n`;
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-backend: ${name}\r\n\r\n${body}`;
}

/** Writes all of `text`. */
export async function writeAllText(conn: Deno.Conn, text: string | Uint8Array): Promise<void> {
  await writeAll(conn, typeof text === "string" ? enc.encode(text) : text);
}

/** Options for {@linkcode startBalancer}. */
export interface StartBalancerOptions {
  /** Where the balancer logs. @default {a quiet logger without access log} */
  logger?: Logger;
}

/** A balancer started in this process, with its HTTP port; `await using` closes it. */
export type TestBalancer = Balancer & AsyncDisposable & { port: number };

/**
 * A balancer started in this process from YAML (`$PORT` placeholders are not needed:
 * listen on :0). `await using lb = await startBalancer(...)` closes it at the end of the scope.
 */
export async function startBalancer(
  yaml: string,
  options: StartBalancerOptions = {},
): Promise<TestBalancer> {
  const lb = await Balancer.start(parseConfig(yaml, "test.yaml"), {
    logger: options.logger ?? createLogger({ access: "off", quiet: true }),
  });
  return Object.assign(lb, {
    port: lb.addrs.http?.port ?? 0,
    [Symbol.asyncDispose]: () => lb.close(),
  });
}

/**
 * {@linkcode startBalancer} with a {@linkcode captureLogger}: the balancer's log lines
 * (`info …`, `warn …`, `error …`) are kept in `lines`.
 */
export async function startLoggedBalancer(
  yaml: string,
): Promise<TestBalancer & { lines: string[] }> {
  const logger = captureLogger();
  return Object.assign(await startBalancer(yaml, { logger }), { lines: logger.lines });
}

/** A logger that keeps each info, warn and error line, prefixed with its level, in `lines`. */
export function captureLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    access() {},
    close() {},
  };
}

/** A balancer with one route to a backend, and a client connected to it; `await using` closes all three. */
export interface Proxied extends AsyncDisposable {
  lb: TestBalancer;
  c: RawClient;
  /** Closes the client, the balancer and the backend, in that order. */
  close(): Promise<void>;
}

/** Options for {@linkcode proxyTo}. */
export interface ProxyToOptions {
  /** Top-level YAML lines besides `listen` and `routes`, e.g. `timeouts: { response: 300ms }`. @default {""} */
  config?: string;
}

/**
 * Starts a balancer on 127.0.0.1:0 whose one route, `app`, goes to `backend`, and
 * connects a client to it.
 */
export async function proxyTo(backend: RawServer, options: ProxyToOptions = {}): Promise<Proxied> {
  const lb = await startBalancer(`
listen: { http: 127.0.0.1:0 }
${options.config ?? ""}
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`);
  const c = await RawClient.connect(lb.port);
  const close = async () => {
    c.close();
    await lb.close();
    await backend.close();
  };
  return { lb, c, close, [Symbol.asyncDispose]: close };
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits until `check` holds, asking again every 25 ms for up to `ms`; throws
 * naming `what` (and the check's last error, if it threw) when it never does. A
 * check that throws counts as "not yet". A bound on a wait, never a timed assertion.
 */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 30_000,
): Promise<void> {
  let last: unknown;
  for (const end = Date.now() + ms;; await delay(25)) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const why = last === undefined ? "" : ` (last error: ${(last as Error)?.message ?? last})`;
      throw new Error(`timed out after ${ms} ms waiting for ${what}${why}`);
    }
  }
}

/**
 * A backend that keeps every request head it gets (`heads`, in order) and
 * answers each with `answer(head)`: by default 200 with the body `ok\n`.
 */
export function recordingBackend(
  answer: (head: string) => string = () => "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n",
): RawServer & { heads: string[] } {
  const heads: string[] = [];
  const server = rawServer((conn, read) =>
    forEachHead(read, (head) => {
      heads.push(head);
      return writeAllText(conn, answer(head));
    })
  );
  return Object.assign(server, { heads });
}
