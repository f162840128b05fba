/**
 * Test helper: gRPC from a second implementation, grpcio (the C-core gRPC that
 * Python, C++, Ruby, PHP and C# use; Debian `python3-grpcio`), as a server and
 * as a client, both run by `_grpcio.py` with /usr/bin/python3.
 *
 * The server speaks the same raw-bytes service as `_grpc.ts` (`t.Test`) plus a
 * few methods for timeouts, and the standard `grpc.health.v1.Health/Check`:
 *
 * | method | answers |
 * |---|---|
 * | `/t.Test/Unary` | `NAME: hello REQUEST` (`hello REQUEST` without a name) |
 * | `/t.Test/Fail` | NOT_FOUND, details `no such thing` |
 * | `/t.Test/Many` | a server stream; request `n=5000 size=0 every_ms=0`: `message 0` … |
 * | `/t.Test/Sum` | a client stream of decimal numbers; answers `SUM COUNT` |
 * | `/t.Test/Echo` | bidi: every message back as it arrives |
 * | `/t.Test/Hang` | never answers |
 * | `/t.Test/Slow` | request `MS`: sleeps MS ms, then answers `NAME: slept MS` |
 * | `/t.Test/Deadline` | the call's remaining deadline in seconds, or `none` |
 * | `/grpc.health.v1.Health/Check` | `08 01` SERVING / `08 02` NOT_SERVING, NOT_FOUND for an unknown service |
 *
 * Every method first waits the server's delay ({@linkcode GrpcioServerOptions.delayMs},
 * {@linkcode GrpcioServer.setDelay}). The server prints `started METHOD` for each
 * call and `cancelled METHOD` when a call is cancelled (client cancel, deadline,
 * or its connection lost): wait for them with {@linkcode GrpcioServer.waitFor}.
 *
 * ```ts ignore
 * await using backend = await startGrpcioServer({ name: "b1" });
 * const r = await runGrpcio({ port: backend.port, mode: "unary", calls: 1000, channels: 10, concurrency: 100 });
 * assertEquals(r.codes, { OK: 1000 });
 * await backend.setHealth("NOT_SERVING");
 * const h = await runGrpcio({ port: backend.port, mode: "health" });
 * assertEquals(h.first, "NOT_SERVING");
 * ```
 *
 * @module
 */

/** The Python script's path, for tests that spawn it themselves. */
export const GRPCIO_SCRIPT: string = new URL("./_grpcio.py", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

/** Options for {@linkcode startGrpcioServer}. */
export interface GrpcioServerOptions {
  /** Prefixes `Unary` and `Slow` answers with `NAME: `. @default {no prefix} */
  name?: string;
  /** The port on 127.0.0.1; 0 picks a free one. @default {0} */
  port?: number;
  /** Milliseconds every method waits before its first message. @default {0} */
  delayMs?: number;
  /** Serve TLS (h2 by ALPN) with this certificate and key (files). @default {h2c} */
  tls?: { cert: string; key: string };
  /** gRPC server channel arguments (`grpc.max_concurrent_streams`: 10, say). */
  options?: Record<string, string | number>;
}

/** A running grpcio server process; `await using` kills it. */
export interface GrpcioServer extends AsyncDisposable {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Every line it printed so far (`listening P`, `started M`, `cancelled M`, `ack …`). */
  lines(): string[];
  /**
   * Resolves once it printed `line` (exactly) `count` times in all.
   * @throws {Error} After 30 s, or when the process ended, with the lines so far.
   */
  waitFor(line: string, count?: number): Promise<void>;
  /** Sets the status `Health/Check` answers for `service` ("" = the server as a whole). */
  setHealth(status: "SERVING" | "NOT_SERVING", service?: string): Promise<void>;
  /** Sets the delay before every method's first message. */
  setDelay(ms: number): Promise<void>;
  /** Calls started so far, by method name (`Unary`, `Check`…). */
  stats(): Promise<Record<string, number>>;
  /** Kills it at once (SIGKILL: connections die without GOAWAY); idempotent. */
  kill(): Promise<void>;
}

/**
 * Starts a grpcio server and resolves once it listens.
 * @throws {Error} When it exits first (its stderr in the message).
 */
export async function startGrpcioServer(
  options: GrpcioServerOptions = {},
): Promise<GrpcioServer> {
  const args = [GRPCIO_SCRIPT, "server", "--port", String(options.port ?? 0)];
  if (options.name !== undefined) args.push("--name", options.name);
  if (options.delayMs) args.push("--delay-ms", String(options.delayMs));
  if (options.tls) args.push("--tls", options.tls.cert, options.tls.key);
  for (const [k, v] of Object.entries(options.options ?? {})) args.push("--option", `${k}=${v}`);
  const child = new Deno.Command(PYTHON, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const stdin = child.stdin.getWriter();
  const lines: string[] = [];
  let wake = () => {};
  let ended = false;
  const stderr = new Response(child.stderr).text();
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
      wake();
    }
  })().catch(() => {}).finally(() => {
    ended = true;
    wake();
  });
  const until = async (found: () => string | undefined, what: string): Promise<string> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const got = found();
      if (got !== undefined) return got;
      if (ended || Date.now() > deadline) {
        throw new Error(
          `grpcio server: no ${what}; it printed ${JSON.stringify(lines)}` +
            (ended ? `, stderr: ${await stderr}` : ""),
        );
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  };
  let killed: Promise<void> | undefined;
  const kill = () =>
    killed ??= (async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited already */ }
      await child.status;
      await stdin.close().catch(() => {});
      await reading;
      await stderr;
    })();
  let port: number;
  try {
    const listening = await until(() => lines.find((l) => l.startsWith("listening ")), "port");
    port = Number(listening.split(" ")[1]);
  } catch (e) {
    await kill();
    throw e;
  }
  const command = async (line: string) => {
    const before = lines.filter((l) => l === `ack ${line}`).length;
    await stdin.write(new TextEncoder().encode(line + "\n"));
    await until(
      () => lines.filter((l) => l === `ack ${line}`).length > before ? "" : undefined,
      `ack ${line}`,
    );
  };
  return {
    port,
    lines: () => [...lines],
    async waitFor(line, count = 1) {
      await until(
        () => lines.filter((l) => l === line).length >= count ? line : undefined,
        `"${line}" x${count}`,
      );
    },
    setHealth: (status, service = "") => command(`health ${status} ${service}`.trim()),
    setDelay: (ms) => command(`delay ${ms}`),
    async stats() {
      const n = lines.length;
      await command("stats");
      const line = lines.slice(n).find((l) => l.startsWith("stats "))!;
      return JSON.parse(line.slice("stats ".length));
    },
    kill,
    [Symbol.asyncDispose]: kill,
  };
}

