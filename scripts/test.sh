#!/usr/bin/env bash
# Every test, in order of cost: format, lints (host and wasm32), native unit
# tests, the release wasm build, then integration tests of the built Worker in
# the real local runtime (Miniflare/workerd). Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"   # Node 22 and the local tools first
step() { printf '\n=== %s\n' "$*"; }
STARTED=$(date +%s)   # the summary at the end shows only this run's counts

# The test-only installs first: a machine that cannot get them fails in the
# first minutes, not after the builds and the fuzzing.
step "browser for the dashboard test (Debian chromium)"
bash scripts/setup-browser.sh

step "schemathesis for the API contract test (Python venv)"
bash scripts/setup-python.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host, all targets)"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown --quiet -- -D warnings

step "cargo test (native core)"
cargo test --quiet

step "fuzzing, briefly (cargo fuzz; npm run fuzz runs longer)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-4}"

step "wasm release build"
bash scripts/build.sh

step "integration and browser tests (Miniflare, node --test)"
node --test --test-concurrency=1 "tests/*.test.mjs"

node scripts/test-summary.mjs "$STARTED"
