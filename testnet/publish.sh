#!/usr/bin/env bash
# Creates, co-signs (2 of 3 signers) and publishes a release of the demo program through the
# bootstrap node.
#   testnet/publish.sh VERSION [--bad] [--type TYPE] [--pad MIB]
. "$(dirname "$0")/lib.sh"
version=${1:?usage: publish.sh VERSION [--bad] [--type TYPE] [--pad MIB]}; shift
mode=healthy; type=minor; pad=0
while [ $# -gt 0 ]; do
  case $1 in
    --bad) mode=unhealthy ;;
    --type) type=$2; shift ;;
    --pad) pad=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
src="$RUN/build-$version"; rel="$RUN/bootstrap/releases/$version"
rm -rf "$src" "$rel"; mkdir -p "$src" "$(dirname "$rel")"
cp "$ROOT_DIR/target/$PROFILE/upswarm-demo-app" "$src/app"
printf 'version = "%s"\nmode = "%s"\n' "$version" "$mode" > "$src/demo.toml"
args=(--artifact "app=$src/app" --artifact "demo.toml=$src/demo.toml")
if [ "$pad" -gt 0 ]; then head -c $((pad * 1024 * 1024)) /dev/urandom > "$src/payload.bin"; args+=(--artifact "payload.bin=$src/payload.bin"); fi
plan=()
[ "$type" = hotfix ] || plan=(--phase 25:10s:20:1 --phase 60:5s:20:1 --phase 100)
"$UPSWARM" release create --name demo --version "$version" --type "$type" --channel stable --platform any \
  "${args[@]}" "${plan[@]}" --chunk-size 256KiB --out "$rel" >/dev/null 2>&1
for k in signer-1 signer-2; do "$UPSWARM" release sign --key "$RUN/keys/$k.key" "$rel/manifest.cbor" >/dev/null; done
chmod -R a+rX "$rel"
in_node_auth bootstrap release publish "/node/releases/$version"
