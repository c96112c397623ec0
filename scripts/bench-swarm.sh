#!/usr/bin/env bash
# Swarm download benchmark in network namespaces with equal egress caps.
#
#   sudo scripts/bench-swarm.sh            # N=16 SIZE_MIB=256 RATE=100mbit
#   N=8 SIZE_MIB=64 RATE=200mbit scripts/bench-swarm.sh
#
# One "seed" namespace and N client namespaces hang off one bridge; every namespace's
# uplink (egress) is capped with tc tbf at RATE. Two runs on the same file:
#   origin: nginx in the seed namespace; the N clients download the file with curl at once;
#   swarm:  an upswarm daemon in the seed namespace publishes the release; N daemons fetch it.
#   bittorrent: opentracker in the seed namespace, aria2c seeding there and N aria2c
#           clients (already started and announced, with peer exchange, tracker
#           re-announce every 5 s and 1 MiB pieces — the same piece size as upswarm's chunks)
#           that keep seeding; timed from the moment the seed starts.
# Prints the times, the ratios, and the swarm time against the lower bound SIZE / RATE
# (no client can receive faster than the seed's uplink can send one copy... and no faster
# than it can download, which here is uncapped; the bound is the seed's one copy).
# Also prints, for the swarm and BitTorrent runs, the CPU seconds (user + system) the
# processes in the namespaces used from the start of the run to the last completion, per GiB
# delivered to the clients. The swarm run prints when nodes finished, how many copies of the
# release the seed sent, and its uplink use over time.
# RUNS="origin swarm bittorrent" (default: all three) picks the runs; UPLOAD_SLOTS sets the
# daemons' transfer.upload_slots (default: the daemon's).
# The scale figure: N=48 RATE=20mbit SIZE_MIB=64 RUNS="swarm bittorrent".
# Needs root (ip netns, tc). Installs nginx-light, opentracker, aria2 and mktorrent if
# missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N=${N:-16}
SIZE_MIB=${SIZE_MIB:-256}
RATE=${RATE:-100mbit}
CHUNK=${CHUNK:-1MiB}
PREFIX=usw
HUB=${PREFIX}hub
[ "$(id -u)" = 0 ] || { echo "bench-swarm.sh needs root (network namespaces, tc)" >&2; exit 1; }
RUNS=${RUNS:-origin swarm bittorrent}
want() { [[ " $RUNS " == *" $1 "* ]]; }
need_pkg() { command -v "$1" >/dev/null || { echo "installing $2 ..." >&2; apt-get install -y -q "$2" >/dev/null; }; }
want origin && need_pkg nginx nginx-light
if want bittorrent; then need_pkg opentracker opentracker; need_pkg aria2c aria2; need_pkg mktorrent mktorrent; fi

upswarm=$(build_release)
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-bench-swarm.XXXXXX")
pids=()

