#!/usr/bin/env bash
# A local Streamgate cluster on one machine, every process on 127.0.0.1:
#   etcd                 :2379 (peer :2380), data in WORKDIR/etcd, emptied at each `up`
#   development Kafka    `streamgate dev-kafka --topic docs:12 --topic chat:6` (in memory, new at each `up`)
#   nodes server1..N     :9001..900N, TLS with a test CA, registered in etcd as wss://serverN.example.test:8443
#   HAProxy              :8443 (TLS passed through, routed by SNI), stats and /healthz on :8404
#
#   ops/cluster.sh up     [--nodes 3] [--workdir DIR] [--fanout-only] [-- EXTRA SERVE FLAGS…]
#   ops/cluster.sh status [--workdir DIR]
#   ops/cluster.sh down   [--workdir DIR]
#
# WORKDIR (default .cluster/ at the top of the repository) holds certs/, config.json, haproxy.cfg, logs/NAME.log,
# pids/NAME.pid. The binary: $STREAMGATE_BIN if set, else .build/release/streamgate if built, else it is built
# (`swift build -c release --product streamgate`). `up` waits until each process is ready and, if one fails,
# stops what it started and shows the end of that process's log. `down` sends SIGTERM (nodes drain), then
# SIGKILL after a timeout. `status` lists the processes and prints GET /v1/cluster of server1 (exit 1 if a process
# is not running). --fanout-only runs the nodes without etcd placement and without the affinity namespace `doc`,
# for a gateway built without placement. Flags after `--` go to every `streamgate serve`.
# The certificates (certs/) are kept across runs. Environment: STREAMGATE_CLUSTER_READY_SECONDS (60) bounds the wait
# for each process at `up`, STREAMGATE_CLUSTER_STOP_SECONDS (30) the wait for nodes to drain at `down`.
# Linux only (pids are checked in /proc).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
DOMAIN=example.test
HOST=127.0.0.1
ETCD_PORT=2379
ETCD_PEER_PORT=2380
LB_PORT=8443
STATS_PORT=8404
NODE_BASE_PORT=9000
# How long `up` waits for one process to become ready.
READY_SECONDS=${STREAMGATE_CLUSTER_READY_SECONDS:-60}
# How long `down` waits after SIGTERM before SIGKILL: a node drains (--drain-seconds, 10 s by default, then the
# closes); the other processes stop at once.
NODE_STOP_SECONDS=${STREAMGATE_CLUSTER_STOP_SECONDS:-30}
STOP_SECONDS=10

usage() {
    cat >&2 <<'EOF'
usage: ops/cluster.sh up     [--nodes 3] [--workdir DIR] [--fanout-only] [-- EXTRA SERVE FLAGS...]
       ops/cluster.sh status [--workdir DIR]
       ops/cluster.sh down   [--workdir DIR]
EOF
    exit 2
}

command=${1:-}
[ -n "$command" ] || usage
shift
nodes=3
workdir="$repo/.cluster"
fanout_only=0
extra_serve_args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --nodes) [ "$#" -ge 2 ] || usage; nodes=$2; shift 2 ;;
        --nodes=*) nodes=${1#--nodes=}; shift ;;
        --workdir) [ "$#" -ge 2 ] || usage; workdir=$2; shift 2 ;;
        --workdir=*) workdir=${1#--workdir=}; shift ;;
        --fanout-only) fanout_only=1; shift ;;
        --) shift; extra_serve_args=("$@"); break ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
case "$nodes" in
    ''|*[!0-9]*) echo "--nodes takes a number from 1 to 99" >&2; exit 2 ;;
esac
if [ "$nodes" -lt 1 ] || [ "$nodes" -gt 99 ]; then
    echo "--nodes takes a number from 1 to 99" >&2
    exit 2
fi
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
certs="$workdir/certs"
logs="$workdir/logs"
pids="$workdir/pids"

