/**
 * Logging: human-readable event lines on stderr, and an access log of one JSON
 * line per request (stdout, a file, or off).
 *
 * @module
 */
import type { ExchangeRecord } from "./context.ts";

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
  /** Flushes and closes an access log file. */
  close(): void;
}

const ENCODER = new TextEncoder();

/**
 * Builds a logger. `access` is `"off"`, `"stdout"`, `"stderr"` or a file path
 * (appended to; needs `--allow-write`).
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ access: "off", quiet: true });
 * log.info("started");
 * log.close();
 * ```
 */
export function createLogger(options: { access: string; quiet?: boolean }): Logger {
  const quiet = options.quiet ?? false;
  let file: Deno.FsFile | undefined;
  let write: ((line: string) => void) | undefined;
  if (options.access === "stdout") write = (l) => Deno.stdout.writeSync(ENCODER.encode(l));
  else if (options.access === "stderr") write = (l) => Deno.stderr.writeSync(ENCODER.encode(l));
  else if (options.access !== "off") {
    file = Deno.openSync(options.access, { append: true, create: true });
    const f = file;
    write = (l) => f.writeSync(ENCODER.encode(l));
  }
  const event = (level: string, message: string) => {
    if (!quiet) {
      Deno.stderr.writeSync(ENCODER.encode(`${new Date().toISOString()} ${level} ${message}\n`));
    }
  };
  return {
    info: (m) => event("info ", m),
    warn: (m) => event("warn ", m),
    error: (m) => event("error", m),
    access(r) {
      if (write === undefined) return;
      write(
        JSON.stringify({
          time: new Date(r.time).toISOString(),
          client: r.client,
          method: r.method,
          host: r.host,
          path: r.path,
          status: r.status,
          bytes_in: r.bytesIn,
          bytes_out: r.bytesOut,
          duration_ms: Math.round(r.duration * 1000) / 1000,
          route: r.route,
          backend: r.backend,
          ...(r.error ? { error: r.error } : {}),
        }) + "\n",
      );
    },
    close() {
      file?.close();
      file = undefined;
    },
  };
}