/** What the client does; see {@linkcode GrpcioClientOptions}. */
export type GrpcioMode =
  | "unary"
  | "stream"
  | "sum"
  | "bidi"
  | "hang"
  | "slow"
  | "deadline"
  | "health";

/** Options for {@linkcode runGrpcio}. */
export interface GrpcioClientOptions {
  /** The port on 127.0.0.1 to call (or give {@linkcode target}). */
  port?: number;
  /** `host:port` to call. @default {`127.0.0.1:${port}`} */
  target?: string;
  /**
   * `unary` (`/t.Test/Unary`), `stream` (`Many`, checking the order), `sum` (a client
   * stream of 1…messages), `bidi` (`Echo`, `messages` round trips, each awaited),
   * `hang`, `slow` (request = ms), `deadline`, `health` (request = service name).
   */
  mode: GrpcioMode;
  /** Calls in all, shared by every channel's workers. @default {1} */
  calls?: number;
  /** Channels (each its own HTTP/2 connection). @default {1} */
  channels?: number;
  /** Calls in flight per channel. @default {1} */
  concurrency?: number;
  /** stream: messages asked for; sum: numbers sent; bidi: round trips. @default {100} */
  messages?: number;
  /** stream: bytes per message. @default {0} */
  size?: number;
  /** stream: milliseconds between the server's messages. @default {0} */
  everyMs?: number;
  /** The request message (health: the service). @default {the mode's} */
  request?: string;
  /** Call this method path instead of the mode's (same call shape). */
  method?: string;
  /** Deadline of each call in seconds. @default {none} */
  deadlineS?: number;
  /** Cancel each call this many ms after it starts. @default {never} */
  cancelAfterMs?: number;
  /** stream: cancel each call once it received this many messages. @default {never} */
  cancelAfterMessages?: number;
  /** Keepalive PING interval in ms (with calls or without). @default {off} */
  keepaliveMs?: number;
  /** bidi: the stream stays idle this many ms between two round trips. @default {0} */
  pauseMs?: number;
  /** TLS: trust this CA file and verify this name. @default {plaintext h2c} */
  tls?: { ca: string; authority?: string };
  /** More gRPC channel arguments. */
  options?: Record<string, string | number>;
}

/** The client's summary of a run. */
export interface GrpcioSummary {
  mode: GrpcioMode;
  /** Calls finished. */
  calls: number;
  /** Calls that ended OK. */
  ok: number;
  /** Calls by final status name (`OK`, `UNAVAILABLE`…; `WRONG_MESSAGE` for a bad answer). */
  codes: Record<string, number>;
  /** The first details text seen for each failing status. */
  details: Record<string, string>;
  /** Response messages received in all. */
  messages: number;
  /** Answers by server name (the `NAME` before `: `). */
  names: Record<string, number>;
  /** The first and last response messages (health: `SERVING` / `NOT_SERVING`). */
  first: string | null;
  last: string | null;
  /** Wall time of the run, for reports only (never assert on it). */
  seconds: number;
}

/** The command line (after /usr/bin/python3) of {@linkcode runGrpcio}. */
export function grpcioClientArgs(o: GrpcioClientOptions): string[] {
  const args = [GRPCIO_SCRIPT, "client", "--target", o.target ?? `127.0.0.1:${o.port}`];
  args.push("--mode", o.mode);
  const flag = (name: string, v: string | number | undefined) => {
    if (v !== undefined) args.push(`--${name}`, String(v));
  };
  flag("calls", o.calls);
  flag("channels", o.channels);
  flag("concurrency", o.concurrency);
  flag("messages", o.messages);
  flag("size", o.size);
  flag("every-ms", o.everyMs);
  flag("request", o.request);
  flag("method", o.method);
  flag("deadline", o.deadlineS);
  flag("cancel-after-ms", o.cancelAfterMs);
  flag("cancel-after-messages", o.cancelAfterMessages);
  flag("keepalive-ms", o.keepaliveMs);
  flag("pause-ms", o.pauseMs);
  flag("tls", o.tls?.ca);
  flag("authority", o.tls?.authority);
  for (const [k, v] of Object.entries(o.options ?? {})) args.push("--option", `${k}=${v}`);
  return args;
}

/**
 * Runs the grpcio client to its end and returns its summary.
 * @throws {Error} When the script fails (its stderr in the message).
 */
export async function runGrpcio(options: GrpcioClientOptions): Promise<GrpcioSummary> {
  const out = await new Deno.Command(PYTHON, {
    args: grpcioClientArgs(options),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout).trim();
  if (!out.success || !text) {
    throw new Error(`grpcio client failed (${out.code}): ${dec.decode(out.stderr)}`);
  }
  return JSON.parse(text.split("\n").pop()!) as GrpcioSummary;
}
