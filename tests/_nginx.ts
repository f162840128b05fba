/**
 * Test helper: a real nginx (the Debian package) on a free port of 127.0.0.1,
 * as one foreground process, with the `server` block a test gives it.
 *
 * @module
 */
import { delay } from "./_http.ts";

/** A running nginx; `await using` stops it and removes its temp dir. */
export interface Nginx extends AsyncDisposable {
  /** The port its `server` listens on. */
  port: number;
  /** Its temp dir (config, logs). */
  dir: string;
  /** Stops it (idempotent). */
  stop(): Promise<void>;
}

/**
 * Starts nginx with the `server { ... }` block `server(port)` returns (a body of
 * `http { }`), and waits until the port accepts connections.
 *
 * @throws {Error} when nginx is missing or does not start (with its stderr).
 */
export async function startNginx(server: (port: number) => string): Promise<Nginx> {
  const dir = await Deno.makeTempDir({ prefix: "unload-nginx-" });
  for (let attempt = 0;; attempt++) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    await Deno.writeTextFile(`${dir}/nginx.conf`, conf(dir, server(port)));
    const child = new Deno.Command("nginx", {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const exited = child.status.then(() => true);
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      if (await Promise.race([exited, delay(50).then(() => false)])) break;
      up = await Deno.connect({ hostname: "127.0.0.1", port }).then((c) => {
        c.close();
        return true;
      }, () => false);
    }
    if (up) {
      let stopped: Promise<void> | undefined;
      const stop = () =>
        stopped ??= (async () => {
          try {
            child.kill("SIGTERM");
          } catch { /* gone */ }
          await child.status;
          await stderr;
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        })();
      return { port, dir, stop, [Symbol.asyncDispose]: stop };
    }
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    const why = await stderr;
    if (attempt < 3 && /Address already in use/.test(why)) continue; // the port was taken
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`nginx did not start: ${why}`);
  }
}

function conf(dir: string, server: string): string {
  return `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${server}
}
`;
}
