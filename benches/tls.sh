#!/usr/bin/env bash
# TLS termination: edgelb vs HAProxy 2.6 (OpenSSL) side by side, on loopback only.
#
#   benches/tls.sh          # DUR=10 CONNS=50 IDLE=2000 (BUILD=0 EDGELB=... BACKEND=... to reuse binaries)
#
# Both proxies: one thread pinned to CPU 1 (nbthread 1 / workers = 1), the seed settings
# (roundrobin, cookie insert, forwardfor, httplog to /dev/null) and one ECDSA P-256 certificate;
# clients pinned to CPU 0 with the backends (benches/tools/backend.rs). Per proxy:
# - full handshakes: `openssl s_time -new -www /` (a new TLS connection, one request, close);
# - resumed handshakes: `openssl s_time -reuse -www /` (session resumption, TLS 1.3 tickets);
#   for both, connections/s and the proxy's CPU time per connection (utime+stime from /proc:
#   load-independent where the client, not the proxy, is the bottleneck);
# - HTTP/1.1 over TLS: `wrk -t1 -c$CONNS https://...` keep-alive req/s, p99, CPU per request;
# - HTTP/2 over TLS (ALPN h2): `h2load -t1 -c$CONNS -m$STREAMS -D$DUR https://...` req/s, mean
#   request time, CPU per request (the backends stay HTTP/1.1 on both proxies);
# - memory: RSS growth for IDLE idle TLS keep-alive connections (each sent one request first),
#   per connection.
# Output: a table on stdout (also $OUT, default /tmp/edgelb-bench-tls/results.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
CONNS=${CONNS:-50}
IDLE=${IDLE:-2000}
STREAMS=${STREAMS:-10}
WORK=${WORK:-/tmp/edgelb-bench-tls}
OUT=${OUT:-$WORK/results.txt}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/edgelb-perf}
mkdir -p "$WORK"
for t in wrk h2load haproxy openssl python3; do
  command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
if [ "${BUILD:-1}" = 1 ]; then
  echo "== building edgelb and bench_backend (release)" >&2
  cargo build --release --quiet --bin edgelb --example bench_backend
fi
EDGELB=${EDGELB:-$CARGO_TARGET_DIR/release/edgelb}
BACKEND=${BACKEND:-$CARGO_TARGET_DIR/release/examples/bench_backend}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(nproc)" -ge 2 ]; then
  LOAD_CPU=(taskset -c 0)
  PROXY_CPU=(taskset -c 1)
else
  LOAD_CPU=()
  PROXY_CPU=()
fi
TICK=$(getconf CLK_TCK)
# shellcheck source=benches/common.sh
source benches/common.sh

HA_PORT=18480
EL_PORT=18490
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$WORK/site.key" -out "$WORK/site.crt" -subj /CN=www.example.com \
  -addext subjectAltName=DNS:www.example.com 2>/dev/null
chmod 600 "$WORK/site.key"
cat "$WORK/site.crt" "$WORK/site.key" >"$WORK/site.pem"
chmod 600 "$WORK/site.pem"

BENCH_BACKEND_SECS=900 "${LOAD_CPU[@]}" "$BACKEND" 127.0.0.1:18481 127.0.0.1:18482 127.0.0.1:18483 \
  2>"$WORK/backend.log" &
PIDS+=($!)

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9900
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlognull
  option forwardfor except 10.0.0.0/8
  option redispatch
  retries 3
  timeout connect 10s
  timeout client 30s
  timeout server 30s
listen webapp
  bind 127.0.0.1:$HA_PORT ssl crt $WORK/site.pem alpn h2,http/1.1
  balance roundrobin
  cookie SERVERID insert indirect nocache
  server app1 127.0.0.1:18481 cookie app1 check
  server app2 127.0.0.1:18482 cookie app2 check
  server app3 127.0.0.1:18483 cookie app3 check
EOF

cat >"$WORK/edgelb.toml" <<EOF
[global]
workers = 1
maxconn = 20000
[log]
access = "stdout"
[defaults]
timeout_connect = "10s"
timeout_client = "30s"
timeout_server = "30s"
[[listen]]
name = "webapp"
forwardfor = { except = ["10.0.0.0/8"] }
cookie = { name = "SERVERID", insert = true, indirect = true, nocache = true }
[listen.tls]
bind = ["127.0.0.1:$EL_PORT"]
certs = [{ cert = "$WORK/site.crt", key = "$WORK/site.key" }]
alpn = ["h2", "http/1.1"]
[[listen.server]]
name = "app1"
address = "127.0.0.1:18481"
[[listen.server]]
name = "app2"
address = "127.0.0.1:18482"
[[listen.server]]
name = "app3"
address = "127.0.0.1:18483"
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }

