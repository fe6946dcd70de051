#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of every parser of
# untrusted input: one target per parser in fuzz/fuzz_targets/, each started
# from its committed seeds in fuzz/corpus/<target>/.
#
#   bash scripts/fuzz.sh [seconds-per-target]    (default 60; `npm run fuzz`)
#
# `npm test` runs it with a few seconds per target. Builds every target once,
# runs each for the given time on a temporary copy of its seeds (so the
# committed corpus never changes), prints runs and crashes per target, writes
# the totals to tests/artifacts/counts/fuzz.json, and exits non-zero on any
# crash, panic or failed property, naming the input and how to reproduce it.
#
# Needs only the stable toolchain: cargo-fuzz passes nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module and friends), which stable rustc
# accepts with RUSTC_BOOTSTRAP=1. One job, -j 2 builds: the machine has 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash scripts/fuzz.sh [seconds-per-target]" >&2
  exit 2
fi

say() { printf '[fuzz] %s\n' "$*"; }
CARGO_FUZZ_VERSION=0.13.2
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# 1. cargo-fuzz, pinned (--locked first, then the same version unlocked: scripts/cargo-tool.sh).
# shellcheck source=scripts/cargo-tool.sh
. scripts/cargo-tool.sh
install_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" "cargo-fuzz $CARGO_FUZZ_VERSION" cargo fuzz --version

# 2. Build every target once: release with debug assertions and overflow checks.
# AddressSanitizer links and runs on stable with RUSTC_BOOTSTRAP=1 (checked on
# rustc 1.95): with it libFuzzer also sees memcmp operands (its interceptors
# feed the compare hints), so keep it. Where its runtime is missing (another
# host), fall back to `-s none`: the targets are safe Rust, a panic or a failed
# assertion is still a crash, only the compare hints are fewer.
HOST=$(rustc -vV | sed -n 's/^host: //p')
BUILD=(cargo fuzz build --fuzz-dir fuzz --target "$HOST" -O -a)
BUILD_LOG=$(mktemp)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$BUILD_LOG"' EXIT
started=$(date +%s)
SANITIZER=address
if ! "${BUILD[@]}" -s address >"$BUILD_LOG" 2>&1; then
  tail -20 "$BUILD_LOG" >&2
  say "the AddressSanitizer build failed (above); building without a sanitizer"
  SANITIZER=none
  "${BUILD[@]}" -s none
fi
say "built in $(($(date +%s) - started)) s (sanitizer: $SANITIZER)"
BIN="fuzz/target/$HOST/release"
mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir fuzz)

# 3. Run each target for the given time, one process, one job.
LOGS=tests/artifacts/fuzz
mkdir -p "$LOGS" tests/artifacts/counts
total_runs=0
total_crashes=0
total_seconds=0
rows=()
failures=()
for t in "${TARGETS[@]}"; do
  corpus="$WORK/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp -R "fuzz/corpus/$t/." "$corpus/"
  log="$LOGS/$t.log"
  rc=0
  t0=$(date +%s)
  timeout --kill-after=10 $((SECONDS_PER_TARGET + 120)) \
    "$BIN/$t" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
  # libFuzzer's last line: "Done 123456 runs in 4 second(s)" (not printed on a crash).
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
  if [ -n "$done_line" ]; then
    runs=$(awk '{print $2}' <<<"$done_line")
    secs=$(awk '{print $5}' <<<"$done_line")
  else
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    runs=${runs:-0}
    secs=$(($(date +%s) - t0))
  fi
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -1)
    failures+=("$t|$rc|${artifact:-}|$log")
  fi
  total_runs=$((total_runs + runs))
  total_crashes=$((total_crashes + crashes))
  total_seconds=$((total_seconds + secs))
  rows+=("$t|$runs|$secs|$crashes")
  say "$t: $runs runs in $secs s, $crashes crashes"
done

printf '\n%-10s %12s %8s %8s\n' target runs seconds crashes
for r in "${rows[@]}"; do
  IFS='|' read -r t runs secs crashes <<<"$r"
  printf '%-10s %12s %8s %8s\n' "$t" "$runs" "$secs" "$crashes"
done
printf '%-10s %12s %8s %8s\n' total "$total_runs" "$total_seconds" "$total_crashes"
printf '{"suite":"fuzz","targets":%d,"runs":%d,"crashes":%d,"secondsPerTarget":%d}\n' \
  "${#TARGETS[@]}" "$total_runs" "$total_crashes" "$SECONDS_PER_TARGET" >tests/artifacts/counts/fuzz.json

if [ "${#failures[@]}" -gt 0 ]; then
  for f in "${failures[@]}"; do
    IFS='|' read -r t rc artifact log <<<"$f"
    printf '\n[fuzz] %s FAILED (exit %s); log: %s\n' "$t" "$rc" "$log" >&2
    grep -E -m 5 -A 3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|==ERROR" "$log" >&2 || tail -20 "$log" >&2
    if [ -n "$artifact" ]; then
      printf '  crashing input: %s\n' "$artifact" >&2
      printf '  reproduce:      RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O -a -s %s %s %s\n' \
        "$SANITIZER" "$t" "$artifact" >&2
      printf '     (or run)     %s/%s %s\n' "$BIN" "$t" "$artifact" >&2
      printf '  minimise:       RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz -O -a -s %s %s %s\n' \
        "$SANITIZER" "$t" "$artifact" >&2
    fi
  done
  exit 1
fi
