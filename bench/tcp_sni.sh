#!/usr/bin/env bash
# TLS on tcp routes through unload against HAProxy `mode tcp`, in ONE run, to the same nginx:
#   passthrough: unload `sni:` routes vs HAProxy `req.ssl_sni` (inspect-delay), to an nginx that
#     terminates TLS; wrk asks for https://localhost (SNI "localhost"), either a new connection
#     and TLS handshake per request (`Connection: close`: conns/s, the ClientHello sniffed each
#     time) or 50 kept connections (TLS records carried: req/s);
#   termination: unload `tls:` vs HAProxy `bind ... ssl` in mode tcp, to a plain nginx; a new
#     connection per request (conns/s: a handshake on the balancer each time);
#   and, for what reading the ClientHello costs, a plain tcp route to the same TLS nginx.
# nginx and wrk are pinned to CPU 1, each balancer to CPU 0 (as bench/compare.sh). Each
# balancer's CPU time (utime+stime from /proc) over its runs is divided by the requests wrk made.
# Env: DUR (s per wrk run, 8), ROUNDS (best of, 1), BASE (first port, 26200; uses BASE..BASE+40).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/tcp_sni.sh nginx haproxy wrk openssl taskset ss
bench_start
DUR=${DUR:-8}; ROUNDS=${ROUNDS:-1}; BASE=${BASE:-26200}
TLS_BE=$((BASE + 1)); PLAIN_BE=$((BASE + 2))

# a CA and a leaf for localhost (wrk sends the URL's host as SNI)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$D/ca.key" -out "$D/ca.pem" -subj "/CN=unload bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$D/key.pem" -out "$D/cert.csr" -subj "/CN=localhost" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n' > "$D/cert.ext"
openssl x509 -req -in "$D/cert.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
  -days 2 -extfile "$D/cert.ext" -out "$D/cert.pem" 2>/dev/null
cat "$D/cert.pem" "$D/key.pem" > "$D/haproxy.pem"

cat > "$D/backend.conf" <<C
worker_processes 1; daemon off; pid $D/b.pid; error_log $D/b.err;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$TLS_BE ssl; ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem;
           location / { return 200 "tls hello\n"; } }
  server { listen 127.0.0.1:$PLAIN_BE; location / { return 200 "plain hello\n"; } }
}
C
taskset -c 1 nginx -c "$D/backend.conf" -p "$D" &

cat > "$D/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend passthrough
  bind 127.0.0.1:$((BASE + 11))
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend tls_be if { req.ssl_sni -i localhost }
  default_backend other
backend tls_be
  server s 127.0.0.1:$TLS_BE
backend other
  server s 127.0.0.1:1
listen plain
  bind 127.0.0.1:$((BASE + 13))
  server s 127.0.0.1:$TLS_BE
frontend terminate
  bind 127.0.0.1:$((BASE + 12)) ssl crt $D/haproxy.pem
  default_backend plain_be
backend plain_be
  server s 127.0.0.1:$PLAIN_BE
C
cat > "$D/unload.yaml" <<C
log: { access: "off" }
reload: { watch: false }
tcp:
  - { name: pass, listen: 127.0.0.1:$((BASE + 31)), sni: localhost, backends: [{ address: 127.0.0.1:$TLS_BE }] }
  - { name: other, listen: 127.0.0.1:$((BASE + 31)), backends: [{ address: 127.0.0.1:1 }] }
  - { name: plain, listen: 127.0.0.1:$((BASE + 33)), backends: [{ address: 127.0.0.1:$TLS_BE }] }
  - name: term
    listen: 127.0.0.1:$((BASE + 32))
    tls: { cert: $D/cert.pem, key: $D/key.pem }
    backends: [{ address: 127.0.0.1:$PLAIN_BE }]
C
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
start_unload "$D/unload.yaml"
sleep 4

cpu_seconds() { # utime + stime of PID (all threads), in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
pid_of() { ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
total_requests() { echo "$1" | awk '/requests in/ { print $1 }'; }

declare -A BEST CPUUS
# run NAME PORT KIND: KIND close or term (a new connection per request) or keep (50 kept
# connections); the best req/s and the CPU µs per request go to BEST[NAME/KIND], CPUUS[NAME/KIND].
run() {
  local name=$1 port=$2 kind=$3 pid before out n reqs=0 r best=0
  pid=$(pid_of "$port")
  before=$(cpu_seconds "$pid")
  for round in $(seq 1 "$ROUNDS"); do
    if [ "$kind" = keep ]; then
      out=$(taskset -c 1 wrk -t1 -c 50 -d "${DUR}s" "https://localhost:$port/" 2>&1)
    else
      out=$(taskset -c 1 wrk -t1 -c 20 -d "${DUR}s" -H "Connection: close" "https://localhost:$port/" 2>&1)
    fi
    n=$(total_requests "$out")
    [ -n "$n" ] || echo "$name $kind: wrk failed: $out" >&2
    reqs=$((reqs + ${n:-0}))
    r=$(wrk_rps "$out")
    awk -v a="${r:-0}" -v b="$best" 'BEGIN{exit !(a > b)}' && best=$r
    err=$(wrk_errors "$out"); [ -n "$err" ] && echo "$name $kind: $err" >&2
  done
  BEST[$name/$kind]=$best
  CPUUS[$name/$kind]=$(awk -v a="$(cpu_seconds "$pid")" -v b="$before" -v n="$reqs" \
    'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1e6 / n; else print "-" }')
}
run haproxy $((BASE + 11)) close
run unload $((BASE + 31)) close
run haproxy $((BASE + 11)) keep
run unload $((BASE + 31)) keep
run haproxy $((BASE + 13)) plain
run unload $((BASE + 33)) plain
run haproxy $((BASE + 12)) term
run unload $((BASE + 32)) term
# and straight to nginx, for scale
direct_close=$(wrk_rps "$(taskset -c 1 wrk -t1 -c 20 -d "${DUR}s" -H "Connection: close" "https://localhost:$TLS_BE/" 2>&1)")
direct_keep=$(wrk_rps "$(taskset -c 1 wrk -t1 -c 50 -d "${DUR}s" "https://localhost:$TLS_BE/" 2>&1)")

echo "TLS on tcp routes vs HAProxy mode tcp — $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), wrk ${DUR}s, best of $ROUNDS"
echo
echo "| path | HAProxy req/s | unload req/s | unload / HAProxy | balancer CPU µs per request: HAProxy, unload |"
echo "| --- | --- | --- | --- | --- |"
row() {
  local label=$1 k=$2
  ratio=$(awk -v a="${BEST[unload/$k]:-0}" -v b="${BEST[haproxy/$k]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  echo "| $label | ${BEST[haproxy/$k]:--} | ${BEST[unload/$k]:--} | $ratio | ${CPUUS[haproxy/$k]:--}, ${CPUUS[unload/$k]:--} |"
}
row "passthrough by SNI, new connection + handshake per request (nginx direct: ${direct_close:--})" close
row "plain tcp route (no SNI read) to the same nginx, new connection + handshake per request" plain
row "passthrough by SNI, 50 kept connections (nginx direct: ${direct_keep:--})" keep
row "termination (tls:), new connection + handshake per request" term
echo
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 10)
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
