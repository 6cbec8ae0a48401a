#!/usr/bin/env bash
# Fuzzes the edge parsers: the frame rules (fuzz-frame), the request decoder (fuzz-request) and the handshake
# rules (fuzz-handshake), SECONDS_PER_TARGET each (default 20), one after the other.
#
#   ops/fuzz.sh [SECONDS_PER_TARGET]
#
# Builds the three targets with coverage-guided fuzzing and the address sanitizer in .build-fuzz/ (optimized:
# about seven times the inputs per second of a debug build; preconditions and bounds checks stay), starts each
# from a copy of its seed corpus in Tests/fuzz/<name>/ (the seeds are never changed), and fails when any input
# crashes, breaks an invariant, leaks, hangs or runs out of memory. Such an input is kept in .build-fuzz/crashes/
# with the run's log; replay it with `.build-fuzz/release/fuzz-<name> <file>`, or, in a plain build,
# `swift run fuzz-<name> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: ops/fuzz.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi

scratch=.build-fuzz
crashes="$scratch/crashes"
targets=(frame request handshake)
# Longest input tried: enough for several frames, a large request, a head with many fields.
declare -A max_len=([frame]=1024 [request]=2048 [handshake]=4096)
flags=(
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
    # The targets call the engine's driver from their own entry point (see Sources/Fuzz/*/Fuzz.swift).
    -Xswiftc -enable-experimental-feature -Xswiftc Extern
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$crashes"

started=$SECONDS
for target in "${targets[@]}"; do
    log="$work/build-$target.log"
    if ! swift build --scratch-path "$scratch" -c release --product "fuzz-$target" "${flags[@]}" >"$log" 2>&1; then
        # The linker warns about every sanitizer symbol it cannot export; those lines are noise.
        grep -v "Cannot export local symbol" "$log" | tail -40 >&2
        echo "fuzz-$target: build failed" >&2
        exit 1
    fi
done
echo "built in $((SECONDS - started)) s; fuzzing ${seconds} s per target"

# stat <log> <name>: the value of the engine's final "stat::<name>: <value>" line, or 0.
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -1 | grep . || echo 0; }

status=0
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir -p "$corpus"
    cp Tests/fuzz/"$target"/* "$corpus"/
    seeds=$(find "$corpus" -type f | wc -l)
    log="$work/fuzz-$target.log"
    rc=0
    # The fuzzing engine reports crashes itself; the Swift runtime's own backtracer would only slow that down.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        "$scratch/release/fuzz-$target" "$corpus" \
        -max_total_time="$seconds" -max_len="${max_len[$target]}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/fuzz-$target-" >"$log" 2>&1 || rc=$?
    runs=$(stat "$log" number_of_executed_units)
    rate=$(stat "$log" average_exec_per_sec)
    rss=$(stat "$log" peak_rss_mb)
    corpus_size=$(find "$corpus" -type f | wc -l)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    if [[ $rc -eq 0 ]]; then
        verdict=ok
    else
        verdict="FAILED (exit $rc)"
        status=1
        cp "$log" "$crashes/fuzz-$target.log"
    fi
    printf 'fuzz-%-9s %s: %s runs, %s/s, corpus %s -> %s inputs, coverage %s, peak %s MB\n' \
        "$target" "$verdict" "$runs" "$rate" "$seeds" "$corpus_size" "$coverage" "$rss"
    if [[ $rc -ne 0 ]]; then
        grep -E 'ERROR|Fatal error|failed|SUMMARY|Test unit written' "$log" | head -8 | sed 's/^/    /'
        echo "    log: $crashes/fuzz-$target.log"
        # An optimized build drops precondition messages; a plain debug build names the failed check.
        artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        if [[ -n "$artifact" ]]; then echo "    which check: swift run fuzz-$target $artifact"; fi
    fi
done
exit $status
