#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test (idempotent:
# nothing to do when /usr/bin/chromium exists). playwright-core drives it;
# `npx playwright install` cannot download browsers here.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "[setup] installing chromium (Debian package, once per machine)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo > /dev/null || { echo "[setup] chromium is missing and this is not root: apt-get install -y chromium" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they do not know chromium yet.
candidate="$(apt-cache policy chromium 2> /dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq chromium > /dev/null
test -x /usr/bin/chromium
echo "[setup] chromium $(/usr/bin/chromium --version 2> /dev/null | awk '{print $2}') installed"
