#!/usr/bin/env bash
# HTTPS throughput of unload vs HAProxy, each terminating TLS for the same nginx backend,
# in ONE run (a benchmark, not a test).
#   nginx backend and wrk pinned to CPU 1; each balancer pinned to CPU 0; 127.0.0.1 only.
#   One self-signed EC P-256 certificate (made here with openssl) for both balancers.
#   Two workloads: keep-alive (TLS record throughput: one handshake per connection) and
#   "Connection: close" (one full TLS handshake per request).
# Env: DUR (s per measurement, 8), CONNS (100), ROUNDS (1: best of N), KEEP (keep temp dir),
#   BP/HP/UP (ports of the backend, HAProxy, unload: 19101/19443/19444).
# Prints a markdown table: rps, p50, p99, errors and unload's ratio to HAProxy.
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/https.sh nginx haproxy wrk openssl taskset curl
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-100}; ROUNDS=${ROUNDS:-1}
# ports (backend, HAProxy, unload), away from the usual ones other benchmarks use
BP=${BP:-19101}; HP=${HP:-19443}; UP=${UP:-19444}

tls_setup "$BP" "$UP" "$HP" http/1.1
nginx_backends "$D" "$BP"

sleep 0.3
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
start_unload "$D/unload.yaml"
for i in $(seq 1 100); do
  curl -sk -m 1 https://127.0.0.1:$HP/ >/dev/null && curl -sk -m 1 https://127.0.0.1:$UP/ >/dev/null && break
  sleep 0.2
done

# warm-up (V8 compiles the hot path; both sides get the same)
for port in $HP $UP; do taskset -c 1 wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:$port/" >/dev/null 2>&1; done

echo "HTTPS, $CONNS connections, ${DUR}s per measurement, best of $ROUNDS (rps; latency p50/p99)"
echo
echo "| workload | balancer | rps | p50 | p99 | errors | rps vs HAProxy |"
echo "|---|---|---|---|---|---|---|"
declare -A best # the best wrk report per workload and balancer
for mode in keepalive close; do
  hdr=(); [ "$mode" = close ] && hdr=(-H "Connection: close")
  for round in $(seq 1 "$ROUNDS"); do
    for t in haproxy:$HP unload:$UP; do
      name=${t%%:*}; port=${t##*:}
      curl -sk -m 2 "https://127.0.0.1:$port/" >/dev/null || { echo "$name: no answer" >&2; continue; }
      out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s --latency "${hdr[@]}" \
        "https://127.0.0.1:$port/" 2>&1)
      if better_round "$out" "${best[$mode$name]:-}"; then best[$mode$name]=$out; fi
    done
  done
  h=$(wrk_rps "${best[${mode}haproxy]:-}")
  for name in haproxy unload; do
    out=${best[$mode$name]:-}
    if [ -z "$out" ]; then echo "| $mode | $name | no answer | | | | - |"; continue; fi
    echo "| $mode | $name | $(wrk_cells "$out" "$h" "") |"
  done
done
