#!/usr/bin/env bash
# Idempotent set-up for a fresh machine that has only Rust (x86_64), Node 20
# and npm: adds the wasm32 target, installs worker-build and the wasm-bindgen
# CLI that matches Cargo.lock, and the npm dev dependencies (Node 22, wrangler,
# miniflare 4, binaryen for wasm-opt, esbuild). Skips whatever is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

# 1. The wasm32 target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# 2. worker-build, pinned with the worker crate (Cargo.toml pins worker =0.8.7).
WORKER_BUILD_VERSION=0.8.7
if ! "$CARGO_BIN/worker-build" --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once per machine)"
  cargo install --locked --quiet "worker-build@$WORKER_BUILD_VERSION"
fi

# 3. wasm-bindgen CLI: must equal the library version in Cargo.lock exactly.
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
if [ -z "$WB_VERSION" ]; then echo "[setup] cannot read the wasm-bindgen version from Cargo.lock" >&2; exit 1; fi
if ! "$CARGO_BIN/wasm-bindgen" --version 2>/dev/null | grep -q " $WB_VERSION\$"; then
  say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once per machine)"
  cargo install --locked --quiet "wasm-bindgen-cli@$WB_VERSION"
fi

# 4. npm dev dependencies, from the lock file, when missing or stale.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
   || [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/node ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "ready: $(node_modules/.bin/node --version), worker-build $WORKER_BUILD_VERSION, wasm-bindgen $WB_VERSION"
