# Shared by the testnet scripts. Source it.
set -euo pipefail
TESTNET_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$TESTNET_DIR/.." && pwd)"
RUN="$TESTNET_DIR/.run"
PROFILE=${PROFILE:-debug}
UPSWARM="$ROOT_DIR/target/$PROFILE/upswarm"
NODES=(node1 node2 node3 node4 node5)
IMAGE=upswarm:local
compose() { docker-compose -f "$TESTNET_DIR/docker-compose.yml" -p upswarm-testnet "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# `upswarm …` inside a container.
in_node() { local n=$1; shift; docker exec "upswarm-$n" upswarm "$@"; }
# The same, with the node's API token.
in_node_auth() { local n=$1; shift; docker exec "upswarm-$n" upswarm "$@" --token-file /node/data/api.token; }

# Version the node's managed program runs, per its daemon ("" if unknown).
node_version() {
  in_node "$1" status --json 2>/dev/null | python3 -c 'import json,sys
try:
    print(json.load(sys.stdin)["managed"]["current"] or "")
except Exception:
    print("")'
}

# Waits until `cond` (a shell command) succeeds, or fails after $2 seconds.
wait_until() {
  local cond=$1 timeout=$2 start=$SECONDS
  until eval "$cond"; do
    if (( SECONDS - start > timeout )); then echo "timed out after ${timeout}s waiting for: $cond" >&2; return 1; fi
    sleep 2
  done
}

all_on() { local v=$1 n; for n in "${NODES[@]}"; do [ "$(node_version "$n")" = "$v" ] || return 1; done; }
