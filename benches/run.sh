#!/usr/bin/env bash
# edgelb vs HAProxy 2.6 side by side, on loopback only. One command, bounded in time (~5 min
# after the build):
#
#   benches/run.sh                 # DUR=10 CONNS="50 500" IDLE=9500
#
# What runs:
# - three keep-alive backends: benches/tools/backend.rs (`--example bench_backend`, one tokio
#   current-thread process serving 127.0.0.1:18181-18183, small 29-byte body with an ETag);
# - wrk (1 thread, pinned to CPU 0 with the backends) against (a) one backend directly,
#   (b) the floor: benches/tools/floor.rs (`--example bench_floor`), a byte relay with one
#   backend connection per client connection, i.e. only the reads, writes and wake-ups every
#   proxy pays, so its row shows what the kernel and the rig allow; (c) HAProxy with the seed
#   config, (d) edgelb with the same settings; each proxy pinned to CPU 1 with one worker
#   thread (nbthread 1 / workers = 1: the one core it has). The direct row's CPU is the
#   backend's (fast backends only);
# - the seed settings on both: roundrobin, `cookie SERVERID insert indirect nocache`,
#   `forwardfor except 10.0.0.0/8` (so loopback clients DO get the header appended), httplog +
#   dontlognull written to stdout, which is /dev/null for both (same footing: each formats every
#   line and writes it), health checks on (TCP, 2 s);
# - fixed-rate runs (benches/tools/loadgen.rs, open loop) at 70 % of HAProxy's wrk max at 50 conns;
# - ~10k idle keep-alive client connections (each sent one request first) and the proxies' RSS.
#   IDLE defaults to 9500: this machine's hard `ulimit -n` is 20000 and HAProxy refuses to start
#   unless it can reserve 2 fds per `maxconn` (so maxconn 9900 here, 20000 for edgelb).
#
# TARGETS="haproxy edgelb" limits the targets (default: direct floor haproxy edgelb [nginx]).
# ROUNDS=3 (default) repeats the closed-loop and the fixed-rate runs with the targets interleaved;
# the tables show medians, and the ratio to HAProxy is the median of the per-round ratios.
# RATE_PCTS="70 90" runs the fixed-rate part at each of these shares of HAProxy's maximum.
# BACKENDS=node serves the three servers with node.js (benches/tools/backend.js, one process
# per port, like the seed's node.js web apps) instead of the Rust bench backend.
# WORKERS=2 gives each proxy 2 threads (`nbthread 2`, `workers = 2`, nginx `worker_processes 2`)
# and both CPUs (wrk and the backends stay on CPU 0, so they share it with one proxy thread).
# BUSY_POLLING=1 turns busy polling on in both proxies (HAProxy `busy-polling`, edgelb
# `[global] busy_polling = true`; both off by default, as in the seed).
# Output: a table on stdout (also saved to $OUT, default /tmp/edgelb-bench/results.txt).
# nginx is used as a third proxy only if `nginx` is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
WORKERS=${WORKERS:-1}
CONNS=${CONNS:-"50 500"}
IDLE=${IDLE:-9500}
ROUNDS=${ROUNDS:-3}
RATE_PCTS=${RATE_PCTS:-70}
BACKENDS=${BACKENDS:-fast}
WORK=${WORK:-/tmp/edgelb-bench}
OUT=${OUT:-$WORK/results.txt}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/edgelb-perf}
mkdir -p "$WORK"

command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy is not installed" >&2; exit 1; }

# BUILD=0 skips the build; EDGELB=/path/to/edgelb benchmarks another binary (e.g. a baseline).
if [ "${BUILD:-1}" = 1 ]; then
  echo "== building edgelb, bench_backend and loadgen (release)" >&2
  cargo build --release --quiet --bin edgelb --example bench_backend --example loadgen \
    --example bench_floor
fi
EDGELB=${EDGELB:-$CARGO_TARGET_DIR/release/edgelb}
BACKEND=$CARGO_TARGET_DIR/release/examples/bench_backend
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
FLOOR=$CARGO_TARGET_DIR/release/examples/bench_floor

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(nproc)" -ge 2 ]; then
  LOAD_CPU=(taskset -c 0)
  if [ "$WORKERS" -ge 2 ]; then
    PROXY_CPU=(taskset -c "0-$(( $(nproc) - 1 ))")
  else
    PROXY_CPU=(taskset -c 1)
  fi
else
  LOAD_CPU=()
  PROXY_CPU=()
fi
TICK=$(getconf CLK_TCK)

# shellcheck source=benches/common.sh
source benches/common.sh

