#!/usr/bin/env bash
# TLS handshakes that never finish: unload, HAProxy and nginx terminating TLS on 127.0.0.1, each
# with a 2 s limit (unload timeouts.head, HAProxy timeout client, nginx client_header_timeout).
# Also unload behind HAProxy in TCP mode (TLS passed through; a full ClientHello within 2 s, then
# timeout client 2s). For each, N raw TCP connections send nothing, N the first 3 bytes of a
# ClientHello and N a whole ClientHello (then nothing); after WAIT s it counts, on the server's
# port(s), the sockets still ESTABLISHED (ss) and, on the client side, the connections that saw no
# EOF. Also prints unload's unload_tls_handshakes_stalled. No throughput is measured.
# Env: N (100), WAIT (6), ports BP/UP/HP/NP/AP/TP (backend, unload, HAProxy, nginx, unload admin,
# HAProxy TCP front: 19460-19465).
set -u
cd "$(dirname "$0")/.."
. bench/_backends.sh
need_commands bench/tls_handshake_stall.sh nginx haproxy openssl python3 ss curl
bench_start
N=${N:-100}; WAIT=${WAIT:-6}
BP=${BP:-19460}; UP=${UP:-19461}; HP=${HP:-19462}; NP=${NP:-19463}; AP=${AP:-19464}
TP=${TP:-19465}

HAPROXY_DEFAULTS=${HAPROXY_DEFAULTS/timeout client 30s/timeout client 2s}
tls_setup "$BP" "$UP" "$HP" http/1.1
printf 'timeouts: { head: 2s }\nadmin: { listen: 127.0.0.1:%s }\n' "$AP" >> "$D/unload.yaml"
nginx_backends "$D" "$BP"
cat > "$D/front.conf" <<C
worker_processes 1; daemon off; pid $D/f.pid; error_log $D/f.err;
events { worker_connections 8192; }
http {
  access_log off;
  client_header_timeout 2s;
  server {
    listen 127.0.0.1:$NP ssl;
    ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem;
    location / { proxy_pass http://127.0.0.1:$BP; }
  }
}
C
cat >> "$D/haproxy.cfg" <<C
frontend tcp_front
  mode tcp
  bind 127.0.0.1:$TP
  timeout client 2s
  tcp-request inspect-delay 2s
  tcp-request content accept if { req.ssl_hello_type 1 }
  tcp-request content reject
  default_backend unload_tls
backend unload_tls
  mode tcp
  server u 127.0.0.1:$UP
C
sleep 0.3
haproxy -f "$D/haproxy.cfg" > "$D/haproxy.log" 2>&1 &
nginx -c "$D/front.conf" -p "$D" &
start_unload "$D/unload.yaml"
for i in $(seq 1 100); do
  curl -sk -m 1 "https://127.0.0.1:$UP/" >/dev/null && curl -sk -m 1 "https://127.0.0.1:$HP/" >/dev/null &&
    curl -sk -m 1 "https://127.0.0.1:$NP/" >/dev/null && break
  sleep 0.2
done

# stall PORT [PORT2]: opens N connections of each kind to PORT, waits WAIT s, prints the counts
# (sockets on PORT, and on PORT2 when given, then the clients without EOF by kind).
stall() {
  python3 - "$1" "$N" "$WAIT" "${2:-0}" <<'P'
import select, socket, ssl, subprocess, sys, time
port, n, wait, port2 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def client_hello():
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="app.test")
    try: obj.do_handshake()
    except ssl.SSLWantReadError: pass
    return out.read()
kinds = {"nothing": b"", "3 bytes": b"\x16\x03\x01", "ClientHello": None}
socks = {k: [] for k in kinds}
for k, data in kinds.items():
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        d = client_hello() if data is None else data
        if d: s.sendall(d)
        socks[k].append(s)
time.sleep(wait)
def est(p):
    ss = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{p} )"],
                        capture_output=True, text=True).stdout
    return len([l for l in ss.splitlines() if l.strip()])
def open_(s):
    r, _, _ = select.select([s], [], [], 0)
    if not r: return True
    try:
        while True:
            d = s.recv(65536, socket.MSG_DONTWAIT)
            if d == b"": return False
    except BlockingIOError: return True
    except OSError: return False
server = f"{est(port)} of {3 * n}" + (f" + {est(port2)} on unload" if port2 else "")
client = " | ".join(f"{sum(open_(s) for s in v)} of {n}" for v in socks.values())
print(f"{server} | {client}")
for v in socks.values():
    for s in v: s.close()
P
}

echo "TLS handshakes stalled by the client: $N connections each sending nothing, 3 bytes of a"
echo "ClientHello, or a whole ClientHello and then nothing; each server limited to 2 s; counted"
echo "after ${WAIT} s"
echo
echo "| server | sockets ESTABLISHED on the server port | no EOF: nothing | no EOF: 3 bytes | no EOF: ClientHello |"
echo "|---|---|---|---|---|"
echo "| HAProxy $(haproxy -v | head -1 | awk '{print $3}') (timeout client 2s) | $(stall "$HP") |"
echo "| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (client_header_timeout 2s) | $(stall "$NP") |"
echo "| unload on Deno $($DENO --version | head -1 | awk '{print $2}') (timeouts.head 2s) | $(stall "$UP") |"
sleep 1 # the clients above are gone: unload closes their sockets
echo "| HAProxy TCP mode in front of unload | $(stall "$TP" "$UP") |"
# unload's count, taken while its clients are still connected
python3 - "$UP" "$AP" "$N" <<'P'
import socket, sys, time, urllib.request
port, admin, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(3)
text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
line = [l for l in text.splitlines() if l.startswith('unload_tls_handshakes_stalled{side="client"}')]
print(f"\nunload /metrics with {n} silent clients connected for 3 s: {line[0] if line else '?'}")
for s in socks: s.close()
P
grep "stuck in a TLS handshake" "$D/unload.log" | head -1