cleanup() {
  disown -a 2>/dev/null || true   # no "Killed" line per job from bash
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  # Whatever still runs inside the namespaces (a tracker that forked, a daemon's child)
  # dies with them: a namespace that is deleted does not stop its processes.
  for ns in $(seq -f "$PREFIX%g" 0 "$N") "$HUB"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for k in $(seq 0 "$N"); do ip netns del "$PREFIX$k" 2>/dev/null || true; done
  ip netns del "$HUB" 2>/dev/null || true
  if [ -n "${saved_thresh:-}" ]; then
    read -r t1 t2 t3 <<< "$saved_thresh"
    sysctl -q -w "$neigh.gc_thresh1=$t1" "$neigh.gc_thresh2=$t2" "$neigh.gc_thresh3=$t3" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# The kernel's ARP table is one for all namespaces: N+1 hosts that all talk to each other
# need about (N+1)^2 entries, past the default gc_thresh3 of 1024 from N=31 on ("neighbor
# table overflow": the last namespaces cannot reach anyone). Raised for the run, restored.
neigh=net.ipv4.neigh.default
saved_thresh=$(sysctl -n "$neigh.gc_thresh1" "$neigh.gc_thresh2" "$neigh.gc_thresh3" | tr '\n' ' ')
need=$(( (N + 2) * (N + 2) * 2 ))
if [ "$need" -gt "$(sysctl -n "$neigh.gc_thresh3")" ]; then
  sysctl -q -w "$neigh.gc_thresh1=$((need / 4))" "$neigh.gc_thresh2=$((need / 2))" "$neigh.gc_thresh3=$need"
fi
trap "exit 130" INT TERM   # so that the EXIT trap cleans up after a signal too

ip_of() { echo "10.77.0.$(( $1 + 1 ))"; }
# CPU seconds (user + system) used so far by the processes living in the namespaces.
clk=$(getconf CLK_TCK)
ns_cpu() {
  for ns in $(seq -f "$PREFIX%g" 0 "$N"); do ip netns pids "$ns" 2>/dev/null || true; done |
    while read -r p; do sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v hz="$clk" '{s += $12 + $13} END {printf "%.1f\n", s / hz}'
}
# CPU seconds per GiB delivered to the N clients.
per_gib() { echo "$1 / ($N * $SIZE_MIB / 1024)" | bc -l; }
in_ns() { local k=$1; shift; ip netns exec "$PREFIX$k" "$@"; }

echo "== setting up $((N + 1)) namespaces, uplinks capped at $RATE"
# The bridge lives in its own namespace, away from the host's firewall rules.
ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
for k in $(seq 0 "$N"); do
  ns=$PREFIX$k
  ip netns add "$ns"
  ip -n "$HUB" link add "h$k" type veth peer name eth0 netns "$ns"
  ip -n "$HUB" link set "h$k" master br0 up
  in_ns "$k" ip addr add "$(ip_of "$k")/24" dev eth0
  in_ns "$k" ip link set eth0 up
  in_ns "$k" ip link set lo up
  in_ns "$k" tc qdisc add dev eth0 root tbf rate "$RATE" burst 256kb latency 400ms
done

echo "== making a $SIZE_MIB MiB release"
cd "$work"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > artifact.bin
for k in r1 s1; do "$upswarm" key gen --out "$k" >/dev/null 2>&1; done
"$upswarm" root init --out root.cbor --root-key r1.pub --root-threshold 1 \
  --release-key s1.pub --release-threshold 1 >/dev/null 2>&1
"$upswarm" root sign --key r1.key root.cbor >/dev/null
"$upswarm" release create --name bench --version 1.0.0 --type hotfix --channel stable \
  --artifact bench=artifact.bin --chunk-size "$CHUNK" --platform any --out rel >/dev/null 2>&1
"$upswarm" release sign --key s1.key rel/manifest.cbor >/dev/null

mkdir -p www && ln artifact.bin www/artifact.bin
t_origin=""; t_swarm=""; t_bt=""

# ---- origin run -------------------------------------------------------------------------
if want origin; then
echo "== origin: nginx in the seed namespace, $N curl clients"
cat > nginx.conf <<NGINX
user root;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server { listen $(ip_of 0):8080; root $work/www; }
}
NGINX
in_ns 0 nginx -c "$work/nginx.conf" -p "$work" </dev/null >/dev/null 2>&1
sleep 0.5
t0=$(now)
cpids=()
for k in $(seq 1 "$N"); do
  ip netns exec "$PREFIX$k" curl -fsS -o /dev/null "http://$(ip_of 0):8080/artifact.bin" & cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p" || { echo "a curl client failed" >&2; exit 1; }; done
t_origin=$(echo "$(now) - $t0" | bc -l)
kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
printf 'origin: %.1f s\n' "$t_origin"
fi

# ---- swarm run --------------------------------------------------------------------------
if want swarm; then
echo "== swarm: upswarm daemons"
start_daemon() {
  local k=$1 boot=$2
  mkdir -p "n$k"
  cat > "n$k/node.toml" <<TOML
network = "bench"
data_dir = "data"
trust_root = "../root.cbor"
[network_options]
listen = ["/ip4/$(ip_of "$k")/tcp/4001"]
bootstrap = [$boot]
dht_refresh = "2s"
[api]
listen = "127.0.0.1:7780"
${UPLOAD_SLOTS:+[transfer]
upload_slots = $UPLOAD_SLOTS}
TOML
  ip netns exec "$PREFIX$k" env UPSWARM_LOG=warn "$upswarm" daemon --config "n$k/node.toml" > "n$k/log" 2>&1 &
  pids+=($!)
}
start_daemon 0 ""
for _ in $(seq 1 100); do [ -s n0/data/listen.addrs ] && break; sleep 0.1; done
seed_addr=$(head -1 n0/data/listen.addrs)
for k in $(seq 1 "$N"); do start_daemon "$k" "\"$seed_addr\""; done
for k in $(seq 1 "$N"); do
  for _ in $(seq 1 100); do [ -s "n$k/data/api.addr" ] && break; sleep 0.1; done
