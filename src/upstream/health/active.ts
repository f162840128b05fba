/**
 * Active health checks: every `interval`, one probe per backend over a fresh
 * connection (TLS for a route with `tls: true`), bounded by `timeout`, in the
 * backend's protocol: `GET <path>` in HTTP/1.1, or in HTTP/2 for a backend spoken to
 * in HTTP/2 (`h2_probe.ts`), or the gRPC health check. A 2xx or 3xx answer (gRPC:
 * `SERVING`) passes; anything else (refused, reset, timed out, another status,
 * garbage) fails. `fall` consecutive failures take a backend out of rotation, `rise`
 * consecutive passes bring it back — also after a passive ejection (see
 * `passive.ts`), which restarts the count of passes.
 *
 * @module
 */
import type { HandshakeStalls } from "../../observe/tls_stalls.ts";
import { type Backend, backendKey, byKey } from "../backend.ts";
import { markDown, markUp } from "../backend_state.ts";
import { connectBackend } from "../connect.ts";
import { sleep } from "../../_async.ts";
import { BufReader, writeAll } from "../../http1/io.ts";
import { type HeadLimits, HttpError, readHead } from "../../http1/head.ts";
import { parseResponse, ResponseHead } from "../../http1/parse.ts";
import type { ProbeSpec } from "./checks.ts";
import { probeH2 } from "./h2_probe.ts";
import { probeTcp } from "./tcp_probe.ts";
import { connectFailed, errorText, fail, hostHeader, type ProbeResult } from "./_probe_result.ts";

export type { ProbeResult } from "./_probe_result.ts";

/** Options for {@linkcode HealthChecker}. */
export interface HealthCheckerOptions {
  /** Path probed, e.g. `/healthz` (origin form: starts with `/`); or give `probe`. */
  path?: string;
  /** What to probe (a path, or the gRPC health check); `path` is short for `{ kind: "path", path }`. */
  probe?: ProbeSpec;
  /** Time between the end of one round of probes and the start of the next, in ms. @default {5000} */
  interval: number;
  /** A probe (connect, request, response head) gives up after this many ms. @default {2000} */
  timeout: number;
  /** Consecutive failed probes that take a backend out of rotation. @default {3} */
  fall?: number;
  /** Consecutive passed probes that bring an unhealthy backend back. @default {2} */
  rise?: number;
  /** The backends to probe, asked again before every round (discovery may change them). */
  backends: () => Iterable<Backend>;
  /** Stops the checker: no new round, probes in progress are abandoned. */
  signal: AbortSignal;
  /** Told when the checker changes a backend's state. */
  onChange?: (backend: Backend, healthy: boolean, reason: string) => void;
  /**
   * Told when a probe could not even start because this process is out of
   * descriptors or ports: such a probe counts neither way.
   */
  onExhausted?: (where: string, e: unknown) => void;
  /** Takes TLS handshakes given up before they finished (see `upstreamHandshake`). */
  stalls?: HandshakeStalls | undefined;
}

/** The last probe of a backend: passed or not, why, and when (epoch ms). */
export interface LastProbe {
  /** True when it passed. */
  ok: boolean;
  /** What it answered, or why it failed. */
  reason: string;
  /** When it ended, epoch ms. */
  time: number;
}

interface State {
  fails: number;
  passes: number;
  /** `backend.healthy` as this checker left it: a change seen later came from elsewhere. */
  seen: boolean;
}

// A probe's answer is read into a small buffer, grown up to the default limits.max_head.
const PROBE_READ_BUFFER = 1024;
const PROBE_HEAD_LIMITS: HeadLimits = { maxHead: 16_384 };
const DEFAULT_FALL = 3;
const DEFAULT_RISE = 2;

/**
 * Probes every backend on one timer.
 *
 * @example
 * ```ts ignore
 * const ac = new AbortController();
 * const checker = new HealthChecker({
 *   path: "/healthz", interval: 5_000, timeout: 2_000,
 *   backends: () => [...routes.backends().values()].flat(),
 *   signal: ac.signal,
 *   onChange: (b, up, why) => console.log(`backend ${b.id} ${up ? "up" : `down: ${why}`}`),
 * });
 * // ...
 * ac.abort();
 * await checker.closed;
 * ```
 */
