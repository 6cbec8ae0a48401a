#!/usr/bin/env bash
# Runs every test: Swift unit and in-process integration tests, then the end-to-end suite, which starts
# `streamgate dev-kafka` and `streamgate serve` as processes and drives them with independent clients.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/install-deps.sh
swift build --build-tests
swift test --skip-build
python3 Tests/e2e/run.py --binary .build/debug/streamgate
