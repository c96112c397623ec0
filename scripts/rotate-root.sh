#!/usr/bin/env bash
# Key rotation walkthrough: replace a root key (or any role's keys) with a new trust root
# version signed by the old AND the new root thresholds, then hand it to the daemons.
#
#   scripts/rotate-root.sh OLD_ROOT NEW_ROOT [role flags for `upswarm root rotate` …]
#
# Example — replace root key bob by carol, keep everything else:
#   scripts/rotate-root.sh root.cbor root-v2.cbor --root-key alice.pub carol.pub
# Then:
#   1. every holder of an OLD root key signs:  upswarm root sign --key alice.key root-v2.cbor
#                                               upswarm root sign --key bob.key   root-v2.cbor
#   2. every holder of a NEW root key signs:   upswarm root sign --key carol.key root-v2.cbor
#   3. check:                                   upswarm root verify root-v2.cbor --previous root.cbor
#   4. hand it to any daemon:                   upswarm root publish root-v2.cbor --api ADDR --token-file F
#      it verifies the rotation against its current root, keeps it, and gossips it; every
#      node verifies it the same way (nodes offline now pull it later). Nodes only ever move
#      forward (version 2 after 1, never back). New nodes may pin root-v2.cbor directly.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
upswarm=${UPSWARM:-upswarm}
command -v "$upswarm" >/dev/null 2>&1 || upswarm="$UPSWARM_ROOT/target/release/upswarm"
old=${1:?usage: rotate-root.sh OLD_ROOT NEW_ROOT [role flags]}; new=${2:?usage: rotate-root.sh OLD_ROOT NEW_ROOT [role flags]}; shift 2
"$upswarm" root verify "$old" || { echo "$old is not a valid root; fix that first" >&2; exit 1; }
"$upswarm" root rotate --previous "$old" --out "$new" "$@"
echo
echo "Next: collect signatures from the OLD root role and the NEW root role (see the top of this script),"
echo "then: $upswarm root verify $new --previous $old"
