#!/usr/bin/env bash
# What auth costs a request, in ONE run: one unload (CPU 0) with three routes to the same nginx
# backend (CPU 1), loaded in turn by wrk (CPU 1): /plain (no policy), /basic (auth.basic, an
# `htpasswd -B -C 10` user whose credentials wrk sends on every request: the first pays a bcrypt
# in the Worker, the rest are cache hits) and /forward (auth.forward to a second nginx on CPU 1
# answering 200: one question per request on pooled keep-alive connections).
# Env: DUR (s per measurement, 5), CONNS (50), ROUNDS (2: best of N, routes interleaved).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/auth.sh nginx wrk htpasswd taskset
bench_start
DUR=${DUR:-5}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-2}
nginx_backends "$D" 21101 21102 # the backend, and the auth service
htpasswd -cbB -C 10 "$D/users.htpasswd" ann s3cret 2>/dev/null
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:21190 }
log: { access: "off" }
routes:
  - { name: plain, path: /plain, backends: [{ address: 127.0.0.1:21101 }] }
  - name: basic
    path: /basic
    backends: [{ address: 127.0.0.1:21101 }]
    auth: { basic: { realm: bench, htpasswd: $D/users.htpasswd } }
  - name: forward
    path: /forward
    backends: [{ address: 127.0.0.1:21101 }]
    auth: { forward: { url: "http://127.0.0.1:21102/check", copy_headers: [X-User] } }
C
start_unload "$D/unload.yaml"
sleep 4
AUTH="Authorization: Basic $(printf 'ann:s3cret' | base64)"
declare -A BEST
for round in $(seq 1 "$ROUNDS"); do
  for path in plain basic forward; do
    curl -s -m 5 -H "$AUTH" "http://127.0.0.1:21190/$path" >/dev/null || continue
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "$AUTH" \
      "http://127.0.0.1:21190/$path" 2>&1)
    if better_round "$out" "${BEST[$path]:-}"; then BEST[$path]=$out; fi
  done
done
cost_table "auth cost" plain basic forward
