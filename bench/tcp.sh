#!/usr/bin/env bash
# TCP routes (layer 4) through unload against HAProxy `mode tcp` and nginx `stream`, in ONE run,
# on the same backends: iperf3 and redis-server pinned to CPU 1 with the load generators
# (iperf3 client, redis-benchmark), each balancer pinned to CPU 0, as bench/compare.sh.
#   throughput: iperf3, one stream for DUR seconds (client → server, then -R server → client)
#   requests/s: redis-benchmark GET, 50 keep-alive connections, small answers (per-chunk cost)
#   conns/s:    redis-benchmark PING with -k 0: a new connection per request (accept + connect cost)
# Env: DUR (s per iperf3 run, 8), N (redis-benchmark requests, 200000; conns/s uses N/10),
#   ROUNDS (1: best of N), BASE (first port, 25100; uses BASE..BASE+42),
#   BEFORE (a git revision: its unload also runs, as "unload@REV", so a change is measured
#   against what it replaced in the same run).
# Prints a markdown table, with each balancer's CPU seconds over the whole run (utime+stime).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/tcp.sh nginx haproxy iperf3 redis-server redis-benchmark taskset nc ss
bench_start
DUR=${DUR:-8}; N=${N:-200000}; ROUNDS=${ROUNDS:-1}; BASE=${BASE:-25100}
IPERF=$((BASE + 1)); REDIS=$((BASE + 2))
STREAM_MODULE=$(ls /usr/lib/nginx/modules/ngx_stream_module.so 2>/dev/null || true)

taskset -c 1 iperf3 -s -p "$IPERF" > "$D/iperf.log" 2>&1 &
taskset -c 1 redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no \
  > "$D/redis.log" 2>&1 &

cat > "$D/nginx.conf" <<C
${STREAM_MODULE:+load_module $STREAM_MODULE;}
worker_processes 1; daemon off; pid $D/n.pid; error_log $D/n.err;
events { worker_connections 8192; }
stream {
  server { listen 127.0.0.1:$((BASE + 21)); proxy_pass 127.0.0.1:$IPERF; }
  server { listen 127.0.0.1:$((BASE + 22)); proxy_pass 127.0.0.1:$REDIS; }
}
C
cat > "$D/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen iperf
  bind 127.0.0.1:$((BASE + 11))
  server s 127.0.0.1:$IPERF
listen redis
  bind 127.0.0.1:$((BASE + 12))
  server s 127.0.0.1:$REDIS
C
cat > "$D/unload.yaml" <<C
log: { access: "off" }
reload: { watch: false }
tcp:
  - { name: iperf, listen: 127.0.0.1:$((BASE + 31)), backends: [{ address: 127.0.0.1:$IPERF }] }
  - { name: redis, listen: 127.0.0.1:$((BASE + 32)), backends: [{ address: 127.0.0.1:$REDIS }] }
C
taskset -c 0 nginx -c "$D/nginx.conf" -p "$D" &
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
start_unload "$D/unload.yaml"
BEFORE_ROW=""
if [ -n "${BEFORE:-}" ]; then
  mkdir -p "$D/before"
  git archive "$BEFORE" | tar -x -C "$D/before"
  sed "s/:$((BASE + 31)),/:$((BASE + 41)),/; s/:$((BASE + 32)),/:$((BASE + 42)),/" "$D/unload.yaml" > "$D/before.yaml"
  (cd "$D/before" && exec taskset -c 0 $DENO run --allow-net --allow-read --v8-flags=--max-semi-space-size=4 \
    main.ts run --config "$D/before.yaml" > "$D/before.log" 2>&1) &
  BEFORE_ROW="unload@$BEFORE:40"
fi
sleep 4

# cpu_seconds PID: utime + stime of PID and its threads, in seconds.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
pid_of() { # the balancer process listening on port $1
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
iperf_gbits() { # iperf3 output → the receiver's Gbit/s
  echo "$1" | awk '/receiver/ { v = $7; u = $8 } END { if (u == "Mbits/sec") v /= 1000; printf "%.2f", v }'
}
rb_rps() { echo "$1" | tr '\r' '\n' | awk -F'[: ]+' '/requests per second/ { print $2 }' | tail -1; }

declare -A BEST CPU
for t in direct:0 haproxy:10 nginx:20 $BEFORE_ROW unload:30; do
  name=${t%:*}; off=${t##*:}
  if [ "$name" = direct ]; then pi=$IPERF; pr=$REDIS; else pi=$((BASE + off + 1)); pr=$((BASE + off + 2)); fi
  # a balancer that did not start is left out (its row shows "-"), never waited on
  if ! nc -z 127.0.0.1 "$pi" || ! nc -z 127.0.0.1 "$pr"; then echo "$name: not listening, skipped" >&2; continue; fi
  pid=""; [ "$name" = direct ] || pid=$(pid_of "$pi")
  before=0; [ -n "$pid" ] && before=$(cpu_seconds "$pid")
  for round in $(seq 1 "$ROUNDS"); do
    up=$(iperf_gbits "$(timeout $((DUR + 30)) taskset -c 1 iperf3 -c 127.0.0.1 -p "$pi" -t "$DUR" 2>&1)")
    down=$(iperf_gbits "$(timeout $((DUR + 30)) taskset -c 1 iperf3 -c 127.0.0.1 -p "$pi" -t "$DUR" -R 2>&1)")
    rps=$(rb_rps "$(timeout 300 taskset -c 1 redis-benchmark -p "$pr" -c 50 -n "$N" -t get -q 2>&1)")
    cps=$(rb_rps "$(timeout 300 taskset -c 1 redis-benchmark -p "$pr" -c 50 -n $((N / 10)) -k 0 -t ping_inline -q 2>&1)")
    for k in up down rps cps; do
      v=${!k:-0}
      awk -v a="$v" -v b="${BEST[$name/$k]:-0}" 'BEGIN{exit !(a > b)}' && BEST[$name/$k]=$v
    done
  done
  [ -n "$pid" ] && CPU[$name]=$(awk -v a="$(cpu_seconds "$pid")" -v b="$before" 'BEGIN{printf "%.1f", a - b}')
done

echo "tcp routes vs peers — $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), iperf3 ${DUR}s, redis-benchmark n=$N, best of $ROUNDS"
echo
echo "| path | iperf3 up Gbit/s | iperf3 down Gbit/s | redis GET req/s (50 conns) | new conns/s (PING, -k 0) | balancer CPU s | vs HAProxy (up, down, req/s, conns/s) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for name in direct haproxy nginx ${BEFORE_ROW%:*} unload; do
  ratio=$(awk -v a="${BEST[$name/up]:-0}" -v b="${BEST[haproxy/up]:-0}" -v c="${BEST[$name/down]:-0}" \
    -v d="${BEST[haproxy/down]:-0}" -v e="${BEST[$name/rps]:-0}" -v f="${BEST[haproxy/rps]:-0}" \
    -v g="${BEST[$name/cps]:-0}" -v h="${BEST[haproxy/cps]:-0}" \
    'function r(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "-" } BEGIN { printf "%s, %s, %s, %s", r(a, b), r(c, d), r(e, f), r(g, h) }')
  echo "| $name | ${BEST[$name/up]:--} | ${BEST[$name/down]:--} | ${BEST[$name/rps]:--} | ${BEST[$name/cps]:--} | ${CPU[$name]:--} | $ratio |"
done
echo
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 10)
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