done
sleep 3   # let the mesh form
cpu0=$(ns_cpu)
in_ns 0 "$upswarm" release publish rel --api 127.0.0.1:7780 --token-file n0/data/api.token >/dev/null
t0=$(now)
# Timeline: per poll, the time, the seed's bytes served so far and how many nodes are done.
served() { in_ns 0 curl -s 127.0.0.1:7780/metrics | awk '$1 == "upswarm_bytes_served_total" {print $2}'; }
declare -A finished=()
: > timeline
while :; do
  # A node is done when its artifact is in place: the download renames it there only after
  # the whole-file hash matched. Looked at from here, with no process started (polling with
  # the CLI cost the daemons CPU); the CLI confirms at the end.
  done_count=0
  for k in $(seq 1 "$N"); do
    if [ -z "${finished[$k]:-}" ] && compgen -G "n$k/data/releases/*/bench" >/dev/null; then
      finished[$k]=$(echo "$EPOCHREALTIME - $t0" | bc -l)
    fi
    [ -n "${finished[$k]:-}" ] && done_count=$((done_count + 1))
  done
  echo "$(echo "$EPOCHREALTIME - $t0" | bc -l) $(served) $done_count" >> timeline
  [ "$done_count" = "$N" ] && break
  elapsed=$(echo "$(now) - $t0" | bc -l)
  if (( $(echo "$elapsed > 1200" | bc -l) )); then
    echo "swarm run did not finish ($done_count/$N complete)"; exit 1
  fi
  sleep 0.2
done
# The last node's completion, as seen by its poll.
t_swarm=$(printf '%s\n' "${finished[@]}" | sort -g | tail -1)
cpu_swarm=$(echo "$(ns_cpu) - $cpu0" | bc -l)
for k in $(seq 1 "$N"); do
  in_ns "$k" "$upswarm" releases --api 127.0.0.1:7780 2>/dev/null | grep -q "complete" \
    || { echo "n$k: its artifact is in place but the daemon does not say complete" >&2; exit 1; }
done
printf 'swarm:  %.1f s, %.1f CPU-s (%.1f CPU-s per GiB delivered)\n' "$t_swarm" "$cpu_swarm" "$(per_gib "$cpu_swarm")"
# Where the time went: when nodes finished, how many copies the seed sent, and the seed's
# uplink use over time (share of the cap per 5 s window).
printf '%s\n' "${finished[@]}" | sort -g | awk '{a[NR]=$1} END {printf "nodes done at: first %.1f s, median %.1f s, last %.1f s\n", a[1], a[int((NR+1)/2)], a[NR]}'
cap_bytes=$(echo "$RATE" | sed 's/mbit$//' | awk '{print $1 * 1000000 / 8}')
awk -v size=$((SIZE_MIB * 1024 * 1024)) -v cap="$cap_bytes" '
  { t[NR] = $1; b[NR] = $2 }
  END {
    printf "seed sent %.2f copies of the release\n", b[NR] / size
    printf "seed uplink use per 5 s (share of the cap):"
    w = 5; k = 1
    for (s = 0; s < t[NR]; s += w) {
      while (k < NR && t[k + 1] <= s + w) k++
      j = 1; while (j < NR && t[j] < s) j++
      if (t[k] > t[j]) printf " %d%%", 100 * (b[k] - b[j]) / (t[k] - t[j]) / cap
    }
    printf "\n"
  }' timeline
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
fi

