#!/usr/bin/env bash
# What rate_limit costs a request, in ONE run: one unload (CPU 0) with three routes to the same
# nginx backend (CPU 1), loaded in turn by wrk (CPU 1): /plain (no policy), /local
# (rate_limit, store: local) and /redis (rate_limit, store: redis://, redis-server on CPU 1).
# The limits are set high enough never to refuse, so each row measures the decision's cost.
# Env: DUR (s per measurement, 5), CONNS (50), ROUNDS (2: best of N, routes interleaved).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/rate_limit.sh nginx wrk redis-server taskset
bench_start
DUR=${DUR:-5}; CONNS=${CONNS:-50}; ROUNDS=${ROUNDS:-2}
nginx_backends "$D" 19101
taskset -c 1 redis-server --port 19179 --bind 127.0.0.1 --save "" --appendonly no \
  > "$D/redis.log" 2>&1 &
cat > "$D/unload.yaml" <<C
listen: { http: 127.0.0.1:19190 }
routes:
  - { name: plain, path: /plain, backends: [{ address: 127.0.0.1:19101 }] }
  - name: local
    path: /local
    backends: [{ address: 127.0.0.1:19101 }]
    rate_limit: { rate: 10000000/s, burst: 100000000 }
  - name: redis
    path: /redis
    backends: [{ address: 127.0.0.1:19101 }]
    rate_limit: { rate: 10000000/s, burst: 100000000, store: "redis://127.0.0.1:19179", timeout: 1s }
C
start_unload "$D/unload.yaml"
sleep 4
declare -A BEST
for round in $(seq 1 "$ROUNDS"); do
  for path in plain local redis; do
    curl -s -m 2 "http://127.0.0.1:19190/$path" >/dev/null || continue
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:19190/$path" 2>&1)
    if better_round "$out" "${BEST[$path]:-}"; then BEST[$path]=$out; fi
  done
done
cost_table "rate_limit cost" plain local redis
