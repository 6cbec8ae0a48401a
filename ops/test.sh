#!/usr/bin/env bash
# Runs every test: Swift unit and in-process integration tests, the end-to-end suite, which starts
# `streamgate dev-kafka` and `streamgate serve` as processes and drives them with independent clients,
# the cluster suite (etcd, dev Kafka, three TLS nodes with placement, HAProxy routing by SNI, driven by
# Python clients and headless Chromium), the browser suite (the JavaScript client and the console page in
# headless Chromium), then a bounded fuzzing run of the edge parsers (20 s per parser;
# a crash fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."
ops/install-deps.sh
swift build --build-tests
swift test --skip-build
python3 Tests/e2e/run.py --binary .build/debug/streamgate
python3 Tests/e2e-cluster/run.py --binary .build/debug/streamgate
python3 Tests/e2e-browser/run.py --binary .build/debug/streamgate
ops/fuzz.sh 20
