#!/usr/bin/env bash
# Builds and runs a gateway at ws://127.0.0.1:8080/v1/ws. Without STREAMGATE_BROKERS (or --brokers) it runs
# on an embedded, in-memory development Kafka. Extra arguments go to `streamgate serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/install-deps.sh
swift build -c release --product streamgate
exec .build/release/streamgate serve "$@"
