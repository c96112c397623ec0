#!/usr/bin/env bash
# Fuzzes every decoder of outside bytes (issue 11): builds the cargo-fuzz targets in fuzz/
# and runs each for SECONDS (default 60), one after the other, starting from its committed
# seed corpus (fuzz/corpus/<target>/, read only: what the run finds goes to a temporary
# directory). Prints per target the executions and whether a crash was found; exits
# non-zero on any crash. Crash inputs are kept in fuzz/artifacts/<target>/ (git-ignored).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (all targets when none is named)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz
# (`cargo install cargo-fuzz --locked`) when it is missing. On a shared machine run it
# under `nice -n 10`. See docs/threat-model.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
if [[ ! $secs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]  (SECONDS: a positive whole number)" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-fuzz.XXXXXX")
child=""
# Every process this script starts runs as `child`, in its own process group, which is
# stopped on any exit (normal, error or signal).
cleanup() {
  if [[ -n $child ]]; then
    kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    child=""
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" in the background as its own process group and waits for it, so that a signal
# reaches the traps above at once; returns its exit status.
run() {
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" &
  else
    "$@" &
  fi
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets (cargo +nightly fuzz build)"
start_build=$SECONDS
for t in "${targets[@]}"; do
  [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "fuzz.sh: no target $t (see: cargo +nightly fuzz list)" >&2; exit 2; }
done
if [[ $# -gt 0 && ${#targets[@]} -eq 1 ]]; then
  run cargo +nightly fuzz build "${targets[0]}"
else
  run cargo +nightly fuzz build
fi
echo "   built in $((SECONDS - start_build)) s"

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release
declare -a summary=()
crashed=0
for t in "${targets[@]}"; do
  echo "== $t: ${secs} s"
  mkdir -p "$work/corpus/$t" "fuzz/artifacts/$t"
  log=$work/$t.log
  before=$(find "fuzz/artifacts/$t" -type f | sort)
  rc=0
  started=$SECONDS
  # New inputs go to the temporary directory (first); the committed seeds are only read.
  run "$bin_dir/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" -dict=fuzz/cbor.dict \
    "$work/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [[ -z $execs ]]; then
    # A crash ends the run before the final stats; take the last status line instead.
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  fi
  execs=${execs:-0}
  took=$((SECONDS - started))
  new=$(comm -13 <(printf '%s\n' "$before") <(find "fuzz/artifacts/$t" -type f | sort) | tr '\n' ' ')
  if [[ $rc -ne 0 || -n ${new// /} ]]; then
    crashed=1
    result="CRASH (exit $rc)"
    echo "-- $t found a crash after $took s; from its log:"
    grep -A6 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" | head -30 || true
    grep -v -E '^#[0-9]|^ +#[0-9]+ 0x' "$log" | tail -12 || true
    echo "-- inputs: ${new:-none written}"
    echo "-- reproduce: cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>"
  else
    result="no crash"
  fi
  echo "   $t: $execs executions in $took s, $result"
  summary+=("$(printf '%-16s %8s s %14s executions  %s' "$t" "$took" "$execs" "$result")")
done

echo "== fuzzing summary ($(date -u +%Y-%m-%dT%H:%MZ))"
printf '%s\n' "${summary[@]}"
if [[ $crashed -ne 0 ]]; then
  echo "fuzz.sh: at least one target crashed (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crash"
