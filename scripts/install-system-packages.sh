#!/usr/bin/env bash
# Debian packages the tests and the demo use (database servers for consistency hooks, Redis for
# the CeleryExecutor test, Chromium for UI tests, GNU time for benchmarks). Installs only what is
# missing; needs root (as on the project's machines) or passwordless sudo.
set -euo pipefail
PACKAGES=(time postgresql mariadb-server mariadb-client redis-server chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# the packages' own services are not started: tests start their own servers on loopback
$SUDO env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
