/**
 * Test helper: an HTTP/1.1 keep-alive origin on raw sockets that keeps every
 * request head it sees and counts complete requests, for tests that put the
 * balancer in front of it.
 *
 * Paths: `/hash` reads the body (content-length or chunked) and answers
 * `FRAMING LENGTH SHA256`; `/bytes/N` sends N pattern bytes with
 * content-length, `/chunked/N` the same in chunked coding; `/hold` answers
 * only once {@linkcode Origin.release} is called (or never); anything else
 * answers `NAME PATH` with `x-backend: NAME`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { rawServer, writeAllText } from "./_http.ts";

const dec = new TextDecoder();

/** A running origin. */
export interface Origin extends AsyncDisposable {
  /** Its name (in `x-backend` and bodies). */
  readonly name: string;
  /** The port on 127.0.0.1. */
  readonly port: number;
  /** Request heads seen (the head's text up to the blank line). */
  readonly heads: string[];
  /** Requests read in full (head and body). */
  readonly complete: number;
  /** Resolves with the next request head this origin sees. */
  nextHead(): Promise<string>;
  /** Lets the held `/hold` responses go. */
  release(): void;
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

/** Block of the body pattern: byte i of a body is `i % 251`; this block is 251 × 256 long. */
export const PATTERN_BLOCK: Uint8Array = (() => {
  const b = new Uint8Array(251 * 256);
  for (let i = 0; i < b.length; i++) b[i] = i % 251;
  return b;
})();

/** SHA-256 (hex) of the first `n` bytes of the body pattern. */
export function patternSha256(n: number): string {
  const h = createHash("sha256");
  for (let left = n; left > 0; left -= PATTERN_BLOCK.length) {
    h.update(PATTERN_BLOCK.subarray(0, Math.min(left, PATTERN_BLOCK.length)));
  }
  return h.digest("hex");
}

/** A buffered reader over one connection. */
class Input {
  #buf = new Uint8Array(0);
  readonly #conn: Deno.Conn;
  readonly #chunk = new Uint8Array(64 * 1024);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #more(): Promise<boolean> {
    const n = await this.#conn.read(this.#chunk);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(this.#chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  async until(sep: string): Promise<string | null> {
    const first = sep.charCodeAt(0);
    let from = 0;
    for (;;) {
      for (let i = this.#buf.indexOf(first, from); i !== -1; i = this.#buf.indexOf(first, i + 1)) {
        let j = 1;
        while (j < sep.length && this.#buf[i + j] === sep.charCodeAt(j)) j++;
        if (j === sep.length) {
          const s = dec.decode(this.#buf.subarray(0, i));
          this.#buf = this.#buf.subarray(i + sep.length);
          return s;
        }
      }
      from = Math.max(0, this.#buf.length - sep.length);
      if (!(await this.#more())) return null;
    }
  }

  // Hands `n` bytes to `sink` as they come; false when the peer closed first.
  async take(n: number, sink: (b: Uint8Array) => void): Promise<boolean> {
    while (n > 0) {
      if (this.#buf.length === 0 && !(await this.#more())) return false;
      const k = Math.min(n, this.#buf.length);
      sink(this.#buf.subarray(0, k));
      this.#buf = this.#buf.subarray(k);
      n -= k;
    }
    return true;
  }
}

/**
 * Starts an origin named `name` on 127.0.0.1 (any free port).
 *
 * @example
 * ```ts ignore
 * await using b1 = startOrigin("b1");
 * ```
 */
export function startOrigin(name: string): Origin {
  const heads: string[] = [];
  const waiting: ((h: string) => void)[] = [];
  let complete = 0;
  let released: () => void = () => {};
  const gate = new Promise<void>((r) => released = r);

  async function serve(conn: Deno.Conn): Promise<void> {
    const input = new Input(conn);
    for (;;) {
      const head = await input.until("\r\n\r\n");
      if (head === null) return;
      heads.push(head);
      for (const w of waiting.splice(0)) w(head);
      const lower = head.toLowerCase();
      const path = head.split(" ")[1] ?? "";
      const cl = /\r\ncontent-length: *(\d+)/.exec(lower);
      const chunked = /\r\ntransfer-encoding: *chunked/.test(lower);
      const hash = createHash("sha256");
      let length = 0;
      const sink = (b: Uint8Array) => {
        length += b.length;
        hash.update(b);
      };
      if (chunked) {
        for (;;) {
          const line = await input.until("\r\n");
          if (line === null) return;
          const size = parseInt(line, 16);
          if (size === 0) {
            while ((await input.until("\r\n")) !== "") { /* trailers */ }
            break;
          }
          if (!(await input.take(size, sink))) return;
          if ((await input.until("\r\n")) !== "") return;
        }
      } else if (cl !== null && !(await input.take(Number(cl[1]), sink))) return;
      complete++;
      if (path === "/hash") {
        const body = `${chunked ? "chunked" : "length"} ${length} ${hash.digest("hex")}`;
        await writeAllText(
          conn,
          `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
      } else if (path.startsWith("/bytes/") || path.startsWith("/chunked/")) {
        const n = Number(path.split("/")[2]);
        const isChunked = path.startsWith("/chunked/");
        await writeAllText(
          conn,
          `HTTP/1.1 200 OK\r\n${
            isChunked ? "transfer-encoding: chunked" : `content-length: ${n}`
          }\r\n\r\n`,
        );
        for (let left = n; left > 0; left -= PATTERN_BLOCK.length) {
          const part = PATTERN_BLOCK.subarray(0, Math.min(left, PATTERN_BLOCK.length));
          if (isChunked) await writeAllText(conn, `${part.length.toString(16)}\r\n`);
          await writeAllText(conn, part);
          if (isChunked) await writeAllText(conn, "\r\n");
        }
        if (isChunked) await writeAllText(conn, "0\r\n\r\n");
      } else {
        if (path === "/hold") await gate;
        const body = `${name} ${path}\n`;
        await writeAllText(
          conn,
          `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-backend: ${name}\r\n\r\n${body}`,
        );
      }
    }
  }

  const server = rawServer((conn) => serve(conn));
  const close = () => {
    released();
    return server.close();
  };
  return {
    name,
    port: server.port,
    heads,
    get complete() {
      return complete;
    },
    nextHead: () => new Promise((r) => waiting.push(r)),
    release: () => released(),
    close,
    [Symbol.asyncDispose]: close,
  };
}
