#!/usr/bin/env bash
# Runs the operator guide's "Day one" walk-through (docs/operator-guide.md) literally: every
# shell block of that section that starts with `# day-one: NAME`, in order, in one shell,
# in a fresh temporary directory, with the built binaries only (no cargo: `upswarm` and
# `upswarm-demo-app` from $UPSWARM_BIN_DIR, the PATH, or target/{release,debug}). Between
# the blocks it checks what the guide promises (the nodes run 1.0.0, know each other, the
# canary installs 1.1.0 first, then the other node). Every process it starts is stopped
# on exit, also on failure. Exits non-zero on any deviation.
#
#   scripts/day-one.sh            (KEEP=1 keeps the work directory)
set -euo pipefail
shopt -s inherit_errexit
. "$(dirname "$0")/lib.sh"

guide="$UPSWARM_ROOT/docs/operator-guide.md"
steps=(keys seed seed-address nodes release-1.0.0 first-install release-1.1.0 phased-install)
ports=(27101 27102 27103 27180 27181 27182 27191 27192)

fail() { echo "day-one: FAILED: $*" >&2; exit 1; }

# The binaries, on the PATH under their own names, as the guide expects.
bin=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-day-one-bin.XXXXXX")
ln -s "$(find_binary upswarm)" "$bin/upswarm"
ln -s "$(find_binary upswarm-demo-app)" "$bin/upswarm-demo-app"
export PATH="$bin:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-day-one.XXXXXX")
# Inherited by every process started from here (daemons, their programs): how leftovers
# are found.
export UPSWARM_DAY_ONE="$work"

ours() {
  local f pid
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    grep -qzx "UPSWARM_DAY_ONE=$work" "$f" 2>/dev/null && echo "$pid"
  done
  return 0
}

