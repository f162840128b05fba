#!/usr/bin/env bash
# Routing at scale, through the real balancer, in ONE run:
#   1. req/s of one route served alone, and of the same route listed after ROUTES (2000)
#      others (exact hosts with path prefixes, as an ingress with one host per tenant has);
#      the two balancers run side by side, measured in turn (interleaved rounds).
#      With BASE=<git revision> the same two configs also run on that revision's code
#      (e.g. BASE=28c2afe, the linear router), in the same rounds.
#   2. `main.ts validate` of a config with BIG (10,000) routes, and a reload to it and back
#      through the admin's POST /reload (read, parse, validate and build, on a balancer
#      serving the ROUTES config).
# The balancers are pinned to CPU 0; wrk and the nginx backend to CPU 1.
# 1b runs the pair (alone, after ROUTES) at the same time, so both meet the same noise.
# Env: DUR (s per measurement, 8), CONNS (100), ROUNDS (3), ROUTES (2000), BIG (10000), BASE.
# Run it under the bench lock: flock /tmp/unload-bench.lock bash bench/routes.sh
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands routes.sh nginx wrk taskset curl
bench_start
DUR=${DUR:-8}; CONNS=${CONNS:-100}; ROUNDS=${ROUNDS:-3}; ROUTES=${ROUTES:-2000}; BIG=${BIG:-10000}
BASE=${BASE:-}
HOST="h$ROUTES.tenant.test"; URL_PATH="/p$ROUTES/index.html"

nginx_backends "$D" 9201

# routes_yaml FILE LISTEN_PORT ADMIN_PORT OTHERS [TARGET]: OTHERS routes (host h<i>.tenant.test,
# path /p<i>) and then the measured one (h<TARGET>.tenant.test, /p<TARGET>; TARGET defaults to
# ROUTES), all to the backend.
routes_yaml() {
  awk -v others="$4" -v listen="$2" -v admin="$3" -v target="${5:-$ROUTES}" 'BEGIN {
    print "listen: { http: 127.0.0.1:" listen " }"
    if (admin != "") print "admin: { listen: 127.0.0.1:" admin " }"
    print "reload: { watch: false }"
    print "routes:"
    for (i = 0; i < others; i++)
      printf "  - { name: r%d, host: h%d.tenant.test, path: /p%d, backends: [{ address: 127.0.0.1:9201 }] }\n", i, i, i
    printf "  - { name: target, host: h%d.tenant.test, path: /p%d, backends: [{ address: 127.0.0.1:9201 }] }\n", target, target
  }' > "$1"
}

