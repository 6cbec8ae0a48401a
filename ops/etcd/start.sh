#!/usr/bin/env bash
# Runs a single-member etcd for development and tests, in the foreground (the process becomes etcd).
#
#   ops/etcd/start.sh --data-dir DIR [--host 127.0.0.1] [--client-port 2379] [--peer-port 2380]
#
# Clients use http://HOST:CLIENT_PORT (streamgate serve --etcd …). Plain HTTP without authentication: bind it to
# loopback or a private network only. Ready when `curl -s http://HOST:CLIENT_PORT/health` answers {"health":"true"}.
# History older than an hour is compacted (a node's registration is rewritten as its connection count changes).
set -euo pipefail

host=127.0.0.1
client_port=2379
peer_port=2380
data_dir=""
usage() { echo "usage: $0 --data-dir DIR [--host H] [--client-port P] [--peer-port P]" >&2; exit 2; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --data-dir) [ "$#" -ge 2 ] || usage; data_dir=$2; shift 2 ;;
        --host) [ "$#" -ge 2 ] || usage; host=$2; shift 2 ;;
        --client-port) [ "$#" -ge 2 ] || usage; client_port=$2; shift 2 ;;
        --peer-port) [ "$#" -ge 2 ] || usage; peer_port=$2; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$data_dir" ] || usage
command -v etcd >/dev/null 2>&1 || { echo "etcd is not on PATH (ops/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$data_dir"

name=streamgate-dev
exec etcd --name "$name" --data-dir "$data_dir" \
    --listen-client-urls "http://$host:$client_port" --advertise-client-urls "http://$host:$client_port" \
    --listen-peer-urls "http://$host:$peer_port" --initial-advertise-peer-urls "http://$host:$peer_port" \
    --initial-cluster "$name=http://$host:$peer_port" --initial-cluster-state new \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --logger zap --log-outputs stderr
