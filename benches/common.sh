# Shared by the bench scripts (sourced after they cd to the repository root): the background
# processes a script starts (appended to PIDS) are killed when it exits, and wait_port waits
# for a port on 127.0.0.1 to accept connections (30 s at most).
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

# wait_idle_open FILE: waits (60 s at most) until a `loadgen idle` writing to FILE has opened
# its connections, then 2 s more for the proxy's memory to settle.
wait_idle_open() {
  for _ in $(seq 1 120); do
    grep -q idle_open "$1" 2>/dev/null && break
    sleep 0.5
  done
  sleep 2
}
