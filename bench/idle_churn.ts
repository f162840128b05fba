// deno-lint-ignore-file no-console
// What stays after churn, and where (docs/h2.md, "What stays after churn"): the balancer in a
// child process with --expose-gc (bench/_idle_host.ts); ROUNDS times N idle connections opened
// and closed; after each round, full GCs, then RSS by kind of mapping (/proc/self/smaps: malloc's
// brk heap, anonymous mappings, files) beside V8's committed and used heap, and the same 10 s
// later. The process's environment passes on (try MALLOC_ARENA_MAX=1).
// Run: flock /tmp/unload-bench.lock deno run -A bench/idle_churn.ts [MODE=h2c-req] [N=5000]
//   [ROUNDS=6] [SEMI=4]   (SEMI: --max-semi-space-size, "default" for none)
import { keepAliveBackend } from "../tests/_http.ts";
import { closeAll, type IdleMode, mib, openMany, sleep } from "../tests/_idle_clients.ts";

const MODE = (Deno.args[0] ?? "h2c-req") as IdleMode;
const N = Number(Deno.args[1] ?? 5000);
const ROUNDS = Number(Deno.args[2] ?? 6);
const SEMI = Deno.args[3] ?? "4";
const HOST = new URL("./_idle_host.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

const backend = keepAliveBackend("b");
const flags = SEMI === "default" ? "--expose-gc" : `--expose-gc,--max-semi-space-size=${SEMI}`;
const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    "--config",
    CONFIG,
    `--v8-flags=${flags}`,
    HOST,
    "balancer",
    `{
    listen: { http: "127.0.0.1:0", h2c: true },
    routes: [{ name: app, backends: [{ address: "127.0.0.1:${backend.port}" }] }] }`,
  ],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
const stdin = child.stdin.getWriter();
let buffered = "";
async function line(): Promise<string> {
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
}
const port = Number((await line()).split(" ")[1]);
async function stats(): Promise<Record<string, number>> {
  await stdin.write(new TextEncoder().encode("stats\n"));
  return JSON.parse(await line());
}
function show(when: string, s: Record<string, number>): void {
  console.log(
    `| ${when} | ${mib(s.rss!)} | ${mib(s["rss:brk"]!)} | ${mib(s["rss:anon"]!)} | ${
      mib(s["rss:file"]!)
    } | ${mib(s.heapTotal!)} | ${mib(s["committed:new_space"]!)} | ${mib(s.heapUsed!)} |`,
  );
}

console.log(`${MODE}, ${N} connections a round, --max-semi-space-size=${SEMI}; MiB\n`);
console.log("| when | RSS | brk heap | anonymous | files | V8 committed | of it young | V8 used |");
console.log("|---|---|---|---|---|---|---|---|");
closeAll(await openMany(MODE, port, 200)); // warm-up: code compiled, pools made
await sleep(500);
show("start", await stats());
for (let round = 1; round <= ROUNDS; round++) {
  const conns = await openMany(MODE, port, N);
  await sleep(500);
  if (round === 1) show(`with ${N}`, await stats());
  closeAll(conns);
  await sleep(1500);
  show(`after round ${round}`, await stats());
}
await sleep(10_000);
show("10 s later", await stats());
await stdin.close();
await out.cancel();
await child.status;
await backend.close();
