/**
 * Debian redis-server for the tests that need a real Redis (rate_limit's fleet store, tcp
 * routes), and redis-cli to ask it.
 *
 * @module
 */
import { delay, freePort } from "./_http.ts";

const dec = new TextDecoder();

/** A Redis server (Debian redis-server) on a free port, without persistence. */
export async function startRedis(): Promise<
  AsyncDisposable & { port: number; pid: number; kill(): Promise<void> }
> {
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const child = new Deno.Command("redis-server", {
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    child.status.then(() => exited = true);
    let up = false;
    for (let i = 0; i < 200 && !exited && !up; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        up = true;
      } catch {
        await delay(25);
      }
    }
    const kill = async () => {
      if (!exited) {
        try {
          Deno.kill(child.pid, "SIGCONT");
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await child.status;
    };
    if (up) return { port, pid: child.pid, kill, [Symbol.asyncDispose]: kill };
    await kill();
    if (attempt === 3) throw new Error("redis-server did not start");
  }
}

/** What `redis-cli -p PORT ARGS...` prints (stdout), trimmed. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", String(port), ...args],
    stdin: "null",
  }).output();
  return dec.decode(out.stdout).trim();
}
