#!/usr/bin/env bash
# Browser end-to-end tests: the demo app (official 100ms SDK) in headless Chromium against the
# real platform (`target/debug/control`). Run `cargo build` first; this script installs the rest
# when missing (Chromium from Debian, npm packages from the lock files), builds client/dist and
# prebuilt/dist, and
# runs tests/browser under node:test, inside a network namespace with only `lo` when it can.
#
#   scripts/browser-test.sh                                  # all scenarios
#   scripts/browser-test.sh --test-name-pattern=chat         # extra args go to `node --test`
#
# Env: CONTROL_BIN (default $CARGO_TARGET_DIR/debug/control or target/debug/control),
#      CHROMIUM (default /usr/bin/chromium), NO_NETNS=1 to skip the namespace,
#      KEEP_DATA=1 to keep each run's data dir, BROWSER_RUN=<script.mjs> to run that script of
#      tests/browser (a measurement) instead of the tests. Failed tests leave screenshots and the control
#      log in tests/browser/artifacts/. Exit code = test result.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser-test: installing Chromium (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# The recording tests decode the recorded files with Debian's ffmpeg.
if ! command -v ffprobe >/dev/null; then
  echo "browser-test: installing ffmpeg (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser-test: installing Node.js and npm (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "browser-test: Node.js >= 20 is needed (playwright-core), found $(node --version)" >&2
  exit 2
fi

# npm ci only when node_modules is missing or older than the lock file.
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
}
npm_ci client
npm_ci prebuilt
npm_ci tests/browser
(cd client && npm run --silent build)
(cd prebuilt && npm run --silent build)

control=${CONTROL_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/control}
if [ ! -x "$control" ]; then
  echo "browser-test: $control not found; run \`cargo build\` first (or set CONTROL_BIN)" >&2
  exit 2
fi
export CONTROL_BIN=$(realpath "$control")

cd tests/browser
run=(node --test "$@" call.test.mjs rest-api.test.mjs simulcast.test.mjs simulcast-fallback.test.mjs recording.test.mjs composite.test.mjs streams.test.mjs sdk-recording-states.test.mjs reach.test.mjs whip.test.mjs interactive.test.mjs prebuilt.test.mjs)
if [ -n "${BROWSER_RUN:-}" ]; then
  run=(node "$BROWSER_RUN" "$@") # a measurement script instead of the tests (scripts/bench.sh)
fi
if [ -z "${NO_NETNS:-}" ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
  # Only loopback exists in here: every ICE candidate and packet is 127.0.0.1, and nothing
  # (the SDK's analytics, Chromium's background fetches) can leave the machine.
  echo "browser-test: running in a network namespace (lo only)"
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
else
  echo "browser-test: running without a network namespace"
  exec "${run[@]}"
fi
