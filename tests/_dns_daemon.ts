/**
 * Test helper shared by the DNS server harnesses (`_bind.ts`, `_dnsmasq.ts`):
 * finding the binary, picking a port, running the daemon and waiting until it
 * answers a probe record.
 *
 * @module
 */

const HOST = "127.0.0.1";

/**
 * Finds the binary `name`: `$ENV` if set (and only there), else `/usr/sbin`,
 * `/usr/local/sbin`, `/sbin`, then `PATH`.
 *
 * @returns Its path, or undefined when it is not installed.
 */
export function findSbin(name: string, env: string): string | undefined {
  const override = Deno.env.get(env);
  const path = Deno.env.get("PATH") ?? "";
  const candidates = override ? [override] : [
    ...["/usr/sbin", "/usr/local/sbin", "/sbin"].map((d) => `${d}/${name}`),
    ...path.split(":").filter(Boolean).map((d) => `${d}/${name}`),
  ];
  for (const candidate of candidates) {
    try {
      if (Deno.statSync(candidate).isFile) return candidate;
    } catch {
      // Not here; try the next one.
    }
  }
  return undefined;
}

/**
 * Calls `start` with free ports (see {@linkcode freeDnsPort}) until it succeeds,
 * at most `attempts` times.
 *
 * @throws {Error} With the last failure as cause, when every attempt failed.
 */
export async function withFreeDnsPort<T>(
  what: string,
  start: (port: number) => Promise<T>,
  options: { attempts?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 5;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      return await start(freeDnsPort());
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`${what} did not start after ${attempts} attempts`, { cause: lastError });
}

/**
 * A port free for both UDP and TCP (a DNS server binds both), taken below the kernel's
 * ephemeral range (32768+), so that no outgoing connection of the tests can grab
 * it between a stop and a restart of the server on the same port.
 */
export function freeDnsPort(): number {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    try {
      Deno.listenDatagram({ transport: "udp", hostname: HOST, port }).close();
      Deno.listen({ hostname: HOST, port }).close();
      return port;
    } catch {
      // taken: try another
    }
  }
}

/** A DNS server process. */
export interface DnsDaemon {
  /** Kills it (SIGTERM) and waits for it to exit. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startDnsDaemon}. */
export interface DnsDaemonOptions {
  /** What it is, for error messages (`named`, `dnsmasq`). */
  name: string;
  /** The daemon's arguments. */
  args: string[];
  /** The port it serves on, on 127.0.0.1. */
  port: number;
  /** A record it serves (an A record), asked for until it answers with `address`. */
  probe: { name: string; address: string };
  /** Where its stderr lines go. @default {a fresh list} */
  log?: string[];
  /** Whether the lines it wrote since its start say it is ready too. @default {always} */
  ready?: (lines: string[]) => boolean;
  /** How long it may take to answer (ms). @default {10_000} */
  timeout?: number;
}

/**
 * Starts `binary` (stdout dropped, stderr kept in `log` line by line) and waits until
 * it answers the probe and `ready` holds.
 *
 * @throws {Error} When it exits or does not answer in time (stopped; its last stderr
 * lines in the message).
 */
export async function startDnsDaemon(
  binary: string,
  options: DnsDaemonOptions,
): Promise<DnsDaemon> {
  const { name, port, probe } = options;
  const log = options.log ?? [];
  const child = new Deno.Command(binary, {
    args: options.args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const from = log.length;
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      log.push(...lines);
    }
    if (pending) log.push(pending);
  })();
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // exited already
      }
      await child.status;
      await reading;
    })();
  const ready = options.ready ?? (() => true);
  try {
    await waitUntilAnswering(port, {
      probe,
      exited: child.status,
      ready: () => ready(log.slice(from)),
      timeout: options.timeout ?? 10_000,
    });
  } catch (error) {
    await stop();
    const tail = log.slice(Math.max(from, log.length - 15)).join("\n");
    throw new Error(`${name} failed to start on port ${port}: ${tail}`, { cause: error });
  }
  return { stop };
}

/** Polls with short queries until the server on `port` answers the probe record. */
async function waitUntilAnswering(port: number, options: {
  probe: { name: string; address: string };
  exited: Promise<Deno.CommandStatus>;
  ready: () => boolean;
  timeout: number;
}): Promise<void> {
  const { probe } = options;
  let hasExited = false;
  options.exited.then(() => hasExited = true);
  const deadline = Date.now() + options.timeout;
  while (Date.now() < deadline) {
    if (hasExited) throw new Error("it exited");
    try {
      const answer = await Deno.resolveDns(probe.name, "A", {
        nameServer: { ipAddr: HOST, port },
        signal: AbortSignal.timeout(100),
      });
      if (answer.includes(probe.address) && options.ready()) return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no answer within ${options.timeout}ms`);
}
