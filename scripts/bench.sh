#!/usr/bin/env bash
# `npm run bench`: native Criterion benches of the core, then the runtime
# measurements (scripts/bench.mjs), then BENCHMARKS.md's tables from the results.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
t=$SECONDS
cargo bench --bench core -- --noplot 2>&1 | tee target/bench-native.txt | grep -E "^(core_path|cf parse|analytics/|analytics state)|time:"
cargo bench --bench memory 2>&1 | grep -E "^memory:"
echo "[bench] native benches took $((SECONDS - t)) s"
node scripts/bench.mjs "$@"
node scripts/bench-report.mjs
