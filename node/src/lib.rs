//! # upswarm — the daemon and its command line
//!
//! This crate assembles the libraries into the single `upswarm` binary: the offline signing
//! commands (`key`, `root`, `release`), the daemon, its control API and the CLI that talks
//! to it, and the local-testnet harness.
//!
//! The binary's `main` only parses arguments and prints errors; everything else is here so
//! that integration tests can drive it in-process.
//!
//! It declares the modules and holds no code. Their dependencies go one way
//! (`docs/architecture.md`, "Checking the structure"; `tests/structure.rs` checks): `daemon` never
//! uses `cli`, `cli` uses of the daemon only `daemon::run` and `daemon::Config`, and `api`,
//! `layout`, `procs`, `files`, `parse` and `http` use neither.

pub mod api;
pub mod cli;
pub mod daemon;
pub mod files;
pub mod http;
pub mod layout;
pub mod localnet;
pub mod parse;
pub mod procs;
