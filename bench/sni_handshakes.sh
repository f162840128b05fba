#!/usr/bin/env bash
# What choosing the certificate by SNI costs per TLS handshake (a benchmark, not a test).
#   unload on CPU 0 with one certificate (tls.cert: served as is) and with three
#   (tls.certificates: the resolver Deno.listenTls takes under Symbol.for("unstableSniResolver"),
#   asked "" as s_time sends no SNI in OpenSSL 3.0: the same path, Deno builds the config per
#   handshake whatever the name);
#   CLIENTS `openssl s_time -new` loops on CPU 1 (no HTTP request: handshakes
#   only, EC P-256, TLS 1.3). 127.0.0.1 only.
# Measures handshakes per second and unload's CPU time per handshake (utime+stime from /proc over
# the run), the steadier figure on a shared machine.
# Env: DUR (s per measurement, 8), CLIENTS (2), ROUNDS (2: best of N), PORT (24443).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/sni_handshakes.sh openssl taskset
bench_start
DUR=${DUR:-8}; CLIENTS=${CLIENTS:-2}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-24443}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$D/ca.key" -out "$D/ca.pem" -subj "/CN=unload bench CA" 2>/dev/null
for n in a b c; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$D/$n.key" -out "$D/$n.csr" -subj "/CN=$n.test" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s.test,DNS:*.%s.test\n' $n $n > "$D/$n.ext"
  openssl x509 -req -in "$D/$n.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
    -days 2 -extfile "$D/$n.ext" -out "$D/$n.pem" 2>/dev/null
done
route="routes: [{ name: app, backends: [{ address: 127.0.0.1:1 }] }]"
printf 'listen: { https: 127.0.0.1:%s }\ntls: { cert: %s, key: %s, watch: false }\n%s\n' \
  "$PORT" "$D/b.pem" "$D/b.key" "$route" > "$D/one.yaml"
printf 'listen: { https: 127.0.0.1:%s }\ntls:\n  watch: false\n  certificates:\n' "$PORT" > "$D/three.yaml"
for n in a b c; do echo "    - { cert: $D/$n.pem, key: $D/$n.key }" >> "$D/three.yaml"; done
echo "$route" >> "$D/three.yaml"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run CONFIG: prints "handshakes/s cpu-µs/handshake" for one measurement
run() {
  start_unload "$1"
  local pid=$! i
  for i in $(seq 1 100); do
    openssl s_client -connect 127.0.0.1:$PORT -servername b.test </dev/null >/dev/null 2>&1 && break
    sleep 0.2
  done
  # warm-up
  taskset -c 1 openssl s_time -connect 127.0.0.1:$PORT -new -time 2 >/dev/null 2>&1
  local before; before=$(cpu_ticks "$pid")
  local clients=()
  for i in $(seq 1 "$CLIENTS"); do
    taskset -c 1 openssl s_time -connect 127.0.0.1:$PORT -new -time "$DUR" \
      > "$D/s_time.$i" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}"
  local after; after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null
  local n=0 c
  for i in $(seq 1 "$CLIENTS"); do
    c=$(grep -oE '^[0-9]+ connections in [0-9.]+ real' "$D/s_time.$i" | awk '{ print $1 }')
    n=$((n + ${c:-0}))
  done
  local hz; hz=$(getconf CLK_TCK)
  awk -v n="$n" -v t="$DUR" -v cpu="$((after - before))" -v hz="$hz" \
    'BEGIN { printf "%d %.0f\n", n / t, n ? cpu / hz * 1e6 / n : 0 }'
}

echo "TLS handshakes on listen.https, $CLIENTS openssl s_time -new clients, ${DUR}s, best of $ROUNDS"
echo
echo "| certificates | handshakes/s | unload CPU µs per handshake |"
echo "|---|---|---|"
for cfg in one three; do
  best=""
  for round in $(seq 1 "$ROUNDS"); do
    run "$D/$cfg.yaml" > "$D/result" # not in a subshell: the EXIT trap sees its jobs
    r=$(cat "$D/result")
    if [ -z "$best" ] || [ "${r%% *}" -gt "${best%% *}" ]; then best=$r; fi
  done
  label="1 (tls.cert)"; [ "$cfg" = three ] && label="3 (tls.certificates, by SNI)"
  echo "| $label | ${best%% *} | ${best##* } |"
done
