#!/usr/bin/env bash
# What presenting a client certificate to a TLS backend costs (a benchmark, not a test).
#   nginx (TLS, ssl_verify_client optional) and wrk on CPU 1, unload on CPU 0, 127.0.0.1 only.
#   Two routes to the same nginx: /t over TLS (Deno.startTls), /m over TLS with routes[].client_cert
#   (node:tls, see src/upstream/node_tls.ts). Keep-alive GETs, and POSTs of 3 KB.
# Measures requests per second and unload's CPU time per request (utime+stime from /proc).
# Env: DUR (s per measurement, 8), CONNS (20), PORT (24700: unload; nginx PORT+1).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/mtls.sh nginx openssl taskset wrk curl
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-20}; PORT=${PORT:-24700}; NP=$((PORT + 1))

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$D/ca.key" -out "$D/ca.pem" -subj "/CN=unload bench CA" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
issue() { # NAME CN EXTENSIONS
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$D/$1.key" -out "$D/$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$D/$1.ext"
  openssl x509 -req -in "$D/$1.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
    -days 2 -extfile "$D/$1.ext" -out "$D/$1.pem" 2>/dev/null
}
issue server backend.test "subjectAltName=DNS:backend.test
extendedKeyUsage=serverAuth"
issue client client.test "extendedKeyUsage=clientAuth"
cat > "$D/nginx.conf" <<C
worker_processes 1; daemon off; pid $D/n.pid; error_log $D/n.err;
events { worker_connections 1024; }
http {
  access_log off; client_body_temp_path $D/body;
  server {
    listen 127.0.0.1:$NP ssl; keepalive_requests 1000000;
    ssl_certificate $D/server.pem; ssl_certificate_key $D/server.key;
    ssl_client_certificate $D/ca.pem; ssl_verify_client optional;
    location / { return 200 "hello \$ssl_client_s_dn\n"; }
  }
}
C
taskset -c 1 nginx -p "$D" -c "$D/nginx.conf" &
route() { echo "  - { name: $1, path: /$1, backends: [{ address: 127.0.0.1:$NP }], tls: true, ca: $D/ca.pem, server_name: backend.test$2 }"; }
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:$PORT }
log: { access: "off" }
routes:
$(route t "")
$(route m ", client_cert: { cert: $D/client.pem, key: $D/client.key }")
C
start_unload "$D/unload.yaml"
pid=$!
for i in $(seq 1 100); do curl -s -m 1 "http://127.0.0.1:$PORT/m" | grep -q client.test && break; sleep 0.2; done
head -c 3000 /dev/zero | tr '\0' x > "$D/post.body"
printf 'wrk.method = "POST"\nlocal f = io.open("%s"); wrk.body = f:read("*a"); f:close()\n' "$D/post.body" > "$D/post.lua"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for p in t m; do taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/$p" >/dev/null 2>&1; done

echo "unload to a TLS nginx, $CONNS keep-alive connections, ${DUR}s each"
echo
echo "| route | request | rps | unload CPU µs per request |"
echo "|---|---|---|---|"
for method in GET POST; do
  script=(); [ "$method" = POST ] && script=(-s "$D/post.lua")
  for p in t m; do
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" "${script[@]}" "http://127.0.0.1:$PORT/$p" 2>&1)
    after=$(cpu_ticks "$pid")
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    label="TLS"; [ "$p" = m ] && label="TLS + client_cert"
    awk -v n="${n:-0}" -v t="$DUR" -v c="$((after - before))" -v hz="$hz" -v l="$label" -v m="$method" \
      'BEGIN { printf "| %s | %s | %d | %.0f |\n", l, m, n / t, n ? c / hz * 1e6 / n : 0 }'
  done
done
