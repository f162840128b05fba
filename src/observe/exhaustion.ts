/**
 * Running out of file descriptors or local ports: telling it apart from a
 * peer's failure, and saying so without flooding the log.
 *
 * Such an error is this process's own: a backend must not be ejected for it
 * (every backend would be, one after the other), and an accept loop must not
 * spin on it (the pending connection stays queued, so `accept` fails again at
 * once).
 *
 * @module
 */

const HINTS: Readonly<Record<string, string>> = {
  EMFILE: "the open files limit is reached: raise it (ulimit -n, systemd LimitNOFILE=)",
  ENFILE: "the system-wide open files limit is reached (fs.file-max)",
  EADDRNOTAVAIL: "no local port is left for a new connection (net.ipv4.ip_local_port_range)",
  ENOBUFS: "the kernel is out of socket buffers",
  ENOMEM: "the kernel is out of memory for sockets",
};

/** How long an accept loop pauses after running out of descriptors (nginx: 500 ms). */
export const EXHAUSTED_PAUSE = 100;

/** The error codes that mean this process ran out of a resource. */
export const EXHAUSTION_CODES: readonly string[] = Object.freeze(Object.keys(HINTS));

// Linux's numbers for them, for errors that carry only "(os error N)" in their message
// (Deno.serve's listener errors have no `code`).
const OS_ERRORS: Readonly<Record<string, string>> = {
  "24": "EMFILE",
  "23": "ENFILE",
  "99": "EADDRNOTAVAIL",
  "105": "ENOBUFS",
  "12": "ENOMEM",
};

/** The error's code (`EMFILE`, ...), from `code` or else from "(os error N)" in its message. */
function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string") return code;
  const n = /\(os error (\d+)\)/.exec((e as Error | null)?.message ?? "")?.[1];
  return n === undefined ? undefined : OS_ERRORS[n];
}

/**
 * What to do about an error that means this process ran out of a resource.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { exhaustionHint } from "./exhaustion.ts";
 * const e = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
 * assert(exhaustionHint(e)?.includes("ulimit -n"));
 * assert(exhaustionHint(new Error("Http: Too many open files (os error 24)")) !== undefined);
 * assert(exhaustionHint(new Error("Connection refused")) === undefined);
 * ```
 *
 * @param e An error from an accept or a connect.
 * @returns A hint naming the resource and its knob, or `undefined` for any other error.
 */
export function exhaustionHint(e: unknown): string | undefined {
  const code = errorCode(e);
  return code !== undefined && Object.hasOwn(HINTS, code) ? HINTS[code] : undefined;
}

/**
 * Counts exhaustion errors by code and warns about them at most once per
 * interval: the first occurrence at once, later ones counted into the next
 * warning.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { ExhaustionReporter } from "./exhaustion.ts";
 * const lines: string[] = [];
 * const r = new ExhaustionReporter((m) => lines.push(m), 10_000);
 * const e = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
 * r.report("accept on 127.0.0.1:8080", e);
 * r.report("accept on 127.0.0.1:8080", e);
 * assert(lines.length === 1 && lines[0]!.includes("ulimit -n"));
 * assert(r.counts.get("EMFILE") === 2);
 * ```
 */
export class ExhaustionReporter {
  /** Occurrences so far, by error code (`EMFILE`, ...). */
  readonly counts: Map<string, number> = new Map();
  readonly #warn: (message: string) => void;
  readonly #interval: number;
  #last = -Infinity;
  #since = 0;

  /**
   * Creates a reporter.
   *
   * @param warn Writes one warning line.
   * @param interval Milliseconds between two warnings.
   */
  constructor(warn: (message: string) => void, interval = 10_000) {
    this.#warn = warn;
    this.#interval = interval;
  }

