//! Every cross-crate and process-level integration test of the workspace, as modules of one
//! test binary: each binary links libp2p and the daemon, and one binary instead of a dozen
//! is minutes of linking and gigabytes of disk less. Run one group with its module path:
//! `cargo test --test integration crash::`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod activation;
mod apply;
mod cli_setup;
mod cli_signing;
mod cosmovisor;
mod crash;
mod dashboard;
mod delta;
mod disk;
mod evil_peer;
mod fleet;
mod hostile_config;
mod hostile_fixtures;
mod messages;
mod mirror;
mod nat;
mod rollout;
mod structure;
mod swarm;
mod testnet;
mod tls;
mod transports;
