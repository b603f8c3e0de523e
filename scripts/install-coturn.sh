#!/usr/bin/env bash
# Installs Debian's coturn (`turnserver`) when missing, for `scripts/bench.sh ice-tcp`, which
# measures the router's own TURN against a coturn relay (the platform itself does not use it).
# The package's own system service, if the install started one, is stopped and disabled so it
# does not hold the TURN ports. Runs apt-get as root, or through sudo.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if command -v turnserver >/dev/null || [ -x /usr/bin/turnserver ]; then
  exit 0
fi
echo "install-coturn: installing coturn (Debian package)"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends coturn >/dev/null
if command -v systemctl >/dev/null && systemctl is-enabled coturn >/dev/null 2>&1; then
  as_root systemctl disable --now coturn >/dev/null 2>&1 || true
fi
