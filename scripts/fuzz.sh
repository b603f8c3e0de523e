#!/usr/bin/env bash
# Runs the cargo-fuzz targets (STUN, TURN, RTP, RTCP, SDP parsers, inter-process frames, DCEP/SCTP, tap records, the recorder's video depacketizers) for a bounded time each.
# Needs cargo-fuzz and a nightly toolchain; on stable, RUSTC_BOOTSTRAP lets cargo-fuzz use -Z flags.
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in stun turn rtp rtcp sdp schema_frame dcep tap_record video_depack; do
  echo "== fuzz $target for ${secs}s"
  # -s none: libFuzzer with coverage but no sanitizer, so a stable toolchain suffices.
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$target" -- -max_total_time="$secs" -max_len=2048
done
