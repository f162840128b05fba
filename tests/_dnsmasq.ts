/**
 * Test harness: a real `dnsmasq` serving SRV and A/AAAA records on a free port of
 * 127.0.0.1, so discovery is tested against a real DNS server.
 *
 * @module
 */
import { type DnsDaemon, findSbin, startDnsDaemon, withFreeDnsPort } from "./_dns_daemon.ts";

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
  return findSbin("dnsmasq", "DNSMASQ");
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
  return await withFreeDnsPort("dnsmasq", async (port): Promise<Dnsmasq> => {
    let proc = await spawn(binary, port, records);
    return {
      port,
      nameServer: { ipAddr: HOST, port },
      async restart(next) {
        await proc.stop();
        proc = await spawn(binary, port, next);
      },
      stop: () => proc.stop(),
      [Symbol.asyncDispose]: () => proc.stop(),
    };
  }, { attempts: START_ATTEMPTS });
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

async function spawn(binary: string, port: number, records: DnsmasqRecords): Promise<DnsDaemon> {
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
  return await startDnsDaemon(binary, {
    name: "dnsmasq",
    args,
    port,
    probe: PROBE,
    timeout: READY_TIMEOUT_MS,
  });
}
