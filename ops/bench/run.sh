#!/usr/bin/env bash
# Builds a release streamgate, runs every bench scenario RUNS times (default 3, interleaved so that
# machine noise spreads over all of them), and writes ops/bench/results/<date>.json plus a markdown
# scoreboard (median and min–max) to standard output and ops/bench/results/<date>.md.
#
#   ops/bench/run.sh                       # everything, about 10 minutes on 2 cores
#   RUNS=1 ops/bench/run.sh                # one round
#   BENCH_ARGS="--brokers HOST:PORT" ops/bench/run.sh   # an existing Kafka instead of the dev Kafka
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
SCRATCH=${SCRATCH:-.build-release}
read -r -a EXTRA <<< "${BENCH_ARGS:-}"

swift build -c release --scratch-path "$SCRATCH" --product streamgate >&2
BIN="$SCRATCH/release/streamgate"

STAMP=$(date -u +%Y-%m-%dT%H%MZ)
WORK="ops/bench/results/tmp/$STAMP"
mkdir -p "$WORK/logs"

bench() {
    local name=$1
    shift
    echo "== $name" >&2
    "$BIN" bench "$@" --log-dir "$WORK/logs" --json-out "$WORK/$name.json" "${EXTRA[@]}" >&2
}

for run in $(seq 1 "$RUNS"); do
    bench "s4-linger1-$run" s4-publish --linger-ms 1
    bench "s4-linger5-$run" s4-publish --linger-ms 5 --open-loop-fractions 0.5
    bench "s5-$run" s5-fanout
    bench "s7-$run" s7-replay
done

"$BIN" bench scoreboard "$WORK"/*.json --out "ops/bench/results/$STAMP.json" | tee "ops/bench/results/$STAMP.md"
echo "results: ops/bench/results/$STAMP.json" >&2
