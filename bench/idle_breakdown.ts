// deno-lint-ignore-file no-console
// Where the bytes of an idle connection go (docs/h2.md, "Memory per idle connection").
// For HTTP/1.1 keep-alive, h2c after the preface and SETTINGS, and h2c after one request:
// the balancer runs in a child process with --expose-gc (bench/_idle_host.ts); full GCs, then
// RSS, V8 heap statistics and a heap snapshot with none and with N idle connections; the
// snapshots' difference by object kind, per connection. Then the runtime's floor: a plain
// Deno.listen holding N idle sockets, each with one pending read into its own buffer.
// RSS and heap statistics come from a first pass, snapshots from a second (writing a
// snapshot grows RSS).
// Run: deno run -A bench/idle_breakdown.ts [N=2000] [TOP=25]   (ulimit -n > 2N + 100)
import { keepAliveBackend } from "../tests/_http.ts";
import {
  closeAll,
  IDLE_MODES,
  type IdleMode,
  mib,
  openMany,
  sleep,
} from "../tests/_idle_clients.ts";

const N = Number(Deno.args[0] ?? 2000);
const TOP = Number(Deno.args[1] ?? 25);
const HOST = new URL("./_idle_host.ts", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "unload-idle-" });

interface Host {
  port: number;
  stats(): Promise<Record<string, number>>;
  snap(name: string): Promise<string>;
  close(): Promise<void>;
}

async function startHost(args: string[]): Promise<Host> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc,--max-semi-space-size=4", HOST, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stdin = child.stdin.getWriter();
  let buffered = "";
  const line = async (): Promise<string> => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const l = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return l;
      }
      const { value, done } = await out.read();
      if (done) throw new Error("host exited");
      buffered += value;
    }
  };
  const port = Number((await line()).split(" ")[1]);
  const ask = async (cmd: string) => {
    await stdin.write(new TextEncoder().encode(cmd + "\n"));
    return JSON.parse(await line());
  };
  return {
    port,
    stats: () => ask("stats"),
    snap: async (name) => {
      const path = `${dir}/${name}.heapsnapshot`;
      await ask(`snap ${path}`);
      return path;
    },
    close: async () => {
      await stdin.close();
      await out.cancel();
      await child.status;
    },
  };
}

// Self sizes summed by node type and name ("object" nodes are named by constructor).
function summarize(path: string): Map<string, { size: number; count: number }> {
  const s = JSON.parse(Deno.readTextFileSync(path));
  const fields: string[] = s.snapshot.meta.node_fields;
  const types: string[] = s.snapshot.meta.node_types[0];
  const strings: string[] = s.strings;
  const nodes: number[] = s.nodes;
  const w = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < nodes.length; i += w) {
    const type = types[nodes[i + iType]!]!;
    let name = strings[nodes[i + iName]!]!;
    if (type.includes("string") || type === "number" || type === "regexp") name = "";
    if (type === "closure") name = name === "" ? "(anonymous)" : name;
    const key = `${type} ${name}`.slice(0, 70);
    const e = out.get(key) ?? { size: 0, count: 0 };
    e.size += nodes[i + iSize]!;
    e.count++;
    out.set(key, e);
  }
  Deno.removeSync(path);
  return out;
}

function perConn(a: Record<string, number>, b: Record<string, number>, key: string): string {
  return ((b[key]! - a[key]!) / N).toFixed(0);
}

const backend = keepAliveBackend("b");
const BALANCER = `{ listen: { http: "127.0.0.1:0", h2c: true },
  routes: [{ name: app, backends: [{ address: "127.0.0.1:${backend.port}" }] }] }`;
// What is measured: the balancer with each kind of idle client, then plain sockets.
const CASES: { name: string; host: string[]; mode: IdleMode | "tcp" }[] = [
  ...IDLE_MODES.map((mode) => ({ name: mode, host: ["balancer", BALANCER], mode })),
  ...[64, 1024, 16393].map((size) => ({
    name: `plain socket, ${size} B read`,
    host: ["sockets", String(size)],
    mode: "tcp" as const,
  })),
];

async function open(mode: IdleMode | "tcp", port: number, n: number): Promise<Deno.Conn[]> {
  if (mode !== "tcp") return await openMany(mode, port, n);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  return conns;
}

console.log(`Idle connections: ${N} each, full GCs before every reading; bytes per connection\n`);
const rows: string[] = [];
for (const c of CASES) {
  const host = await startHost(c.host);
  // warm up: code compiled and pools made before the baseline
  closeAll(await open(c.mode, host.port, 200));
  await sleep(500);
  // pass 1: RSS and heap statistics (no snapshot yet: writing one grows RSS)
  const s0 = await host.stats();
  let conns = await open(c.mode, host.port, N);
  await sleep(1000);
  const s1 = await host.stats();
  closeAll(conns);
  await sleep(2000);
  const s2 = await host.stats();
  rows.push(
    `| ${c.name} | ${perConn(s0, s1, "rss")} | ${perConn(s0, s1, "heapUsed")} | ${
      perConn(s0, s1, "external")
    } | ${mib(s0.rss!)} → ${mib(s1.rss!)} → ${mib(s2.rss!)} | ${mib(s0.heapTotal!)} → ${
      mib(s1.heapTotal!)
    } → ${mib(s2.heapTotal!)} |`,
  );
  // pass 2: heap snapshots without and with N connections
  const snap0 = summarize(await host.snap(`0`));
  conns = await open(c.mode, host.port, N);
  await sleep(1000);
  const snap1 = summarize(await host.snap(`1`));
  closeAll(conns);
  await host.close();
  const diff: [string, number, number][] = [];
  for (const [key, v] of snap1) {
    const before = snap0.get(key) ?? { size: 0, count: 0 };
    const size = (v.size - before.size) / N;
    const count = (v.count - before.count) / N;
    if (Math.abs(size) >= 1) diff.push([key, size, count]);
  }
  diff.sort((a, b) => b[1] - a[1]);
  const total = diff.reduce((t, d) => t + d[1], 0);
  console.log(`### ${c.name}: heap snapshot difference per connection (${total.toFixed(0)} B)\n`);
  console.log("| kind | bytes | objects |\n|---|---|---|");
  for (const [key, size, count] of diff.slice(0, TOP)) {
    console.log(`| ${key} | ${size.toFixed(0)} | ${count.toFixed(2)} |`);
  }
  console.log();
}
console.log("### per connection (RSS, V8 heap and array buffers from pass 1)\n");
console.log(
  "| case | RSS | V8 heap used | external (array buffers) | RSS MiB: before → with N → after close | V8 heap committed MiB |",
);
console.log("|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
await backend.close();
await Deno.remove(dir, { recursive: true });
