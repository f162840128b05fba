/**
 * The command line: `run`, `validate`, `explain`, `simulate`, `demo`, `--help`, `--version`.
 * The only module that prints for the user and decides exit codes.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import denoJson from "../../deno.json" with { type: "json" };
import { Balancer } from "../server/balancer.ts";
import { createLogger } from "../observe/log.ts";
import {
  freeDescriptors,
  freeDescriptorsWarning,
  openFilesLimit,
  openFilesWarning,
} from "../observe/exhaustion.ts";
import { count } from "../observe/count.ts";
import { loadTls } from "../server/tls_files.ts";
import { loadUpstreamTls } from "../upstream/tls.ts";
import { startWorkers, type WorkerGroup } from "../server/workers.ts";
import { waitForSignal } from "../server/signals.ts";
import { type Config, ConfigError, loadConfig } from "../config/config.ts";
import { staticBackends } from "../upstream/discovery/static.ts";
import { resolveSrv } from "../upstream/discovery/srv.ts";
import { runDemo } from "./demo/demo.ts";
import { isSchedulerMode, SCHEDULER_MODES, type SchedulerMode } from "../scheduler/scheduler.ts";
import { formatSimulation, parseSrvSpec, simulate } from "./simulate.ts";
import { explain } from "./explain.ts";

/** The version in deno.json. */
export const VERSION: string = denoJson.version;

const USAGE: Record<string, string> = {
  main: `unload ${VERSION}: an HTTP/1.1 and HTTP/2 (gRPC) load balancer with DNS SRV discovery

Usage:
  unload run --config unload.yaml       serve (the default command)
  unload validate --config unload.yaml  check a config file (exit 2 on error)
  unload explain --config F [--client IP] [-H "Name: v"] METHOD URL
                                        what a request would go through (sends nothing)
  unload simulate --srv SPEC [-n 9]     print the pick order for a backend table
  unload demo                           embedded DNS + 3 backends + the balancer
  unload --help | --version

Run "unload COMMAND --help" for a command's options.
Serving needs only: deno run --allow-net --allow-read main.ts ...`,
  run: `Usage: unload run --config FILE

Serves the routes in FILE until SIGINT/SIGTERM (graceful: in-flight requests finish).

Example:
  deno run --allow-net --allow-read --v8-flags=--max-semi-space-size=4 main.ts run \\
    --config examples/unload.yaml
(the V8 flag keeps idle memory low; compiled binaries carry it)`,
  validate: `Usage: unload validate --config FILE

Checks FILE and prints "FILE: ok", or one "FILE:LINE: path: message" per problem
and exits 2.

Example:
  deno run --allow-read main.ts validate --config examples/unload.yaml`,
  explain: `Usage: unload explain --config FILE [--client IP] [-H "Name: value"]... METHOD URL

Prints what the request would go through, without sending anything: the route it
matches, each policy step's decision (allowed? redirected to? rewritten to?), the
request line and headers the backend would get, and the backend the scheduler would
pick now (an SRV route is looked up once; health is not probed).
  --client IP   the client's address (default 127.0.0.1)
  -H LINE       a request header, repeatable

Example:
  unload explain --config unload.yaml --client 10.1.2.3 GET "http://app.test/api/users?id=7"`,
  simulate: `Usage: unload simulate (--srv SPEC | --config FILE [--route NAME]) [--mode MODE] [-n N]

Prints the order in which backends are picked, and each one's share.
  --srv SPEC    target:priority:weight entries, comma-separated
  --config FILE take the table from a route of FILE (SRV routes are looked up)
  --route NAME  which route (default: the first)
  --mode MODE   srv | rfc2782 | round_robin | least_conn | hash
                (default: srv, or the route's)
  -n N          picks to simulate (default: 18); for hash, keys key-0 .. key-N-1,
                and the order line shows each key's backend

Example:
  unload simulate --srv "b1:0:30,b2:0:20,b3:10:40" -n 9
  unload simulate --srv "b1:0:30,b2:0:20,b3:10:40" --mode hash -n 100000`,
  demo: `Usage: unload demo [--listen ADDR] [--admin ADDR] [--traffic]

Starts an embedded SRV DNS server, three demo backends (b1 p0 w30, b2 p0 w20,
b3 p10 w40), the balancer and its admin listener with the live dashboard.
  --listen ADDR  the balancer (default 127.0.0.1:8080)
  --admin ADDR   dashboard, /metrics, /status and demo controls (default 127.0.0.1:9090)
  --traffic      send a little built-in traffic so the dashboard moves

Example:
  npx -y deno@2.9.6 task start`,
};

