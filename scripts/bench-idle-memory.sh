#!/usr/bin/env bash
# Resident memory of an idle daemon (no peers, no releases) after it settles, against the
# target of 30 MiB.
#   scripts/bench-idle-memory.sh [SETTLE_SECONDS=15]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
settle=${1:-15}
upswarm=$(build_release)
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
"$upswarm" key gen --out r >/dev/null 2>&1; "$upswarm" key gen --out s >/dev/null 2>&1
"$upswarm" root init --out root.cbor --root-key r.pub --root-threshold 1 --release-key s.pub --release-threshold 1 >/dev/null 2>&1
"$upswarm" root sign --key r.key root.cbor >/dev/null
printf 'network = "idle"\ndata_dir = "data"\ntrust_root = "root.cbor"\n[network_options]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n[api]\nlisten = "127.0.0.1:0"\n' > node.toml
"$upswarm" daemon --config node.toml 2>/dev/null & pid=$!
sleep "$settle"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
printf 'idle daemon resident memory after %ss: %.1f MiB (target <= 30 MiB)\n' "$settle" "$(echo "$rss / 1024" | bc -l)"
