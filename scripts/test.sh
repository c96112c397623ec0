#!/usr/bin/env bash
# The test command: every unit, property, integration and process-level test of the
# workspace. `.ci/run` runs exactly this after the format and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --locked --all-targets
cargo test --workspace --locked --no-fail-fast "$@"
