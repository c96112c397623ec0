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
if [ -f "$data/managed.pid" ] || pgrep -f "upswarm daemon" >/dev/null 2>&1; then
  echo "note: a daemon seems to be running; stop it for a consistent backup" >&2
fi
files=(identity.key identity.pub api.token state.db)
[ -f "$data/activations.json" ] && files+=(activations.json)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
for f in "${files[@]}"; do [ -e "$data/$f" ] && cp -a "$data/$f" "$tmp/data/"; done
[ -n "$config" ] && cp -a "$config" "$tmp/node.toml"
tar -C "$tmp" -czf "$out" .
chmod 600 "$out"
echo "backed up ${files[*]} from $data to $out (mode 600: it holds the node's secret key)"
