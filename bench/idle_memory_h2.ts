// deno-lint-ignore-file no-console
// Idle connections and churn, HTTP/2 beside HTTP/1.1, unload beside HAProxy (`proto h2` bind)
// and nginx (`listen ... http2`), in one run (issue #25; bench/idle_memory.ts is the HTTP/1.1
// figure at 10,000 connections). For each server and kind of client, a fresh server process:
//   1. its RSS once started and warmed up (200 connections opened and closed), then with N
//      idle connections:
//      per connection = (with N - before) / N
//   2. churn: ROUNDS times N connections opened and all closed (round 1 is step 1); RSS after
//      each round once the connections are gone, then SETTLE seconds after the last round (V8
//      unmaps the pages it freed only seconds later: docs/h2.md), and the open descriptors
// Clients (bench/_idle_clients.ts): h1 = one keep-alive GET, then idle; h2c = the preface and
// SETTINGS, the server's SETTINGS acknowledged, idle; h2c-req = h2c plus one GET on stream 1.
// unload runs as README's run command does; SEMI lists --max-semi-space-size values for it
// ("default": no flag). 127.0.0.1 only. Needs ulimit -n > 2N + 100.
// Run: flock /tmp/unload-bench.lock deno run -A bench/idle_memory_h2.ts [N=5000] [ROUNDS=8]
//   env SERVERS="unload haproxy nginx", MODES="h1 h2c h2c-req", SEMI="4", SETTLE=15
import { freePort, keepAliveBackend } from "../tests/_http.ts";
import {
  closeAll,
  fdsOf,
  type IdleMode,
  mib,
  openIdle,
  openMany,
  rssOf,
  sleep,
} from "../tests/_idle_clients.ts";

const N = Number(Deno.args[0] ?? 5000);
const ROUNDS = Number(Deno.args[1] ?? 8);
const SERVERS = (Deno.env.get("SERVERS") ?? "unload haproxy nginx").split(/\s+/);
const MODES = (Deno.env.get("MODES") ?? "h1 h2c h2c-req").split(/\s+/) as IdleMode[];
const SEMI = (Deno.env.get("SEMI") ?? "4").split(/\s+/);
const SETTLE = Number(Deno.env.get("SETTLE") ?? 15);
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "unload-idle-h2-" });
const backend = keepAliveBackend("b");

interface Server {
  name: string;
  /** Processes whose RSS is summed (nginx: master and worker). */
  pids(): number[];
  stop(): Promise<void>;
}

// Every process under `pid`, itself included.
function tree(pid: number): number[] {
  const out = [pid];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      const kids = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
      for (const k of kids.split(/\s+/).filter(Boolean)) out.push(...tree(Number(k)));
    }
  } catch { /* gone */ }
  return out;
}

function spawn(name: string, cmd: string, args: string[]): Server {
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).spawn();
  const err = child.stderr.pipeThrough(new TextDecoderStream());
  let stderr = "";
  const drained = (async () => {
    for await (const t of err) stderr += t;
  })();
  return {
    name,
    pids: () => tree(child.pid),
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      const st = await child.status;
      await drained;
      if (!st.success && st.signal !== "SIGTERM" && stderr !== "") console.error(name, stderr);
    },
  };
}

function startUnload(port: number, semi: string): Server {
  const yaml = `${dir}/unload-${port}.yaml`;
  Deno.writeTextFileSync(
    yaml,
    `listen: { http: "127.0.0.1:${port}", h2c: true }
routes: [{ name: app, backends: [{ address: "127.0.0.1:${backend.port}" }] }]
`,
  );
  const flags = semi === "default" ? [] : [`--v8-flags=--max-semi-space-size=${semi}`];
  return spawn(`unload (semi-space ${semi})`, Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    ...flags,
    MAIN,
    "run",
    "--config",
    yaml,
  ]);
}

