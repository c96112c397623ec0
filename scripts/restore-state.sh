#!/usr/bin/env bash
# Operator helper: restore a backup made by backup-state.sh into DATA_DIR (which must not
# hold a state database yet, to avoid overwriting a live node by mistake). Start the daemon
# afterwards: it fetches releases again and resumes.
#
#   scripts/restore-state.sh BACKUP.tar.gz DATA_DIR
set -euo pipefail
backup=${1:?usage: restore-state.sh BACKUP.tar.gz DATA_DIR}
data=${2:?usage: restore-state.sh BACKUP.tar.gz DATA_DIR}
[ -e "$data/state.db" ] && { echo "$data already has a state database; move it away first" >&2; exit 1; }
mkdir -p "$data"; chmod 700 "$data"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar -C "$tmp" -xzf "$backup"
cp -a "$tmp/data/." "$data/"
chmod 600 "$data/identity.key" "$data/api.token" 2>/dev/null || true
note=""
if [ -f "$tmp/node.toml" ]; then
  # Kept beside the data, not in the temporary directory this script deletes on exit.
  cp -a "$tmp/node.toml" "$data/node.toml.restored"
  note="; the backed-up configuration is $data/node.toml.restored (move it where the daemon reads its configuration)"
fi
echo "restored into $data$note"