say() { printf '%s\n' "$*"; }
fail() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# --- processes ----------------------------------------------------------------------------------------------------
# A pid file holds "PID START" (START: the process's start time, field 22 of /proc/PID/stat), so a pid the kernel
# has since given to another process is never signalled.

start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    # A process that has exited but is not yet reaped (state Z or X) is not running.
    case "$1" in Z|X) return 1 ;; esac
    printf '%s\n' "${20}"
}

# pid_of NAME: prints the pid when the process NAME started is still running.
pid_of() {
    local file="$pids/$1.pid" pid start now
    [ -f "$file" ] || return 1
    read -r pid start <"$file" || return 1
    now=$(start_time "$pid") || return 1
    [ "$now" = "$start" ] || return 1
    printf '%s\n' "$pid"
}

# launch NAME STDOUT COMMAND…: runs COMMAND in its own session (a terminal's hang-up or Ctrl-C does not reach it),
# standard error to logs/NAME.log, standard output to STDOUT (the same log when STDOUT is "log").
launch() {
    local name=$1 out=$2 pid start
    shift 2
    if [ "$out" = log ]; then
        setsid "$@" </dev/null >"$logs/$name.log" 2>&1 &
    else
        setsid "$@" </dev/null >"$out" 2>"$logs/$name.log" &
    fi
    pid=$!
    start=$(start_time "$pid") || { wait "$pid" || true; failed_start "$name" "exited at once"; }
    printf '%s %s\n' "$pid" "$start" >"$pids/$name.pid"
    started+=("$name")
}

