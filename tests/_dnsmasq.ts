/**
 * Test harness: a real `dnsmasq` serving SRV and A/AAAA records on a free port of
 * 127.0.0.1, so discovery is tested against a real DNS server.
 *
 * @module
 */

/** One SRV record: `name` → `target:port` with `priority` and `weight`. */
export interface SrvRecordSpec {
  name: string;
  target: string;
  port: number;
  priority: number;
  weight: number;
}

/** One address record (A for IPv4, AAAA for IPv6). */
export interface HostRecordSpec {
  name: string;
  address: string;
}

/** The records dnsmasq serves. */
export interface DnsmasqRecords {
  srv: SrvRecordSpec[];
  hosts: HostRecordSpec[];
}

/** A running dnsmasq; `await using` stops it. */
export interface Dnsmasq extends AsyncDisposable {
  /** The UDP (and TCP) port it listens on, on 127.0.0.1. */
  port: number;
  /** Pass as `nameServer` to `Deno.resolveDns` / `resolveSrv`. */
  nameServer: { ipAddr: string; port: number };
  /** Stops dnsmasq and starts it again on the same port with `records`. */
  restart(records: DnsmasqRecords): Promise<void>;
  /** Kills dnsmasq and waits for it to exit. Safe to call twice. */
  stop(): Promise<void>;
}

const SEARCH_PATHS = ["/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq", "/sbin/dnsmasq"];
const HOST = "127.0.0.1";
const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 5_000;
/**
 * An extra record served only to probe readiness. A positive answer is needed: a resolver
 * may answer "no such name" itself without asking (hickory does for `*.invalid`).
 */
const PROBE = { name: "ready.unload-dnsmasq-harness", address: "127.0.0.1" };

/**
 * Finds the dnsmasq binary: `$DNSMASQ` if set (and only there), else the usual sbin paths,
 * then `PATH`.
 *
 * @returns Its path, or undefined when it is not installed.
 */
export function findDnsmasq(): string | undefined {
  const override = Deno.env.get("DNSMASQ");
  const path = Deno.env.get("PATH") ?? "";
  const candidates = override ? [override] : [
    ...SEARCH_PATHS,
    ...path.split(":").filter(Boolean).map((d) => `${d}/dnsmasq`),
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
 * Starts dnsmasq on a free port of 127.0.0.1 and waits until it answers.
 *
 * @param records The SRV and address records to serve.
 * @returns A handle; call `stop()` when done.
 * @throws {Error} When dnsmasq is not installed (with an install hint; under `CI=true`
 * too, so discovery tests fail instead of being skipped) or does not start.
 */
export async function startDnsmasq(records: DnsmasqRecords): Promise<Dnsmasq> {
  const binary = requireDnsmasq();
  let lastError: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = freeUdpPort();
    try {
      let proc = await spawn(binary, port, records);
      const nameServer = { ipAddr: HOST, port };
      return {
        port,
        nameServer,
        async restart(next) {
          await proc.stop();
          proc = await spawn(binary, port, next);
        },
        stop: () => proc.stop(),
        [Symbol.asyncDispose]: () => proc.stop(),
      };
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`dnsmasq did not start after ${START_ATTEMPTS} attempts`, { cause: lastError });
}

function requireDnsmasq(): string {
  const binary = findDnsmasq();
  if (binary) return binary;
  const hint = "install it with: apt-get install -y dnsmasq-base";
  if (Deno.env.get("CI") === "true") {
    throw new Error(`dnsmasq is required by the discovery tests in CI and was not found; ${hint}`);
  }
  throw new Error(`dnsmasq was not found ($DNSMASQ, /usr/sbin, /usr/local/sbin, PATH); ${hint}`);
}

/**
 * A port free for both UDP and TCP (dnsmasq binds both), taken below the kernel's
 * ephemeral range (32768+), so that no outgoing connection of the tests can grab
 * it between a stop and a restart of dnsmasq on the same port.
 */
function freeUdpPort(): number {
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

interface Process {
  stop(): Promise<void>;
}

async function spawn(binary: string, port: number, records: DnsmasqRecords): Promise<Process> {
  const args = [
    "-k",
    `--port=${port}`,
    `--listen-address=${HOST}`,
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    "--conf-file=/dev/null",
    "--pid-file=",
    ...(Deno.uid() === 0 ? ["--user=root", "--group=root"] : []),
    `--host-record=${PROBE.name},${PROBE.address}`,
    ...records.hosts.map((h) => `--host-record=${h.name},${h.address}`),
    ...records.srv.map((s) =>
      `--srv-host=${s.name},${s.target},${s.port},${s.priority},${s.weight}`
    ),
  ];
  const child = new Deno.Command(binary, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      await child.status;
      await stderr;
    })();
  try {
    await waitUntilAnswering(port, child.status);
  } catch (error) {
    await stop();
    throw new Error(`dnsmasq failed to start on port ${port}: ${(await stderr).trim()}`, {
      cause: error,
    });
  }
  return { stop };
}

/** Polls with short queries until dnsmasq answers the probe record. */
async function waitUntilAnswering(port: number, exited: Promise<Deno.CommandStatus>) {
  let hasExited = false;
  exited.then(() => hasExited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (hasExited) throw new Error("dnsmasq exited");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 50);
    try {
      const answer = await Deno.resolveDns(PROBE.name, "A", {
        nameServer: { ipAddr: HOST, port },
        signal: controller.signal,
      });
      if (answer.includes(PROBE.address)) return;
    } catch {
      // Not up yet.
    } finally {
      clearTimeout(timer);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`dnsmasq did not answer within ${READY_TIMEOUT_MS}ms`);
}
