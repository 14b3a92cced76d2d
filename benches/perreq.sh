#!/usr/bin/env bash
# Load-independent per-request costs of a proxy, on loopback (the machine may be busy: these
# counts do not depend on how fast it is).
#
#   benches/perreq.sh strace    [edgelb|haproxy|floor]  # syscalls per request (strace -c -f)
#   benches/perreq.sh callgrind [edgelb|floor]          # instructions and malloc calls per request
#                                     (CACHE=1: and data cache misses per request)
#   benches/perreq.sh idle      [edgelb|haproxy]   # bytes of RSS per idle keep-alive connection
#   benches/perreq.sh segments  [edgelb|haproxy|floor] # TCP segments per request (nstat; counts
#                                     the whole machine's TCP, so run it on a quiet machine)
#
# N requests (default 20000; callgrind 5000) over C keep-alive connections (default 50), sent by
# `loadgen count` with the same browser-like request as benches/run.sh's wrk, through the same
# proxy configs run.sh writes (roundrobin over 3 backends, cookie insert, forwardfor, httplog to
# /dev/null). Run benches/run.sh once first (it writes the configs and builds the tools), or
# set BUILD=1. EDGELB=/path/to/edgelb measures another binary. IDLE connections for `idle`
# (default 5000: RSS delta between 0 and IDLE idle connections, divided by IDLE).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?strace|callgrind|idle|segments}
TARGET=${2:-edgelb}
WORK=${WORK:-/tmp/edgelb-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/edgelb-perf}
if [ "${BUILD:-0}" = 1 ]; then
  cargo build --release --quiet --bin edgelb --example bench_backend --example loadgen \
    --example bench_floor
fi
EDGELB=${EDGELB:-$CARGO_TARGET_DIR/release/edgelb}
BACKEND=$CARGO_TARGET_DIR/release/examples/bench_backend
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
C=${C:-50}
[ -f "$WORK/edgelb.toml" ] || { echo "run benches/run.sh once first (writes $WORK/*.cfg)" >&2; exit 1; }
if grep -q '^busy_polling = true' "$WORK/edgelb.toml"; then
  echo "note: the configs have busy polling on (the last run.sh had BUSY_POLLING=1)" >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck source=benches/common.sh
source benches/common.sh


BENCH_BACKEND_SECS=600 "$BACKEND" 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 2>/dev/null &
PIDS+=($!)
wait_port 18181

case $TARGET in
  edgelb) CMD=("$EDGELB" run -c "$WORK/edgelb.toml"); PORT=18190 ;;
  haproxy) CMD=(haproxy -f "$WORK/haproxy.cfg" -db); PORT=18180 ;;
  # The floor (benches/tools/floor.rs): a byte relay, the least a proxy can do.
  floor) CMD=("$CARGO_TARGET_DIR/release/examples/bench_floor" 127.0.0.1:18160 127.0.0.1:18181
    127.0.0.1:18182 127.0.0.1:18183); PORT=18160 ;;
  *) echo "unknown target $TARGET" >&2; exit 2 ;;
esac

