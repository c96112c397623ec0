#!/usr/bin/env bash
# The test command: every unit, property, integration and process-level test of the
# workspace. `.ci/run` runs exactly this after the format and lint checks.
#
# The tests run against a `fault-injection` build of `upswarm` (crash points inside the
# apply procedure, for tests/crash.rs); release builds never have it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --locked --all-targets --features upswarm/fault-injection
cargo test --workspace --locked --no-fail-fast --features upswarm/fault-injection "$@"
