//! The `upswarm` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod client;
pub mod key;
mod node;
pub mod release;
pub mod root;
mod show;

/// upswarm: a peer-to-peer update daemon for fleets of nodes.
#[derive(Debug, Parser)]
#[command(name = "upswarm", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Trust roots: create, co-sign, verify, rotate.
    #[command(subcommand)]
    Root(root::RootCommand),
    /// Releases: create from build outputs, co-sign, verify, inspect, publish.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Run the daemon.
    Daemon {
        /// The configuration file (see docs/operator-guide.md).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// What the daemon is doing: peers, releases, downloads.
    Status {
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The releases the daemon knows.
    Releases {
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How a command ended, beyond success.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The check ran and the answer is "no" (the report was already printed).
    #[error("{0}")]
    Rejected(String),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Key(c) => key::run(c),
        Command::Root(c) => root::run(c),
        Command::Release(c) => release::run(c),
        Command::Daemon { config } => node::daemon(&config),
        Command::Status { api, json } => node::status(&api, json),
        Command::Releases { api, json } => node::releases(&api, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(Failure::Rejected(msg)) = e.downcast_ref::<Failure>() {
                eprintln!("REJECTED: {msg}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UPSWARM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
