#!/usr/bin/env bash
# Delta updates and compressed transfer (issue 17) on a real pair of consecutive releases of
# a public binary that is not this project's: the `ruff` executable of two consecutive
# manylinux x86_64 wheels from PyPI (default 0.6.8 -> 0.6.9, about 30 MB each).
#
#   scripts/bench-delta.sh                      # OLD=0.6.8 NEW=0.6.9
#   OLD=0.6.9 NEW=0.6.10 scripts/bench-delta.sh
#
# Side by side, in one run:
#   * `zstd -19 --long --patch-from=OLD NEW` and `zstd -19 --long NEW` (the zstd CLI): the
#     sizes to beat (targets: upswarm's bytes ≤ 1.05 × each);
#   * an upswarm publisher and a node on loopback: the node installs OLD's release, then
#     fetches NEW's (published with --delta-from OLD) — bytes it fetched for the artifact;
#   * a fresh publisher and a node that never held OLD, fetching only NEW's release — bytes
#     fetched (the compressed form);
#   * reconstruct + verify time in the daemon (decode streaming to disk, BLAKE3 of the
#     output, the artifact's chunks stored) against `zstd -d --patch-from=OLD` of the CLI's
#     patch (median of 3), and the fixed-chunk reuse between OLD and NEW (the "before").
# Downloads are cached under target/bench-delta/ (not committed). Uses the upswarm binary
# of target/release, else target/debug (`cargo build -p upswarm`; see lib.sh find_binary);
# dependencies (zstd, BLAKE3) are optimised in both. Every daemon it starts is stopped on
# exit, also on failure or a signal. No root needed; needs pip, unzip and zstd.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OLD=${OLD:-0.6.8}
NEW=${NEW:-0.6.9}
PKG=ruff
for t in pip unzip zstd python3; do
  command -v "$t" >/dev/null || { echo "bench-delta.sh: $t is needed" >&2; exit 2; }
done
upswarm=$(find_binary upswarm)
cache="$UPSWARM_ROOT/target/bench-delta"
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-bench-delta.XXXXXX")
pids=()