function startHaproxy(port: number, h1port: number): Server {
  const cfg = `${dir}/haproxy-${port}.cfg`;
  Deno.writeTextFileSync(
    cfg,
    `global
  maxconn ${N + 1000}
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
frontend f
  bind 127.0.0.1:${port} proto h2
  bind 127.0.0.1:${h1port}
  default_backend b
backend b
  server s1 127.0.0.1:${backend.port}
`,
  );
  return spawn("haproxy 2.6", "haproxy", ["-db", "-f", cfg]);
}

function startNginx(port: number, h1port: number): Server {
  const cfg = `${dir}/nginx-${port}.conf`;
  Deno.writeTextFileSync(
    cfg,
    `worker_processes 1; daemon off; pid ${dir}/nginx-${port}.pid; error_log ${dir}/nginx.err;
worker_rlimit_nofile ${2 * N + 1000};
events { worker_connections ${N + 1000}; }
http { access_log off; keepalive_timeout 300s;
  upstream app { server 127.0.0.1:${backend.port}; keepalive 16; }
  server { listen 127.0.0.1:${port} http2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:${h1port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
  );
  return spawn("nginx 1.22", "nginx", ["-c", cfg, "-p", dir]);
}

async function ready(mode: IdleMode, port: number): Promise<void> {
  for (let i = 0;; i++) {
    try {
      (await openIdle(mode, port)).close();
      return;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(100);
    }
  }
}

const rss = (s: Server) => s.pids().reduce((t, p) => t + rssOf(p), 0);

const table: string[] = [];
const cases: { server: string; semi: string }[] = [];
for (const server of SERVERS) {
  if (server === "unload") { for (const semi of SEMI) cases.push({ server, semi }); }
  else cases.push({ server, semi: "" });
}
console.log(`${N} idle connections, then ${ROUNDS} rounds of ${N} opened and closed\n`);
for (const c of cases) {
  for (const mode of MODES) {
    // HAProxy and nginx serve prior-knowledge h2c on `port` and HTTP/1.1 on `h1port`.
    const port = freePort();
    const h1port = freePort();
    const s = c.server === "unload"
      ? startUnload(port, c.semi)
      : c.server === "haproxy"
      ? startHaproxy(port, h1port)
      : startNginx(port, h1port);
    try {
      const p = c.server !== "unload" && mode === "h1" ? h1port : port;
      await ready(mode, p);
      closeAll(await openMany(mode, p, 200)); // warm-up: code compiled, pools made
      await sleep(1500);
      const before = rss(s);
      const after: number[] = [];
      let withN = 0;
      for (let round = 1; round <= ROUNDS; round++) {
        const conns = await openMany(mode, p, N);
        await sleep(1000);
        if (round === 1) withN = rss(s);
        closeAll(conns);
        await sleep(1500);
        after.push(rss(s));
      }
      await sleep(SETTLE * 1000);
      const settled = rss(s);
      const fds = s.pids().reduce((t, pid) => t + fdsOf(pid), 0);
      const per = ((withN - before) / N / 1024).toFixed(1);
      const last = after[after.length - 1]!;
      console.log(
        `${s.name} ${mode}: ${mib(before)} MiB, ${mib(withN)} with ${N} idle (${per} KiB each); ` +
          `after each round: ${after.map(mib).join(" ")}; ${SETTLE} s later ${mib(settled)}; ` +
          `fds ${fds}`,
      );
      table.push(
        `| ${s.name} | ${mode} | ${mib(before)} | ${mib(withN)} | ${per} | ${
          mib(Math.max(...after))
        } | ${mib(last)} | ${mib(settled)} | ${mib(settled - before)} |`,
      );
    } finally {
      await s.stop();
    }
  }
}
console.log(
  `\n| server | clients | RSS MiB at start | with ${N} idle | KiB per connection | ` +
    `highest after a round | after ${ROUNDS} rounds | ${SETTLE} s later | growth MiB |`,
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const row of table) console.log(row);
await backend.close();
await Deno.remove(dir, { recursive: true });
