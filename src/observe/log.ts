/**
 * Logging: human-readable event lines on stderr, and an access log of one JSON
 * line per request (stdout, a file, or off).
 *
 * Access log fields: `time` (ISO 8601, when the request head was complete), `client`
 * (IP), `method`, `host`, `path` (the request target as sent, query included),
 * `status`, `bytes_in` (request body), `bytes_out` (response head and body),
 * `duration_ms`, `route` ("" when no route matched), `backend` (id, "" when none was
 * used), and `error` on responses the balancer made itself (404, 502, 503...).
 *
 * A connection of a `tcp:` route gets one line when it closes, in the same log:
 * `time` (accepted), `client`, `proto` (`tcp`), `route`, `backend`, `bytes_in` (from
 * the client), `bytes_out` (to the client), `duration_ms`, `end` (how it ended: see
 * `ConnectionEnd`) and `error` when something failed.
 *
 * Access lines are written in batches, like Envoy's access log (flushed every
 * second) or nginx's `access_log ... buffer=`: at {@linkcode ACCESS_BATCH_BYTES},
 * {@linkcode ACCESS_FLUSH_MS} after the first line of a batch, and on close. One
 * write per request would cost a system call per request.
 *
 * @module
 */
import type { ExchangeRecord } from "./exchange_record.ts";
import type { ConnectionRecord } from "./connection_record.ts";

/** Where log lines go. */
export interface Logger {
  /** A notable event (started, reloaded, backend back). */
  info(message: string): void;
  /** Something degraded (DNS stale, backend ejected). */
  warn(message: string): void;
  /** Something failed. */
  error(message: string): void;
  /** One finished request. */
  access(record: ExchangeRecord): void;
  /** One finished connection of a `tcp:` route (absent: not logged). */
  connection?(record: ConnectionRecord): void;
  /** Writes the access lines not yet written, and closes an access log file. */
  close(): void;
}

const ENCODER = new TextEncoder();

/** Access log characters gathered before a write (bytes, for lines that are ASCII). */
export const ACCESS_BATCH_BYTES = 64 * 1024;
/** The longest an access log line waits to be written, in ms. */
export const ACCESS_FLUSH_MS = 100;

/**
 * Builds a logger. `access` is `"off"`, `"stdout"`, `"stderr"` or a file path
 * (appended to; needs `--allow-write`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ access: "off", quiet: true });
 * log.info("started"); // quiet: nothing printed
 * assertEquals(Object.keys(log).sort(), ["access", "close", "connection", "error", "info", "warn"]);
 * log.close();
 * ```
 */
export function createLogger(
  options: { access: string; quiet?: boolean; worker?: number },
): Logger {
  const quiet = options.quiet ?? false;
  const tag = options.worker === undefined ? "" : `[worker ${options.worker}] `;
  let file: Deno.FsFile | undefined;
  let sink: Sink | undefined;
  if (options.access === "stdout") sink = Deno.stdout;
  else if (options.access === "stderr") sink = Deno.stderr;
  else if (options.access !== "off") {
    file = Deno.openSync(options.access, { append: true, create: true });
    sink = file;
  }
  const event = (level: string, message: string) => {
    if (quiet) return;
    try {
      writeAll(
        Deno.stderr,
        ENCODER.encode(`${new Date().toISOString()} ${level} ${tag}${message}\n`),
      );
    } catch { /* stderr is gone: nowhere left to say it */ }
  };
  // A failing access log (disk full, closed pipe) must not fail requests: the first
  // failure is reported, the next ones are dropped silently until a write works again.
  let failing = false;
  const write = (line: string) => {
    if (sink === undefined) return;
    try {
      writeAll(sink, ENCODER.encode(line));
      failing = false;
    } catch (e) {
      if (!failing) event("error", `access log ${options.access}: ${(e as Error).message}`);
      failing = true;
    }
  };
  let batch: string[] = [];
  const add = (line: string) => {
    batch.push(line);
    batchBytes += line.length;
    if (batchBytes >= ACCESS_BATCH_BYTES) flush();
    else if (timer === undefined) {
      const t = setTimeout(flush, ACCESS_FLUSH_MS);
      Deno.unrefTimer(t); // a batch never keeps the process alive; close() writes it
      timer = t;
    }
  };
  let batchBytes = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return;
    const text = batch.join("");
    batch = [];
    batchBytes = 0;
    write(text);
  };
  return {
    info: (m) => event("info ", m),
    warn: (m) => event("warn ", m),
    error: (m) => event("error", m),
    access(r) {
      if (sink === undefined) return;
      add(accessLine(r, options.worker));
    },
    connection(r) {
      if (sink === undefined) return;
      add(connectionLine(r, options.worker));
    },
    close() {
      flush();
      sink = undefined;
      file?.close();
      file = undefined;
    },
  };
}

const q = JSON.stringify;
let lastTime = NaN;
let lastIso = "";

/**
 * One access log line: the same JSON as `JSON.stringify` of the fields would give, built
 * without the intermediate object (the time string is reused within a millisecond).
 */
function accessLine(r: ExchangeRecord, worker: number | undefined): string {
  if (r.time !== lastTime) {
    lastTime = r.time;
    lastIso = new Date(r.time).toISOString();
  }
  let line =
    `{"time":"${lastIso}","client":${q(r.client)},"proto":${q(r.proto)},"method":${q(r.method)},` +
    `"host":${q(r.host)},"path":${q(r.path)},"status":${r.status},"bytes_in":${r.bytesIn},` +
    `"bytes_out":${r.bytesOut},"duration_ms":${Math.round(r.duration * 1000) / 1000},` +
    `"route":${q(r.route)},"backend":${q(r.backend)}`;
  if (r.error) line += `,"error":${q(r.error)}`;
  if (r.policy !== undefined) line += `,"policy":${q(r.policy)}`;
  if (r.target !== undefined) line += `,"upstream_target":${q(r.target)}`;
  if (r.encoding !== undefined) line += `,"encoding":${q(r.encoding)}`;
  if (r.via !== undefined) line += `,"via":${q(r.via)}`;
  if (worker !== undefined) line += `,"worker":${worker}`;
  return line + "}\n";
}

/**
 * One access log line for a TCP connection.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { connectionLine } from "./log.ts";
 * const line = connectionLine({
 *   time: 0, client: "127.0.0.5", route: "pg", backend: "127.0.0.1:5432",
 *   bytesIn: 12, bytesOut: 340, duration: 1.5, end: "closed",
 * });
 * assertEquals(JSON.parse(line), {
 *   time: "1970-01-01T00:00:00.000Z", client: "127.0.0.5", proto: "tcp", route: "pg",
 *   backend: "127.0.0.1:5432", bytes_in: 12, bytes_out: 340, duration_ms: 1.5, end: "closed",
 * });
 * ```
 */
export function connectionLine(r: ConnectionRecord, worker?: number): string {
  let line = `{"time":"${new Date(r.time).toISOString()}","client":${q(r.client)},"proto":"tcp",` +
    `"route":${q(r.route)},"backend":${q(r.backend)},"bytes_in":${r.bytesIn},` +
    `"bytes_out":${r.bytesOut},"duration_ms":${Math.round(r.duration * 1000) / 1000},` +
    `"end":${q(r.end)}`;
  if (r.error !== undefined) line += `,"error":${q(r.error)}`;
  if (worker !== undefined) line += `,"worker":${worker}`;
  return line + "}\n";
}

interface Sink {
  writeSync(p: Uint8Array): number;
}

// writeSync may write less than asked (a pipe that is nearly full).
function writeAll(sink: Sink, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += sink.writeSync(bytes.subarray(off));
}
