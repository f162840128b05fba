# Sourced by bench/compare.sh and bench/https.sh: the nginx backends both measure
# against, and the HAProxy defaults both use to reach them.

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
