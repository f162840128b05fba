/**
 * A small Redis client for the shared rate limit store: RESP 2 spoken over one
 * persistent `Deno.connect` connection (only `--allow-net` needed, no npm
 * client), commands pipelined and their replies matched in order. Every call
 * has its own timeout and settles by then whatever Redis does, so a slow or
 * gone Redis never holds a request longer; nothing here blocks the event loop.
 * After a failed connect, calls fail at once for a second before the next try.
 *
 * @module
 */

/** A reply Redis sent: a string, an integer, null, an error, or a list of them. */
export type RespValue = string | number | null | RespError | RespValue[];

/** An error reply (`-ERR ...`, `-NOSCRIPT ...`). */
export class RespError extends Error {}

/** Why a call failed without a reply: no connection, a broken one, or the timeout. */
export class StoreError extends Error {}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();
// After a failed connect (or a lost connection), calls fail at once for this long.
const RETRY_AFTER_MS = 1000;
// Calls waiting for a reply at most: past it, a stalled Redis makes calls fail at once.
const MAX_PENDING = 10_000;

/**
 * One command as RESP: an array of bulk strings.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeCommand } from "./_redis.ts";
 * assertEquals(new TextDecoder().decode(encodeCommand(["GET", "k"])), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
 * ```
 */
export function encodeCommand(args: readonly (string | number)[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  const parts: Uint8Array[] = [];
  for (const a of args) {
    const bytes = ENCODER.encode(String(a));
    parts.push(ENCODER.encode(`${text}$${bytes.length}\r\n`), bytes);
    text = "\r\n";
  }
  parts.push(ENCODER.encode(text));
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/**
 * Reads whole RESP replies out of bytes as they come.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { RespParser } from "./_redis.ts";
 * const p = new RespParser();
 * p.push(new TextEncoder().encode("*3\r\n:1\r\n$3\r\n0.5\r\n"));
 * assertEquals(p.next(), undefined); // not whole yet
 * p.push(new TextEncoder().encode(":0\r\n+OK\r\n"));
 * assertEquals(p.next(), [1, "0.5", 0]);
 * assertEquals(p.next(), "OK");
 * ```
 */
export class RespParser {
  #buf = new Uint8Array(0);
  #at = 0;

  /** Adds received bytes. */
  push(bytes: Uint8Array): void {
    const rest = this.#buf.subarray(this.#at);
    const buf = new Uint8Array(rest.length + bytes.length);
    buf.set(rest);
    buf.set(bytes, rest.length);
    this.#buf = buf;
    this.#at = 0;
  }

  /** The next whole reply, or undefined until its bytes are all here. */
  next(): RespValue | undefined {
    const r = this.#value(this.#at);
    if (r === undefined) return undefined;
    this.#at = r[1];
    return r[0];
  }

  #line(at: number): [string, number] | undefined {
    const buf = this.#buf;
    for (let i = at; i + 1 < buf.length; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10) return [DECODER.decode(buf.subarray(at, i)), i + 2];
    }
    return undefined;
  }

  #value(at: number): [RespValue, number] | undefined {
    if (at >= this.#buf.length) return undefined;
    const type = this.#buf[at]!;
    const l = this.#line(at + 1);
    if (l === undefined) return undefined;
    const [text, next] = l;
    switch (type) {
      case 43: // +
        return [text, next];
      case 45: // -
        return [new RespError(text), next];
      case 58: // :
        return [Number(text), next];
      case 36: { // $
        const n = Number(text);
        if (n < 0) return [null, next];
        if (next + n + 2 > this.#buf.length) return undefined;
        return [DECODER.decode(this.#buf.subarray(next, next + n)), next + n + 2];
      }
      case 42: { // *
        const n = Number(text);
        if (n < 0) return [null, next];
        const items: RespValue[] = [];
        let p = next;
        for (let i = 0; i < n; i++) {
          const v = this.#value(p);
          if (v === undefined) return undefined;
          items.push(v[0]);
          p = v[1];
        }
        return [items, p];
      }
      default:
        throw new StoreError(`not a RESP reply (type byte ${type})`);
    }
  }
}

interface Pending {
  resolve(v: RespValue): void;
  reject(e: Error): void;
  settled: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Told when the store goes from working to failing and back (for one log line each). */
export interface StoreEvents {
  /** The first failure after a working time (or at the start). */
  down(reason: string): void;
  /** The first reply after a failure. */
  up(): void;
}

/**
 * One persistent, pipelined connection to a Redis server, opened on first use
 * and again after a failure.
 *
 * @example
 * ```ts ignore
 * const redis = new RedisConnection("127.0.0.1", 6379, 100);
 * await redis.call(["PING"]); // "PONG"
 * redis.close();
 * ```
 */
export class RedisConnection {
  /** `host:port`, for messages. */
  readonly address: string;
  readonly #host: string;
  readonly #port: number;
  readonly #timeout: number;
  readonly #events: StoreEvents | undefined;
  #conn: Deno.Conn | undefined;
  #connecting: Promise<Deno.Conn> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #pending: Pending[] = [];
  #downUntil = 0;
  #down = false;
  #closed = false;
  /** Run once on every new connection before the calls (pipelined in front of them). */
  onConnect: (() => readonly (string | number)[]) | undefined;

  /**
   * @param host Redis host.
   * @param port Redis port.
   * @param timeout How long a call waits for its reply, in ms.
   * @param events Told when the store fails and when it works again.
   */
  constructor(host: string, port: number, timeout: number, events?: StoreEvents) {
    this.#host = host;
    this.#port = port;
    this.#timeout = timeout;
    this.#events = events;
    this.address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /**
   * Sends `args` as one command and resolves to its reply (an error reply
   * included, as a {@linkcode RespError}); rejects with a
   * {@linkcode StoreError} when there is no reply within the timeout.
   */
  call(args: readonly (string | number)[]): Promise<RespValue> {
    if (this.#closed) return Promise.reject(new StoreError("the store was closed"));
    if (this.#pending.length >= MAX_PENDING) {
      return this.#fail(`${MAX_PENDING} calls are waiting for a reply`);
    }
    if (this.#conn === undefined && performance.now() < this.#downUntil) {
      return Promise.reject(new StoreError(`redis ${this.address} is down`));
    }
    const bytes = encodeCommand(args);
    return new Promise<RespValue>((resolve, reject) => {
      const p: Pending = { resolve, reject, settled: false, timer: undefined };
      p.timer = setTimeout(() => {
        if (p.settled) return;
        p.settled = true;
        const e = new StoreError(`no reply from redis ${this.address} within ${this.#timeout} ms`);
        this.#report(e.message);
        reject(e);
      }, this.#timeout);
      const conn = this.#conn;
      if (conn !== undefined) {
        this.#pending.push(p);
        this.#write(conn, bytes);
        return;
      }
      this.#open().then((c) => {
        this.#pending.push(p);
        this.#write(c, bytes);
      }, (e: Error) => this.#settle(p, undefined, e));
    });
  }

  /**
   * Takes no more calls and closes the connection once the calls waiting have
   * their replies (or their timeouts: a reload never fails a decision under way).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending.every((p) => p.settled)) this.#drop(new StoreError("the store was closed"));
    else setTimeout(() => this.#drop(new StoreError("the store was closed")), this.#timeout);
  }

  #open(): Promise<Deno.Conn> {
    return this.#connecting ??= (async () => {
      try {
        const conn = await Deno.connect({ hostname: this.#host, port: this.#port });
        if (this.#closed) {
          conn.close();
          throw new StoreError("the store was closed");
        }
        conn.setNoDelay(true);
        this.#conn = conn;
        this.#writing = Promise.resolve();
        const first = this.onConnect?.();
        if (first !== undefined) {
          // its reply is matched (and dropped) in order, like any call's
          this.#pending.push({ resolve() {}, reject() {}, settled: true, timer: undefined });
          this.#write(conn, encodeCommand(first));
        }
        this.#read(conn);
        return conn;
      } catch (e) {
        const message = e instanceof StoreError
          ? e.message
          : `cannot connect to redis ${this.address}: ${(e as Error).message}`;
        this.#downUntil = performance.now() + RETRY_AFTER_MS;
        this.#report(message);
        throw new StoreError(message);
      } finally {
        this.#connecting = undefined;
      }
    })();
  }

  #write(conn: Deno.Conn, bytes: Uint8Array): void {
    this.#writing = this.#writing.then(async () => {
      if (this.#conn !== conn) return;
      let n = 0;
      while (n < bytes.length) n += await conn.write(bytes.subarray(n));
    }).catch((e) => {
      if (this.#conn === conn) this.#lost(`writing to redis ${this.address}: ${e.message}`);
    });
  }

  async #read(conn: Deno.Conn): Promise<void> {
    const parser = new RespParser();
    const buf = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) throw new Error("connection closed");
        parser.push(buf.subarray(0, n));
        for (let v = parser.next(); v !== undefined; v = parser.next()) {
          const p = this.#pending.shift();
          if (p !== undefined) this.#settle(p, v);
        }
        if (this.#closed && this.#pending.length === 0) {
          this.#drop(new StoreError("the store was closed"));
          return;
        }
      }
    } catch (e) {
      if (this.#conn === conn) this.#lost(`redis ${this.address}: ${(e as Error).message}`);
    }
  }

  #lost(reason: string): void {
    this.#downUntil = performance.now() + RETRY_AFTER_MS;
    this.#report(reason);
    this.#drop(new StoreError(reason));
  }

  #drop(e: Error): void {
    const conn = this.#conn;
    this.#conn = undefined;
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) this.#settle(p, undefined, e);
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }

  #settle(p: Pending, v: RespValue | undefined, e?: Error): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    if (e !== undefined) p.reject(e);
    else {
      if (this.#down) {
        this.#down = false;
        this.#events?.up();
      }
      p.resolve(v!);
    }
  }

  #fail(reason: string): Promise<never> {
    this.#report(reason);
    return Promise.reject(new StoreError(reason));
  }

  #report(reason: string): void {
    if (this.#down || this.#closed) return;
    this.#down = true;
    this.#events?.down(reason);
  }
}
