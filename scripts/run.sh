#!/usr/bin/env bash
# Sets up and runs the whole platform on localhost with its embedded defaults: control starts
# the router and signaling, keeps its state in ./data (SQLite, a self-signed certificate,
# credentials) and serves the demo app. It prints the demo's URL.
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
# GStreamer 1.22 from Debian for the compositor (see scripts/test.sh for what each is for).
gst_packages=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-x gstreamer1.0-tools)
gst_missing=()
for p in "${gst_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || gst_missing+=("$p")
done
if [ "${#gst_missing[@]}" -gt 0 ]; then
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${gst_missing[@]}"
fi
cargo build --release --locked -p control -p router -p signaling -p recorder
(cd client && npm ci --no-audit --no-fund && npm run --silent build)
exec target/release/control --demo-dir client/dist "$@"
