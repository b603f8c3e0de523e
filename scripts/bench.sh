#!/usr/bin/env bash
# Runs the criterion benchmarks (docs/performance.md explains them and records figures).
# Usage: scripts/bench.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p benches -j2 -- "$@"
