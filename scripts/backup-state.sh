#!/usr/bin/env bash
# Operator helper: back up a daemon's state — identity, API token, the sled database, the
# pinned root and the configuration — to a tarball. Chunks, releases and versions are not
# included (they can be fetched again). Stop the daemon first for a consistent copy.
#
#   scripts/backup-state.sh DATA_DIR OUT.tar.gz [CONFIG]
set -euo pipefail
data=${1:?usage: backup-state.sh DATA_DIR OUT.tar.gz [CONFIG]}
out=${2:?usage: backup-state.sh DATA_DIR OUT.tar.gz [CONFIG]}
config=${3:-}
[ -d "$data/state.db" ] || { echo "$data does not look like an upswarm data directory (no state.db)" >&2; exit 1; }
# A daemon running on THIS data directory holds its database open: refuse, since the copy
# would not be consistent. Daemons on other data directories do not matter.
real=$(cd "$data" && pwd -P)
for fd in /proc/[0-9]*/fd/*; do
  target=$(readlink "$fd" 2>/dev/null) || continue
  case $target in
    "$real/state.db"/*)
      pid=${fd#/proc/}; pid=${pid%%/*}
      echo "a daemon (pid $pid) is running on $data; stop it first for a consistent backup" >&2
      exit 1 ;;
  esac
done
files=(identity.key identity.pub api.token state.db)
[ -f "$data/activations.json" ] && files+=(activations.json)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
for f in "${files[@]}"; do [ -e "$data/$f" ] && cp -a "$data/$f" "$tmp/data/"; done
[ -n "$config" ] && cp -a "$config" "$tmp/node.toml"
tar -C "$tmp" -czf "$out" .
chmod 600 "$out"
echo "backed up ${files[*]} from $data to $out (mode 600: it holds the node's secret key)"