export class HealthChecker {
  /** Settles once the signal aborted and the round in progress (if any) ended. */
  readonly closed: Promise<void>;
  /** Rounds of probes completed. */
  rounds = 0;
  readonly #options: HealthCheckerOptions;
  readonly #states = new Map<Backend, State>();
  readonly #last = new Map<string, LastProbe>(); // by backendKey: one probe per key
  readonly #fall: number;
  readonly #rise: number;
  readonly #probe: ProbeSpec;
  #round: Promise<void> | undefined;

  /**
   * Starts probing at once, then every `interval` after each round ends.
   *
   * @throws {TypeError} when neither `path` nor `probe` is given.
   * @throws {RangeError} when the path is not an origin-form path, or a number is out of range.
   */
  constructor(options: HealthCheckerOptions) {
    const probe = options.probe ??
      (options.path !== undefined ? { kind: "path", path: options.path } : undefined);
    if (probe === undefined) throw new TypeError("Health check needs a path or a probe");
    if (probe.kind === "path" && !isProbePath(probe.path)) {
      throw new RangeError(`Health check path must start with "/": received "${probe.path}"`);
    }
    this.#probe = probe;
    if (!(options.interval > 0) || !(options.timeout > 0)) {
      throw new RangeError(
        `Health check interval and timeout must be positive: received ${options.interval}, ${options.timeout}`,
      );
    }
    this.#options = options;
    this.#fall = Math.max(1, options.fall ?? DEFAULT_FALL);
    this.#rise = Math.max(1, options.rise ?? DEFAULT_RISE);
    this.closed = this.#run();
  }

  /** The outcome of the last probe of `backend` (or of a copy of its record), if it was probed. */
  lastProbe(backend: Backend): LastProbe | undefined {
    return this.#last.get(backendKey(backend));
  }

  /** Runs one round of probes now, unless one is in progress (then waits for it). */
  check(): Promise<void> {
    if (this.#round === undefined) {
      this.#round = this.#runRound().finally(() => this.#round = undefined);
    }
    return this.#round;
  }

  // A round at once, then one `interval` after each round ends, until the signal aborts
  // (a round in progress then ends first).
  async #run(): Promise<void> {
    const { signal, interval } = this.#options;
    while (!signal.aborted) {
      await this.check();
      await sleep(interval, signal);
    }
  }

  async #runRound(): Promise<void> {
    const { timeout, signal } = this.#options;
    const spec = this.#probe;
    // One probe per address, TLS setting and protocol, even when several routes with
    // these checks (or records with different weights) share it; its result counts for
    // each of them. Routes that check an address differently have checkers of their own.
    const groups = byKey(this.#options.backends());
    const live = new Set<Backend>();
    for (const group of groups.values()) for (const b of group) live.add(b);
    for (const b of this.#states.keys()) if (!live.has(b)) this.#states.delete(b);
    for (const key of this.#last.keys()) if (!groups.has(key)) this.#last.delete(key);
    await Promise.all([...groups.values()].map(async (group) => {
      const result = await probeBackend(group[0]!, {
        probe: spec,
        timeout,
        signal,
        stalls: this.#options.stalls,
      });
      if (result.local !== undefined) {
        this.#options.onExhausted?.(`health check of ${group[0]!.id}`, result.local);
      } else if (!signal.aborted) {
        this.#last.set(backendKey(group[0]!), {
          ok: result.ok,
          reason: result.reason,
          time: Date.now(),
        });
        for (const b of group) this.#record(b, result);
      }
    }));
    this.rounds++;
  }

  #record(b: Backend, result: ProbeResult): void {
    let s = this.#states.get(b);
    if (s === undefined) {
      s = { fails: 0, passes: 0, seen: b.healthy };
      this.#states.set(b, s);
    }
    if (s.seen && !b.healthy) s.passes = 0; // ejected elsewhere (passive): prove it again
    if (result.ok) {
      s.fails = 0;
      s.passes++;
      if (s.passes >= this.#rise && markUp(b)) {
        this.#options.onChange?.(b, true, `${s.passes} consecutive checks passed`);
      }
    } else {
      s.passes = 0;
      s.fails++;
      if (s.fails >= this.#fall && markDown(b)) {
        this.#options.onChange?.(b, false, result.reason);
      }
    }
    s.seen = b.healthy;
  }
}

// origin-form request target: "/" then visible ASCII (no space, CR or LF to inject)
const PATH_REGEXP = /^\/[\x21-\x7e]*$/;