/**
 * Runs the CLI with `args`.
 *
 * @returns the process exit code.
 */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        route: { type: "string" },
        client: { type: "string" },
        header: { type: "string", short: "H", multiple: true },
        srv: { type: "string" },
        mode: { type: "string" },
        n: { type: "string", short: "n" },
        listen: { type: "string" },
        admin: { type: "string" },
        traffic: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (e) {
    console.error(`unload: ${(e as Error).message}\n\n${USAGE.main}`);
    return 2;
  }
  const { values: flags, positionals } = parsed;
  const command = positionals[0] ?? (flags.config ? "run" : undefined);
  if (flags.version) {
    console.log(`unload ${VERSION}`);
    return 0;
  }
  if (flags.help || command === undefined) {
    console.log(USAGE[command ?? "main"] ?? USAGE.main);
    return command === undefined && !flags.help ? 2 : 0;
  }
  switch (command) {
    case "run":
      return await run(flags.config);
    case "validate":
      return await validate(flags.config);
    case "explain":
      return await explainCommand(flags, positionals.slice(1));
    case "simulate":
      return await simulateCommand(flags);
    case "demo":
      return await runDemo({
        listen: flags.listen ?? "127.0.0.1:8080",
        admin: flags.admin,
        traffic: flags.traffic ?? false,
      });
    default:
      console.error(`unload: unknown command "${command}"\n\n${USAGE.main}`);
      return 2;
  }
}

async function readConfig(file: string | undefined): Promise<Config | number> {
  if (file === undefined) {
    console.error("unload: --config FILE is required");
    return 2;
  }
  try {
    return await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
}

async function validate(file: string | undefined): Promise<number> {
  const config = await readConfig(file);
  if (typeof config === "number") return config;
  // the files the config names must be usable too: what `run` would refuse at start
  const problems: string[] = [];
  const check = (p: Promise<unknown>) => p.catch((e) => problems.push((e as Error).message));
  if (config.tls && config.listen.https) {
    for (const pair of config.tls.certificates) await check(loadTls(pair));
  }
  for (const r of config.routes) {
    if (r.tls) await check(loadUpstreamTls({ name: r.name, ...r.tls }));
  }
  if (problems.length > 0) {
    // a problem found at a line of the file (routes[].client_cert) already starts with it
    for (const p of problems) console.error(p.startsWith(`${file}:`) ? p : `${file}: ${p}`);
    return 2;
  }
  const access = config.log.access;
  if (access !== "off" && access !== "stdout" && access !== "stderr") {
    // valid, but a file `run` cannot open with only the flags it needs otherwise
    console.error(
      `${file}: warning: log.access ${access} is a file: \`run\` needs --allow-write=${access} ` +
        `besides --allow-net --allow-read (for a compiled binary, at compile time)`,
    );
  }
  const tcp = config.tcp.length > 0 ? `, ${count(config.tcp.length, "tcp route")}` : "";
  console.log(`${file}: ok (${count(config.routes.length, "route")}${tcp})`);
  for (const r of config.tcp) {
    const to = r.srv ?? r.backends!.map((b) => b.address).join(" ");
    const tls = [
      r.sni === undefined ? "" : `, sni ${r.sni}`,
      r.tls === undefined ? "" : ", tls terminated",
      r.backend_tls === undefined ? "" : ", tls to backends",
    ].join("");
    console.log(
      `  tcp ${r.name}: ${r.listen.hostname}:${r.listen.port} → ${to} (${r.scheduler}${tls})`,
    );
  }
  return 0;
}

async function run(file: string | undefined): Promise<number> {
  const config = await readConfig(file);
  if (typeof config === "number") return config;
  const shared = config.workers > 1; // parseConfig refused port 0 for these
  // The open files limit, from /proc where Deno lets us read it (--allow-all), else by
  // opening the config file until the limit or MIN_OPEN_FILES (before anything listens)
  const limit = openFilesLimit();
  const lowFiles = limit !== undefined
    ? openFilesWarning(limit)
    : freeDescriptorsWarning(freeDescriptors(config.file));
  let lb: Balancer | undefined;
  let workers: WorkerGroup | undefined;
  // Signal handlers first: once the port accepts, SIGTERM and SIGHUP are handled (and
  // registering one needs a descriptor, which a busy balancer may not have later).
  const stop = waitForSignal(["SIGINT", "SIGTERM"]);
  const reload = () => {
    void lb?.reloadFromFile();
    void workers?.reload();
  };
  Deno.addSignalListener("SIGHUP", reload);
  try {
    lb = await Balancer.start(
      config,
      shared
        ? {
          reusePort: "first",
          logger: createLogger({ access: config.log.access, worker: 0 }),
          workerStats: async () => await workers?.stats() ?? [],
          // the workers look nothing up and probe nothing: this thread tells them
          share: {
            sets: (set) => workers?.share(set),
            probed: (down) => workers?.probed(down),
          },
        }
        : {},
    );
  } catch (e) {
    console.error(`unload: cannot start: ${(e as Error).message}`);
    return 2;
  }
  if (shared) {
    try {
      const main = lb;
      workers = await startWorkers(config.workers - 1, config.file, {
        sets: () => main.sharedSets(),
        down: () => main.probedDown(),
        setAside: (route, id, reason) => main.setAside(route, id, reason),
      });
      // what was found while they started (the start message had the sets of then)
      for (const set of lb.sharedSets()) workers.share(set);
      workers.probed(lb.probedDown());
    } catch (e) {
      await lb.close();
      console.error(`unload: cannot start: ${(e as Error).message}`);
      return 2;
    }
  }
  // One broken exchange must never take the whole balancer down; but no error is
  // lost either: each is logged with its stack and counted (unload_internal_errors_total).
  const log = lb.log;
  const metrics = lb.metrics;
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    metrics.internalErrors++;
    log.error(`internal: unhandled rejection: ${(e.reason as Error)?.stack ?? e.reason}`);
  });
  const where = Object.entries(lb.addrs).map(([p, a]) => `${p}://${a.hostname}:${a.port}`);
  for (const [name, a] of lb.tcpAddrs()) where.push(`tcp://${a.hostname}:${a.port} (${name})`);
  const threads = shared ? ` with ${count(config.workers, "worker")}` : "";
  lb.log.info(
    `unload ${VERSION} serving ${count(lb.routes.length, "route")}${
      lb.tcpRoutes.length > 0 ? ` and ${count(lb.tcpRoutes.length, "tcp route")}` : ""
    } on ${where.join(", ")}${threads}`,
  );
  if (lowFiles !== undefined) lb.log.warn(lowFiles);
  await stop;
  Deno.removeSignalListener("SIGHUP", reload);
  lb.log.info("shutting down: finishing in-flight requests");
  await Promise.all([lb.close(), workers?.close()]);
  return 0;
}

