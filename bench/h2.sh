#!/usr/bin/env bash
# HTTP/2 termination over TLS: unload vs HAProxy vs nginx, each terminating h2 (ALPN) for the
# same HTTP/1.1 nginx backend, in ONE run on the same work (a benchmark, not a test).
#   nginx backend and h2load pinned to CPU 1; each balancer pinned to CPU 0; 127.0.0.1 only.
#   One self-signed EC P-256 certificate (made here with openssl) for all three.
#   Two workloads with h2load: 100 connections x 1 stream, and 100 connections x 10 streams.
# Env: DUR (s per measurement, 8), CONNS (100), STREAMS ("1 10"), ROUNDS (1: best of N),
#   KEEP (keep temp dir), BP/HP/NP/UP (ports of backend, HAProxy, nginx, unload).
# Prints a markdown table: req/s, mean and max request time, failures, ratio to HAProxy and nginx.
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/h2.sh nginx haproxy h2load openssl taskset curl
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-100}; STREAMS=${STREAMS:-"1 10"}; ROUNDS=${ROUNDS:-1}
BP=${BP:-19201}; HP=${HP:-19543}; NP=${NP:-19544}; UP=${UP:-19545}

tls_setup "$BP" "$UP" "$HP" h2,http/1.1
nginx_backends "$D" "$BP"

cat > "$D/lb-nginx.conf" <<C
worker_processes 1; daemon off; pid $D/n.pid; error_log $D/n.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  upstream app { server 127.0.0.1:$BP; keepalive 128; }
  server { listen 127.0.0.1:$NP ssl http2; ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto https; } } }
C
sleep 0.3
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
taskset -c 0 nginx -c "$D/lb-nginx.conf" -p "$D" > "$D/nginx.log" 2>&1 &
start_unload "$D/unload.yaml"
for i in $(seq 1 100); do
  ok=1
  for p in $HP $NP $UP; do curl -sk --http2 -m 1 "https://127.0.0.1:$p/" >/dev/null || ok=0; done
  [ $ok = 1 ] && break
  sleep 0.2
done

# h2load's summary line "finished in 8.00s, 31234.50 req/s, ..." and its request-time row
h2_rps() { echo "$1" | awk '/^finished in/{gsub(",", "", $4); print $4}'; }
h2_time() { echo "$1" | awk '/^time for request:/{print $6 " | " $5}'; }
h2_proto() { echo "$1" | awk '/^Application protocol:/{print $3}'; }
h2_failed() { echo "$1" | awk '/^requests:/{print $10 + $12}'; }
run_h2load() { # PORT STREAMS SECONDS
  taskset -c 1 h2load -t1 -c"$CONNS" -m"$2" -D "$3" "https://127.0.0.1:$1/" 2>&1
}

for p in $HP $NP $UP; do for m in $STREAMS; do run_h2load "$p" "$m" 2 >/dev/null; done; done # warm-up

echo "HTTP/2 over TLS (h2load), $CONNS connections, ${DUR}s per measurement, best of $ROUNDS"
echo
echo "| streams/conn | balancer | protocol | req/s | mean | max | failed | vs HAProxy | vs nginx |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A best
for m in $STREAMS; do
  for round in $(seq 1 "$ROUNDS"); do
    for t in haproxy:$HP nginx:$NP unload:$UP; do
      name=${t%%:*}; port=${t##*:}
      out=$(run_h2load "$port" "$m" "$DUR")
      r=$(h2_rps "$out"); b=$(h2_rps "${best[$m$name]:-}")
      if [ -z "${best[$m$name]:-}" ] || awk -v a="${r:-0}" -v b="${b:-0}" 'BEGIN{exit !(a > b)}'; then
        best[$m$name]=$out
      fi
    done
  done
  h=$(h2_rps "${best[${m}haproxy]:-}"); n=$(h2_rps "${best[${m}nginx]:-}")
  for name in haproxy nginx unload; do
    out=${best[$m$name]:-}
    r=$(h2_rps "$out")
    if [ -z "$r" ]; then echo "| $m | $name | | no answer | | | | - | - |"; continue; fi
    vh=$(awk -v a="$r" -v b="${h:-0}" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')
    vn=$(awk -v a="$r" -v b="${n:-0}" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')
    echo "| $m | $name | $(h2_proto "$out") | $r | $(h2_time "$out") | $(h2_failed "$out") | $vh | $vn |"
  done
done
