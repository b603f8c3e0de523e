#!/usr/bin/env bash
# Installs the GStreamer 1.22 packages from Debian that are missing: the library, its -dev files
# for the gstreamer crates' pkg-config check, and the plugins whose elements the compositor
# uses (appsrc, vp8dec, avdec_h264, opusdec, compositor, audiomixer, x264enc, avenc_aac,
# h264parse, mp4mux, splitmuxsink; hlssink2 and rtmp2sink from plugins-bad and flvmux from
# plugins-good for HLS and RTMP; textoverlay next, for names on tiles).
# Used by scripts/run.sh and scripts/test.sh; runs apt-get as root, or through sudo.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
packages=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-x gstreamer1.0-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
