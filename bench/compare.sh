#!/usr/bin/env bash
# Side-by-side throughput of unload and peer load balancers on this machine, in ONE run,
# on the same work (each adds X-Forwarded-For and reuses backend connections).
#   nginx backends (3 ports) and wrk pinned to CPU 1; each balancer pinned to CPU 0.
#   unload and HAProxy discover the backends through DNS SRV (dnsmasq on 127.0.0.1:5353).
# Env: DUR (s per measurement, 8), CONNS ("100 1000"), ROUNDS (1: best of N),
#   BEFORE (a git revision: its unload also runs, on the same route, as "unload@REV", so a
#   change is measured against what it replaced in the same run).
#   ROWS (names to measure, e.g. "unload@REV unload unload+policy"; default: every row).
# "unload+policy" is the same unload on a route with a rewrite and request and response
#   headers (Host: policy.test, GET /api/): what those policies cost. "unload+policy+rl" adds a
#   local rate_limit that never refuses (Host: policy-rl.test): what a bucket per client costs.
# Prints a markdown table: rps, p50, p99, errors and the ratio to HAProxy.
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need=()
for c in nginx haproxy caddy wrk dnsmasq taskset; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^dnsmasq$/dnsmasq-base/; s/^taskset$/util-linux/' | tr '\n' ' ')
  echo "installing: $pkgs" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-"100 1000"}; ROUNDS=${ROUNDS:-1}

nginx_backends "$D" 9001 9002 9003
dnsmasq -k --port=5353 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --host-record=b1.test,127.0.0.1 --host-record=b2.test,127.0.0.1 --host-record=b3.test,127.0.0.1 \
  --srv-host=_http._tcp.app.test,b1.test,9001,0,30 --srv-host=_http._tcp.app.test,b2.test,9002,0,20 \
  --srv-host=_http._tcp.app.test,b3.test,9003,0,40 --pid-file="$D/dns.pid" --user=root --group=root &
cat > "$D/lb-nginx.conf" <<C
worker_processes 1; daemon off; pid $D/n.pid; error_log $D/n.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:9001 weight=3; server 127.0.0.1:9002 weight=2; server 127.0.0.1:9003 weight=4; keepalive 128; }
  server { listen 127.0.0.1:8081; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
C
cat > "$D/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
resolvers dns
  nameserver d 127.0.0.1:5353
  accepted_payload_size 8192
  hold valid 10s
$HAPROXY_DEFAULTS
frontend fe
  bind 127.0.0.1:8082
  default_backend be
backend be
  balance roundrobin
  server-template s 3 _http._tcp.app.test resolvers dns init-addr none
C
cat > "$D/Caddyfile" <<C
{
  admin off
  auto_https off
}
http://127.0.0.1:8083 {
  reverse_proxy {
    dynamic srv _http._tcp.app.test {
      resolvers 127.0.0.1:5353
      refresh 10s
    }
    lb_policy round_robin
  }
}
C
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:8090 }
dns: { nameserver: 127.0.0.1:5353, refresh: 10s }
routes:
  - { name: app, srv: _http._tcp.app.test }
  - name: policed
    host: policy.test
    srv: _http._tcp.app.test
    rewrite: { strip_prefix: /api }
    headers:
      request: { set: { X-Env: prod }, remove: [X-Debug] }
      response: { set: { Strict-Transport-Security: "max-age=63072000" }, remove: [Server] }
  - name: policed-rl
    host: policy-rl.test
    srv: _http._tcp.app.test
    rate_limit: { rate: 100000000/s, burst: 100000000 }
    rewrite: { strip_prefix: /api }
    headers:
      request: { set: { X-Env: prod }, remove: [X-Debug] }
      response: { set: { Strict-Transport-Security: "max-age=63072000" }, remove: [Server] }
C
BEFORE_ROW=""
if [ -n "${BEFORE:-}" ]; then
  mkdir -p "$D/before"
  git archive "$BEFORE" | tar -x -C "$D/before"
  sed 's/127.0.0.1:8090/127.0.0.1:8091/; /^  - name: policed/,$d' "$D/unload.yaml" > "$D/before.yaml"
  (cd "$D/before" && exec taskset -c 0 $DENO run --allow-net --allow-read --v8-flags=--max-semi-space-size=4 \
    main.ts run --config "$D/before.yaml" > "$D/before.log" 2>&1) &
  BEFORE_ROW="unload@$BEFORE:8091"
fi
# Caddy resolves SRV targets through the system resolver: make the names resolvable for
# this run only (the line is removed again on exit, so it cannot leak into other tests).
if ! grep -q ' b1.test' /etc/hosts 2>/dev/null; then
  echo '127.0.0.1 b1.test b2.test b3.test # unload bench/compare.sh' >> /etc/hosts
  trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$D"; sed -i "/# unload bench\/compare.sh/d" /etc/hosts' EXIT
fi
sleep 0.5
taskset -c 0 nginx -c "$D/lb-nginx.conf" -p "$D" &
taskset -c 0 haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
GOMAXPROCS=1 taskset -c 0 caddy run --config "$D/Caddyfile" --adapter caddyfile > "$D/caddy.log" 2>&1 &
start_unload "$D/unload.yaml"
sleep 4

declare -A BEST # the best wrk report per balancer/conns
for conns in $CONNS; do
  for round in $(seq 1 "$ROUNDS"); do
    for t in direct:9001 nginx:8081 haproxy:8082 caddy:8083 $BEFORE_ROW unload:8090 unload+policy:8090 unload+policy+rl:8090; do
      name=${t%:*}; port=${t##*:}; k="$name/$conns"
      [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $name "* ]] || continue
      args=("http://127.0.0.1:$port/")
      [ "$name" = unload+policy ] && args=(-H "Host: policy.test" "http://127.0.0.1:$port/api/")
      [ "$name" = unload+policy+rl ] && args=(-H "Host: policy-rl.test" "http://127.0.0.1:$port/api/")
      curl -s -m 2 -o /dev/null "${args[@]}" || continue
      out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${DUR}s" --latency "${args[@]}" 2>&1)
      if better_round "$out" "${BEST[$k]:-}"; then BEST[$k]=$out; fi
    done
  done
done

echo "unload vs peers — $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), ${DUR}s per run, best of $ROUNDS"
echo
echo "| balancer | conns | req/s | p50 | p99 | errors | req/s vs HAProxy |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for conns in $CONNS; do
  h=$(wrk_rps "${BEST[haproxy/$conns]:-}")
  for name in direct nginx haproxy caddy ${BEFORE_ROW%:*} unload unload+policy unload+policy+rl; do
    out=${BEST[$name/$conns]:-}
    if [ -z "$out" ]; then echo "| $name | $conns | - | - | - | no answer | - |"; continue; fi
    echo "| $name | $conns | $(wrk_cells "$out" "$h" "×") |"
  done
done
echo
warnings=$(grep -v ' info ' "$D/unload.log" | tail -n 10)
echo "unload's log, warnings and errors during the run: ${warnings:-none}"
