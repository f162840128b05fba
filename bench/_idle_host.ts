// deno-lint-ignore-file no-console
// A server process for bench/idle_breakdown.ts, run with --v8-flags=--expose-gc so that what
// it reports is live memory only. Two kinds:
//   balancer YAML      the balancer in this process (as main.ts runs it), on 127.0.0.1:0
//   sockets SIZE       a plain Deno.listen that holds every accepted socket with one pending
//                      read into its own SIZE-byte buffer (the runtime's floor per socket)
// It prints "port N", then answers one JSON line per command read from stdin:
//   stats              after full GCs: RSS, V8 heap statistics, Deno.memoryUsage
//   snap PATH          after full GCs: a V8 heap snapshot written to PATH
import v8 from "node:v8";
import { Balancer } from "../src/server/balancer.ts";
import { parseConfig } from "../src/config/config.ts";
import { createLogger } from "../src/observe/log.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

async function fullGc(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
}

// RSS by kind of mapping (/proc/self/smaps): the brk heap (malloc's main arena), 64 MiB
// anonymous mappings (malloc's other arenas: glibc reserves them 64 MiB at a time), other
// anonymous mappings (V8's heap pages among them), and files (code).
function rssByMapping(): Record<string, number> {
  const out: Record<string, number> = {
    "rss:brk": 0,
    "rss:arena64": 0,
    "rss:anon": 0,
    "rss:file": 0,
  };
  let kind: "rss:brk" | "rss:arena64" | "rss:anon" | "rss:file" = "rss:anon";
  let size = 0;
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (m) {
      size = parseInt(m[2]!, 16) - parseInt(m[1]!, 16);
      const path = m[4]!;
      kind = path === "[heap]"
        ? "rss:brk"
        : path.startsWith("/")
        ? "rss:file"
        : size === 64 * 1048576 ||
            (size < 64 * 1048576 && size % 1048576 === 0 && size >= 32 * 1048576)
        ? "rss:arena64"
        : "rss:anon";
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r) {
      out[kind] = (out[kind] ?? 0) + Number(r[1]) * 1024;
      if (kind === "rss:anon") {
        const key = `anon@${size >= 1048576 ? `${Math.round(size / 1048576)}M` : `${size >> 10}K`}`;
        out[key] = (out[key] ?? 0) + Number(r[1]) * 1024;
      }
    }
  }
  return out;
}

async function stats(): Promise<Record<string, number>> {
  await fullGc();
  const h = v8.getHeapStatistics();
  const m = Deno.memoryUsage();
  const out: Record<string, number> = {
    rss: rss(),
    heapUsed: h.used_heap_size,
    heapTotal: h.total_heap_size,
    external: m.external,
  };
  Object.assign(out, rssByMapping());
  for (const s of v8.getHeapSpaceStatistics()) {
    out[`used:${s.space_name}`] = s.space_used_size;
    out[`committed:${s.space_name}`] = s.space_size;
  }
  return out;
}

const [kind, arg] = Deno.args;
let close: () => Promise<void>;
if (kind === "balancer") {
  const lb = await Balancer.start(parseConfig(arg!, "bench.yaml"), {
    logger: createLogger({ access: "off", quiet: true }),
  });
  console.log(`port ${lb.addrs.http?.port}`);
  close = () => lb.close();
} else if (kind === "sockets") {
  const size = Number(arg);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = new Set<Deno.Conn>();
  (async () => {
    for await (const c of listener) {
      held.add(c);
      c.read(new Uint8Array(size)).then(() => c.close(), () => {}).finally(() => held.delete(c));
    }
  })();
  console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
  close = () => Promise.resolve(listener.close());
} else throw new Error(`unknown kind ${kind}: balancer YAML | sockets SIZE`);

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const [cmd, path] = pending.slice(0, nl).split(" ");
    pending = pending.slice(nl + 1);
    if (cmd === "stats") console.log(JSON.stringify(await stats()));
    else if (cmd === "snap") {
      await fullGc();
      v8.writeHeapSnapshot(path!);
      console.log(JSON.stringify({ snap: path }));
    }
  }
}
await close();
