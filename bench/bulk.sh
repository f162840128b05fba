#!/usr/bin/env bash
# Bulk bodies through unload, HAProxy and nginx in ONE run (a benchmark, not a test):
# 64 KiB and 1 MiB downloads and 1 MiB uploads, over plain HTTP and over TLS (each balancer
# terminates TLS; the backend is plain HTTP), and the peak RSS of each balancer while 1000
# connections download 1 MiB bodies at once.
#   One nginx backend (static files; uploads are read and answered "ok") and wrk pinned to
#   CPU 1; each balancer pinned to CPU 0, one process or worker each; 127.0.0.1 only.
# Env: DUR (s per measurement, 8), CONNS (50), ROUNDS (1: best of N), KEEP (keep temp dir),
#   BASE (a second unload source tree, e.g. the code before a change, measured in the same run
#   as "unload-base"), RSS_CONNS (1000), RSS_DUR (10; 0 skips the RSS measurement), SCHEMES
#   ("http https").
# Prints markdown tables: MB/s of body bytes per balancer and unload's ratio to HAProxy; RSS.
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/bulk.sh nginx haproxy wrk openssl taskset curl
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-1}
RSS_CONNS=${RSS_CONNS:-1000}; RSS_DUR=${RSS_DUR:-10}; SCHEMES=${SCHEMES:-http https}
BP=19301 # backend; balancers: plain on 1930x, TLS on 1931x
declare -A PLAIN=([nginx]=19302 [haproxy]=19303 [unload]=19304 [unload-base]=19305)
declare -A TLS=([nginx]=19312 [haproxy]=19313 [unload]=19314 [unload-base]=19315)
LBS="nginx haproxy unload"
[ -n "${BASE:-}" ] && LBS="$LBS unload-base"

