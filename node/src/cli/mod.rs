//! The `upswarm` command line.
//!
//! Owns the command-line definition (clap), the dispatch to the command modules and the exit code.
//! No CLI module imports daemon internals: of `crate::daemon` they use only `daemon::run` and
//! `daemon::Config` (`tests/structure.rs` checks); what a running daemon knows, they ask its
//! control API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod client;
pub mod control;
pub mod key;
mod node;
pub mod release;
pub mod root;
mod setup;
pub(crate) mod show;
mod signed;
mod sim;
pub mod testnet;
mod vote;

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
    /// Run the daemon (until SIGTERM or SIGINT, which also stop the managed program).
    Daemon {
        /// The configuration file (see docs/operator-guide.md).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Only validate the configuration file (every field, as at start) and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// What the daemon is doing: peers, releases, downloads.
    Status {
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Is an update available, and what (policy, version) holds it back?
    Check {
        #[command(flatten)]
        api: client::ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Apply a downloaded release now (bypasses the automatic policy, not the checks).
    Apply {
        /// Version to apply; default the newest downloaded.
        #[arg(value_name = "VERSION")]
        version: Option<semver::Version>,
        /// Allow going back in version, or retrying a release that failed here.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Go back to an earlier version kept on this node (restoring its data backup if any).
    Rollback {
        /// Version to go back to; default the previous one.
        #[arg(value_name = "VERSION")]
        version: Option<semver::Version>,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Remove downloaded releases, chunks and data backups the retention settings no
    /// longer keep (`[retention]`); with --dry-run, only list them and the bytes.
    Gc {
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: client::ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// What was applied, rolled back or refused, and why.
    History {
        #[command(flatten)]
        api: client::ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Keep this node on VERSION: nothing else is applied automatically.
    Pin {
        #[arg(value_name = "VERSION")]
        version: semver::Version,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Undo `pin`.
    Unpin {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Postpone the pending update by the policy's defer period (a bounded number of times).
    Defer {
        #[arg(value_name = "VERSION")]
        version: Option<semver::Version>,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Signed rollout control messages: pause, resume, abort, advance, yank.
    #[command(subcommand)]
    Control(control::ControlCommand),
    /// Why this node has or has not installed a release: rank, phase, gates, policy.
    Explain {
        #[arg(value_name = "VERSION")]
        version: Option<semver::Version>,
        #[command(flatten)]
        api: client::ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// The fleet as this node sees it from signed health reports: each node's version,
    /// last report and place in the current rollout, and how many nodes run each version.
    Fleet {
        /// Only nodes running this version.
        #[arg(long, value_name = "VERSION")]
        version: Option<semver::Version>,
        /// Only nodes whose last report has this state.
        #[arg(long, value_parser = ["installed", "healthy", "failed", "rolled_back"])]
        state: Option<String>,
        /// Only nodes whose last report is about this release (an id, a prefix of at
        /// least 8 hex digits, or a version).
        #[arg(long, value_name = "RELEASE")]
        release: Option<String>,
        /// Print the coverage over time instead of the nodes: each change of the number of
        /// nodes per version this daemon saw, oldest first.
        #[arg(long, conflicts_with = "json")]
        history: bool,
        #[command(flatten)]
        api: client::ApiArgs,
        /// Print JSON (it always has the coverage over time, `history`).
        #[arg(long)]
        json: bool,
    },
    /// Protocol activation proposals: create, co-sign, publish.
    #[command(subcommand)]
    Proposal(vote::ProposalCommand),
    /// Vote READY for a proposal now (when ready), or withhold / allow this node's vote.
    Vote {
        /// Proposal id.
        #[arg(value_name = "PROPOSAL")]
        proposal: String,
        /// Never vote for it (until --allow).
        #[arg(long, conflicts_with = "allow")]
        withhold: bool,
        /// Undo --withhold.
        #[arg(long)]
        allow: bool,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Protocol activations as this node computes them.
    Activations {
        #[command(flatten)]
        api: client::ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Peers.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Bring up a local network on loopback and play a scenario (good, bad or vote).
    Testnet(testnet::TestnetArgs),
    /// Simulate a phased rollout over many nodes with the real gate logic.
    Sim(sim::SimArgs),
    /// Show download progress bars until every download is complete.
    Progress {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Write a commented, valid configuration from a few answers (flags, or prompts on a
    /// terminal), and print the next steps.
    Init(setup::InitArgs),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: setup::Shell,
    },
    /// Print the man page, or with --out write one page per command into a directory.
    Man {
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
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

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Connect to a peer now (e.g. to heal a partition): `/ip4/…/tcp/…/p2p/…`.
    Add {
        #[arg(value_name = "MULTIADDR")]
        addr: String,
        #[command(flatten)]
        api: client::ApiArgs,
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
        Command::Daemon {
            config,
            check_config,
        } => node::daemon(&config, check_config),
        Command::Status { api, json } => node::status(&api, json),
        Command::Releases { api, json } => node::releases(&api, json),
        Command::Init(args) => setup::init(&args),
        Command::Completions { shell } => setup::completions(shell),
        Command::Man { out } => setup::man(out.as_deref()),
        Command::Check { api, json } => node::check(&api, json),
        Command::Apply {
            version,
            force,
            api,
        } => node::transition(&api, "/v1/apply", version, force),
        Command::Rollback { version, api } => {
            node::transition(&api, "/v1/rollback", version, false)
        }
        Command::History { api, json } => node::history(&api, json),
        Command::Gc { dry_run, api, json } => node::gc(&api, dry_run, json),
        Command::Pin { version, api } => node::pin(&api, Some(version)),
        Command::Unpin { api } => node::pin(&api, None),
        Command::Defer { version, api } => node::defer(&api, version),
        Command::Progress { api } => node::progress(&api),
        Command::Sim(args) => sim::run(&args),
        Command::Testnet(args) => testnet::run_testnet(&args),
        Command::Control(c) => control::run(c),
        Command::Proposal(c) => vote::proposal(c),
        Command::Vote {
            proposal,
            withhold,
            allow,
            api,
        } => {
            let w = if withhold {
                Some(true)
            } else if allow {
                Some(false)
            } else {
                None
            };
            vote::vote(&api, &proposal, w)
        }
        Command::Activations { api, json } => vote::activations(&api, json),
        Command::Peer(PeerCommand::Add { addr, api }) => vote::add_peer(&api, &addr),
        Command::Explain { version, api, json } => node::explain(&api, version, json),
        Command::Fleet {
            version,
            state,
            release,
            history,
            api,
            json,
        } => node::fleet(
            &api,
            &crate::api::FleetQuery {
                version,
                state,
                release,
            },
            json,
            history,
        ),
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
    // Colours only for a person at a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
