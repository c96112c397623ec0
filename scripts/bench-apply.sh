#!/usr/bin/env bash
# Benchmark: the time upswarm takes to switch versions and restart the managed program
# (stop, switch `current`, start, first healthy probe), against a bare stop/start of the
# same demo program reaching the same first healthy probe, in the same run.
#
#   scripts/bench-apply.sh [ROUNDS=10]
#
# Prints both medians and the ratio (target ≤ 1.1).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rounds=${1:-10}
upswarm=$(build_release)
(cd "$UPSWARM_ROOT" && cargo build --release --locked -q -p upswarm-demo-app)
demo="$UPSWARM_ROOT/target/release/upswarm-demo-app"
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-bench-apply.XXXXXX")
daemons=()
cleanup() { for p in "${daemons[@]:-}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')


# ---- bare stop/start -----------------------------------------------------------------
# Same program, same health criterion (first 2xx from /health, polled every 5 ms in-process).
mkdir -p bare && cp "$demo" bare/app && printf 'version = "1.0.0"\n' > bare/demo.toml
mapfile -t bare < <(python3 - "$port" "$rounds" <<'PY'
import subprocess, sys, time, urllib.request
port, rounds = sys.argv[1], int(sys.argv[2])
cmd = ["bare/app", "--listen", f"127.0.0.1:{port}", "--data", "bare-data"]
def healthy():
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200
    except Exception:
        return False
def wait_healthy():
    while not healthy():
        time.sleep(0.005)
p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
wait_healthy()
for _ in range(rounds):
    t0 = time.monotonic()
    p.terminate(); p.wait()
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    wait_healthy()
    print(time.monotonic() - t0)
p.terminate(); p.wait()
PY
)

# ---- upswarm: apply alternately between two versions ------------------------------
for k in r s; do "$upswarm" key gen --out "$k" >/dev/null 2>&1; done
"$upswarm" root init --out root.cbor --root-key r.pub --root-threshold 1 --release-key s.pub --release-threshold 1 >/dev/null 2>&1
"$upswarm" root sign --key r.key root.cbor >/dev/null
for v in 1.0.0 1.0.1; do
  mkdir -p "src-$v" && cp "$demo" "src-$v/app" && printf 'version = "%s"\n' "$v" > "src-$v/demo.toml"
  "$upswarm" release create --name demo --version "$v" --type patch --channel stable --platform any \
    --artifact app="src-$v/app" --artifact demo.toml="src-$v/demo.toml" --out "rel-$v" >/dev/null 2>&1
  "$upswarm" release sign --key s.key "rel-$v/manifest.cbor" >/dev/null
done
cat > node.toml <<TOML
network = "bench-apply"
data_dir = "data"
trust_root = "root.cbor"
products = ["demo"]
[network_options]
listen = ["/ip4/127.0.0.1/tcp/0"]
[api]
listen = "127.0.0.1:0"
[policy]
auto = []
skip_backup = true
[managed]
command = "app"
args = ["--listen", "127.0.0.1:$port", "--data", "{data_dir}"]
data_dir = "app-data"
keep_versions = 3
[managed.health]
http = "http://127.0.0.1:$port/health"
interval = "5ms"
successes = 1
TOML
UPSWARM_LOG=warn "$upswarm" daemon --config node.toml 2>daemon.log & daemons+=($!)
until [ -s data/api.addr ]; do sleep 0.05; done
api=$(cat data/api.addr)
for v in 1.0.0 1.0.1; do "$upswarm" release publish "rel-$v" --api "$api" --token-file data/api.token >/dev/null; done
"$upswarm" apply 1.0.0 --force --api "$api" --token-file data/api.token >/dev/null
swarm=()
v=1.0.1
for _ in $(seq 1 "$rounds"); do
  # The daemon's own measure: the transition's duration in its history (prechecks included).
  "$upswarm" apply "$v" --force --api "$api" --token-file data/api.token >/dev/null
  ms=$("$upswarm" history --json --api "$api" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["duration_ms"])')
  swarm+=("$(echo "$ms / 1000" | bc -l)")
  [ "$v" = 1.0.1 ] && v=1.0.0 || v=1.0.1
done
mb=$(median "${bare[@]}"); ms=$(median "${swarm[@]}")
printf 'bare stop + start to healthy:           median %.3f s (%s rounds)\n' "$mb" "$rounds"
printf 'upswarm switch + restart to healthy:    median %.3f s\n' "$ms"
printf 'ratio (upswarm / bare): %.2f  (target <= 1.10)\n' "$(echo "$ms / $mb" | bc -l)"