tls_setup "$BP" "${TLS[unload]}" "${TLS[haproxy]}" http/1.1 # the certificate (configs: below)
mkdir -p "$D/www"
head -c 65536 /dev/zero | tr '\0' a > "$D/www/64k"
head -c 1048576 /dev/zero | tr '\0' a > "$D/www/1m"
head -c 1048576 /dev/zero | tr '\0' a > "$D/up.bin"
cat > "$D/up.lua" <<'C'
local f = io.open(os.getenv("UPLOAD_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
C
chmod 755 "$D"; chmod -R a+rX "$D/www" # nginx's worker runs as nobody
# An upload is read whole before the answer: nginx buffers it (client_body_buffer_size), then
# asks its own "ok" server without the body.
cat > "$D/backend.conf" <<C
worker_processes 1; daemon off; pid $D/b.pid; error_log $D/b.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; sendfile on; tcp_nopush on;
  upstream ok { server 127.0.0.1:$((BP - 1)); keepalive 64; }
  server { listen 127.0.0.1:$((BP - 1)); location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$BP; root $D/www; client_max_body_size 2m; client_body_buffer_size 2m;
    location = /up { proxy_pass http://ok; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length ""; } } }
C
taskset -c 1 nginx -c "$D/backend.conf" -p "$D" &

cat > "$D/lb-nginx.conf" <<C
worker_processes 1; daemon off; pid $D/n.pid; error_log $D/n.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; client_max_body_size 2m;
  upstream app { server 127.0.0.1:$BP; keepalive 128; }
  server { listen 127.0.0.1:${PLAIN[nginx]}; listen 127.0.0.1:${TLS[nginx]} ssl;
    ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
C
cat > "$D/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
$HAPROXY_DEFAULTS
frontend fe
  bind 127.0.0.1:${PLAIN[haproxy]}
  bind 127.0.0.1:${TLS[haproxy]} ssl crt $D/haproxy.pem alpn http/1.1
  default_backend be
backend be
  server b1 127.0.0.1:$BP
C
unload_config() { # PLAIN_PORT TLS_PORT
  cat <<C
listen: { http: 127.0.0.1:$1, https: 127.0.0.1:$2 }
tls: { cert: $D/cert.pem, key: $D/key.pem }
log: { access: "off" }
routes: [{ name: app, backends: [{ address: 127.0.0.1:$BP }] }]
C
}
unload_config "${PLAIN[unload]}" "${TLS[unload]}" > "$D/unload.yaml"
unload_config "${PLAIN[unload-base]}" "${TLS[unload-base]}" > "$D/unload-base.yaml"

declare -A PID
taskset -c 0 nginx -c "$D/lb-nginx.conf" -p "$D" & PID[nginx]=$!
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 & PID[haproxy]=$!
start_unload "$D/unload.yaml"; PID[unload]=$!
if [ -n "${BASE:-}" ]; then
  (cd "$BASE" && exec taskset -c 0 $DENO run --allow-net --allow-read \
    --v8-flags=--max-semi-space-size=4 main.ts run --config "$D/unload-base.yaml") \
    > "$D/unload-base.log" 2>&1 & PID[unload-base]=$!
fi
for name in $LBS; do
  for i in $(seq 1 100); do
    curl -s -m 1 -o /dev/null "http://127.0.0.1:${PLAIN[$name]}/64k" &&
      curl -sk -m 1 -o /dev/null "https://127.0.0.1:${TLS[$name]}/64k" && break
    sleep 0.2
  done
done
# nginx serves from its worker process (the master only waits)
PID[nginx]=$(pgrep -P "${PID[nginx]}" | head -n 1)

rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Peak RSS first, on processes that have moved no body yet.
declare -A RSS0 RSSPEAK
for name in $LBS; do
  [ "$RSS_DUR" = 0 ] && break
  pid=${PID[$name]}; RSS0[$name]=$(rss_kib "$pid"); peak=${RSS0[$name]}
  taskset -c 1 wrk -t1 -c"$RSS_CONNS" -d"${RSS_DUR}s" --timeout 10s \
    "http://127.0.0.1:${PLAIN[$name]}/1m" > "$D/rss-$name.txt" 2>&1 &
  w=$!
  while kill -0 "$w" 2>/dev/null; do
    r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  RSSPEAK[$name]=$peak
done

# MB/s of body bytes: downloads from wrk's Transfer/sec (bodies are nearly all of it),
# uploads from requests/s times the body size.
mbps() { # REPORT KIND
  if [ "$2" = up ]; then
    awk '/Requests\/sec/{printf "%.0f", $2 * 1048576 / 1e6}' <<< "$1"
  else
    awk '/Transfer\/sec/{v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
      m = (u == "GB") ? 1073.741824 : (u == "MB") ? 1.048576 : (u == "KB") ? 0.001024 : 0;
      printf "%.0f", n * m}' <<< "$1"
  fi
}
run_wrk() { # URL KIND [DUR]
  local extra=()
  [ "$2" = up ] && extra=(-s "$D/up.lua")
  UPLOAD_FILE="$D/up.bin" taskset -c 1 wrk -t1 -c"$CONNS" -d"${3:-$DUR}s" --timeout 10s \
    "${extra[@]}" "$1" 2>&1
}

WORKLOADS="64k:down 1m:down up:up"
declare -A BEST ERR
for scheme in $SCHEMES; do
  for name in direct $LBS; do # warm-up: V8 compiles the hot path; everyone gets the same
    [ "$name" = direct ] && continue
    if [ "$scheme" = http ]; then port=${PLAIN[$name]}; else port=${TLS[$name]}; fi
    run_wrk "$scheme://127.0.0.1:$port/1m" down 2 > /dev/null
  done
  for round in $(seq 1 "$ROUNDS"); do
    for w in $WORKLOADS; do
      path=${w%%:*}; kind=${w##*:}
      for name in direct $LBS; do
        if [ "$name" = direct ]; then
          [ "$scheme" = https ] && continue
          port=$BP
        elif [ "$scheme" = http ]; then port=${PLAIN[$name]}; else port=${TLS[$name]}; fi
        out=$(run_wrk "$scheme://127.0.0.1:$port/$path" "$kind")
        v=$(mbps "$out" "$kind"); k="$scheme/$path/$name"
        if [ "${v:-0}" -gt "${BEST[$k]:-0}" ]; then
          BEST[$k]=$v; ERR[$k]=$(wrk_errors "$out")
        fi
      done
    done
  done
done

echo "bulk bodies — $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $CONNS connections, ${DUR}s per measurement, best of $ROUNDS"
echo
cols="direct $LBS"
printf '| scheme | body |'; for n in $cols; do printf ' %s MB/s |' "$n"; done
printf ' unload vs HAProxy |'; [ -n "${BASE:-}" ] && printf ' unload vs unload-base |'; echo
printf '| --- | --- |'; for n in $cols; do printf ' --- |'; done; printf ' --- |'
[ -n "${BASE:-}" ] && printf ' --- |'; echo
for scheme in $SCHEMES; do
  for w in $WORKLOADS; do
    path=${w%%:*}
    case $path in 64k) body="64 KiB down" ;; 1m) body="1 MiB down" ;; up) body="1 MiB up" ;; esac
    printf '| %s | %s |' "$scheme" "$body"
    for n in $cols; do
      k="$scheme/$path/$n"; printf ' %s%s |' "${BEST[$k]:--}" "${ERR[$k]:+ ($(echo ${ERR[$k]}))}"
    done
    ratio() { awk -v a="${BEST[$scheme/$path/$1]:-0}" -v b="${BEST[$scheme/$path/$2]:-0}" \
      'BEGIN{ if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
    printf ' %s |' "$(ratio unload haproxy)"
    [ -n "${BASE:-}" ] && printf ' %s |' "$(ratio unload unload-base)"
    echo
  done
done
if [ "$RSS_DUR" != 0 ]; then
  echo
  echo "Peak RSS while $RSS_CONNS connections download 1 MiB bodies (${RSS_DUR}s, plain HTTP, fresh processes):"
  echo
  echo "| balancer | RSS at start | peak RSS | growth | downloads/s |"
  echo "| --- | --- | --- | --- | --- |"
  for name in $LBS; do
    awk -v n="$name" -v a="${RSS0[$name]}" -v b="${RSSPEAK[$name]}" -v r="$(wrk_rps "$(cat "$D/rss-$name.txt")")" \
      'BEGIN{ printf "| %s | %.1f MiB | %.1f MiB | +%.1f MiB | %s |\n", n, a / 1024, b / 1024, (b - a) / 1024, r }'
  done
fi
echo
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 10)
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
