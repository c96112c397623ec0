#!/usr/bin/env bash
# Manifest propagation: time from `upswarm release publish` at one daemon until each of N
# daemons on loopback has verified the manifest (signature threshold checked, its
# "new release" log line written), over K releases in a row; p50 / p99 / max over every
# (node, release) pair, against the target p99 <= 1 s.
#
# Side by side in the same run, as the baseline: the same clock from the same start to the
# moment the publishing daemon itself has verified and accepted the manifest — the part
# that involves no network at all. The ratio of the two shows what gossip adds.
#
#   scripts/bench-publish.sh [NODES=50] [RELEASES=10]
#
# Each node is bootstrapped to two earlier nodes (random), so most manifests cross several
# gossip hops. No root privileges needed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
nodes=${1:-50}
releases=${2:-10}
upswarm=$(build_release)
work=$(mktemp -d)
trap 'pkill -KILL -f "$work/" 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
cd "$work"

q() { "$upswarm" "$@" >/dev/null 2>&1; }
q key gen --out r
q key gen --out s
q root init --out root.cbor --root-key r.pub --root-threshold 1 --release-key s.pub --release-threshold 1
q root sign --key r.key root.cbor

echo "creating $releases signed releases ..." >&2
for k in $(seq 1 "$releases"); do
  head -c 4096 /dev/urandom > "art$k"
  q release create --name bench --version "1.0.$k" --type hotfix --channel stable \
    --artifact "app=art$k" --out "rel$k"
  q release sign --key s.key "rel$k/manifest.cbor"
done

echo "starting $nodes daemons ..." >&2
addrs=()
for i in $(seq 0 $((nodes - 1))); do
  mkdir -p "n$i"
  boot=""
  if [ "$i" -gt 0 ]; then
    a=${addrs[$((RANDOM % i))]}; b=${addrs[$((RANDOM % i))]}
    boot="\"$a\", \"$b\""
  fi
  cat > "n$i/node.toml" <<EOF
network = "bench"
data_dir = "data"
trust_root = "../root.cbor"
[network_options]
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = [$boot]
[api]
listen = "127.0.0.1:0"
EOF
  (cd "n$i" && exec "$upswarm" --log-json daemon --config "$work/n$i/node.toml" 2> log.json) &
  disown
  for _ in $(seq 1 200); do
    [ -s "n$i/data/listen.addrs" ] && [ -s "n$i/data/api.addr" ] && break
    sleep 0.05
  done
  addrs+=("$(head -n1 "n$i/data/listen.addrs")")
done
echo "letting the gossip mesh form (15 s) ..." >&2
sleep 15

api=$(cat n0/data/api.addr)
: > starts
for k in $(seq 1 "$releases"); do
  echo "$k $(now)" >> starts
  q release publish "rel$k" --api "$api" --token-file n0/data/api.token
  for _ in $(seq 1 300); do
    n=$(grep -l "\"version\":\"1.0.$k\"" n*/log.json 2>/dev/null | wc -l)
    [ "$n" -ge "$nodes" ] && break
    sleep 0.1
  done
  sleep "${GAP:-5}"   # let the downloads and DHT announcements of this release settle
done

python3 - "$nodes" "$releases" <<'PY'
import datetime, glob, json, sys
nodes, releases = int(sys.argv[1]), int(sys.argv[2])
starts = {int(k): float(t) for k, t in (l.split() for l in open("starts"))}
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
lat, local, missing, sources, per_release = [], [], 0, {}, {}
for i in range(nodes):
    seen = {}
    for line in open(f"n{i}/log.json"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        f = e.get("fields", {})
        if f.get("message") == "new release" and f.get("name") == "bench":
            k = int(f["version"].split(".")[2])
            if k not in seen:
                seen[k] = ts(e["timestamp"])
                sources[f.get("source", "?")] = sources.get(f.get("source", "?"), 0) + 1
    for k in range(1, releases + 1):
        if k not in seen:
            missing += 1
        elif i == 0:
            local.append(seen[k] - starts[k])
            per_release.setdefault(k, []).append(seen[k] - starts[k])
        else:
            lat.append(seen[k] - starts[k])
            per_release.setdefault(k, []).append(seen[k] - starts[k])
lat.sort()
for k in sorted(per_release):
    v = per_release[k]
    print(f"release {k}: publisher {v[0]*1000:.0f} ms, last node {max(v)*1000:.0f} ms")
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
p99 = pct(99)
print(f"nodes {nodes}, releases {releases}, samples {len(lat)}, never verified {missing}")
print(f"publishing node verified it (baseline): median {sorted(local)[len(local)//2]*1000:.0f} ms")
print(f"every other node: p50 {pct(50)*1000:.0f} ms, p90 {pct(90)*1000:.0f} ms, "
      f"p99 {p99*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
print("heard of through: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())))
print(f"p99 / baseline: {p99 / sorted(local)[len(local)//2]:.1f}x; "
      f"p99 / target (1 s): {p99:.2f}")
sys.exit(1 if missing else 0)
PY
