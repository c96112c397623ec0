#!/usr/bin/env bash
# NAT traversal: time for a release to reach a node behind one NAT from its only holder
# behind another NAT, after a hole punch (DCUtR) vs with the relay as the only path, in the
# same network-namespace topology as tests/nat.rs (a public namespace with the bootstrap
# node serving as relay, two LANs behind masquerading router namespaces). For the
# relay-only round the public side rejects traffic between the two NATs' public addresses,
# so nothing but the relay connects them. Prints both times and the ratio.
#
#   sudo scripts/bench-nat.sh [SIZE_MIB=32]
#
# Needs root (ip netns, iptables). Runs the ignored benchmark test
# `nat::bench_release_to_a_nated_node_hole_punched_vs_relay_only` (debug build, like the
# other process tests), which removes every namespace, rule and process it created.
set -euo pipefail
cd "$(dirname "$0")/.."
UPSWARM_BENCH_NAT_MIB=${1:-32} cargo test -p upswarm --features upswarm/fault-injection \
    --test integration nat::bench_release_to_a_nated_node_hole_punched_vs_relay_only \
    -- --ignored --nocapture --test-threads 1 2>&1 |
    grep -Eo '(release of|hole punching:|relay only:|ratio) .*'
