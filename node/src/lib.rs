//! # upswarm — the daemon and its command line
//!
//! This crate assembles the libraries into the single `upswarm` binary: the offline signing
//! commands (`key`, `root`, `release`), and (in later modules) the daemon, its control API
//! and the CLI that talks to it.
//!
//! The binary's `main` only parses arguments and prints errors; everything else is here so
//! that integration tests can drive it in-process.

pub mod api;
pub mod cli;
pub mod daemon;
pub mod files;
pub mod http;
pub mod layout;
pub mod localnet;
pub mod parse;
pub mod procs;