/**
 * Whether `path` can be probed: an origin-form path of visible ASCII, so nothing
 * can be injected into the probe's request line.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { isProbePath } from "./active.ts";
 * assert(isProbePath("/healthz?full=1") && !isProbePath("healthz"));
 * assert(!isProbePath("/a b"));
 * ```
 */
export function isProbePath(path: string): boolean {
  return PATH_REGEXP.test(path);
}
const ENCODER = new TextEncoder();

/**
 * Probes `backend` with `probe` in the backend's protocol: HTTP/1.1 ({@linkcode probe}),
 * or HTTP/2 for a backend spoken to in HTTP/2 (the gRPC check always is); the `tcp`
 * check only connects.
 *
 * @example
 * ```ts ignore
 * const r = await probeBackend(backend, { probe: { kind: "grpc", service: "" }, timeout: 2_000 });
 * ```
 * @returns the outcome; never throws.
 */
export function probeBackend(
  backend: Backend,
  options: {
    probe: ProbeSpec;
    timeout: number;
    signal?: AbortSignal | undefined;
    stalls?: HandshakeStalls | undefined;
  },
): Promise<ProbeResult> {
  const { probe: spec, timeout, signal, stalls } = options;
  const o = { timeout, stalls, ...(signal !== undefined ? { signal } : {}) };
  if (spec.kind === "tcp") return probeTcp(backend, o);
  if (backend.h2 || spec.kind === "grpc") return probeH2(backend, { probe: spec, ...o });
  return probe(backend, { path: spec.path, ...o });
}
const DECODER = new TextDecoder();

/**
 * Sends one `GET <path> HTTP/1.1` with `Connection: close` to `backend` over a new
 * connection (TLS when `backend.tls` is set, connected as the pool connects) and
 * reads the response head, parsed as the proxy parses one.
 *
 * @example
 * ```ts ignore
 * const r = await probe(backend, { path: "/healthz", timeout: 2_000 });
 * if (!r.ok) console.log(r.reason);
 * ```
 * @returns the outcome; never throws.
 */
export async function probe(
  backend: Backend,
  options: {
    path: string;
    timeout: number;
    signal?: AbortSignal;
    stalls?: HandshakeStalls | undefined;
  },
): Promise<ProbeResult> {
  const { path, timeout, signal } = options;
  const expired = AbortSignal.timeout(timeout);
  const stop = signal ? AbortSignal.any([signal, expired]) : expired;
  let conn: Deno.Conn | undefined;
  const close = () => {
    try {
      conn?.close();
    } catch { /* closed */ }
  };
  stop.addEventListener("abort", close, { once: true });
  const why = (e: unknown) => expired.aborted ? `timed out after ${timeout}ms` : errorText(e);
  try {
    try {
      conn = (await connectBackend(backend, {
        connectTimeout: timeout,
        signal: stop,
        stalls: options.stalls,
      })).conn;
    } catch (e) {
      return connectFailed(e, why);
    }
    if (stop.aborted) return fail(why(stop.reason));
    const request = `GET ${path} HTTP/1.1\r\nHost: ${hostHeader(backend)}\r\n` +
      "User-Agent: unload-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    try {
      await writeAll(conn, ENCODER.encode(request));
    } catch (e) {
      return fail(`write: ${why(e)}`);
    }
    const reader = new BufReader(conn, PROBE_READ_BUFFER);
    let status: number;
    try {
      const end = await readHead(reader, PROBE_HEAD_LIMITS, true);
      if (end === -1) return fail(expired.aborted ? why(null) : "closed before a status line");
      status = parseResponse(new ResponseHead(), reader.buf, reader.start, end).status;
    } catch (e) {
      if (!(e instanceof HttpError) || stop.aborted) return fail(`read: ${why(e)}`);
      return fail(`malformed response: ${e.message}: ${firstLine(reader)}`);
    }
    const ok = status >= 200 && status < 400;
    return { ok, status, reason: `GET ${path} answered ${status}` };
  } finally {
    stop.removeEventListener("abort", close);
    close();
  }
}

// The start of a response's first line, quoted, for a failure's reason.
function firstLine(reader: BufReader): string {
  const bytes = reader.buf.subarray(reader.start, reader.end);
  const eol = bytes.indexOf(10);
  const line = DECODER.decode(bytes.subarray(0, eol === -1 ? bytes.length : eol));
  return JSON.stringify(line.replace(/\r$/, "").slice(0, 64));
}
