#!/usr/bin/env bash
# Idempotent: creates .venv in the repository with `python3 -m venv` and
# installs the contract test's pinned tools (tests/contract/requirements.txt:
# schemathesis and everything it needs, each at an exact version). Skips the
# install when .venv already has the pinned schemathesis and nothing in the
# requirements changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup-python] %s\n' "$*"; }
REQ=tests/contract/requirements.txt
VENV=.venv
STAMP="$VENV/.requirements.installed"

command -v python3 > /dev/null || {
  echo "[setup-python] python3 is missing: install Python 3.11+ with pip and venv (Debian: apt-get install -y python3 python3-venv python3-pip)" >&2
  exit 1
}
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "[setup-python] $(python3 --version 2>&1) is too old: schemathesis needs Python 3.11+" >&2
  exit 1
}
PIN=$(awk -F'==' '$1 == "schemathesis" {print $2}' "$REQ")
if [ -z "$PIN" ]; then echo "[setup-python] $REQ pins no schemathesis version" >&2; exit 1; fi

installed() {
  [ -x "$VENV/bin/schemathesis" ] && [ -f "$STAMP" ] && cmp -s "$REQ" "$STAMP" \
    && "$VENV/bin/schemathesis" --version 2> /dev/null | grep -qx "schemathesis, version $PIN"
}
if installed; then
  say "ready: schemathesis $PIN in $VENV (already installed)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV ($(python3 --version 2>&1))"
  python3 -m venv "$VENV" || {
    echo "[setup-python] 'python3 -m venv' failed: install the venv module (Debian: apt-get install -y python3-venv)" >&2
    exit 1
  }
fi
say "installing $REQ (schemathesis $PIN)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
cp "$REQ" "$STAMP"
installed || { echo "[setup-python] schemathesis $PIN did not install into $VENV" >&2; exit 1; }
say "ready: schemathesis $PIN in $VENV"
