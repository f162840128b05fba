/**
 * A backend run as its own process, so that a test can SIGKILL it and start it
 * again on the same port: `Deno.serve` answering `<name> <path>` with an
 * `x-backend: <name>` header (and 200 on every path, `/healthz` included).
 *
 * @module
 */

const SELF = new URL(import.meta.url).pathname;

/** A running backend process; `await using` kills it. */
export interface BackendProcess extends AsyncDisposable {
  name: string;
  port: number;
  /** Kills it at once (SIGKILL: no graceful close of its connections). */
  kill(): Promise<void>;
}

/** Starts the backend on 127.0.0.1:`port` (0 = any) and resolves once it listens. */
export async function startBackendProcess(name: string, port = 0): Promise<BackendProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", SELF, name, String(port)],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`backend ${name} did not start: ${out}`);
    }
    out += value;
  }
  reader.cancel().catch(() => {});
  const bound = Number(/listening (\d+)/.exec(out)?.[1]);
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited already */ }
    await child.status;
  };
  return { name, port: bound, kill, [Symbol.asyncDispose]: kill };
}

if (import.meta.main) {
  const [name = "b", port = "0"] = Deno.args;
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(port),
    onListen: (addr) => Deno.stdout.writeSync(new TextEncoder().encode(`listening ${addr.port}\n`)),
  }, (req) => {
    const path = new URL(req.url).pathname;
    return new Response(`${name} ${path}\n`, { headers: { "x-backend": name } });
  });
}
