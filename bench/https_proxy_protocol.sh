#!/usr/bin/env bash
# What listen.proxy_protocol costs on listen.https (the loopback hop that reads the PROXY header
# before TLS), in ONE run: HAProxy in TCP mode (CPU 1) in front of two unloads (CPU 0, loaded one
# at a time) with the same certificate and route to the same nginx backend (CPU 1):
#   plain: HAProxy passes the TLS bytes to an unload without proxy_protocol;
#   hop:   HAProxy sends send-proxy-v2 first, to an unload with proxy_protocol: true.
# wrk (CPU 1) loads each through HAProxy with keep-alive clients, then with one TLS handshake per
# request (Connection: close). Besides req/s, each unload's CPU time (utime+stime from /proc) over
# the run divided by the requests served.
# Env: DUR (s per measurement, 5), CONNS (50), ROUNDS (2: best of N, rows interleaved).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/https_proxy_protocol.sh nginx haproxy wrk openssl taskset curl
bench_start
DUR=${DUR:-5}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-2}
BP=19511; HPLAIN=19512; HHOP=19513; UPLAIN=19514; UHOP=19515
tls_setup "$BP" "$UPLAIN" 19519 http/1.1 # the certificates and $D/unload.yaml (plain)
nginx_backends "$D" "$BP"
sed "s/https: 127.0.0.1:$UPLAIN }/https: 127.0.0.1:$UHOP, proxy_protocol: true, trusted_proxies: [127.0.0.1\/32] }/" \
  "$D/unload.yaml" > "$D/unload-hop.yaml"
cat > "$D/l4.cfg" <<C
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen plain
  bind 127.0.0.1:$HPLAIN
  server u 127.0.0.1:$UPLAIN
listen hop
  bind 127.0.0.1:$HHOP
  server u 127.0.0.1:$UHOP send-proxy-v2
C
taskset -c 1 haproxy -f "$D/l4.cfg" > "$D/haproxy.log" 2>&1 &
start_unload "$D/unload.yaml"
PID_plain=$!
taskset -c 0 $DENO run --allow-net --allow-read --v8-flags=--max-semi-space-size=4 main.ts run \
  --config "$D/unload-hop.yaml" > "$D/unload-hop.log" 2>&1 &
PID_hop=$!
for i in $(seq 1 100); do
  curl -sk -m 1 https://127.0.0.1:$HPLAIN/ >/dev/null && curl -sk -m 1 https://127.0.0.1:$HHOP/ >/dev/null && break
  sleep 0.2
done
for port in $HPLAIN $HHOP; do taskset -c 1 wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:$port/" >/dev/null 2>&1; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A BEST CPU
for round in $(seq 1 "$ROUNDS"); do
  for mode in keepalive close; do
    hdr=(); [ "$mode" = close ] && hdr=(-H "Connection: close")
    for name in plain hop; do
      port=$HPLAIN; pid=$PID_plain
      [ "$name" = hop ] && { port=$HHOP; pid=$PID_hop; }
      curl -sk -m 2 "https://127.0.0.1:$port/" | grep -q . || { echo "$name: no answer" >&2; continue; }
      before=$(ticks "$pid")
      out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s --latency "${hdr[@]}" \
        "https://127.0.0.1:$port/" 2>&1)
      after=$(ticks "$pid")
      n=$(echo "$out" | awk '/requests in/{print $1}')
      if better_round "$out" "${BEST[$mode$name]:-}"; then
        BEST[$mode$name]=$out
        CPU[$mode$name]=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$n" 'BEGIN{ printf "%.1f", t / hz * 1e6 / n }')
      fi
    done
  done
done
echo "listen.https + proxy_protocol (loopback hop) cost — $(date -u +%Y-%m-%d), $(nproc) cores, ${DUR}s per run, $CONNS conns, best of $ROUNDS, through HAProxy mode tcp"
echo
echo "| workload | unload | req/s | p50 | p99 | errors | req/s vs plain | unload CPU µs/request |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for mode in keepalive close; do
  base=$(wrk_rps "${BEST[${mode}plain]:-}")
  for name in plain hop; do
    out=${BEST[$mode$name]:-}
    if [ -z "$out" ]; then echo "| $mode | $name | no answer | | | | - | - |"; continue; fi
    echo "| $mode | $name | $(wrk_cells "$out" "$base" "×") | ${CPU[$mode$name]} |"
  done
done
warnings=$(cat "$D/unload.log" "$D/unload-hop.log" | grep -v ' info ' | tail -n 5)
echo
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
