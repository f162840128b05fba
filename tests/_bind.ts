/**
 * Test harness: a real BIND 9 `named`, authoritative for the zones a test gives, on a
 * free port of 127.0.0.1, with its query log kept so tests can count what was asked.
 * Use with `await using`.
 *
 * @module
 */
import { type DnsDaemon, findSbin, startDnsDaemon, withFreeDnsPort } from "./_dns_daemon.ts";

/** One zone: its origin (e.g. `cluster.local`) and its records in zone-file syntax. */
export interface BindZone {
  /** The zone's name, without trailing dot. */
  origin: string;
  /** Record lines relative to the origin, e.g. `web A 127.0.0.11`. */
  records: string[];
  /** Default TTL of the records, in seconds. @default {5} */
  ttl?: number;
}

/** A running named. */
export interface Bind extends AsyncDisposable {
  /** The port it answers on (UDP and TCP), on 127.0.0.1. */
  port: number;
  /** Pass as `nameServer` to `Deno.resolveDns` / `resolveSrv`. */
  nameServer: { ipAddr: string; port: number };
  /**
   * Queries received so far for `name` (any case, trailing dot optional) of `type`,
   * each with whether it came over TCP.
   */
  queries(name: string, type: string): { tcp: boolean }[];
  /** Stops named and starts it again on the same port with `zones` (a broken zone file is allowed). */
  restart(zones: BindZone[]): Promise<void>;
  /** Kills named and waits for it to exit. Safe to call twice. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000;
// A zone served only to probe readiness (a positive answer: resolvers may answer
// "no such name" for some names without asking).
const PROBE: BindZone = { origin: "unload-bind-harness", records: ["ready A 127.0.0.1"] };
// `client @0x… 127.0.0.1#4242 (name): query: name IN SRV +E(0)T (127.0.0.1)`
const QUERY_REGEXP = /query: (\S+) IN (\S+) ([-+]\S*)/;

/**
 * Finds `named`: `$NAMED` if set, else the usual sbin paths, then `PATH`.
 *
 * @returns Its path, or undefined when BIND is not installed.
 */
export function findNamed(): string | undefined {
  return findSbin("named", "NAMED");
}

/**
 * Starts named authoritative for `zones` (recursion off) on a free port of 127.0.0.1
 * and waits until it answers.
 *
 * @throws {Error} When named is not installed (with an install hint) or does not start.
 */
export async function startBind(zones: BindZone[]): Promise<Bind> {
  const binary = findNamed();
  if (binary === undefined) {
    throw new Error("named (BIND 9) was not found; install it with: apt-get install -y bind9");
  }
  const dir = await Deno.makeTempDir({ prefix: "unload-bind-" });
  const log: string[] = [];
  try {
    return await withFreeDnsPort("named", async (port): Promise<Bind> => {
      let proc = await spawn(binary, dir, port, zones, log);
      let stopped = false;
      const stop = async () => {
        if (stopped) return;
        stopped = true;
        await proc.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      };
      return {
        port,
        nameServer: { ipAddr: HOST, port },
        queries(name, type) {
          const want = name.toLowerCase().replace(/\.$/, "");
          const out: { tcp: boolean }[] = [];
          for (const line of log) {
            const m = QUERY_REGEXP.exec(line);
            if (m === null || m[2] !== type) continue;
            if (m[1]!.toLowerCase().replace(/\.$/, "") !== want) continue;
            out.push({ tcp: m[3]!.includes("T") });
          }
          return out;
        },
        async restart(next) {
          await proc.stop();
          proc = await spawn(binary, dir, port, next, log);
        },
        stop,
        [Symbol.asyncDispose]: stop,
      };
    });
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

function zoneText(zone: BindZone): string {
  const ttl = zone.ttl ?? 5;
  return [
    `$ORIGIN ${zone.origin}.`,
    `$TTL ${ttl}`,
    `@ SOA ns.${zone.origin}. hostmaster.${zone.origin}. 1 60 60 600 ${ttl}`,
    `@ NS ns.${zone.origin}.`,
    `ns A 127.0.0.1`,
    ...zone.records,
    "",
  ].join("\n");
}

function namedConf(dir: string, port: number, zones: BindZone[]): string {
  return [
    "options {",
    `  directory "${dir}";`,
    `  listen-on port ${port} { ${HOST}; };`,
    "  listen-on-v6 { none; };",
    "  recursion no;",
    "  pid-file none;",
    "  session-keyfile none;",
    "  dnssec-validation no;",
    "  notify no;",
    "  max-records-per-type 0;", // 9.18.28+ refuses more than 100 records of one type
    "};",
    "controls { };",
    "logging { category queries { default_stderr; }; };",
    ...zones.map((z, i) => `zone "${z.origin}" { type primary; file "${dir}/zone${i}.db"; };`),
    "",
  ].join("\n");
}

async function spawn(
  binary: string,
  dir: string,
  port: number,
  zones: BindZone[],
  log: string[],
): Promise<DnsDaemon> {
  const all = [PROBE, ...zones];
  for (const [i, z] of all.entries()) await Deno.writeTextFile(`${dir}/zone${i}.db`, zoneText(z));
  await Deno.writeTextFile(`${dir}/named.conf`, namedConf(dir, port, all));
  // -g: foreground, log to stderr; -u root: keep the temp dir readable as root
  const args = ["-g", "-c", `${dir}/named.conf`, ...(Deno.uid() === 0 ? ["-u", "root"] : [])];
  // zones load in the background: "running" comes once all are loaded (or failed to)
  return await startDnsDaemon(binary, {
    name: "named",
    args,
    port,
    probe: { name: `ready.${PROBE.origin}`, address: "127.0.0.1" },
    log,
    ready: (lines) => lines.some(isRunning),
    timeout: READY_TIMEOUT_MS,
  });
}

function isRunning(line: string): boolean {
  return line.endsWith(" running");
}
