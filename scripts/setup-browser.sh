#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test (idempotent).
# playwright-core drives it; `npx playwright install` cannot download browsers here.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "[setup] installing chromium (Debian package, once per machine)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium > /dev/null
