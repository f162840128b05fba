# Sourced by the bench/*.sh scripts: their common set-up (commands needed, the deno
# binary, a temp dir cleaned on exit), the nginx backends they measure against, the
# HAProxy defaults they use to reach them, a self-signed certificate and unload's
# HTTPS config for the TLS benchmarks, and how they read wrk's reports.

# need_commands SCRIPT COMMAND...: exits 2 (naming SCRIPT) when a COMMAND is not installed.
need_commands() {
  local script=$1 c hint
  shift
  for c in "$@"; do
    hint=""; [ "$c" = h2load ] && hint=" (nghttp2-client for h2load)"
    command -v "$c" >/dev/null || { echo "$script: $c is needed$hint" >&2; exit 2; }
  done
}

# bench_start: sets DENO (the deno binary itself, not npx, so that the EXIT trap stops
# the balancer it started) and D (a temp dir, kept when KEEP is set), stops every
# background job on exit, and raises the open-file limit.
bench_start() {
  DENO=${DENO:-$(command -v deno || npx -y deno@2.9.6 eval "console.log(Deno.execPath())")}
  D=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
  ulimit -n 65536 2>/dev/null || true
}

# start_unload CONFIG: runs unload as `deno task serve` does, pinned to CPU 0, in the
# background (its output in $D/unload.log).
start_unload() {
  taskset -c 0 $DENO run --allow-net --allow-read --v8-flags=--max-semi-space-size=4 main.ts run \
    --config "$1" > "$D/unload.log" 2>&1 &
}

# tls_setup BACKEND_PORT UNLOAD_PORT HAPROXY_PORT ALPN: the certificates of docs/tls.md (a CA
# in $D/ca.pem and the EC P-256 leaf for app.test and 127.0.0.1 it signs) in $D/cert.pem and
# $D/key.pem, both in $D/haproxy.pem; $D/unload.yaml: HTTPS on UNLOAD_PORT to the backend;
# $D/haproxy.cfg: HTTPS with ALPN (e.g. "h2,http/1.1") on HAPROXY_PORT to the backend.
tls_setup() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$D/ca.key" -out "$D/ca.pem" -subj "/CN=unload bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$D/key.pem" -out "$D/cert.csr" -subj "/CN=app.test" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:app.test,IP:127.0.0.1\n' > "$D/cert.ext"
  openssl x509 -req -in "$D/cert.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
    -days 2 -extfile "$D/cert.ext" -out "$D/cert.pem" 2>/dev/null
  cat "$D/cert.pem" "$D/key.pem" > "$D/haproxy.pem"
  cat > "$D/unload.yaml" <<C
listen: { https: 127.0.0.1:$2 }
tls: { cert: $D/cert.pem, key: $D/key.pem }
log: { access: "off" }
routes:
  - name: app
    backends: [{ address: 127.0.0.1:$1 }]
C
  cat > "$D/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
  tune.ssl.default-dh-param 2048
$HAPROXY_DEFAULTS
frontend fe
  bind 127.0.0.1:$3 ssl crt $D/haproxy.pem alpn $4
  http-request set-header X-Forwarded-Proto https
  default_backend be
backend be
  server b1 127.0.0.1:$1
C
}

# nginx_backends DIR PORT...: writes DIR/backend.conf, one server per PORT (the n-th
# answers "bn hello"), and starts nginx with it in the background, pinned to CPU 1.
nginx_backends() {
  local dir=$1 servers="" n=0 port
  shift
  for port in "$@"; do
    n=$((n + 1))
    servers+="
  server { listen 127.0.0.1:$port; location / { return 200 \"b$n hello\\n\"; } }"
  done
  cat > "$dir/backend.conf" <<C
worker_processes 1; daemon off; pid $dir/b.pid; error_log $dir/b.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;$servers }
C
  taskset -c 1 nginx -c "$dir/backend.conf" -p "$dir" &
}

# The defaults section of every HAProxy config here: HTTP mode, backend connections
# reused, X-Forwarded-For added.
HAPROXY_DEFAULTS="defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor"

# Fields of one `wrk --latency` report: wrk_rps OUT, wrk_pct OUT 99%, wrk_errors OUT
# (socket errors and non-2xx answers on one line, empty when there were none).
wrk_rps() { echo "$1" | awk '/Requests\/sec/{print $2}'; }
wrk_pct() { echo "$1" | awk -v p="$2" '$1 == p {print $2}'; }
wrk_errors() { echo "$1" | grep -E 'Socket errors|Non-2xx' | sed 's/^ *//' | tr '\n' ' '; }

# wrk_cells REPORT BASE_RPS SUFFIX: the table cells "req/s | p50 | p99 | errors | ratio" of a
# wrk report, the ratio to BASE_RPS (HAProxy's) printed with SUFFIX ("-" without a base).
wrk_cells() {
  local r err ratio
  r=$(wrk_rps "$1"); err=$(wrk_errors "$1")
  ratio=$(awk -v a="$r" -v b="${2:-0}" -v s="$3" 'BEGIN{ if (b > 0) printf "%.2f%s", a / b, s; else print "-" }')
  echo "$r | $(wrk_pct "$1" 50%) | $(wrk_pct "$1" 99%) | ${err:-0} | $ratio"
}

# cost_table TITLE ROW...: a markdown table of the wrk reports in the BEST array (by row name),
# each row's req/s against the first row's (the route without the policy), then unload's
# warnings and errors from $D/unload.log.
cost_table() {
  local title=$1 base row out warnings; shift
  echo "$title — $(date -u +%Y-%m-%d), $(nproc) cores, ${DUR}s per run, $CONNS conns, best of $ROUNDS"
  echo
  echo "| route | req/s | p50 | p99 | errors | req/s vs $1 |"
  echo "| --- | --- | --- | --- | --- | --- |"
  base=$(wrk_rps "${BEST[$1]:-}")
  for row in "$@"; do
    out=${BEST[$row]:-}
    if [ -z "$out" ]; then echo "| $row | - | - | - | no answer | - |"; continue; fi
    echo "| $row | $(wrk_cells "$out" "$base" "×") |"
  done
  warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 5)
  echo
  echo "unload's log, warnings and errors during the run: ${warnings:-none}"
}

# better_round NEW BEST: succeeds when the wrk report NEW should replace BEST (empty: no
# round yet) as the best of the rounds. A round answered with non-2xx responses (fast
# 5xx look like high req/s) never beats a clean one; otherwise the higher req/s wins.
better_round() {
  [ -z "$2" ] && return 0
  local new_bad best_bad
  new_bad=$(echo "$1" | grep -c 'Non-2xx'); best_bad=$(echo "$2" | grep -c 'Non-2xx')
  if [ "$new_bad" -ne "$best_bad" ]; then [ "$new_bad" -lt "$best_bad" ]; return; fi
  awk -v a="$(wrk_rps "$1")" -v b="$(wrk_rps "$2")" 'BEGIN{exit !(a > b)}'
}
