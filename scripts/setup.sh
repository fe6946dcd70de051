#!/usr/bin/env bash
# Idempotent set-up for a fresh machine that has Rust (x86_64), Node 20 and
# npm, plus a C compiler, pkg-config and the OpenSSL headers (checked below;
# the README's "What you need"): adds the wasm32 target, installs worker-build and the wasm-bindgen
# CLI that matches Cargo.lock, and the npm dev dependencies (Node 22, wrangler,
# miniflare 4, binaryen for wasm-opt, esbuild). Skips whatever is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
# shellcheck source=scripts/cargo-tool.sh
. scripts/cargo-tool.sh   # install_cargo_tool: --locked first, then the same version unlocked
SETUP_STARTED=$(date +%s)

# 0. Node 20 or newer (npm then installs the pinned Node 22 the tools run on).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "[setup] Node 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# Rust through rustup, with the components npm test uses (a "minimal" rustup
# profile has no rustfmt or clippy).
if ! command -v rustup >/dev/null 2>&1 || ! command -v cargo >/dev/null 2>&1; then
  echo "[setup] Rust through rustup is needed (https://rustup.rs): rustup and cargo are not on PATH" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "adding the $component component"
    rustup component add "$component"
  fi
done

# 1. The wasm32 target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# 2. worker-build, pinned with the worker crate (Cargo.toml pins worker =0.8.7).
# (`worker-build --version` prints the bare version.)
WORKER_BUILD_VERSION=0.8.7
# worker-build links OpenSSL through native-tls (openssl-sys): on Linux its
# build needs pkg-config and the OpenSSL headers. Said plainly before a long
# compile fails with a page of build-script output.
if [ "$(uname -s)" = Linux ] && [ ! -x "$CARGO_BIN/worker-build" ] \
   && ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; }; then
  echo "[setup] building worker-build needs pkg-config and the OpenSSL headers:" \
       "apt-get install pkg-config libssl-dev (Debian/Ubuntu) or dnf install pkgconf openssl-devel" >&2
  exit 1
fi
install_cargo_tool worker-build "$WORKER_BUILD_VERSION" "$WORKER_BUILD_VERSION" "$CARGO_BIN/worker-build" --version

# 3. wasm-bindgen CLI: must equal the library version in Cargo.lock exactly
# ("schema version ... must exactly match" otherwise, at build time).
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
if [ -z "$WB_VERSION" ]; then echo "[setup] cannot read the wasm-bindgen version from Cargo.lock" >&2; exit 1; fi
install_cargo_tool wasm-bindgen-cli "$WB_VERSION" "wasm-bindgen $WB_VERSION" "$CARGO_BIN/wasm-bindgen" --version

# 4. npm dev dependencies, from the lock file, when missing or stale.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
   || [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/node ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "ready in $(($(date +%s) - SETUP_STARTED)) s: $(node_modules/.bin/node --version), worker-build $WORKER_BUILD_VERSION, wasm-bindgen $WB_VERSION"