cleanup() {
  local rc=$? pid left i
  trap - EXIT
  # The daemons got SIGTERM first: each stops the program it supervises, then exits.
  for pid in $(jobs -p); do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 1 100); do
    [ -z "$(jobs -pr)" ] && break
    sleep 0.2
  done
  left=$(ours)
  if [ -n "$left" ]; then
    echo "day-one: processes still running after the daemons stopped: $left (killing them)" >&2
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    [ "$rc" = 0 ] && rc=1
  fi
  if [ "$rc" != 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "---- last lines of $log" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$bin"
  if [ "$rc" = 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "day-one: work directory kept: $work" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "port $p on 127.0.0.1 is in use; the walk-through needs ${ports[*]}"
  fi
done

# The blocks, from the guide.
blocks="$work/.blocks"
mkdir -p "$blocks"
awk -v dir="$blocks" '
  /^```sh$/ { inblock = 1; name = ""; next }
  /^```$/   { inblock = 0; name = ""; next }
  inblock && name == "" && /^# day-one: / { name = $3; file = dir "/" name ".sh"; printf "" > file; next }
  inblock && name == "" { inblock = 0; next }
  inblock { print >> file }
' "$guide"
found=$(cd "$blocks" && ls | sed 's/\.sh$//' | sort)
expected=$(printf '%s\n' "${steps[@]}" | sort)
[ "$found" = "$expected" ] || fail "the guide's day-one blocks are [$(echo $found)], this script runs [$(echo $expected)]"

cd "$work"
step() {
  echo
  echo "== day-one: $1"
  sed 's/^/   | /' "$blocks/$1.sh"
  # In this shell, as an operator types them: variables (SEED) carry over, `&` jobs are ours.
  # shellcheck disable=SC1090
  . "$blocks/$1.sh"
}

# wait_for SECONDS WHAT COMMAND…: polls until COMMAND succeeds.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "$what (waited ${secs}s)"
}

# (Outputs are captured before `grep -q`: under pipefail, a grep that stops reading early
# would fail the pipeline with SIGPIPE.)
runs() { # API VERSION: the node's program runs VERSION
  local s
  s=$(upswarm status --api "$1")
  grep -q "^managed   version $2 — running" <<<"$s"
}
knows_both() { # API: the node knows both nodes
  local e
  e=$(upswarm explain 1.0.0 --api "$1" --json)
  grep -q '"known_nodes": 2' <<<"$e"
}
history_at() { # API VERSION: unix time of the node's apply of VERSION
  upswarm history --api "$1" --json | tr -d ' \n' | grep -o "{[^{}]*\"to\":\"$2\"[^{}]*}" \
    | grep -o '"at":[0-9]*' | sed -n 1p | cut -d: -f2
}

step keys
[ -s root.cbor ] || fail "no root.cbor"

step seed
wait_for 30 "the seed did not start listening" test -s seed-data/listen.addrs
step seed-address
[[ "$SEED" == /ip4/127.0.0.1/tcp/27101/p2p/12D3KooW* ]] || fail "seed multiaddr: $SEED"
[ "${SEED##*/}" = "$(upswarm key peer-id seed-data/identity.key)" ] || fail "listen.addrs and key peer-id disagree"

step nodes
for api in 127.0.0.1:27181 127.0.0.1:27182; do
  wait_for 30 "node $api did not start" upswarm status --api "$api"
done

step release-1.0.0
wait_for 90 "node-a did not run 1.0.0" runs 127.0.0.1:27181 1.0.0
wait_for 30 "node-b did not run 1.0.0" runs 127.0.0.1:27182 1.0.0
out=$(step first-install)
echo "$out"
grep -q "^managed   version 1.0.0 — running" <<<"$out" || fail "status after the first install"
grep -q "apply (none) -> 1.0.0 (automatic): applied in " <<<"$out" || fail "history after the first install"
grep -q "^verdict   installed: this node runs 1.0.0" <<<"$out" || fail "explain after the first install"

# Nodes know each other from their 1.0.0 reports before the phased release is drawn.
wait_for 60 "node-a does not know node-b" knows_both 127.0.0.1:27181
wait_for 60 "node-b does not know node-a" knows_both 127.0.0.1:27182

step release-1.1.0
for n in node-a node-b; do
  status=$(upswarm status --api "127.0.0.1:$([ $n = node-a ] && echo 27181 || echo 27182)" --json)
  grep -q "\"node_id\": \"$(upswarm key id $n-data/identity.key)\"" <<<"$status" \
    || fail "$n: key id of identity.key is not its node_id"
done
wait_for 120 "node-a did not run 1.1.0" runs 127.0.0.1:27181 1.1.0
wait_for 60 "node-b did not run 1.1.0" runs 127.0.0.1:27182 1.1.0
out=$(step phased-install)
echo "$out"
[ "$(grep -c "^verdict   installed: this node runs 1.1.0" <<<"$out")" = 2 ] || fail "explain after the phased release"

# The canary (first in install order per `release inspect`) installed before the other —
# when the preview put them in different phases (both ranks below 1 %, one draw in ten
# thousand, would put both in phase 0).
preview=$(upswarm release inspect rel-1.1.0/manifest.cbor --nodes fleet.txt --json | tr -d ' \n')
canary_id=$(grep -o '"node":"[0-9a-f]*"' <<<"$preview" | sed -n 1p | cut -d'"' -f4)
[ -n "$canary_id" ] || fail "release inspect --json named no node"
if [ "$canary_id" = "$(upswarm key id node-a-data/identity.key)" ]; then
  canary=127.0.0.1:27181 other=127.0.0.1:27182
else
  canary=127.0.0.1:27182 other=127.0.0.1:27181
fi
t_canary=$(history_at "$canary" 1.1.0)
t_other=$(history_at "$other" 1.1.0)
[ -n "$t_canary" ] && [ -n "$t_other" ] || fail "no history entry for 1.1.0"
if grep -q '"phase_sizes":\[1,1\]' <<<"$preview"; then
  [ "$t_canary" -le "$t_other" ] || fail "the canary $canary finished 1.1.0 at $t_canary, after $other at $t_other"
fi

echo
echo "day-one: OK — the guide's walk-through works as written"
