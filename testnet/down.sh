#!/usr/bin/env bash
# Stops the compose testnet and removes its containers, network and generated state.
. "$(dirname "$0")/lib.sh"
compose down -v --remove-orphans >/dev/null 2>&1 || true
rm -rf "$RUN"
echo "testnet down"
