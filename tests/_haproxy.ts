/**
 * HAProxy started from a config text for a test, ready once every listed port
 * accepts; `await using` stops it.
 *
 * @module
 */
import { delay } from "./_http.ts";

/** A running HAProxy. */
export interface Haproxy extends AsyncDisposable {
  /** What it wrote to stderr so far (its warnings and alerts). */
  stderr(): string;
}

/**
 * Starts `haproxy -db` on `config` (the whole file) and waits until each of
 * `ready` (host, port) accepts a connection.
 */
export async function startHaproxy(
  config: string,
  ready: Array<{ hostname: string; port: number }>,
): Promise<Haproxy> {
  const dir = await Deno.makeTempDir({ prefix: "unload-haproxy-" });
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, config);
  const child = new Deno.Command("haproxy", {
    args: ["-db", "-f", `${dir}/haproxy.cfg`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let err = "";
  const dec = new TextDecoder();
  const drained = (async () => {
    for await (const chunk of child.stderr) err += dec.decode(chunk);
  })();
  for (const { hostname, port } of ready) {
    for (let tries = 0;; tries++) {
      try {
        (await Deno.connect({ hostname, port })).close();
        break;
      } catch (e) {
        if (tries > 200) {
          child.kill("SIGKILL");
          await child.status;
          await drained;
          throw new Error(`haproxy did not listen on ${hostname}:${port}: ${e}\n${err}`);
        }
        await delay(50);
      }
    }
  }
  return {
    stderr: () => err,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
