#!/usr/bin/env bash
# Sets up and runs the whole platform on localhost with its embedded defaults: control starts
# the router and signaling, keeps its state in ./data (SQLite, a self-signed certificate,
# credentials) and serves the demo app at / and 100ms Prebuilt at /meeting/<room code>. It
# prints the demo's URL.
# Usage: scripts/run.sh [control flags, see target/release/control --help]
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v cc >/dev/null; then
  as_root apt-get update -qq && as_root apt-get install -y -qq build-essential
fi
if ! command -v npm >/dev/null; then
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
# GStreamer 1.22 from Debian for the compositor (the packages it needs, when missing).
scripts/install-gstreamer.sh
cargo build --release --locked -p control -p router -p signaling -p recorder -p compositor
(cd client && npm ci --no-audit --no-fund && npm run --silent build)
(cd prebuilt && npm ci --no-audit --no-fund && npm run --silent build)
exec target/release/control --demo-dir client/dist --prebuilt-dir prebuilt/dist "$@"