BPORTS=(18181 18182 18183)
HA_PORT=18180
EL_PORT=18190
NG_PORT=18170
FL_PORT=18160

for p in "${BPORTS[@]}" $HA_PORT $EL_PORT $NG_PORT $FL_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use (a previous run's process?)" >&2
    exit 1
  fi
done
# The backends stop by themselves once a run this long is surely over (a forgotten one ends);
# counted from the rounds, so a long run does not outlive them: per round at most ten
# closed-loop and six fixed-rate runs per rate, each DUR plus start-up.
npcts=$(wc -w <<<"$RATE_PCTS")
BACKEND_SECS=$(( 300 + ROUNDS * (10 + 6 * npcts) * (DUR + 5) ))
case $BACKENDS in
  fast)
    BENCH_BACKEND_SECS=$BACKEND_SECS "${LOAD_CPU[@]}" "$BACKEND" 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 \
      2>"$WORK/backend.log" &
    BACKEND_PID=$!
    PIDS+=($!)
    ;;
  node)
    command -v node >/dev/null || { echo "node is not installed" >&2; exit 1; }
    : >"$WORK/backend.log"
    for i in 1 2 3; do
      BENCH_BACKEND_SECS=$BACKEND_SECS "${LOAD_CPU[@]}" node benches/tools/backend.js "1818$i" "app$i" \
        2>>"$WORK/backend.log" &
      PIDS+=($!)
    done
    ;;
  *) echo "BACKENDS must be fast or node" >&2; exit 1 ;;
esac

seed_configs "$WORK" "$HA_PORT" "$EL_PORT" "$WORKERS" "${BPORTS[@]}"
if [ "${BUSY_POLLING:-0}" = 1 ]; then
  sed -i 's/^  nbthread .*/&\n  busy-polling/' "$WORK/haproxy.cfg"
  sed -i 's/^workers = .*/&\nbusy_polling = true/' "$WORK/edgelb.toml"
fi

cat >"$WORK/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 20000; }
http {
  access_log /dev/null;
  upstream app { server 127.0.0.1:18181; server 127.0.0.1:18182; server 127.0.0.1:18183; keepalive 64; }
  server {
    listen 127.0.0.1:$NG_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF


cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# User-space CPU ticks of process $1: what the proxy's own code costs, the rest being the
# kernel's (the floor's kernel time is what any proxy pays for the same reads and writes).
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
# "busy total" jiffies of CPU $1 (the load generator's core), from /proc/stat.
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# Starts proxy $1 (haproxy|edgelb|nginx); sets PROXY_PID and PORT.
start_proxy() {
  case $1 in
    haproxy)
      "${PROXY_CPU[@]}" haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>"$WORK/haproxy.err" &
      PROXY_PID=$!
      PORT=$HA_PORT
      ;;
    edgelb)
      "${PROXY_CPU[@]}" "$EDGELB" run -c "$WORK/edgelb.toml" >/dev/null 2>"$WORK/edgelb.err" &
      PROXY_PID=$!
      PORT=$EL_PORT
      ;;
    nginx)
      "${PROXY_CPU[@]}" nginx -c "$WORK/nginx.conf" -g 'daemon off;' >/dev/null 2>"$WORK/nginx.err" &
      PROXY_PID=$!
      PORT=$NG_PORT
      ;;
    floor)
      "${PROXY_CPU[@]}" "$FLOOR" "127.0.0.1:$FL_PORT" 127.0.0.1:18181 127.0.0.1:18182 127.0.0.1:18183 \
        >/dev/null 2>"$WORK/floor.err" &
      PROXY_PID=$!
      PORT=$FL_PORT
      ;;
    direct)
      PROXY_PID=""
      PORT=18181
      ;;
  esac
  [ -n "$PROXY_PID" ] && PIDS+=("$PROXY_PID")
  wait_port "$PORT"
  sleep 0.5
}

stop_proxy() {
  if [ -n "${PROXY_PID:-}" ]; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
  fi
}

# wrk's latency "1.23ms" / "456.00us" / "1.02s" -> ms
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

