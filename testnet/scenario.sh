#!/usr/bin/env bash
# The compose testnet end to end, with faults: a good release rolls out while one node is
# partitioned and another is killed mid-download; then a bad release halts at the canaries
# and is rolled back. Exits non-zero on any deviation. Tears everything down at the end.
. "$(dirname "$0")/lib.sh"
trap '"$TESTNET_DIR/down.sh" >/dev/null 2>&1 || true' EXIT
fail() { echo "SCENARIO FAILED: $*" >&2; "$TESTNET_DIR/status.sh" >&2 || true; exit 1; }

"$TESTNET_DIR/down.sh" >/dev/null 2>&1 || true
"$TESTNET_DIR/build-image.sh"
say "bringing the testnet up"
"$TESTNET_DIR/up.sh"

say "1.0.0 (hotfix) to every node"
"$TESTNET_DIR/publish.sh" 1.0.0 --type hotfix
wait_until "all_on 1.0.0" 180 || fail "not every node reached 1.0.0"

say "1.1.0 (phased, with a 24 MiB payload): node2 partitioned, node3 killed mid-download"
"$TESTNET_DIR/chaos.sh" disconnect node2
"$TESTNET_DIR/publish.sh" 1.1.0 --pad 24
held() {
  in_node node3 status --json 2>/dev/null | python3 -c 'import json,sys
s=json.load(sys.stdin); r=[x for x in s["releases"] if x["version"]=="1.1.0"]
print((r[0].get("progress") or {}).get("chunks_held",0) if r else 0)' 2>/dev/null || echo 0
}
wait_until '[ "$(held)" -ge 20 ]' 120 || fail "node3 never started downloading 1.1.0"
before=$(held)
"$TESTNET_DIR/chaos.sh" kill node3
sleep 3
"$TESTNET_DIR/chaos.sh" start node3
sleep 12
"$TESTNET_DIR/chaos.sh" connect node2
wait_until "all_on 1.1.0" 300 || fail "not every node reached 1.1.0"
reused=$(in_node node3 status --json | python3 -c 'import json,sys
s=json.load(sys.stdin); print([x for x in s["releases"] if x["version"]=="1.1.0"][0]["progress"]["chunks_reused"])')
[ "$reused" -ge "$before" ] || fail "node3 re-fetched chunks it had before the kill ($reused reused, $before held)"
echo "node3 resumed with $reused chunks already on disk (had $before when killed)"

say "1.2.0 fails its health check: halted at the canaries, rolled back"
"$TESTNET_DIR/publish.sh" 1.2.0 --bad
rolled_back() {
  local n c=0
  for n in "${NODES[@]}"; do
    in_node "$n" history --json 2>/dev/null | python3 -c 'import json,sys
h=json.load(sys.stdin); sys.exit(0 if any(e["to"]=="1.2.0" and e["outcome"]=="rolled_back" for e in h) else 1)' && c=$((c + 1))
  done
  echo "$c"
}
wait_until '[ "$(rolled_back)" -ge 1 ] && all_on 1.1.0' 240 || fail "the bad release was not rolled back"
sleep 25   # well past the canary soak: a later phase would have opened by now
all_on 1.1.0 || fail "a node is not back on 1.1.0"
for n in "${NODES[@]}"; do
  in_node "$n" history --json | python3 -c 'import json,sys
h=json.load(sys.stdin)
bad=[e for e in h if e["to"]=="1.2.0"]
assert all(e["outcome"]=="rolled_back" for e in bad), bad
ok=[e["to"] for e in h if e["outcome"]=="applied"]
assert "1.0.0" in ok and "1.1.0" in ok, ok' || fail "$n: history is not as expected"
  # Nothing lost: the program's data directory saw every version it ran.
  grep -q '^1.1.0$' "$RUN/$n/app-data/starts" || fail "$n: the data directory lost its history"
done
echo "$(rolled_back) canary node(s) installed 1.2.0 and rolled back; the others never installed it"
"$TESTNET_DIR/status.sh"
say "SCENARIO PASSED"
