/**
 * Reloads without a signal (`reload.watch`): a balancer process whose config file
 * and certificate live in a Kubernetes-style volume (`unload.yaml -> ..data/unload.yaml`,
 * `..data -> ..2026_12_01_N`), updated the way the kubelet does it (new timestamped
 * dir, `..data_tmp` renamed over `..data`, old dir deleted), and edited in place.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { makeCa, servedSerial } from "./_certs.ts";
import { delay, freePort, keepAliveBackend, RawClient } from "./_http.ts";
import { type LbProcess, startLbProcess } from "./_process.ts";

/** A ConfigMap/Secret volume in `dir`, updated atomically like the kubelet's. */
class K8sVolume {
  readonly dir: string;
  #generation = 0;
  #current: string | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The path a pod sees for `name` (a symlink through `..data`). */
  path(name: string): string {
    return `${this.dir}/${name}`;
  }

  /** Publishes `files` as the volume's new contents. */
  async publish(files: Record<string, string>): Promise<void> {
    const stamp = `..2026_12_01_${String(++this.#generation).padStart(2, "0")}`;
    await Deno.mkdir(`${this.dir}/${stamp}`, { recursive: true });
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${this.dir}/${stamp}/${name}`, text);
    }
    await Deno.symlink(stamp, `${this.dir}/..data_tmp`);
    await Deno.rename(`${this.dir}/..data_tmp`, `${this.dir}/..data`); // the atomic swap
    for (const name of Object.keys(files)) {
      try {
        await Deno.symlink(`..data/${name}`, this.path(name));
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    if (this.#current) await Deno.remove(`${this.dir}/${this.#current}`, { recursive: true });
    this.#current = stamp;
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, ms = 10_000) {
  for (const end = Date.now() + ms;; await delay(50)) {
    if (await Promise.resolve().then(check).catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  }
}

/** Which backend answers a request on a new connection. */
async function answer(port: number, tls?: string): Promise<string> {
  const c = tls ? await RawClient.tls(port, tls) : await RawClient.connect(port);
  try {
    const res = await c.get("/x");
    return res.body.trim();
  } finally {
    c.close();
  }
}

async function reloads(admin: number): Promise<{ ok: number; failed: number }> {
  const s = await (await fetch(`http://127.0.0.1:${admin}/status`)).json();
  return { ok: s.reloads.ok, failed: s.reloads.failed };
}

/** `unload_config_last_reload_successful` from /metrics. */
async function lastReloadSuccessful(admin: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  return Number(/^unload_config_last_reload_successful (\d+)$/m.exec(text)?.[1]);
}

/** `/status`'s `reloads.last`: what the dashboard's "reload rejected" banner shows. */
async function lastReload(admin: number): Promise<{ ok: boolean; error?: string }> {
  return (await (await fetch(`http://127.0.0.1:${admin}/status`)).json()).reloads.last;
}

Deno.test("watch: a config swapped like a Kubernetes ConfigMap, or edited in place, applies without a signal; a broken one is rejected until fixed", async () => {
  const a = keepAliveBackend("A");
  const b = keepAliveBackend("B");
  const admin = freePort();
  let vol: K8sVolume | undefined;
  const yaml = (port: number | string, backend: number, extra = "") =>
    `listen: { http: 127.0.0.1:${port} }
admin: { listen: 127.0.0.1:${admin} }
reload: { interval: 100ms }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:${backend} }]
${extra}`;
  let lb: LbProcess | undefined;
  let stopped: { code: number; stderr: string } | undefined;
  try {
    lb = await startLbProcess(yaml("$PORT", a.port), [], {
      install: async (dir, text) => {
        vol = new K8sVolume(`${dir}/config`);
        await vol.publish({ "unload.yaml": text });
        return vol.path("unload.yaml");
      },
    });
    const port = lb.port;
    const file = vol!.path("unload.yaml");
    assertEquals(await answer(port), "A /x");

    // a swap of ..data: the route now goes to B
    await vol!.publish({ "unload.yaml": yaml(port, b.port) });
    await until("B answering after the swap", async () => (await answer(port)) === "B /x");
    assertEquals(await reloads(admin), { ok: 1, failed: 0 });

    // an edit in place (through the symlink, into the timestamped dir): back to A
    await Deno.writeTextFile(file, yaml(port, a.port));
    await until("A answering after the edit", async () => (await answer(port)) === "A /x");
    assertEquals(await reloads(admin), { ok: 2, failed: 0 });

    // a swap that changes only a comment changes nothing: no reload
    await vol!.publish({ "unload.yaml": yaml(port, a.port, "# touched\n") });
    await until("the no-op noticed", () => lb!.stderrSoFar().includes("its settings did not"));
    assertEquals(await reloads(admin), { ok: 2, failed: 0 });

    // broken (an unknown key on line 7): rejected, A keeps answering
    await vol!.publish({ "unload.yaml": yaml(port, b.port, "    bogus: 1\n") });
    await until("the rejection", async () => (await reloads(admin)).failed === 1);
    assertStringIncludes(lb.stderrSoFar(), `${file}:7: routes[0].bogus: unknown key`);
    assertEquals(await answer(port), "A /x", "the old config keeps serving");

    // fixed: applied
    await vol!.publish({ "unload.yaml": yaml(port, b.port) });
    await until("B answering after the fix", async () => (await answer(port)) === "B /x");
    assertEquals(await reloads(admin), { ok: 3, failed: 1 });

    // broken again, then reverted to exactly the settings in force: nothing to apply,
    // but the failure is over, so the metric, /status and the dashboard banner say so
    await vol!.publish({ "unload.yaml": yaml(port, b.port, "    bogus: 2\n") });
    await until("the second rejection", async () => (await reloads(admin)).failed === 2);
    assertEquals(await lastReloadSuccessful(admin), 0);
    assertEquals((await lastReload(admin)).ok, false, "the banner's source says failed");
    await vol!.publish({ "unload.yaml": yaml(port, b.port) });
    await until("the revert noticed", async () => (await lastReloadSuccessful(admin)) === 1);
    assertEquals((await lastReload(admin)).ok, true, "the banner is gone");
    assertEquals(await reloads(admin), { ok: 4, failed: 2 });
    assertStringIncludes(lb.stderrSoFar(), "back to the settings in force");
    assertEquals(await answer(port), "B /x");

    stopped = await lb.stop();
    assertEquals(stopped.code, 0);
    assertStringIncludes(stopped.stderr, "config reload rejected, the running config stays");
    assertStringIncludes(stopped.stderr, `config reloaded from ${file}`);
  } finally {
    if (lb && !stopped) await lb.stop("SIGKILL");
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("watch: a certificate swapped like a Kubernetes Secret is served to new connections; a mismatched pair is rejected and the old one kept", async () => {
  const ca = await makeCa();
  const backend = keepAliveBackend("b");
  let lb: LbProcess | undefined;
  try {
    const [first, second, third] = await Promise.all(
      [0x2001, 0x2002, 0x2003].map((serial) => ca.issue(`s${serial}`, { serial })),
    );
    const pem = async (c: { cert: string; key: string }) => ({
      "tls.crt": await Deno.readTextFile(c.cert),
      "tls.key": await Deno.readTextFile(c.key),
    });
    let vol: K8sVolume | undefined;
    lb = await startLbProcess(
      `listen: { https: 127.0.0.1:$PORT }
reload: { interval: 100ms }
tls: { cert: $DIR/secret/tls.crt, key: $DIR/secret/tls.key }
routes: [{ name: app, backends: [{ address: 127.0.0.1:${backend.port} }] }]
`,
      [],
      {
        install: async (dir, text) => {
          vol = new K8sVolume(`${dir}/secret`);
          await vol.publish(await pem(first!));
          await Deno.writeTextFile(`${dir}/unload.yaml`, text);
          return `${dir}/unload.yaml`;
        },
      },
    );
    const port = lb.port;
    assertEquals(await servedSerial(port), first!.serial);
    const open = await RawClient.tls(port, ca.caPem);
    assertEquals((await open.get("/1")).body, "b /1\n");

    await vol!.publish(await pem(second!));
    await until("the new serial", async () => (await servedSerial(port)) === second!.serial);
    assertEquals(await answer(port, ca.caPem), "b /x");

    // the third certificate with the second's key: refused, the second keeps serving
    await vol!.publish({ ...await pem(third!), "tls.key": (await pem(second!))["tls.key"] });
    await until(
      "the rejection",
      () => lb!.stderrSoFar().includes("does not match the certificate"),
    );
    assertEquals(await servedSerial(port), second!.serial);

    await vol!.publish(await pem(third!));
    await until("the third serial", async () => (await servedSerial(port)) === third!.serial);
    assertEquals((await open.get("/2")).body, "b /2\n", "the open connection still works");
    open.close();
    const { code, stderr } = await lb.stop();
    lb = undefined;
    assertEquals(code, 0);
    assert(
      stderr.includes(`now certificate serial ${third!.serial}`),
      `the reload is logged: ${stderr}`,
    );
  } finally {
    await lb?.stop("SIGKILL");
    await backend.close();
    await ca.remove();
  }
});
