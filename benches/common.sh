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

# seed_configs DIR HAPROXY_PORT EDGELB_PORT WORKERS BACKEND_PORT...: writes DIR/haproxy.cfg and
# DIR/edgelb.toml with the seed's settings for both proxies (the list atop benches/run.sh), one
# server per backend port (app1, app2, ...), the access log (httplog, dontlognull) to stdout.
seed_configs() {
  local dir=$1 ha=$2 el=$3 workers=$4
  shift 4
  local i=0 servers_ha="" servers_el="" p
  for p in "$@"; do
    i=$((i + 1))
    servers_ha+="  server app$i 127.0.0.1:$p cookie app$i check"$'\n'
    servers_el+=$'\n'"[[listen.server]]"$'\n'"name = \"app$i\""$'\n'"address = \"127.0.0.1:$p\""$'\n'
  done
  # Each heredoc line ends the strings' last line.
  servers_ha=${servers_ha%$'\n'}
  servers_el=${servers_el%$'\n'}
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread $workers
  maxconn 9900
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlognull
  option forwardfor except 10.0.0.0/8
  option tcp-smart-accept
  option tcp-smart-connect
  option redispatch
  retries 3
  timeout connect 10s
  timeout client 30s
  timeout server 30s
listen webapp
  bind 127.0.0.1:$ha
  balance roundrobin
  cookie SERVERID insert indirect nocache
$servers_ha
EOF

  cat >"$dir/edgelb.toml" <<EOF
[global]
workers = $workers
maxconn = 20000

[log]
access = "stdout"
format = "httplog"
dontlognull = true

[defaults]
timeout_connect = "10s"
timeout_client = "30s"
timeout_server = "30s"
retries = 3
redispatch = true

[[listen]]
name = "webapp"
bind = ["127.0.0.1:$el"]
balance = "roundrobin"
forwardfor = { except = ["10.0.0.0/8"] }

[listen.cookie]
name = "SERVERID"
insert = true
indirect = true
nocache = true
$servers_el
EOF
}
