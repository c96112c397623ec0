#!/usr/bin/env bash
# Release-signer helper: create a release from a build output directory (every regular file
# in it becomes an artifact), sign it with the keys given, verify it, and optionally publish
# it through a daemon.
#
#   scripts/sign-release.sh --name NAME --version V --type T --build DIR --root ROOT \
#       --key signer-1.key [--key signer-2.key …] [--channel stable] [--out DIR] \
#       [--publish --api ADDR --token-file FILE] [-- extra `release create` flags]
#
# Signers on other machines add their signature later with `upswarm release sign`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
upswarm=${UPSWARM:-upswarm}
command -v "$upswarm" >/dev/null 2>&1 || upswarm="$UPSWARM_ROOT/target/release/upswarm"
channel=stable; keys=(); publish=no; api=""; token=""; out=""; extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift ;;
    --version) version=$2; shift ;;
    --type) type=$2; shift ;;
    --build) build=$2; shift ;;
    --root) root=$2; shift ;;
    --key) keys+=("$2"); shift ;;
    --channel) channel=$2; shift ;;
    --out) out=$2; shift ;;
    --publish) publish=yes ;;
    --api) api=$2; shift ;;
    --token-file) token=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
: "${name:?--name}" "${version:?--version}" "${type:?--type}" "${build:?--build}" "${root:?--root}"
out=${out:-release-$name-$version}
artifacts=()
for f in "$build"/*; do [ -f "$f" ] && artifacts+=(--artifact "$(basename "$f")=$f"); done
[ ${#artifacts[@]} -gt 0 ] || { echo "$build has no files" >&2; exit 1; }
"$upswarm" release create --name "$name" --version "$version" --type "$type" --channel "$channel" \
  "${artifacts[@]}" --out "$out" "${extra[@]}"
for k in "${keys[@]}"; do "$upswarm" release sign --key "$k" "$out/manifest.cbor"; done
if "$upswarm" release verify --root "$root" "$out/manifest.cbor"; then
  if [ "$publish" = yes ]; then
    "$upswarm" release publish "$out" ${api:+--api "$api"} ${token:+--token-file "$token"}
  fi
else
  echo "not yet valid: more signers must run: upswarm release sign --key KEY $out/manifest.cbor" >&2
  [ "$publish" = no ] || exit 1
fi
