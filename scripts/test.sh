#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine and runs every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
# The Rust tests and the browser tests both run; the script fails if either did.

# The Rust toolchain comes with the machine; C compiler for aws-lc-sys and libfuzzer-sys.
if ! command -v cc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq build-essential
fi

# Debian's ffmpeg (ffprobe, libvpx, libopus): the recorder's tests make real VP8 and Opus with
# it and decode the recorded files with it.
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg
fi

# GStreamer 1.22 from Debian for the compositor (the packages it needs, when missing).
scripts/install-gstreamer.sh

# iproute2 and nftables (the browser tests' network namespaces: a client whose UDP is blocked).
if ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nftables iproute2
fi

# PostgreSQL for the store's and control's PostgreSQL tests (the same tests as on SQLite): a
# throwaway server on 127.0.0.1, stopped when this script exits.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  apt-get update -qq && apt-get install -y -qq postgresql
fi
pg_dir="$(mktemp -d -u /tmp/store-test-postgres.XXXXXX)"
trap 'scripts/postgres-test-server.sh stop "$pg_dir"' EXIT
STORE_TEST_POSTGRES_URL="$(scripts/postgres-test-server.sh start "$pg_dir")"
export STORE_TEST_POSTGRES_URL
echo "== PostgreSQL test server: $STORE_TEST_POSTGRES_URL"

# Two cores: two jobs. Tests that bind sockets use port 0, so they run in parallel safely.
export CARGO_TERM_COLOR=never
jobs="${CARGO_JOBS:-2}"

echo "== build"
cargo build --workspace --all-targets --locked -j"$jobs"

echo "== fuzz targets compile (run them with scripts/fuzz.sh)"
cargo check --manifest-path fuzz/Cargo.toml --target-dir target -j"$jobs" --quiet

echo "== tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked -j"$jobs" --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc --locked -j"$jobs" "$@"
else
  cargo test --workspace --locked -j"$jobs" --no-fail-fast "$@"
fi

echo "== browser end-to-end tests (official 100ms SDK in headless Chromium)"
# Installs Chromium and the npm packages when missing, builds the demo, runs tests/browser.
scripts/browser-test.sh
