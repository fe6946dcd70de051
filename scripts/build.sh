#!/usr/bin/env bash
# Release build of the Worker: build/index.js + build/index_bg.wasm.
# worker-build would download wasm-bindgen and wasm-opt from GitHub, which is
# unreachable here, so it is given the locally installed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
"$CARGO_BIN/worker-build" --release "$@"
# One more size pass over the module wasm-bindgen wrote (-Oz: ~3 KB gzipped
# more than worker-build's own), and drop the name section (function names,
# ~50 KB gzipped): it only helps read stack traces, and Workers bill start-up
# and memory on the module's size.
# KEEP_NAMES=1 keeps the names (for scripts/profile-cpu.mjs).
STRIP="--strip-debug"
[ "${KEEP_NAMES:-}" = "1" ] && STRIP="-g"   # -g: wasm-opt keeps the name section
node_modules/.bin/wasm-opt build/index_bg.wasm -Oz $STRIP \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  -o build/index_bg.wasm
# The dashboard (www/ -> www/dist), served by the Worker from the ASSETS binding.
node_modules/.bin/node scripts/build-www.mjs
ls -l build/index.js build/index_bg.wasm | awk '{print "[build] " $5 " bytes  " $9}'
