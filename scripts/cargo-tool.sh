# Sourced by scripts/setup.sh and scripts/fuzz.sh: installs one pinned cargo tool.
#
#   install_cargo_tool CRATE VERSION EXPECTED_VERSION_LINE VERSION_COMMAND...
#
# Does nothing when VERSION_COMMAND already prints EXPECTED_VERSION_LINE.
# Otherwise it installs CRATE@VERSION with `cargo install --locked` (the tool's own lock
# file: the versions its authors tested). A locked install fails when that lock file names
# a dependency version the registry we reach does not serve (seen 2026-12-02:
# wasm-bindgen-cli 0.2.130 locks webpki-roots 1.0.11): then it says so in one line and
# installs the same pinned tool version without --locked (any other failure is shown
# as it is, not retried). Either way the installed
# binary's version is checked, and a mismatch is an error here, not a build failure later.

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

install_cargo_tool() {
  local crate=$1 version=$2 expected=$3
  shift 3
  if "$@" 2>/dev/null | grep -qxF "$expected"; then
    return 0
  fi
  local log t0
  log=$(mktemp)
  t0=$(date +%s)
  printf '[setup] installing %s %s (compiles from source: minutes, once per machine)\n' "$crate" "$version"
  if ! cargo install --locked --quiet "$crate@$version" 2>"$log"; then
    local why
    why=$(grep -m1 -E '^error' "$log" || tail -1 "$log")
    # Only a resolution failure is worth a second, unlocked compile; anything
    # else (network, disk, a compile error) is shown as it is.
    if ! grep -qiE 'failed to select a version|locked to|lock file|failed to resolve|no matching package' "$log"; then
      cat "$log" >&2
      rm -f "$log"
      printf '[setup] could not install %s %s (above)\n' "$crate" "$version" >&2
      return 1
    fi
    printf '[setup] %s %s: the locked install failed (%s); installing the same version without --locked\n' \
      "$crate" "$version" "$why"
    if ! cargo install --quiet "$crate@$version" 2>"$log"; then
      cat "$log" >&2
      rm -f "$log"
      printf '[setup] could not install %s %s (above)\n' "$crate" "$version" >&2
      return 1
    fi
  fi
  rm -f "$log"
  local got
  got=$("$@" 2>/dev/null || true)
  if ! grep -qxF "$expected" <<<"$got"; then
    printf '[setup] "%s" prints "%s" after the install, expected "%s": remove the old binary from %s and run again\n' \
      "$*" "$got" "$expected" "$CARGO_BIN" >&2
    return 1
  fi
  printf '[setup] %s installed in %d s\n' "$expected" $(($(date +%s) - t0))
}
