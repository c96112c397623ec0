#!/usr/bin/env bash
# Benchmark: the download side's verify + store against `b3sum FILE && cp FILE DEST && sync
# DEST` on the same file, in the same run.
#
#   scripts/bench-store.sh [SIZE_MIB=512] [ROUNDS=5]
#
# upswarm's side (crates/content/examples/verify_store.rs) is what a daemon does with the
# chunks it receives: each 1 MiB chunk verified against the chunk index and written into the
# partial file at its offset (two threads, shuffled order), then the whole-file hash read
# back, fsync, rename. The baseline does the same work one job after the other: hash the
# file, copy it, sync the copy. Both read their input from the page cache; `sync` before each
# run. Prints the median of each and the ratio baseline_time / upswarm_time (target >= 1.0).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

size_mib=${1:-512}
rounds=${2:-5}
(cd "$UPSWARM_ROOT" && cargo build --release --locked -q -p upswarm-content --example verify_store) >&2
verify_store="$UPSWARM_ROOT/target/release/examples/verify_store"
b3sum=$(cargo_tool b3sum)
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-bench-store.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "file: $size_mib MiB of random bytes; $rounds rounds; $(nproc) cores"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/artifact.bin"
cat "$work/artifact.bin" > /dev/null   # both read from the page cache

base=() ours=()
for i in $(seq 1 "$rounds"); do
  rm -f "$work/copy" "$work/dest"; sync
  t0=$(now)
  "$b3sum" "$work/artifact.bin" > /dev/null && cp "$work/artifact.bin" "$work/copy" && sync "$work/copy"
  t1=$(now)
  base+=("$(echo "$t1 - $t0" | bc -l)")
  rm -f "$work/copy"; sync
  ours+=("$("$verify_store" "$work/artifact.bin" "$work/dest" | sed -n 's/^verify+store: //p')")
done
mb=$(median "${base[@]}"); mo=$(median "${ours[@]}")
printf 'b3sum FILE && cp FILE DEST && sync DEST   median %.3f s  (%.0f MiB/s)\n' "$mb" "$(echo "$size_mib / $mb" | bc -l)"
printf 'upswarm verify + store (download side)    median %.3f s  (%.0f MiB/s)\n' "$mo" "$(echo "$size_mib / $mo" | bc -l)"
printf 'ratio (baseline time / upswarm time): %.2f  (target >= 1.00)\n' "$(echo "$mb / $mo" | bc -l)"
