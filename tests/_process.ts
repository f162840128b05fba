/**
 * Test helpers that run `main.ts` as a real process, with only the permission
 * flags README documents.
 *
 * @module
 */
import { delay, freePort } from "./_http.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
// README's run command (`deno task serve`): the V8 flag keeps idle memory low.
const SERVE = ["run", "--allow-net", "--allow-read", "--v8-flags=--max-semi-space-size=4"];

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  options: { perms?: string[] } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.perms ?? ["--allow-net", "--allow-read"]), MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A balancer process; `await using` kills it (SIGKILL) unless it was stopped already. */
export interface LbProcess extends AsyncDisposable {
  pid: number;
  port: number;
  /** The port `$ADMIN` stood for in the config (free when it started). */
  adminPort: number;
  dir: string;
  child: Deno.ChildProcess;
  /** Resident set size in bytes, from /proc. */
  rss(): number;
  /** What it has written to stderr so far. */
  stderrSoFar(): string;
  /** Sends `signal` and waits for the exit; later calls answer what the first one got. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string; stdout: string }>;
}

/** Options for {@linkcode startLbProcess}. */
export interface LbProcessOptions {
  /**
   * Puts the config text in place under `dir` and returns the path to give
   * `--config`. @default {writes `dir/unload.yaml`}
   */
  install?: (dir: string, yaml: string) => Promise<string>;
}

/**
 * Writes `yaml` (with `$PORT` and `$ADMIN` replaced by free ports, `$DIR` by its
 * temp dir) and starts `main.ts run --config` on it; resolves once it logged that
 * it serves (or, with a log level above info, once the port accepts and it is
 * still running a moment later).
 *
 * A port found free can be taken before the balancer binds it (by another
 * test's outgoing connection, say), and the balancer then exits: that start is
 * tried again with new ports, up to three times.
 */
export async function startLbProcess(
  yaml: string,
  extraPerms: string[] = [],
  options: LbProcessOptions = {},
): Promise<LbProcess> {
  for (let attempt = 1;; attempt++) {
    const started = await startOnce(yaml, extraPerms, options);
    if ("lb" in started) return started.lb;
    if (attempt < 3 && started.stderr.includes("address already in use")) continue;
    throw new Error(`balancer did not start: ${started.stderr}`);
  }
}

async function startOnce(
  yaml: string,
  extraPerms: string[],
  options: LbProcessOptions,
): Promise<{ lb: LbProcess } | { stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "unload-test-" });
  const port = freePort();
  const adminPort = freePort();
  const text = yaml.replaceAll("$PORT", String(port)).replaceAll("$ADMIN", String(adminPort))
    .replaceAll("$DIR", dir);
  let file = `${dir}/unload.yaml`;
  if (options.install) file = await options.install(dir, text);
  else await Deno.writeTextFile(file, text);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...SERVE, ...extraPerms, MAIN, "run", "--config", file],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stdout = collect(child.stdout);
  const live = { text: "" };
  const stderr = collect(child.stderr, live);
  let exited = false;
  child.status.then(() => exited = true);
  const failed = async () => {
    if (!exited) child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true });
    return { stderr: await stderr };
  };
  for (let i = 0;; i++) {
    if (exited || i > 150) return await failed();
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await delay(100);
    }
  }
  // the port is bound first; the admin listener and the rest come just after
  for (let i = 0; i < 20 && !exited && !live.text.includes(" serving "); i++) await delay(50);
  if (exited) return await failed();
  let stopped: Promise<{ code: number; stderr: string; stdout: string }> | undefined;
  const stop = async (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* exited already */ }
    const { code } = await child.status;
    await Deno.remove(dir, { recursive: true });
    return { code, stderr: await stderr, stdout: await stdout };
  };
  const lb: LbProcess = {
    pid: child.pid,
    port,
    adminPort,
    dir,
    child,
    stderrSoFar: () => live.text,
    rss() {
      const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
    },
    stop(signal: Deno.Signal = "SIGTERM") {
      return stopped ??= stop(signal);
    },
    async [Symbol.asyncDispose]() {
      await (stopped ??= stop("SIGKILL"));
    },
  };
  return { lb };
}

async function collect(
  stream: ReadableStream<Uint8Array>,
  live: { text: string } = { text: "" },
): Promise<string> {
  const dec = new TextDecoder();
  for await (const chunk of stream) live.text += dec.decode(chunk, { stream: true });
  return live.text;
}