  /**
   * Counts one occurrence and warns if the last warning is old enough.
   *
   * @param where What failed, e.g. `accept on 127.0.0.1:8080` or `connect to 10.0.0.1:80`.
   * @param e The error (see {@linkcode exhaustionHint}).
   */
  report(where: string, e: unknown): void {
    const code = errorCode(e) ?? "other";
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
    this.#since++;
    const now = performance.now();
    if (now - this.#last < this.#interval) return;
    const more = this.#since > 1 ? ` (${this.#since - 1} more since the last warning)` : "";
    this.#warn(`${where} failed: ${(e as Error).message}: ${exhaustionHint(e) ?? "?"}${more}`);
    this.#last = now;
    this.#since = 0;
  }
}

/**
 * The open files limit of this process, where the OS tells it (Linux's
 * `/proc/self/limits`; Deno raises the soft limit to the hard one at start).
 * Deno lets a program read `/proc` only with `--allow-all`: with the flags unload
 * documents (`--allow-net --allow-read`) this is undefined, and
 * {@linkcode freeDescriptors} tells instead.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { openFilesLimit } from "./exhaustion.ts";
 * const n = openFilesLimit();
 * assert(n === undefined || n > 0);
 * ```
 *
 * @returns The soft limit, `Infinity` when unlimited, or `undefined` when unknown.
 */
export function openFilesLimit(): number | undefined {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\S+)/m.exec(limits);
    if (m === null) return undefined;
    return m[1] === "unlimited" ? Infinity : Number(m[1]);
  } catch {
    return undefined; // not Linux, or no read permission
  }
}

/** Below this open files limit the balancer warns at start. */
export const MIN_OPEN_FILES = 4096;

/**
 * How many more files this process can open, up to `want`: `path` is opened
 * until that many are open or the limit is hit, then every one is closed again.
 * Needs only read permission on `path` (where `/proc/self/limits` needs
 * `--allow-all`); `want` opens take ~70 ms at 4096, so it is for the start.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { freeDescriptors } from "./exhaustion.ts";
 * const n = freeDescriptors(new URL(import.meta.url).pathname, 64);
 * assert(n === undefined || (n > 0 && n <= 64));
 * ```
 *
 * @param path A file this process may read.
 * @param want How many to try. @default {MIN_OPEN_FILES}
 * @returns How many could be opened (`want` when there is room for all), or
 * undefined when opening failed for another reason than the limit.
 */
export function freeDescriptors(path: string, want = MIN_OPEN_FILES): number | undefined {
  const files: Deno.FsFile[] = [];
  try {
    while (files.length < want) files.push(Deno.openSync(path));
    return want;
  } catch (e) {
    const code = errorCode(e);
    return code === "EMFILE" || code === "ENFILE" ? files.length : undefined;
  } finally {
    for (const f of files) f.close();
  }
}

/**
 * A warning for a start where fewer than {@linkcode MIN_OPEN_FILES} more files
 * could be opened (see {@linkcode freeDescriptors}), or nothing.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { freeDescriptorsWarning } from "./exhaustion.ts";
 * assert(freeDescriptorsWarning(1000)?.includes("fewer than 500 clients"));
 * assert(freeDescriptorsWarning(4096) === undefined);
 * assert(freeDescriptorsWarning(undefined) === undefined);
 * ```
 *
 * @param free How many more files could be opened at start.
 * @returns The warning when `free` is below {@linkcode MIN_OPEN_FILES}.
 */
export function freeDescriptorsWarning(free: number | undefined): string | undefined {
  if (free === undefined || free >= MIN_OPEN_FILES) return undefined;
  return `the open files limit is low: only ${free} more could be opened at start, and a ` +
    `client connection and its backend connection take one each, so fewer than ` +
    `${
      Math.floor(free / 2)
    } clients can be served at once; raise it (ulimit -n, systemd LimitNOFILE=)`;
}

/**
 * A warning for a start with a low open files limit, or nothing.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { openFilesWarning } from "./exhaustion.ts";
 * assert(openFilesWarning(1024)?.includes("fewer than 512 clients"));
 * assert(openFilesWarning(65536) === undefined);
 * ```
 *
 * @param limit The limit (default: this process's, see {@linkcode openFilesLimit}).
 * @returns The warning when `limit` is below {@linkcode MIN_OPEN_FILES}.
 */
export function openFilesWarning(limit = openFilesLimit()): string | undefined {
  if (limit === undefined || limit >= MIN_OPEN_FILES) return undefined;
  return `the open files limit is ${limit}: a client connection and its backend connection take ` +
    `one each, so fewer than ${Math.floor(limit / 2)} clients can be served at once; ` +
    `raise it (ulimit -n, systemd LimitNOFILE=)`;
}