case $MODE in
  strace)
    N=${N:-20000}
    "${CMD[@]}" >/dev/null 2>"$WORK/perreq.err" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$PORT"
    "$LOADGEN" count "127.0.0.1:$PORT" 2000 "$C" >/dev/null # warm: pools, buffers
    strace -c -f -p "$pid" -o "$WORK/strace.txt" &
    st=$!
    sleep 1
    "$LOADGEN" count "127.0.0.1:$PORT" "$N" "$C" >&2
    kill -INT "$st"
    wait "$st" 2>/dev/null || true
    awk -v n="$N" '/^[ ]*[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {
        calls = $4; name = $NF; if (name == "total") next; total += calls
        printf "%-16s %8.3f per request\n", name, calls / n }
      END { printf "%-16s %8.3f per request\n", "TOTAL", total / n }' "$WORK/strace.txt"
    ;;
  callgrind)
    N=${N:-5000}
    out=$WORK/callgrind.out
    rm -f "$out"
    # CACHE=1: also simulate the caches, with the last level the size of this machine's L2 (1 MiB,
    # per core): data misses per request, in user space only (the kernel is not simulated).
    cache=()
    [ "${CACHE:-0}" = 1 ] && cache=(--cache-sim=yes --LL=1048576,16,64)
    valgrind --tool=callgrind "${cache[@]}" --instr-atstart=no --callgrind-out-file="$out" \
      "${CMD[@]}" >/dev/null 2>"$WORK/perreq.err" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$PORT"
    "$LOADGEN" count "127.0.0.1:$PORT" $((C * 20 > 1000 ? C * 20 : 1000)) "$C" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    "$LOADGEN" count "127.0.0.1:$PORT" "$N" "$C" >&2
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$pid" >/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump is a numbered part file (the one written at exit is empty): the largest one.
    f=$(ls -S "$out"* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "instructions per request: $((ir / N))"
    if [ "${CACHE:-0}" = 1 ]; then
      # Event order in the totals line: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
      callgrind_annotate "$f" 2>/dev/null | awk -v n="$N" '/PROGRAM TOTALS/ {
          gsub(/\([^)]*\)/, ""); gsub(",", "")
          printf "L1 data misses %.1f, L2-size (1 MiB) data misses %.1f per request\n",
            ($5 + $6) / n, ($8 + $9) / n }'
    fi
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '1,60p' >"$WORK/callgrind-top.txt"
    # Calls of the allocator, from the call graph (callgrind counts calls per callee; names are
    # compressed: "(id) name" the first time, "(id)" after). mimalloc's entry points are the
    # mi_* ones (the binary's global allocator), glibc's the others.
    for fn in mi_malloc mi_zalloc mi_realloc mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned \
      mi_free malloc free realloc calloc; do
      calls=$(awk -v fn="$fn" '
        function id(s) { return substr(s, index(s, "("), index(s, ")") - index(s, "(") + 1) }
        /^c?fn=\([0-9]+\) / { names[id($0)] = substr($0, index($0, ")") + 2) }
        /^cfn=/ { callee = names[id($0)] }
        /^calls=/ { if (callee == fn) { split($0, a, "[= ]"); c += a[2] } }
        END { print c + 0 }' "$f")
      echo "$fn calls per request: $(awk -v c="$calls" -v n="$N" 'BEGIN {printf "%.2f", c / n}')"
    done
    ;;
  segments)
    # Segments sent and received on all four legs of a request (client->proxy, proxy->server
    # and back), and how many of them are bare ACKs: a proxy that answers at once sends none.
    N=${N:-50000}
    "${CMD[@]}" >/dev/null 2>"$WORK/perreq.err" &
    PIDS+=($!)
    wait_port "$PORT"
    "$LOADGEN" count "127.0.0.1:$PORT" 2000 "$C" >/dev/null
    nstat -n
    "$LOADGEN" count "127.0.0.1:$PORT" "$N" "$C" >&2
    nstat | awk -v n="$N" '$1 ~ /^(TcpOutSegs|TcpExtTCPPureAcks|TcpExtDelayedACKs|TcpRetransSegs)$/ {
        printf "%-20s %8.3f per request\n", $1, $2 / n }'
    ;;
  idle)
    IDLE=${IDLE:-5000}
    "${CMD[@]}" >/dev/null 2>"$WORK/perreq.err" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$PORT"
    "$LOADGEN" count "127.0.0.1:$PORT" 2000 "$C" >/dev/null
    sleep 1
    base=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
    "$LOADGEN" idle "127.0.0.1:$PORT" "$IDLE" 8 >"$WORK/perreq-idle.txt" &
    lg=$!
    wait_idle_open "$WORK/perreq-idle.txt"
    rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
    opened=$(sed -n 's/idle_open=//p' "$WORK/perreq-idle.txt")
    wait "$lg" || true
    echo "base ${base} KiB, with ${opened} idle ${rss} KiB: $(( (rss - base) * 1024 / opened )) bytes per idle connection"
    ;;
esac