# Opens $2 idle TLS keep-alive connections to port $1 (one request each), prints "ready", then
# holds them until stdin closes.
IDLE_CLIENT='
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="www.example.com")
    s.sendall(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    conns.append(s)
print("ready", flush=True)
sys.stdin.read()
'

{
  echo "# benches/tls.sh $(date -u +%FT%TZ) DUR=$DUR CONNS=$CONNS STREAMS=$STREAMS IDLE=$IDLE; uptime:$(uptime | sed 's/.*load/ load/')"
  printf "%-8s %9s %11s %9s %10s %9s %7s %10s %9s %9s %10s %11s\n" proxy "full/s" "cpu_us/full" "resumed/s" "cpu_us/res" \
    "h1_req/s" "h1_p99" "cpu_us/h1" "h2_req/s" "h2_mean" "cpu_us/h2" "idle_B/conn"
} | tee "$OUT"

for p in haproxy edgelb; do
  if [ "$p" = haproxy ]; then
    "${PROXY_CPU[@]}" haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>"$WORK/haproxy.err" &
    PID=$!; PORT=$HA_PORT
  else
    "${PROXY_CPU[@]}" "$EDGELB" run -c "$WORK/edgelb.toml" >/dev/null 2>"$WORK/edgelb.err" &
    PID=$!; PORT=$EL_PORT
  fi
  PIDS+=("$PID")
  wait_port "$PORT"
  sleep 0.5
  # Idle connections first, on a fresh process (nothing freed by earlier runs to blur it).
  before=$(rss_kb "$PID")
  exec 5> >("${LOAD_CPU[@]}" python3 -c "$IDLE_CLIENT" "$PORT" "$IDLE" >"$WORK/idle.out")
  for _ in $(seq 1 600); do grep -q ready "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  after=$(rss_kb "$PID")
  exec 5>&-
  per=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN{printf "%.0f", (a-b)*1024/n}')
  sleep 2
  res=()
  for mode in -new -reuse; do
    t0=$(cpu_ticks "$PID")
    line=$(timeout $((DUR + 30)) "${LOAD_CPU[@]}" openssl s_time -connect "127.0.0.1:$PORT" $mode -www / -time "$DUR" 2>/dev/null |
      grep "connections in .* real seconds" | tail -1 || true)
    t1=$(cpu_ticks "$PID")
    n=$(echo "$line" | awk '{print $1}')
    secs=$(echo "$line" | awk '{print $4}')
    res+=("$(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')")
    res+=("$(awk -v n="$n" -v d=$((t1 - t0)) -v t="$TICK" 'BEGIN{printf "%.0f", d/t*1e6/n}')")
  done
  t0=$(cpu_ticks "$PID")
  w=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "https://127.0.0.1:$PORT/" 2>/dev/null)
  t1=$(cpu_ticks "$PID")
  rps=$(echo "$w" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  reqs=$(echo "$w" | awk '/requests in/ {print $1}')
  p99=$(echo "$w" | awk '$1 == "99%" {print $2}')
  cpureq=$(awk -v n="$reqs" -v d=$((t1 - t0)) -v t="$TICK" 'BEGIN{printf "%.1f", d/t*1e6/n}')
  t0=$(cpu_ticks "$PID")
  h=$("${LOAD_CPU[@]}" h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DUR" "https://127.0.0.1:$PORT/" 2>/dev/null || true)
  t1=$(cpu_ticks "$PID")
  echo "$h" >"$WORK/h2load.$p.out"
  h2rps=$(echo "$h" | awk '/^finished in/ {gsub(",", "", $4); printf "%.0f", $4}')
  h2ok=$(echo "$h" | awk '/^requests:/ {print $8}')
  h2mean=$(echo "$h" | awk '/^time for request:/ {print $6}')
  h2cpu=$(awk -v n="${h2ok:-0}" -v d=$((t1 - t0)) -v t="$TICK" 'BEGIN{if (n > 0) printf "%.1f", d/t*1e6/n; else print "-"}')
  if ! echo "$h" | grep -q "Application protocol: h2"; then h2rps="-"; fi
  printf "%-8s %9s %11s %9s %10s %9s %7s %10s %9s %9s %10s %11s\n" "$p" "${res[0]}" "${res[1]}" "${res[2]}" "${res[3]}" \
    "$rps" "$p99" "$cpureq" "${h2rps:--}" "${h2mean:--}" "$h2cpu" "$per" | tee -a "$OUT"
  kill "$PID"; wait "$PID" 2>/dev/null || true
  sleep 1
done
