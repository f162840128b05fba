#!/usr/bin/env bash
# What compress costs, in ONE run:
#  1. CPU time per MiB of each coding at the level compress uses (bench/compress_cost.ts);
#  2. req/s of one unload (CPU 0) answering a 16 KiB HTML page from nginx (CPU 1) through a
#     route without compress (plain) and a route with `compress: true`, asked for gzip, br and
#     zstd in turn by wrk (CPU 1); and nginx itself as the proxy with `gzip on; gzip_comp_level 5`
#     (CPU 0), the line compress replaces; and a 6-byte answer through both routes (compress
#     leaves it alone: what a compress route costs a response it does not compress).
# Env: DUR (s per measurement, 5), CONNS (50), ROUNDS (2: best of N, rows interleaved).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/compress.sh nginx wrk taskset
bench_start
DUR=${DUR:-5}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-2}

taskset -c 1 $DENO run --allow-read bench/compress_cost.ts
echo

# the page: 16 KiB of this repository's README (HTML-like text)
mkdir -p "$D/site"
head -c 16384 README.md > "$D/site/page.html"
chmod o+rx "$D" "$D/site" && chmod o+r "$D/site/page.html" # nginx's workers read it as nobody
cat > "$D/backend.conf" <<C
worker_processes 1; daemon off; pid $D/b.pid; error_log $D/b.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; types { text/html html; }
  server { listen 127.0.0.1:19201; root $D/site; default_type text/plain;
    location = /small { return 200 "hello\\n"; } } }
C
taskset -c 1 nginx -c "$D/backend.conf" -p "$D" &
cat > "$D/proxy.conf" <<C
worker_processes 1; daemon off; pid $D/p.pid; error_log $D/p.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:19201; keepalive 128; }
  server { listen 127.0.0.1:19282;
    gzip on; gzip_comp_level 5; gzip_min_length 1024; gzip_proxied any; gzip_vary on;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
taskset -c 0 nginx -c "$D/proxy.conf" -p "$D" &
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:19290 }
log: { access: "off" }
routes:
  - { name: plain, host: plain.test, backends: [{ address: 127.0.0.1:19201 }] }
  - { name: compressed, host: compress.test, backends: [{ address: 127.0.0.1:19201 }], compress: true }
C
start_unload "$D/unload.yaml"
sleep 4
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: plain.test" http://127.0.0.1:19290/page.html)
[ "$code" = 200 ] || { echo "bench/compress.sh: the page is not served (HTTP $code)" >&2; exit 1; }
declare -A BEST
ROWS="plain gzip br zstd nginx-gzip plain-small compress-small"
for round in $(seq 1 "$ROUNDS"); do
  for row in $ROWS; do
    case $row in
      plain) args=(-H "Host: plain.test" -H "Accept-Encoding: gzip, br" http://127.0.0.1:19290/page.html) ;;
      nginx-gzip) args=(-H "Accept-Encoding: gzip" http://127.0.0.1:19282/page.html) ;;
      plain-small) args=(-H "Host: plain.test" -H "Accept-Encoding: gzip" http://127.0.0.1:19290/small) ;;
      compress-small) args=(-H "Host: compress.test" -H "Accept-Encoding: gzip" http://127.0.0.1:19290/small) ;;
      *) args=(-H "Host: compress.test" -H "Accept-Encoding: $row" http://127.0.0.1:19290/page.html) ;;
    esac
    curl -s -m 2 -o /dev/null "${args[@]}" || continue
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "${args[@]}" 2>&1)
    if better_round "$out" "${BEST[$row]:-}"; then BEST[$row]=$out; fi
  done
done
size() { curl -s -H "Host: $1" -H "Accept-Encoding: $2" "http://127.0.0.1:$3/${4:-page.html}" | wc -c; }
echo "compress req/s — $(date -u +%Y-%m-%d), $(nproc) cores, 16 KiB page, ${DUR}s per run, $CONNS conns, best of $ROUNDS"
echo
echo "| route | body bytes | req/s | p50 | p99 | errors | req/s vs plain |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
base=$(wrk_rps "${BEST[plain]:-}")
for row in $ROWS; do
  out=${BEST[$row]:-}
  case $row in
    plain) bytes=$(size plain.test "gzip, br" 19290) ;;
    nginx-gzip) bytes=$(size x gzip 19282) ;;
    plain-small) bytes=$(size plain.test gzip 19290 small) ;;
    compress-small) bytes=$(size compress.test gzip 19290 small) ;;
    *) bytes=$(size compress.test "$row" 19290) ;;
  esac
  if [ -z "$out" ]; then echo "| $row | $bytes | - | - | - | no answer | - |"; continue; fi
  echo "| $row | $bytes | $(wrk_cells "$out" "$base" "×") |"
done
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 5)
echo
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