# stop NAME… SECONDS: SIGTERM to each, SIGKILL to those still running after SECONDS.
stop() {
    local seconds=${*: -1} names=("${@:1:$#-1}") name pid ticks=0 left
    for name in "${names[@]}"; do
        if pid=$(pid_of "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    while :; do
        left=()
        for name in "${names[@]}"; do
            if pid_of "$name" >/dev/null; then left+=("$name"); fi
        done
        if [ "${#left[@]}" -eq 0 ]; then break; fi
        if [ "$ticks" -ge $((seconds * 5)) ]; then
            for name in "${left[@]}"; do
                if pid=$(pid_of "$name"); then
                    say "$name did not stop within ${seconds}s: SIGKILL"
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            done
            sleep 0.2
            break
        fi
        sleep 0.2
        ticks=$((ticks + 1))
    done
    for name in "${names[@]}"; do
        rm -f "$pids/$name.pid"
    done
}

# Everything of this workdir, in shutdown order: nodes first (they drain through HAProxy and need etcd and Kafka
# meanwhile), then HAProxy, Kafka, etcd.
stop_all() {
    local node_names=() file name
    for file in "$pids"/server*.pid; do
        [ -e "$file" ] || continue
        name=$(basename "$file" .pid)
        node_names+=("$name")
    done
    [ "${#node_names[@]}" -eq 0 ] || stop "${node_names[@]}" "$NODE_STOP_SECONDS"
    stop haproxy "$STOP_SECONDS"
    stop dev-kafka "$STOP_SECONDS"
    stop etcd "$STOP_SECONDS"
}

started=()
failed_start() {
    local name=$1 why=$2
    printf 'cluster: %s %s\n' "$name" "$why" >&2
    if [ -s "$logs/$name.log" ]; then
        printf -- '--- last lines of %s ---\n' "$logs/$name.log" >&2
        tail -n 20 "$logs/$name.log" >&2
        printf -- '---\n' >&2
    fi
    if [ "${#started[@]}" -gt 0 ]; then
        printf 'cluster: stopping what was started (%s)\n' "${started[*]}" >&2
        stop_all >&2
    fi
    exit 1
}

# wait_until NAME WHAT COMMAND…: runs COMMAND until it succeeds; fails if NAME exits or READY_SECONDS pass.
wait_until() {
    local name=$1 what=$2 deadline=$((SECONDS + READY_SECONDS))
    shift 2
    until "$@" >/dev/null 2>&1; do
        pid_of "$name" >/dev/null || failed_start "$name" "exited before $what"
        [ "$SECONDS" -lt "$deadline" ] || failed_start "$name" "not $what after ${READY_SECONDS}s"
        sleep 0.2
    done
}

port_free() {
    python3 - "$HOST" "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
EOF
}

node_port() { printf '%s\n' $((NODE_BASE_PORT + $1)); }

# https GET through the node's own port or through HAProxy, with the test CA and the name resolved to 127.0.0.1.
https_get() {
    local name=$1 port=$2 path=$3
    shift 3
    curl -sS --max-time 5 --cacert "$certs/ca.pem" --resolve "$name:$port:$HOST" "$@" "https://$name:$port$path"
}

etcd_healthy() { curl -sf --max-time 2 "http://$HOST:$ETCD_PORT/health" | grep -q '"health":"true"'; }
has_full_line() { [ -s "$1" ] && [ "$(wc -l <"$1")" -ge 1 ]; }
node_listening() { grep -q "^listening on " "$logs/$1.log"; }
node_ready() { https_get "$1.$DOMAIN" "$(node_port "$2")" /readyz -f; }
haproxy_up() { curl -sf --max-time 2 "http://$HOST:$STATS_PORT/healthz"; }
# Every node passes HAProxy's /readyz check (status exactly UP, not "UP 1/2" or DOWN) in the round-robin backend.
haproxy_all_up() {
    curl -sf --max-time 2 "http://$HOST:$STATS_PORT/stats;csv" \
        | awk -F, -v want="$1" '$1 == "streamgate_all" && $2 != "BACKEND" { n++; if ($18 == "UP") up++ }
                                END { exit !(n == want && up == want) }'
}

# --- commands -----------------------------------------------------------------------------------------------------

resolve_binary() {
    if [ -n "${STREAMGATE_BIN:-}" ]; then
        [ -x "$STREAMGATE_BIN" ] || fail "STREAMGATE_BIN=$STREAMGATE_BIN is not an executable"
        bin=$(cd "$(dirname "$STREAMGATE_BIN")" && pwd)/$(basename "$STREAMGATE_BIN")
    elif [ -x "$repo/.build/release/streamgate" ]; then
        bin="$repo/.build/release/streamgate"
    else
        say "building streamgate (release)…"
        (cd "$repo" && swift build -c release --product streamgate)
        bin="$repo/.build/release/streamgate"
    fi
}

# HAProxy needs two descriptors per connection and refuses to start when it cannot raise its limit to fit maxconn.
haproxy_maxconn() {
    local limit
    limit=$(ulimit -Hn)
    if [ "$limit" = unlimited ] || [ "$limit" -ge 200200 ]; then
        echo 100000
    else
        echo $(((limit - 200) / 2))
    fi
}

cmd_up() {
    local name running=() port i bootstrap
    for name in etcd dev-kafka haproxy; do
        if pid_of "$name" >/dev/null; then running+=("$name"); fi
    done
    for file in "$pids"/server*.pid; do
        [ -e "$file" ] || continue
        name=$(basename "$file" .pid)
        if pid_of "$name" >/dev/null; then running+=("$name"); fi
    done
    [ "${#running[@]}" -eq 0 ] || fail "already running in $workdir (${running[*]}): ops/cluster.sh down first"

    "$repo/ops/install-deps.sh"
    haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
    [ -x "$haproxy" ] || fail "haproxy is not installed (ops/install-deps.sh installs it)"
    for tool in etcd curl openssl python3 setsid; do
        command -v "$tool" >/dev/null 2>&1 || fail "$tool is not on PATH (ops/install-deps.sh installs it)"
    done
    resolve_binary
    if [ "$fanout_only" -eq 0 ] && ! "$bin" serve --help 2>&1 | grep -q -- '--etcd'; then
        fail "$bin has no --etcd flag (a build without placement): rebuild it, or use --fanout-only"
    fi

    local ports=("$ETCD_PORT" "$ETCD_PEER_PORT" "$LB_PORT" "$STATS_PORT") taken=()
    for i in $(seq 1 "$nodes"); do ports+=("$(node_port "$i")"); done
    for port in "${ports[@]}"; do port_free "$port" || taken+=("$port"); done
    [ "${#taken[@]}" -eq 0 ] || fail "port already in use on $HOST: ${taken[*]} (see: ss -ltnp)"

    rm -rf "$logs" "$pids" "$workdir/etcd"
    mkdir -p "$logs" "$pids"
    "$repo/ops/cluster/certs.sh" "$certs" "$DOMAIN"

    local affinity='"doc": {"topic": "docs", "mode": "affinity", "max_peers": 50}, '
    [ "$fanout_only" -eq 0 ] || affinity=""
    printf '{"namespaces": {%s"chat": {"topic": "chat"}, "": {"topic": "streamgate.events"}}}\n' "$affinity" \
        >"$workdir/config.json"

    cat >"$workdir/cluster.env" <<EOF
nodes=$nodes
fanout_only=$fanout_only
bin=$bin
EOF

    launch etcd log "$repo/ops/etcd/start.sh" --data-dir "$workdir/etcd" --host "$HOST" \
        --client-port "$ETCD_PORT" --peer-port "$ETCD_PEER_PORT"
    wait_until etcd "healthy" etcd_healthy

    launch dev-kafka "$workdir/dev-kafka.out" "$bin" dev-kafka --topic docs:12 --topic chat:6
    wait_until dev-kafka "printing its bootstrap list" has_full_line "$workdir/dev-kafka.out"
    bootstrap=$(head -n 1 "$workdir/dev-kafka.out")
    [ -n "$bootstrap" ] || failed_start dev-kafka "printed no bootstrap list"

    local placement=()
    for i in $(seq 1 "$nodes"); do
        name="server$i"
        placement=()
        if [ "$fanout_only" -eq 0 ]; then
            placement=(--etcd "http://$HOST:$ETCD_PORT" --public-url "wss://$name.$DOMAIN:$LB_PORT")
        fi
        launch "$name" log "$bin" serve --brokers "$bootstrap" --node-id "$name" \
            --host "$HOST" --port "$(node_port "$i")" "${placement[@]}" \
            --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
            --config "$workdir/config.json" "${extra_serve_args[@]}"
    done
    for i in $(seq 1 "$nodes"); do
        wait_until "server$i" "listening" node_listening "server$i"
    done
    for i in $(seq 1 "$nodes"); do
        wait_until "server$i" "ready (/readyz)" node_ready "server$i" "$i"
    done

    local render=("$repo/ops/haproxy/render-config.py" --listen "$HOST:$LB_PORT" --domain "$DOMAIN"
        --stats "$HOST:$STATS_PORT" --ca "$certs/ca.pem" --maxconn "$(haproxy_maxconn)")
    for i in $(seq 1 "$nodes"); do render+=(--node "server$i=$HOST:$(node_port "$i")"); done
    "${render[@]}" >"$workdir/haproxy.cfg"
    if ! "$haproxy" -c -q -f "$workdir/haproxy.cfg" >"$logs/haproxy.log" 2>&1; then
        failed_start haproxy "refused its configuration"
    fi
    launch haproxy log "$haproxy" -db -f "$workdir/haproxy.cfg"
    wait_until haproxy "answering /healthz on :$STATS_PORT" haproxy_up
    wait_until haproxy "reporting every node ready" haproxy_all_up "$nodes"
    # Every node must be reachable through HAProxy by its own name.
    for i in $(seq 1 "$nodes"); do
        wait_until haproxy "routing server$i.$DOMAIN" https_get "server$i.$DOMAIN" "$LB_PORT" /healthz -f
    done

    echo "bootstrap=$bootstrap" >>"$workdir/cluster.env"
    local ca="$certs/ca.pem" spki hosts="$HOST $DOMAIN" down_command="ops/cluster.sh down"
    for i in $(seq 1 "$nodes"); do hosts+=" server$i.$DOMAIN"; done
    [ "$workdir" = "$repo/.cluster" ] || down_command+=" --workdir $workdir"
    spki=$(openssl x509 -in "$certs/server.pem" -pubkey -noout | openssl pkey -pubin -outform der \
        | openssl dgst -sha256 -binary | base64)
    cat <<EOF
Streamgate cluster up: $nodes node(s) behind HAProxy at $HOST:$LB_PORT (TLS passed through; each node terminates it).
  wss://$DOMAIN:$LB_PORT/v1/ws            any node (round robin over the ready ones)
  wss://serverN.$DOMAIN:$LB_PORT/v1/ws    node serverN, N = 1..$nodes (directly: $HOST:$NODE_BASE_PORT+N)
  Kafka bootstrap: $bootstrap
  etcd: http://$HOST:$ETCD_PORT    HAProxy stats: http://$HOST:$STATS_PORT/stats
The names are not in DNS and the certificate is signed by a test CA; tell clients both:
  curl --cacert $ca --resolve server1.$DOMAIN:$LB_PORT:$HOST https://server1.$DOMAIN:$LB_PORT/v1/cluster
  Python: ssl.create_default_context(cafile="$ca") (or SSL_CERT_FILE=$ca); connect to $HOST:$LB_PORT
          with server_hostname="server1.$DOMAIN" (websockets: connect(url, ssl=ctx, host="$HOST", port=$LB_PORT))
  chromium --host-resolver-rules="MAP $DOMAIN $HOST, MAP *.$DOMAIN $HOST" --ignore-certificate-errors-spki-list=$spki
          (as root also --no-sandbox)
  or, for every client at once, a line in /etc/hosts: $hosts
Logs: $logs/NAME.log    Stop: $down_command
EOF
}

cmd_status() {
    local name file pid state all_up=0 nodes_known=0
    if [ -f "$workdir/cluster.env" ]; then nodes_known=$(sed -n 's/^nodes=//p' "$workdir/cluster.env"); fi
    local names=(etcd dev-kafka)
    for i in $(seq 1 "${nodes_known:-0}"); do names+=("server$i"); done
    names+=(haproxy)
    if [ ! -d "$pids" ] || [ -z "$(ls -A "$pids" 2>/dev/null)" ]; then
        say "nothing running in $workdir"
        exit 1
    fi
    printf '%-10s %-8s %-8s %s\n' PROCESS PID STATE LOG
    for name in "${names[@]}"; do
        if pid=$(pid_of "$name"); then
            state=running
        else
            state=stopped
            pid=-
            all_up=1
        fi
        printf '%-10s %-8s %-8s %s\n' "$name" "$pid" "$state" "$logs/$name.log"
    done
    local checks
    if checks=$(curl -sf --max-time 2 "http://$HOST:$STATS_PORT/stats;csv" 2>/dev/null); then
        say ""
        printf 'HAProxy round robin (/readyz checks):'
        printf '%s\n' "$checks" | awk -F, '$1 == "streamgate_all" && $2 != "BACKEND" { printf " %s %s", $2, $18 }'
        say ""
    fi
    say ""
    say "GET https://server1.$DOMAIN:$LB_PORT/v1/cluster (through HAProxy):"
    local body code
    body=$(https_get "server1.$DOMAIN" "$LB_PORT" /v1/cluster -w '\n%{http_code}' 2>&1) || true
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    if [ "$code" = 200 ]; then
        printf '%s' "$body" | python3 -m json.tool 2>/dev/null || printf '%s\n' "$body"
    else
        say "HTTP ${code:-000}: $body"
    fi
    exit "$all_up"
}

cmd_down() {
    if [ ! -d "$pids" ] || [ -z "$(ls -A "$pids" 2>/dev/null)" ]; then
        say "nothing running in $workdir"
        return 0
    fi
    stop_all
    say "cluster stopped (logs kept in $logs)"
}

case "$command" in
    up) cmd_up ;;
    status) cmd_status ;;
    down) cmd_down ;;
    *) usage ;;
esac