WRK_HDRS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench" -H "Accept: text/html,*/*;q=0.8"
  -H "Accept-Language: en-US,en;q=0.5" -H "Cookie: session=abcdef0123456789; theme=dark")

# run_wrk NAME CONNS ROUND -> appends "NAME CONNS rps p50 p99 cpu_s errs ROUND load user_s" to
# $WORK/wrk.tsv
run_wrk() {
  local name=$1 c=$2 round=$3 out before after ubefore cpu ucpu core0 core1 load cpid=$PROXY_PID
  # Direct: the CPU column is the (single) fast backend process's.
  [ "$name" = direct ] && cpid=${BACKEND_PID:-}
  before=0
  [ -n "$cpid" ] && before=$(cpu_ticks "$cpid") && ubefore=$(user_ticks "$cpid")
  core0=$(core_ticks 0)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c"$c" -d"${DUR}s" --latency "${WRK_HDRS[@]}" "http://127.0.0.1:$PORT/bench" 2>&1)
  echo "$out" >"$WORK/wrk-$name-$c-$round.txt"
  core1=$(core_ticks 0)
  # Share of the load core (wrk and the backends) busy: near 100 %, the proxy is not what
  # limits req/s.
  load=$(echo "$core0 $core1" | awk '{ if ($4 > $2) printf "%.0f", ($3 - $1) * 100 / ($4 - $2); else print "-" }')
  cpu="-"
  ucpu="-"
  if [ -n "$cpid" ]; then
    after=$(cpu_ticks "$cpid")
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" 'BEGIN {printf "%.2f", (a-b)/t}')
    after=$(user_ticks "$cpid")
    ucpu=$(awk -v a="$after" -v b="$ubefore" -v t="$TICK" 'BEGIN {printf "%.2f", (a-b)/t}')
  fi
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {printf "%s ", $0}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$rps" "$p50" "$p99" "$cpu" "${errs:-}" "$round" "$load" "$ucpu" >>"$WORK/wrk.tsv"
  echo "   round $round: $name c=$c: $rps req/s p50 ${p50}ms p99 ${p99}ms cpu ${cpu}s load core ${load}% ${errs:-}" >&2
}

if [ -n "${TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$TARGETS"
else
  TARGETS=(direct floor haproxy edgelb)
  command -v nginx >/dev/null && TARGETS+=(nginx)
fi

: >"$WORK/wrk.tsv"
: >"$WORK/rss.tsv"
wait_port 18181
wait_port 18182
wait_port 18183
# Closed loop: ROUNDS rounds with the targets alternating (this machine is shared: alternating
# spreads other tenants' noise over all of them).
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    echo "== wrk round $r: $t" >&2
    start_proxy "$t"
    "${LOAD_CPU[@]}" wrk -t1 -c50 -d2s "http://127.0.0.1:$PORT/bench" >/dev/null 2>&1 || true
    for c in $CONNS; do run_wrk "$t" "$c" "$r"; done
    if [ -n "$PROXY_PID" ] && [ "$r" = 1 ]; then
      printf '%s\tpeak_rss_kib\t%s\n' "$t" "$(vm "$PROXY_PID" VmHWM)" >>"$WORK/rss.tsv"
    fi
    stop_proxy
  done
done

# Fixed rate: RATE_PCTS (default 70) % of HAProxy's wrk max (median over the rounds) at the same
# connection count, ROUNDS rounds with the proxies alternating.
: >"$WORK/rate.tsv"
for c in $CONNS; do
  ha_max=$(awk -v c="$c" '$1 == "haproxy" && $2 == c {print $3}' "$WORK/wrk.tsv" | sort -n |
    awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}')
  for pct in $RATE_PCTS; do
  rate=$(( ${ha_max:-10000} * pct / 100 ))
  for r in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      case $t in direct | floor) continue ;; esac
      start_proxy "$t"
      before=$(cpu_ticks "$PROXY_PID")
      line=$("${LOAD_CPU[@]}" "$LOADGEN" rate "127.0.0.1:$PORT" "$rate" "$c" "$DUR")
      after=$(cpu_ticks "$PROXY_PID")
      cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" 'BEGIN {printf "%.2f", (a-b)/t}')
      printf '%s\t%s\t%s\t%s\tcpu_s=%s\t%s\n' "$t" "$c" "$rate" "$line" "$cpu" "$pct" >>"$WORK/rate.tsv"
      echo "   fixed $rate req/s ($pct %) round $r: $t c=$c: $line cpu=${cpu}s" >&2
      stop_proxy
    done
  done
  done
done

# Idle connections: RSS with $IDLE keep-alive clients that each sent one request, opened in two
# halves after 2000 warm-up requests (pools, buffers and log queues touched once are in the
# base): bytes per connection over all of them, and the marginal cost of the second half.
for t in "${TARGETS[@]}"; do
  case $t in direct | floor) continue ;; esac
  echo "== $IDLE idle connections: $t" >&2
  start_proxy "$t"
  "${LOAD_CPU[@]}" "$LOADGEN" count "127.0.0.1:$PORT" 2000 50 >/dev/null
  sleep 1
  base=$(vm "$PROXY_PID" VmRSS)
  half=$(( IDLE / 2 ))
  "${LOAD_CPU[@]}" "$LOADGEN" idle "127.0.0.1:$PORT" "$half" 20 >"$WORK/idle-$t-1.txt" &
  lg1=$!
  wait_idle_open "$WORK/idle-$t-1.txt"
  half_rss=$(vm "$PROXY_PID" VmRSS)
  "${LOAD_CPU[@]}" "$LOADGEN" idle "127.0.0.1:$PORT" "$(( IDLE - half ))" 6 >"$WORK/idle-$t-2.txt" &
  lg2=$!
  wait_idle_open "$WORK/idle-$t-2.txt"
  idle_rss=$(vm "$PROXY_PID" VmRSS)
  o1=$(sed -n 's/idle_open=//p' "$WORK/idle-$t-1.txt")
  o2=$(sed -n 's/idle_open=//p' "$WORK/idle-$t-2.txt")
  kill "$lg1" 2>/dev/null || true
  wait "$lg1" "$lg2" 2>/dev/null || true
  printf '%s\tidle_base_kib\t%s\n%s\tidle_half_kib\t%s\n%s\tidle_rss_kib\t%s\n%s\tidle_open\t%s\n%s\tidle_open2\t%s\n' \
    "$t" "$base" "$t" "$half_rss" "$t" "$idle_rss" "$t" "$(( ${o1:-0} + ${o2:-0} ))" "$t" "${o2:-0}" >>"$WORK/rss.tsv"
  echo "   $t: base ${base} KiB, with ${o1:-0} idle: ${half_rss} KiB, with $(( ${o1:-0} + ${o2:-0} )): ${idle_rss} KiB" >&2
  stop_proxy
done

{
  echo "# edgelb vs HAProxy $(haproxy -v | head -1 | awk '{print $3}'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, wrk ${DUR}s, $WORKERS proxy worker(s), $BACKENDS backends,$([ "${BUSY_POLLING:-0}" = 1 ] && echo " busy polling on,") load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "Closed loop (wrk -t1), median of $ROUNDS interleaved rounds; ratios to HAProxy are the median"
  echo "of the per-round ratios (all rounds are in $WORK/wrk.tsv). Backends: $BACKENDS."
  echo
  echo "| target | conns | req/s | p50 ms | p99 ms | CPU µs/req | of which user | over the floor | proxy CPU % | load core % | req/s vs HAProxy | p99 vs HAProxy | CPU vs HAProxy | req/s vs the floor | notes |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' -v dur="$DUR" '
    function med(a, n,   i, j, x) {
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n ? a[int((n + 1) / 2)] : 0
    }
    {
      k = $1 SUBSEP $2
      if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
      n = ++cnt[k]
      rps[k, n] = $3; p50[k, n] = $4; p99[k, n] = $5; ld[k, n] = $9
      busy[k, n] = ($6 == "-") ? -1 : $6 * 100 / dur
      us[k, n] = ($6 == "-" || $3 == 0) ? -1 : $6 * 1e6 / ($3 * dur)
      uu[k, n] = ($10 == "" || $10 == "-" || $3 == 0) ? -1 : $10 * 1e6 / ($3 * dur)
      if ($7 != "") errs[k] = errs[k] $7
      byround[$1, $2, $8] = NR
      R[NR, "rps"] = $3; R[NR, "p99"] = $5; R[NR, "us"] = us[k, n]
    }
    END {
      for (o = 1; o <= nk; o++) {
        k = order[o]; split(k, kk, SUBSEP); t = kk[1]; c = kk[2]; n = cnt[k]
        for (i = 1; i <= n; i++) a[i] = rps[k, i] + 0; m_rps = med(a, n)
        for (i = 1; i <= n; i++) a[i] = p50[k, i] + 0; m_p50 = med(a, n)
        for (i = 1; i <= n; i++) a[i] = p99[k, i] + 0; m_p99 = med(a, n)
        for (i = 1; i <= n; i++) a[i] = us[k, i] + 0; m_us = med(a, n)
        for (i = 1; i <= n; i++) a[i] = uu[k, i] + 0; m_uu = med(a, n)
        for (i = 1; i <= n; i++) a[i] = busy[k, i] + 0; m_busy = med(a, n)
        for (i = 1; i <= n; i++) a[i] = ld[k, i] + 0; m_ld = med(a, n)
        split("rps p99 us", q, " ")
        for (x = 1; x <= 3; x++) {
          m = 0
          for (r = 1; r <= n; r++) {
            e = byround[t, c, r]; h = byround["haproxy", c, r]
            if (e && h && R[h, q[x]] > 0 && R[e, q[x]] >= 0) b[++m] = R[e, q[x]] / R[h, q[x]]
          }
          ratio[x] = m ? sprintf("%.2f", med(b, m)) : "-"
        }
        # Against the floor in the same round: the CPU above it (what the proxy adds to a byte
        # relay, with the kernel part taken out) and the req/s over it (near 1, the rig limits
        # the proxy, not its own work).
        m = 0; mf = 0
        for (r = 1; r <= n; r++) {
          e = byround[t, c, r]; f = byround["floor", c, r]
          if (!e || !f) continue
          if (R[e, "us"] >= 0 && R[f, "us"] >= 0) b[++m] = R[e, "us"] - R[f, "us"]
          if (R[f, "rps"] > 0) vf[++mf] = R[e, "rps"] / R[f, "rps"]
        }
        rel = t != "floor" && t != "direct"
        over = (m && rel) ? sprintf("%.1f", med(b, m)) : "-"
        vsfloor = (mf && rel) ? sprintf("%.2f", med(vf, mf)) : "-"
        printf "| %s | %s | %.0f | %.3f | %.3f | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n", t, c, m_rps, m_p50, m_p99,
          (m_us < 0 ? "-" : sprintf("%.1f", m_us)), (m_uu < 0 ? "-" : sprintf("%.1f", m_uu)), over, (m_busy < 0 ? "-" : sprintf("%.0f", m_busy)), m_ld,
          ratio[1], ratio[2], ratio[3], vsfloor, errs[k]
      }
    }' "$WORK/wrk.tsv"
  echo
  echo "Fixed rate ($RATE_PCTS % of HAProxy's max at the same conns), open loop, median of $ROUNDS rounds"
  echo "(each value is the median over the rounds; all rounds are in $WORK/rate.tsv):"
  echo
  echo "| target | conns | rate req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | sent / scheduled | proxy CPU s |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for c in $CONNS; do
    for pct in $RATE_PCTS; do
    for t in "${TARGETS[@]}"; do
      case $t in direct | floor) continue ;; esac
      awk -F'\t' -v t="$t" -v c="$c" -v pct="$pct" -v dur="$DUR" '
        function med(a, n,   i, j, x) {
          for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
          return a[int((n + 1) / 2)]
        }
        $1 == t && $2 == c && $6 == pct {
          n++; rate = $3
          split($4, kv, " ")
          for (k in kv) { split(kv[k], p, "="); v[p[1], n] = p[2] }
          cpu[n] = substr($5, 7)
        }
        END {
          if (n == 0) exit
          split("p50_us p99_us p999_us max_us errors", keys, " ")
          line = sprintf("| %s | %s | %s", t, c, rate)
          for (q = 1; q <= 5; q++) {
            for (i = 1; i <= n; i++) arr[i] = v[keys[q], i] + 0
            m = med(arr, n)
            line = line sprintf(" | %s", keys[q] == "errors" ? m : sprintf("%.3f", m / 1000))
          }
          sent = 0
          for (i = 1; i <= n; i++) sent += v["sent", i]
          line = line sprintf(" | %.3f", sent / (n * rate * dur))
          for (i = 1; i <= n; i++) arr[i] = cpu[i] + 0
          print line sprintf(" | %.2f |", med(arr, n))
        }' "$WORK/rate.tsv"
    done
    done
  done
  echo
  echo "Memory (KiB):"
  echo
  echo "| target | peak RSS under wrk (VmHWM) | RSS warm, no conns | RSS with idle conns | idle conns open | bytes per idle conn | marginal bytes (2nd half) |"
  echo "|---|---|---|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    case $t in direct | floor) continue ;; esac
    g() { awk -v t="$t" -v k="$1" '$1 == t && $2 == k {print $3}' "$WORK/rss.tsv"; }
    per=$(awk -v a="$(g idle_rss_kib)" -v b="$(g idle_base_kib)" -v n="$(g idle_open)" \
      'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "-" }')
    marg=$(awk -v a="$(g idle_rss_kib)" -v b="$(g idle_half_kib)" -v n="$(g idle_open2)" \
      'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "-" }')
    echo "| $t | $(g peak_rss_kib) | $(g idle_base_kib) | $(g idle_rss_kib) | $(g idle_open) | $per | $marg |"
  done
} | tee "$OUT"
