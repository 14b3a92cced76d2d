#!/usr/bin/env bash
# Bursts to slow handlers, edgelb beside HAProxy 2.6, on loopback only (~2 min after the build):
#
#   benches/burst.sh               # DELAY_MS=300 ROUNDS=3
#
# Three keep-alive backends (benches/tools/backend.rs with BENCH_BACKEND_DELAY_MS: every answer
# waits DELAY_MS without holding the thread, a node.js app waiting on its database) behind each
# proxy, with the seed settings of benches/run.sh (roundrobin, cookie insert, forwardfor,
# httplog, health checks) and one worker. Each scenario starts a fresh proxy and runs
# `loadgen burst` (benches/tools/loadgen.rs) against it; targets alternate, ROUNDS times:
# - cold: 300 clients at once, one request each, on a proxy that has sent nothing yet;
# - step: 6 clients one request each, then 150 clients at once, 4 requests each;
# - idle: 6 clients one request each, 5 s of quiet (past the 4 s pool timeout), then 90 at once.
# A proxy that opens a connection per request in flight answers each burst in about DELAY_MS;
# one that keeps requests queued for the connections it has takes a multiple of it
# (`proxy::pool`'s module doc). Output: one line per run, then the medians.
set -euo pipefail
cd "$(dirname "$0")/.."

DELAY_MS=${DELAY_MS:-300}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/tmp/edgelb-burst}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/edgelb-perf}
mkdir -p "$WORK"
command -v haproxy >/dev/null || { echo "haproxy is not installed" >&2; exit 1; }
if [ "${BUILD:-1}" = 1 ]; then
  echo "== building edgelb, bench_backend and loadgen (release)" >&2
  cargo build --release --quiet --bin edgelb --example bench_backend --example loadgen
fi
EDGELB=${EDGELB:-$CARGO_TARGET_DIR/release/edgelb}
EX=$CARGO_TARGET_DIR/release/examples
source benches/common.sh
ulimit -n "$(ulimit -Hn)"

BENCH_BACKEND_SECS=$((120 + ROUNDS * 60)) BENCH_BACKEND_DELAY_MS=$DELAY_MS \
  "$EX/bench_backend" 127.0.0.1:18281 127.0.0.1:18282 127.0.0.1:18283 2>"$WORK/backend.log" &
PIDS+=($!)
for p in 18281 18282 18283; do wait_port $p; done

# The seed's settings as in benches/run.sh, one worker, the access log to stdout (/dev/null).
seed_configs "$WORK" 18290 18291 1 18281 18282 18283

# scenario NAME -> loadgen burst arguments after ADDR
args() {
  case $1 in
    cold) echo "300 1" ;;
    step) echo "150 4 6 0" ;;
    idle) echo "90 1 6 5" ;;
  esac
}

: >"$WORK/runs.txt"
for r in $(seq 1 "$ROUNDS"); do
  for s in cold step idle; do
    for t in edgelb haproxy; do
      if [ $t = edgelb ]; then
        "$EDGELB" run -c "$WORK/edgelb.toml" >/dev/null 2>"$WORK/edgelb.err" &
        port=18291
      else
        haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>"$WORK/haproxy.err" &
        port=18290
      fi
      pid=$!
      PIDS+=($pid)
      wait_port $port
      sleep 0.5
      # shellcheck disable=SC2046
      line=$("$EX/loadgen" burst 127.0.0.1:$port $(args $s))
      echo "round $r $s $t $line" | tee -a "$WORK/runs.txt"
      kill $pid
      wait $pid 2>/dev/null || true
    done
  done
done

echo
echo "medians over $ROUNDS rounds, ms (backend answers after ${DELAY_MS} ms):"
printf '%-6s %-8s %8s %8s %8s %7s\n' scenario target p50 p90 max errors
for s in cold step idle; do
  for t in edgelb haproxy; do
    grep " $s $t " "$WORK/runs.txt" | awk -v s=$s -v t=$t '
      function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return a[int((n + 1) / 2)] }
      { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1], NR] = kv[2] } n = NR }
      END { for (i = 1; i <= n; i++) { p50[i] = v["p50_ms", i]; p90[i] = v["p90_ms", i]; mx[i] = v["max_ms", i]; e += v["errors", i] }
            printf "%-6s %-8s %8.1f %8.1f %8.1f %7d\n", s, t, med(p50, n), med(p90, n), med(mx, n), e }'
  done
done