# serve NAME DIR CONFIG: unload from DIR (a checkout), as `deno task serve` runs it, pinned to
# CPU 0; its process id in PID[NAME].
declare -A PID
serve() {
  (cd "$2" && exec taskset -c 0 $DENO run --allow-net --allow-read \
    --v8-flags=--max-semi-space-size=4 main.ts run --config "$3") > "$D/$1.log" 2>&1 &
  PID[$1]=$!
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

targets="alone:8191 after-$ROUTES:8192"
routes_yaml "$D/alone.yaml" 8191 9191 0
routes_yaml "$D/many.yaml" 8192 9192 "$ROUTES"
serve alone . "$D/alone.yaml"
serve "after-$ROUTES" . "$D/many.yaml"
if [ -n "$BASE" ]; then
  mkdir -p "$D/base" && git archive "$BASE" | tar -x -C "$D/base"
  routes_yaml "$D/base-alone.yaml" 8193 "" 0
  routes_yaml "$D/base-many.yaml" 8194 "" "$ROUTES"
  serve base-alone "$D/base" "$D/base-alone.yaml"
  serve "base-after-$ROUTES" "$D/base" "$D/base-many.yaml"
  targets="$targets base-alone:8193 base-after-$ROUTES:8194"
fi
for t in $targets; do # wait until each answers on the measured route
  for _ in $(seq 1 300); do
    [ "$(curl -s -m 2 -H "Host: $HOST" "http://127.0.0.1:${t##*:}$URL_PATH")" = "b1 hello" ] && break
    sleep 0.2
  done
done
sleep 2

declare -A BEST ALL CPU
for round in $(seq 1 "$ROUNDS"); do
  for t in $targets; do
    name=${t%%:*}; port=${t##*:}
    ticks=$(cpu_ticks "${PID[$name]}")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "Host: $HOST" \
      "http://127.0.0.1:$port$URL_PATH" 2>&1)
    ticks=$(( $(cpu_ticks "${PID[$name]}") - ticks ))
    requests=$(echo "$out" | awk '/requests in/{print $1}')
    # the balancer's CPU per request: what routing costs it, whatever else runs on the machine
    CPU[$name]="${CPU[$name]:-}$(awk -v t="$ticks" -v u="$TICK_US" -v n="$requests" 'BEGIN{printf "%.1f", t * u / n}') "
    ALL[$name]="${ALL[$name]:-}$(wrk_rps "$out") "
    if better_round "$out" "${BEST[$name]:-}"; then BEST[$name]=$out; fi
  done
done

echo "routing at scale — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${DUR}s per run, $CONNS connections, best of $ROUNDS (interleaved)"
echo "route: Host $HOST, GET $URL_PATH (the route listed after $ROUTES others, or alone)"
echo
echo "| unload | routes before it | req/s (best) | every round | CPU µs/request, every round | p50 | p99 | errors | vs alone |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for t in $targets; do
  name=${t%%:*}
  case $name in *alone) before=0; base_name=$name ;; *) before=$ROUTES; base_name=${name%after-*}alone ;; esac
  out=${BEST[$name]:-}
  if [ -z "$out" ]; then echo "| $name | $before | - | - | - | - | - | no answer | - |"; continue; fi
  cells=$(wrk_cells "$out" "$(wrk_rps "${BEST[$base_name]:-}")" "×")
  rps=${cells%% |*}; rest=${cells#* | }
  echo "| $name | $before | $rps | ${ALL[$name]% } | ${CPU[$name]% } | $rest |"
done

# 1b. the same two balancers loaded at the same time (one wrk each, started together): they
# share CPU 0, and whatever else runs on the machine slows both alike, so the ratio of their
# rates is the ratio of what a request costs each, with the noise of a shared machine cancelled.
pairs="alone:8191,after-$ROUTES:8192"
[ -n "$BASE" ] && pairs="$pairs base-alone:8193,base-after-$ROUTES:8194"
echo
echo "Both at the same time (rounds of ${DUR}s, $CONNS connections each): req/s alone / after $ROUTES = ratio"
for pair in $pairs; do
  a=${pair%%,*}; b=${pair##*,}; line=""
  for round in $(seq 1 "$ROUNDS"); do
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Host: $HOST" \
      "http://127.0.0.1:${a##*:}$URL_PATH" > "$D/pair-a.out" 2>&1 &
    pa=$!
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Host: $HOST" \
      "http://127.0.0.1:${b##*:}$URL_PATH" > "$D/pair-b.out" 2>&1 &
    wait "$!" "$pa"
    ra=$(wrk_rps "$(cat "$D/pair-a.out")"); rb=$(wrk_rps "$(cat "$D/pair-b.out")")
    bad=$(cat "$D/pair-a.out" "$D/pair-b.out" | grep -cE 'Socket errors|Non-2xx')
    line="$line $ra / $rb = $(awk -v a="$ra" -v b="$rb" 'BEGIN{printf "%.2f×", b / a}')$([ "$bad" -gt 0 ] && echo " (errors)");"
  done
  echo "  ${a%%:*} vs ${b%%:*}:$line"
done

# 2. validate and reload BIG routes (after the wrk rounds: nothing else runs meanwhile)
routes_yaml "$D/big.yaml" 8192 9192 "$BIG" "$BIG"
echo
echo "$BIG routes ($(wc -c < "$D/big.yaml") bytes of YAML):"
for i in 1 2 3; do
  s=$(date +%s%N)
  res=$($DENO run --allow-read main.ts validate --config "$D/big.yaml" 2>&1)
  echo "  main.ts validate: $(( ($(date +%s%N) - s) / 1000000 )) ms ($res)"
done
cp "$D/many.yaml" "$D/small.yaml"
for i in 1 2 3; do
  cp "$D/big.yaml" "$D/many.yaml"
  up=$(curl -s -m 60 -o "$D/reload.out" -w '%{time_total}' -X POST http://127.0.0.1:9192/reload)
  okay=$(curl -s -m 2 -H "Host: h$BIG.tenant.test" "http://127.0.0.1:8192/p$BIG/")
  cp "$D/small.yaml" "$D/many.yaml"
  down=$(curl -s -m 60 -o /dev/null -w '%{time_total}' -X POST http://127.0.0.1:9192/reload)
  echo "  POST /reload to $BIG routes: ${up}s ($(tr -d '\n' < "$D/reload.out"); route $BIG answers: ${okay%$'\n'}), back to $((ROUTES + 1)): ${down}s"
done
rss() { awk '/VmRSS/{print $2}' "/proc/${PID[$1]}/status"; }
cp "$D/big.yaml" "$D/many.yaml"
curl -s -m 60 -o /dev/null -X POST http://127.0.0.1:9192/reload
echo "  RSS: alone $(rss alone) KiB; the $ROUTES-route balancer reloaded to $BIG routes $(rss "after-$ROUTES") KiB"
warnings=$(cat "$D"/*.log | grep -v ' info ' | tail -n 10)
echo "unload's logs, warnings and errors during the run: ${warnings:-none}"
