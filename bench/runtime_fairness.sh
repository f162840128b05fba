#!/usr/bin/env bash
# How evenly the Deno runtime serves many busy connections, without unload in the way:
# ~10-line echo servers answer every request with the same 40 bytes, and wrk
# measures them at 100 and 1000 connections (127.0.0.1 only, bounded duration).
#   deno-conn        Deno.listen + conn.read/conn.write (what unload's data path uses)
#   deno-conn-early  the same, but each read is issued before the answer is written, so
#                    no read can find its request already there (order set by the runtime)
#   deno-node        node:net inside the same Deno binary (its native socket layer)
#   node             Node.js itself, when installed
# A fair server has p90/p99 close to connections / throughput; an unfair one serves
# some connections over and over while others wait (p50 low, p90/p99 very high).
# Env: DUR (s per measurement, 6), CONNS ("100 1000"). Prints a markdown table.
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh # need_commands, bench_start, wrk_rps, wrk_pct
need_commands bench/runtime_fairness.sh wrk taskset
bench_start
DUR=${DUR:-6}; CONNS=${CONNS:-"100 1000"}; PORT=${PORT:-19201}

cat > "$D/deno_conn.ts" <<'JS'
// args: port, and "early" to issue each read before writing the answer
const res = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
const [port, mode] = Deno.args;
for await (const c of Deno.listen({ hostname: "127.0.0.1", port: Number(port) })) {
  (async () => {
    const buf = new Uint8Array(4096);
    try {
      let next = c.read(buf);
      while ((await next) !== null) {
        if (mode === "early") next = c.read(buf);
        await c.write(res);
        if (mode !== "early") next = c.read(buf);
      }
    } catch { /* reset */ }
    c.close();
  })();
}
JS
cat > "$D/node_net.cjs" <<'JS'
const net = require("net");
const res = Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
net.createServer((s) => {
  s.on("data", () => s.write(res));
  s.on("error", () => {});
}).listen(Number(process.argv[2]), "127.0.0.1");
JS

run() { # name, command...
  local name=$1; shift
  taskset -c 0 "$@" > "$D/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  for c in $CONNS; do
    local out
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"${DUR}s" --latency "http://127.0.0.1:$PORT/" 2>&1)
    local rps p50 p90 p99 to
    rps=$(wrk_rps "$out"); p50=$(wrk_pct "$out" 50%); p90=$(wrk_pct "$out" 90%)
    p99=$(wrk_pct "$out" 99%)
    to=$(echo "$out" | sed -n 's/.*timeout \([0-9]*\).*/\1/p')
    echo "| $name | $c | $rps | $p50 | $p90 | $p99 | ${to:-0} |"
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  sleep 0.5
}

echo "Echo servers, one core each, ${DUR}s per measurement — $(date -u +%F)"
echo
echo "| server | conns | req/s | p50 | p90 | p99 | wrk timeouts |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
run deno-conn $DENO run --allow-net "$D/deno_conn.ts" "$PORT"
run deno-conn-early $DENO run --allow-net "$D/deno_conn.ts" "$PORT" early
run deno-node $DENO run --allow-net "$D/node_net.cjs" "$PORT"
if command -v node >/dev/null; then run node node "$D/node_net.cjs" "$PORT"; fi