async function simulateCommand(flags: Record<string, string | string[] | boolean | undefined>) {
  const mode = flags.mode as string | undefined;
  if (mode !== undefined && !isSchedulerMode(mode)) {
    console.error(`unload simulate: --mode must be one of ${SCHEDULER_MODES.join(", ")}`);
    return 2;
  }
  const n = flags.n === undefined ? undefined : Number(flags.n);
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 1_000_000)) {
    console.error(`unload simulate: -n must be an integer 1..1000000: received "${flags.n}"`);
    return 2;
  }
  let backends;
  let routeMode: SchedulerMode = "srv";
  try {
    if (typeof flags.srv === "string") backends = parseSrvSpec(flags.srv);
    else {
      const config = await readConfig(flags.config as string | undefined);
      if (typeof config === "number") return config;
      const route = flags.route === undefined
        ? config.routes[0]
        : config.routes.find((r) => r.name === flags.route);
      if (route === undefined) {
        console.error(`unload simulate: no route named "${flags.route}" in ${config.file}`);
        return 2;
      }
      routeMode = route.scheduler;
      const ns = config.dns.nameserver;
      backends = route.backends ? staticBackends(route.backends) : await resolveSrv(route.srv!, {
        ...(ns ? { nameServer: { ipAddr: ns.hostname, port: ns.port } } : {}),
      });
    }
  } catch (e) {
    console.error(`unload simulate: ${(e as Error).message}`);
    return 2;
  }
  const result = simulate(backends, { mode: (mode as SchedulerMode) ?? routeMode, n });
  console.log(formatSimulation(result));
  return 0;
}

async function explainCommand(
  flags: { config?: string; client?: string; header?: string[] },
  args: string[],
): Promise<number> {
  if (args.length !== 2) {
    console.error(`unload explain: give METHOD and URL\n\n${USAGE.explain}`);
    return 2;
  }
  const config = await readConfig(flags.config);
  if (typeof config === "number") return config;
  try {
    const lines = await explain(config, {
      method: args[0]!,
      url: args[1]!,
      ...(flags.client !== undefined ? { client: flags.client } : {}),
      headers: flags.header ?? [],
    });
    console.log(lines.join("\n"));
    return 0;
  } catch (e) {
    console.error(`unload explain: ${(e as Error).message}`);
    return 2;
  }
}
