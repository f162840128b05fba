/**
 * Test harness: a real BIND 9 `named`, authoritative for the zones a test gives, on a
 * free port of 127.0.0.1, with its query log kept so tests can count what was asked.
 * Use with `await using`.
 *
 * @module
 */

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
const SEARCH_PATHS = ["/usr/sbin/named", "/usr/local/sbin/named", "/sbin/named"];
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
  const override = Deno.env.get("NAMED");
  const path = Deno.env.get("PATH") ?? "";
  const candidates = override
    ? [override]
    : [...SEARCH_PATHS, ...path.split(":").filter(Boolean).map((d) => `${d}/named`)];
  for (const c of candidates) {
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch {
      // not here
    }
  }
  return undefined;
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
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    try {
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
    } catch (error) {
      lastError = error;
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  throw new Error("named did not start after 5 attempts", { cause: lastError });
}

/** A port free for UDP and TCP, below the ephemeral range (see _dnsmasq.ts). */
function freePort(): number {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    try {
      Deno.listenDatagram({ transport: "udp", hostname: HOST, port }).close();
      Deno.listen({ hostname: HOST, port }).close();
      return port;
    } catch {
      // taken
    }
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
): Promise<{ stop(): Promise<void> }> {
  const all = [PROBE, ...zones];
  for (const [i, z] of all.entries()) await Deno.writeTextFile(`${dir}/zone${i}.db`, zoneText(z));
  await Deno.writeTextFile(`${dir}/named.conf`, namedConf(dir, port, all));
  // -g: foreground, log to stderr; -u root: keep the temp dir readable as root
  const args = ["-g", "-c", `${dir}/named.conf`, ...(Deno.uid() === 0 ? ["-u", "root"] : [])];
  const child = new Deno.Command(binary, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
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
  try {
    // zones load in the background: "running" comes once all are loaded (or failed to)
    await waitUntilAnswering(port, child.status, () => log.slice(from).some(isRunning));
  } catch (error) {
    await stop();
    const tail = log.slice(-15).join("\n");
    throw new Error(`named failed to start on port ${port}: ${tail}`, { cause: error });
  }
  return { stop };
}

function isRunning(line: string): boolean {
  return line.endsWith(" running");
}

async function waitUntilAnswering(
  port: number,
  exited: Promise<Deno.CommandStatus>,
  loaded: () => boolean,
) {
  let hasExited = false;
  exited.then(() => hasExited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (hasExited) throw new Error("named exited");
    try {
      const answer = await Deno.resolveDns(`ready.${PROBE.origin}`, "A", {
        nameServer: { ipAddr: HOST, port },
        signal: AbortSignal.timeout(100),
      });
      if (answer.includes("127.0.0.1") && loaded()) return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`named did not answer within ${READY_TIMEOUT_MS}ms`);
}
