#!/usr/bin/env bash
# Benchmark: `upswarm release create` (chunk + hash every chunk + hash the whole file + store
# the chunks) against `b3sum` (hash the whole file) on the same file, in the same run.
#
#   scripts/bench-chunking.sh [SIZE_MIB=512] [ROUNDS=5]
#
# Prints the median of each and the throughput ratio b3sum_time / create_time (target ≥ 0.9).
# The ratio is for `release create --no-compress` (the chunking job); the default create,
# which also zstd-compresses the artifact into a compressed form (issue 17), is timed on
# the same rounds and printed beside it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

size_mib=${1:-512}
rounds=${2:-5}
upswarm=$(build_release)
b3sum=$(cargo_tool b3sum)
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-bench-chunking.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "file: $size_mib MiB of random bytes; $rounds rounds; $(nproc) cores"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/artifact.bin"
cat "$work/artifact.bin" > /dev/null   # both runs read from the page cache

create() {
  rm -rf "$work/rel"; sync
  local t0 t1
  t0=$(now)
  "$upswarm" release create --name bench --version 1.0.0 --type patch --channel bench \
    --artifact bench="$work/artifact.bin" --out "$work/rel" "$@" > /dev/null 2>&1
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
b3=() cr=() cz=()
for i in $(seq 1 "$rounds"); do
  sync
  t0=$(now); "$b3sum" "$work/artifact.bin" > /dev/null; t1=$(now)
  b3+=("$(echo "$t1 - $t0" | bc -l)")
  cr+=("$(create --no-compress)")
  cz+=("$(create)")
done
mb3=$(median "${b3[@]}"); mcr=$(median "${cr[@]}"); mcz=$(median "${cz[@]}")
printf 'b3sum (whole-file hash, %s threads)      median %.3f s  (%.0f MiB/s)\n' "$(nproc)" "$mb3" "$(echo "$size_mib / $mb3" | bc -l)"
printf 'upswarm release create --no-compress    median %.3f s  (%.0f MiB/s)\n' "$mcr" "$(echo "$size_mib / $mcr" | bc -l)"
printf 'upswarm release create (+ zstd form)    median %.3f s  (%.0f MiB/s)\n' "$mcz" "$(echo "$size_mib / $mcz" | bc -l)"
printf 'ratio (b3sum time / create time): %.2f  (target >= 0.90)\n' "$(echo "$mb3 / $mcr" | bc -l)"