# ---- bittorrent run ---------------------------------------------------------------------
if want bittorrent; then
echo "== bittorrent: opentracker + aria2c, $N leechers"
mktorrent -a "http://$(ip_of 0):6969/announce" -l 20 -o bench.torrent artifact.bin >/dev/null
mkdir -p ot
# Debian's opentracker only serves whitelisted torrents; the list is read inside its chroot.
aria2c -S bench.torrent | awk '/Info Hash/ {print $3}' > ot/whitelist
in_ns 0 opentracker -i "$(ip_of 0)" -p 6969 -P 6969 -d "$work/ot" -w /whitelist >ot.log 2>&1 & pids+=($!)
sleep 0.5
cat > bt-done.sh <<'HOOK'
#!/bin/sh
date +%s.%N > "$3.done"
HOOK
chmod +x bt-done.sh
aria() {
  local k=$1 dir=$2; shift 2
  ip netns exec "$PREFIX$k" aria2c --dir="$dir" --enable-dht=false --enable-dht6=false \
    --bt-enable-lpd=false --enable-peer-exchange=true --bt-tracker-interval=5 \
    --seed-ratio=0.0 --file-allocation=none --max-overall-upload-limit=0 \
    --bt-max-peers=0 --console-log-level=warn --summary-interval=0 \
    --listen-port=6881 --on-bt-download-complete="$work/bt-done.sh" "$@" \
    "$work/bench.torrent" >"$dir.log" 2>&1 &
  pids+=($!)
}
for k in $(seq 1 "$N"); do mkdir -p "bt$k"; aria "$k" "$work/bt$k"; done
sleep 5   # every leecher has announced and knows the others
cpu0=$(ns_cpu)
t0=$(now)
aria 0 "$work/www" --check-integrity=false --bt-seed-unverified=true
while :; do
  done_count=$(find . -path "./bt*/artifact.bin.done" | wc -l)
  [ "$done_count" = "$N" ] && break
  if (( $(echo "$(now) - $t0 > 1200" | bc -l) )); then
    echo "bittorrent run did not finish ($done_count/$N complete)"; exit 1
  fi
  sleep 0.2
done
cpu_bt=$(echo "$(ns_cpu) - $cpu0" | bc -l)
last=$(cat bt*/artifact.bin.done | sort -g | tail -1)
t_bt=$(echo "$last - $t0" | bc -l)
printf 'bittorrent: %.1f s, %.1f CPU-s (%.1f CPU-s per GiB delivered)\n' "$t_bt" "$cpu_bt" "$(per_gib "$cpu_bt")"
for k in $(seq 1 "$N"); do cmp -s artifact.bin "bt$k/artifact.bin" || { echo "bt$k: file differs" >&2; exit 1; }; done
fi

rate_bytes=$(python3 -c "
import re,sys
m=re.fullmatch(r'(\d+(?:\.\d+)?)([kmg]?)bit','$RATE'.lower())
v=float(m.group(1))*{'':1,'k':1e3,'m':1e6,'g':1e9}[m.group(2)]/8
print(v)")
lower=$(echo "$SIZE_MIB * 1048576 / $rate_bytes" | bc -l)
echo
printf 'N=%s, %s MiB, uplink cap %s per node, chunks of %s\n' "$N" "$SIZE_MIB" "$RATE" "$CHUNK"
fmt() { [ -n "$1" ] && printf '%.1f s' "$1" || printf 'not run'; }
printf 'origin (nginx) %s | swarm (upswarm) %s | bittorrent (aria2c) %s | lower bound %.1f s\n' \
  "$(fmt "$t_origin")" "$(fmt "$t_swarm")" "$(fmt "$t_bt")" "$lower"
if [ -n "$t_swarm" ]; then
  [ -n "$t_origin" ] && printf 'speed-up vs origin: %.2fx (target >= 8)\n' "$(echo "$t_origin / $t_swarm" | bc -l)"
  printf 'swarm / lower bound: %.2fx (target <= 1.25)\n' "$(echo "$t_swarm / $lower" | bc -l)"
  [ -n "$t_bt" ] && printf 'swarm / bittorrent: %.2fx (target <= 0.85); CPU per GiB: %.2fx\n' \
    "$(echo "$t_swarm / $t_bt" | bc -l)" "$(echo "$cpu_swarm / $cpu_bt" | bc -l)"
fi
[ -n "$t_bt" ] && printf 'bittorrent / lower bound: %.2fx\n' "$(echo "$t_bt / $lower" | bc -l)"
exit 0
