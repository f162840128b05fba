#!/usr/bin/env bash
# What routes[].proxy_protocol costs, in ONE run: one unload (CPU 0) with three routes to nginx
# (CPU 1): /plain (no header, the shared pool), /v1 and /v2 (a PROXY header on each backend
# connection, to an nginx `listen ... proxy_protocol`; the connections private to each client
# connection). wrk (CPU 1) loads each in turn with keep-alive clients, then with a new client
# connection per request (`Connection: close`: the worst case, a backend connect per request).
# Besides req/s, the unload process's CPU time (utime+stime from /proc) over the run divided by
# the requests served: a steadier A/B figure on a shared machine.
# Env: DUR (s per measurement, 5), CONNS (50), ROUNDS (2: best of N, routes interleaved).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/proxy_protocol.sh nginx wrk taskset
bench_start
DUR=${DUR:-5}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-2}
cat > "$D/backend.conf" <<C
worker_processes 1; daemon off; pid $D/b.pid; error_log $D/b.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19201; location / { return 200 "plain \$remote_addr\n"; } }
  server { listen 127.0.0.1:19202 proxy_protocol; location / { return 200 "pp \$proxy_protocol_addr\n"; } } }
C
taskset -c 1 nginx -c "$D/backend.conf" -p "$D" &
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:19290 }
log: { access: "off" }
routes:
  - { name: plain, path: /plain, backends: [{ address: 127.0.0.1:19201 }] }
  - { name: v1, path: /v1, proxy_protocol: v1, backends: [{ address: 127.0.0.1:19202 }] }
  - { name: v2, path: /v2, proxy_protocol: v2, backends: [{ address: 127.0.0.1:19202 }] }
C
start_unload "$D/unload.yaml"
LB=$!
sleep 4
ticks() { awk '{print $14 + $15}' "/proc/$LB/stat"; }
HZ=$(getconf CLK_TCK)
declare -A BEST CPU
for round in $(seq 1 "$ROUNDS"); do
  for row in plain v1 v2 plain+close v2+close; do
    path=${row%+close}; hdr=()
    [ "$row" != "$path" ] && hdr=(-H "Connection: close")
    curl -s -m 2 "http://127.0.0.1:19290/$path" | grep -q . || continue
    before=$(ticks)
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "${hdr[@]}" "http://127.0.0.1:19290/$path" 2>&1)
    after=$(ticks)
    n=$(echo "$out" | awk '/requests in/{print $1}')
    if better_round "$out" "${BEST[$row]:-}"; then
      BEST[$row]=$out
      CPU[$row]=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$n" 'BEGIN{ printf "%.1f", t / hz * 1e6 / n }')
    fi
  done
done
echo "proxy_protocol cost — $(date -u +%Y-%m-%d), $(nproc) cores, ${DUR}s per run, $CONNS conns, best of $ROUNDS"
echo
echo "| route | req/s | p50 | p99 | errors | req/s vs plain | unload CPU µs/request |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for row in plain v1 v2 plain+close v2+close; do
  out=${BEST[$row]:-}
  if [ -z "$out" ]; then echo "| $row | - | - | - | no answer | - | - |"; continue; fi
  base=$(wrk_rps "${BEST[plain]:-}")
  [ "$row" != "${row%+close}" ] && base=$(wrk_rps "${BEST[plain+close]:-}")
  echo "| $row | $(wrk_cells "$out" "$base" "×") | ${CPU[$row]} |"
done
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 5)
echo
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
