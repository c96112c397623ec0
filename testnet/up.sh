#!/usr/bin/env bash
# Generates keys, a trust root and each node's configuration under testnet/.run, builds the
# image if needed, and starts the compose testnet.
. "$(dirname "$0")/lib.sh"
docker image inspect "$IMAGE" >/dev/null 2>&1 || "$TESTNET_DIR/build-image.sh"
[ -x "$UPSWARM" ] || (cd "$ROOT_DIR" && cargo build --locked -q -p upswarm)
rm -rf "$RUN"; mkdir -p "$RUN/keys"
cd "$RUN/keys"
for k in root-1 root-2 signer-1 signer-2 signer-3 control-1 control-2; do "$UPSWARM" key gen --out "$k" >/dev/null 2>&1; done
"$UPSWARM" root init --out root.cbor --root-key root-1.pub root-2.pub --root-threshold 2 \
  --release-key signer-1.pub signer-2.pub signer-3.pub --release-threshold 2 \
  --control-key control-1.pub control-2.pub --control-threshold 2 --expires-in 30d >/dev/null 2>&1
"$UPSWARM" root sign --key root-1.key root.cbor >/dev/null
"$UPSWARM" root sign --key root-2.key root.cbor >/dev/null
# The bootstrap node's identity is made here, so every config can name its peer id.
mkdir -p "$RUN/bootstrap/data"
"$UPSWARM" key gen --out "$RUN/bootstrap/data/identity" >/dev/null 2>&1
boot_id=$("$UPSWARM" key peer-id "$RUN/bootstrap/data/identity.key")
boot="/ip4/172.31.77.10/tcp/4001/p2p/$boot_id"
config() {
  local name=$1 managed=$2 extra=${3:-}
  mkdir -p "$RUN/$name"
  cp "$RUN/keys/root.cbor" "$RUN/$name/root.cbor"
  {
    printf 'network = "compose"\ndata_dir = "data"\ntrust_root = "root.cbor"\nproducts = ["demo"]\n%s\n' "$extra"
    printf '[network_options]\nlisten = ["/ip4/0.0.0.0/tcp/4001"]\nbootstrap = ["%s"]\ndht_refresh = "3s"\n' "$boot"
    printf '[transfer]\nrequest_timeout = "5s"\n'
    printf '[rollout]\nspread = "3s"\nresync_interval = "2s"\n'
    if [ "$managed" = yes ]; then
      printf '[managed]\ncommand = "app"\nargs = ["--listen", "127.0.0.1:9000", "--data", "{data_dir}"]\n'
      printf 'data_dir = "app-data"\nshutdown_grace = "5s"\nrestart_backoff = "500ms"\n'
      printf '[managed.health]\nhttp = "http://127.0.0.1:9000/health"\ninterval = "300ms"\nsuccesses = 3\ndeadline = "8s"\n'
    fi
  } > "$RUN/$name/node.toml"
}
config bootstrap no
for n in "${NODES[@]}"; do config "$n" yes; done
# node3 downloads slowly, so that it can be killed mid-download.
sed -i 's/^\[transfer\]$/[transfer]\nmax_download_rate = "2MiB"/' "$RUN/node3/node.toml"
compose up -d >/dev/null
for n in bootstrap "${NODES[@]}"; do
  wait_until "docker exec upswarm-$n upswarm status >/dev/null 2>&1" 60
done
echo "testnet up: bootstrap + ${#NODES[@]} nodes (containers upswarm-*)"
