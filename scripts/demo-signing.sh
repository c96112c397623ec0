#!/usr/bin/env bash
# A walk through the offline signing flow with the real binary: three release signers
# (threshold 2), two root keys (threshold 2), a release of a build output, co-signing, and
# verification — including what a rejected release looks like. Needs only the `upswarm`
# binary (no cargo): from $UPSWARM_BIN_DIR, the PATH, or target/{release,debug}.
#
#   scripts/demo-signing.sh [WORKDIR]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

upswarm=$(find_binary upswarm)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/upswarm-demo.XXXXXX")}
mkdir -p "$work"; cd "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. Each signer generates a key pair (secret .key is 0600; .pub is shared)"
for k in root-alice root-bob rel-carol rel-dave rel-erin ctl-frank; do
  [ -e "$k.key" ] || echo "$k: $("$upswarm" key gen --out "$k" 2>/dev/null)"
done

say "2. A trust root: root 2-of-2, release 2-of-3 (hotfix 1, major 3), control 1-of-1"
rm -f root.cbor
"$upswarm" root init --out root.cbor --root-key root-alice.pub root-bob.pub --root-threshold 2 \
  --release-key rel-carol.pub rel-dave.pub rel-erin.pub --release-threshold 2 \
  --type-threshold hotfix=1 major=3 --control-key ctl-frank.pub --control-threshold 1
"$upswarm" root sign --key root-alice.key root.cbor
"$upswarm" root sign --key root-bob.key root.cbor
"$upswarm" root verify root.cbor

say "3. A release from a build output"
mkdir -p build && head -c $((8 * 1024 * 1024)) /dev/urandom > build/mynode && chmod 755 build/mynode
printf '## Features\n- faster block sync\n## Fixes\n- crash when the peer list is empty\n' > CHANGES.md
rm -rf release-1.1.0
"$upswarm" release create --name mynode --version 1.1.0 --type minor --channel stable \
  --artifact mynode=build/mynode --changelog CHANGES.md --out release-1.1.0

say "4. One signature is not enough for a minor release (exit code is non-zero)"
"$upswarm" release sign --key rel-carol.key release-1.1.0/manifest.cbor
"$upswarm" release verify --root root.cbor release-1.1.0/manifest.cbor || echo "(rejected, as expected)"

say "5. A second signer co-signs offline; now it verifies"
"$upswarm" release sign --key rel-dave.key release-1.1.0/manifest.cbor
"$upswarm" release verify --root root.cbor release-1.1.0/manifest.cbor

say "6. What the release says"
"$upswarm" release inspect release-1.1.0/manifest.cbor
echo; echo "Everything is in $work"