cleanup() {
  local p
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The ruff executable of version $1, from its wheel (downloaded once).
binary() {
  local v=$1 dir="$cache/$PKG-$1"
  if [ ! -x "$dir/$PKG" ]; then
    echo "== downloading $PKG $v (manylinux_2_17_x86_64 wheel) from PyPI" >&2
    pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
      --python-version 3.12 "$PKG==$v" -d "$cache" >&2
    mkdir -p "$dir"
    unzip -o -q -j "$cache/$PKG-$v-"*manylinux_2_17_x86_64*.whl "$PKG-$v.data/scripts/$PKG" -d "$dir"
  fi
  echo "$dir/$PKG"
}
old=$(binary "$OLD")
new=$(binary "$NEW")
size() { stat -c %s "$1"; }
echo "== $PKG $OLD: $(size "$old") bytes; $PKG $NEW: $(size "$new") bytes"
cd "$work"

echo "== zstd CLI ($(zstd --version | head -1))"
zstd -q -f -19 --long --patch-from="$old" "$new" -o ref.patch
zstd -q -f -19 --long "$new" -o ref.zst
echo "   --patch-from: $(size ref.patch) bytes; -19 --long: $(size ref.zst) bytes"
ref_times=()
for _ in 1 2 3; do
  t0=$(now)
  zstd -q -f -d --patch-from="$old" ref.patch -o ref.out
  b3=$(python3 -c "import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],'rb')
while (b:=f.read(1<<20)): h.update(b)
print(h.hexdigest())" ref.out)
  ref_times+=("$(echo "$(now) - $t0" | bc -l)")
done
cmp -s ref.out "$new" || { echo "zstd CLI round trip failed" >&2; exit 1; }
: "$b3"

q() { "$upswarm" "$@" >/dev/null 2>&1; }
q key gen --out r
q key gen --out s
q root init --out root.cbor --root-key r.pub --root-threshold 1 --release-key s.pub --release-threshold 1
q root sign --key r.key root.cbor

echo "== release create (level 19, long-distance matching)"
mk() { # version, out, extra...
  local v=$1 out=$2 path=$3; shift 3
  "$upswarm" release create --name "$PKG" --version "$v" --type patch --channel stable \
    --platform any --artifact "$PKG=$path" --out "$out" "$@" 2>&1 | sed 's/^/   /' >&2
  q release sign --key s.key "$out/manifest.cbor"
}
mk "$OLD" rel-old "$old"
t0=$(now)
mk "$NEW" rel-new "$new" --delta-from "$old"
create_s=$(echo "$(now) - $t0" | bc -l)

# Starts a daemon in directory $1 bootstrapped to $2 (a multiaddr or empty); prints nothing.
start() {
  local dir=$1 boot=$2
  mkdir -p "$dir"
  cat > "$dir/node.toml" <<EOF
network = "bench-delta"
data_dir = "data"
trust_root = "../root.cbor"
[network_options]
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = [${boot:+\"$boot\"}]
dht_refresh = "2s"
[api]
listen = "127.0.0.1:0"
EOF
  (cd "$dir" && exec "$upswarm" --log-json daemon --config node.toml 2> log.json) &
  pids+=($!)
  for _ in $(seq 1 300); do
    [ -s "$dir/data/listen.addrs" ] && [ -s "$dir/data/api.addr" ] && return 0
    sleep 0.1
  done
  echo "daemon in $dir did not start" >&2; exit 1
}
api() { cat "$1/data/api.addr"; }
addr() { head -n1 "$1/data/listen.addrs"; }
publish() { q release publish "$2" --api "$(api "$1")" --token-file "$1/data/api.token"; }
status() { "$upswarm" status --json --api "$(api "$1")"; }
# Waits until daemon $1 has release version $2 complete.
wait_complete() {
  for _ in $(seq 1 1200); do
    if status "$1" | python3 -c "import json,sys; s=json.load(sys.stdin)
sys.exit(0 if any(r['version']=='$2' and r['download']['state']=='complete' for r in s['releases']) else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.25
  done
  echo "$1 never completed $2" >&2; exit 1
}
# How daemon $1 fetched release $2: "form bytes_fetched bytes_saved decode_ms".
used() {
  status "$1" | python3 -c "import json,sys; s=json.load(sys.stdin)
r=[r for r in s['releases'] if r['version']=='$2'][0]
f=[f for f in (r.get('progress') or {}).get('forms', []) if f['artifact']=='$PKG']
f=f[0] if f else {'form':'plain','bytes_fetched':(r.get('progress') or {}).get('bytes_fetched',0),'bytes_saved':0,'decode_ms':0}
print(f['form'], f['bytes_fetched'], f['bytes_saved'], f.get('decode_ms', 0))"
}

echo "== a node that holds $OLD fetches $NEW"
start pub1 ""
start old-node "$(addr pub1)"
publish pub1 rel-old
wait_complete old-node "$OLD"
publish pub1 rel-new
wait_complete old-node "$NEW"
read -r old_form old_bytes old_saved old_ms < <(used old-node "$NEW")
echo "   fetched $old_bytes bytes as $old_form (saved $old_saved, decode + verify $old_ms ms)"

echo "== a node that holds nothing fetches $NEW"
start pub2 ""
start fresh-node "$(addr pub2)"
publish pub2 rel-new
wait_complete fresh-node "$NEW"
read -r fresh_form fresh_bytes _ _ < <(used fresh-node "$NEW")

# The "before": 1 MiB fixed chunks of NEW also found in OLD.
reuse=$(python3 - "$old" "$new" <<'PY'
import hashlib, sys
def chunks(p):
    with open(p, "rb") as f:
        while (b := f.read(1 << 20)):
            yield hashlib.sha256(b).digest(), len(b)
old = {h for h, _ in chunks(sys.argv[1])}
new = list(chunks(sys.argv[2]))
same = sum(n for h, n in new if h in old)
print(f"{sum(1 for h, _ in new if h in old)}/{len(new)} {same}")
PY
)

python3 - "$OLD" "$NEW" "$(size "$new")" "$(size ref.patch)" "$(size ref.zst)" \
  "$old_form" "$old_bytes" "$old_saved" "$old_ms" "$fresh_form" "$fresh_bytes" \
  "$(median "${ref_times[@]}")" "$create_s" $reuse <<'PY'
import sys
(o, n, size, patch, zst, oform, obytes, osaved, oms, fform, fbytes, ref_s, create_s,
 reuse_chunks, reuse_bytes) = sys.argv[1:]
size, patch, zst, obytes, fbytes = map(int, (size, patch, zst, obytes, fbytes))
print(f"ruff {o} -> {n}: new binary {size} bytes")
print(f"before (1 MiB fixed chunks reusable): {reuse_chunks} chunks, {int(reuse_bytes)} bytes "
      f"({int(reuse_bytes) * 100 / size:.1f} %): a plain fetch sends {size - int(reuse_bytes)} bytes")
print(f"node holding {o}: fetched {obytes} bytes as {oform} "
      f"({obytes * 100 / size:.1f} % of the binary); zstd -19 --long --patch-from: {patch} "
      f"-> ratio {obytes / patch:.3f} (target <= 1.05)")
print(f"node holding nothing: fetched {fbytes} bytes as {fform} "
      f"({fbytes * 100 / size:.1f} %); zstd -19 --long: {zst} -> ratio {fbytes / zst:.3f} "
      f"(target <= 1.05)")
print(f"reconstruct + verify in the daemon: {int(oms)} ms; zstd -d --patch-from + hash: "
      f"{float(ref_s) * 1000:.0f} ms (median of 3) -> ratio {int(oms) / (float(ref_s) * 1000):.2f}")
print(f"release create of {n} with a delta from {o} (zstd + zstd-patch forms): {float(create_s):.1f} s")
ok = obytes <= 1.05 * patch and fbytes <= 1.05 * zst
print("OK: both within 1.05x" if ok else "OVER TARGET")
sys.exit(0 if ok else 1)
PY
