#!/usr/bin/env bash
# Where each proxy's CPU goes per request, side by side: `perf record` (cpu-clock, call graphs)
# of the proxy process under wrk, split into user space and the kernel paths a request takes.
#
#   benches/profile.sh                 # CONNS="50 500" DUR=8 TARGETS="haproxy edgelb"
#   TARGETS="floor edgelb" benches/profile.sh   # the floor (run.sh's byte relay) beside edgelb
#
# Same setup as benches/run.sh (run it once first: it writes the configs to $WORK and builds the
# tools): three fast backends and wrk on CPU 0, the proxy alone on CPU 1 with one thread. For
# each proxy and connection count it prints the proxy's CPU per request (µs, from /proc during
# the profiled window) and how it divides:
#   user        the proxy's own code and its libraries (libc, allocator, vDSO clock)
#   send        sendto/writev: TCP transmit, and on loopback the *receiver's* TCP input run in
#               the sender's softirq (`net_rx_action`, counted separately as `rx of peer`) and
#               the wake-up of the receiving process (`sock_def_readable`, separately too)
#   recv        recvfrom/readv: copying out and the ACK bookkeeping
#   epoll       epoll_wait
#   other       the rest of the kernel (other syscalls, interrupts, scheduling)
# perf's own overhead slows the proxy (~10-15 %); compare the shares, not the absolute req/s.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/edgelb-bench}
DUR=${DUR:-8}
CONNS=${CONNS:-"50 500"}
TARGETS=${TARGETS:-"haproxy edgelb"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/edgelb-perf}
EDGELB=${EDGELB:-$CARGO_TARGET_DIR/release/edgelb}
BACKEND=$CARGO_TARGET_DIR/release/examples/bench_backend
FLOOR=$CARGO_TARGET_DIR/release/examples/bench_floor
[ -f "$WORK/edgelb.toml" ] || { echo "run benches/run.sh once first (writes $WORK/*.cfg)" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
TICK=$(getconf CLK_TCK)

# shellcheck source=benches/common.sh
source benches/common.sh


BENCH_BACKEND_SECS=900 taskset -c 0 "$BACKEND" 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 \
  2>/dev/null &
PIDS+=($!)
wait_port 18181

WRK_HDRS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench" -H "Accept: text/html,*/*;q=0.8"
  -H "Accept-Language: en-US,en;q=0.5" -H "Cookie: session=abcdef0123456789; theme=dark")

# Inclusive share (percent) of kernel symbol $2 in perf data $1.
share() {
  perf report -i "$1" --children -g none --sort sym 2>/dev/null |
    awk -v s="$2" '$NF == s && $3 == "[k]" && !found { gsub("%", "", $1); v = $1; found = 1 }
      END { print found ? v : 0 }'
}
# Share of samples outside the kernel.
user_share() {
  perf report -i "$1" --no-children -g none --sort dso 2>/dev/null |
    awk '/^ +[0-9.]+%/ && $2 != "[kernel.kallsyms]" { gsub("%", "", $1); u += $1 } END { printf "%.2f", u }'
}

echo "| proxy | conns | req/s (perf on) | CPU µs/req | user | send | of which rx of peer | of which wake-ups | recv | epoll | other kernel |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for c in $CONNS; do
  for t in $TARGETS; do
    case $t in
      haproxy) taskset -c 1 haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & PORT=18180 ;;
      edgelb) taskset -c 1 "$EDGELB" run -c "$WORK/edgelb.toml" >/dev/null 2>&1 & PORT=18190 ;;
      floor) taskset -c 1 "$FLOOR" 127.0.0.1:18160 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 \
        >/dev/null 2>&1 & PORT=18160 ;;
      *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    pid=$!
    PIDS+=("$pid")
    wait_port "$PORT"
    taskset -c 0 wrk -t1 -c50 -d2s "http://127.0.0.1:$PORT/bench" >/dev/null 2>&1 || true
    data=$WORK/perf-$t-$c.data
    taskset -c 0 wrk -t1 -c"$c" -d"$(( DUR + 2 ))s" "${WRK_HDRS[@]}" "http://127.0.0.1:$PORT/bench" \
      >"$WORK/perf-$t-$c.wrk" 2>&1 &
    w=$!
    sleep 1
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    perf record -q -F 2999 -e cpu-clock -g -p "$pid" -o "$data" -- sleep "$DUR" >/dev/null 2>&1
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    wait "$w" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$WORK/perf-$t-$c.wrk")
    us=$(awk -v a="$t1" -v b="$t0" -v tk="$TICK" -v r="$rps" -v d="$DUR" \
      'BEGIN { printf "%.2f", (a - b) / tk * 1e6 / (r * d) }')
    u=$(user_share "$data")
    snd=$(awk -v a="$(share "$data" __x64_sys_sendto)" -v b="$(share "$data" __x64_sys_writev)" 'BEGIN {print a + b}')
    rx=$(share "$data" net_rx_action)
    wake=$(share "$data" sock_def_readable)
    rcv=$(awk -v a="$(share "$data" __x64_sys_recvfrom)" -v b="$(share "$data" __x64_sys_readv)" 'BEGIN {print a + b}')
    ep=$(share "$data" __x64_sys_epoll_wait)
    awk -v t="$t" -v c="$c" -v r="$rps" -v us="$us" -v u="$u" -v s="$snd" -v rx="$rx" -v w="$wake" \
      -v rc="$rcv" -v e="$ep" 'function f(p) { return sprintf("%.2f (%.0f %%)", us * p / 100, p) }
      BEGIN { o = 100 - u - s - rc - e; if (o < 0) o = 0
        printf "| %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s |\n", t, c, r, us, f(u), f(s), f(rx), f(w), f(rc), f(e), f(o) }'
  done
done
