#!/usr/bin/env bash
# Builds and runs the platform on localhost with its embedded defaults.
# Today that is the router (the data plane); control and signaling join it as they land.
# Usage: scripts/run.sh [router flags, see --help]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq build-essential
fi
cargo build --release --locked -p router
exec target/release/router --control-socket "${ROUTER_SOCKET:-/tmp/router.sock}" "$@"
