//! Why the core refused what it was asked (the API turns each into an HTTP status). Owns
//! the error types of the core's replies; it must not decide anything itself (the
//! judgements are in `judge` and `decide`, the actor's replies in the other modules).

use std::path::PathBuf;

use upswarm_proto::Hash32;

use super::judge::Rejected;
use crate::api::FLEET_STATES;

/// Why `upswarm release publish` did not publish.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The release directory's manifest cannot be read.
    #[error("{0}")]
    Unreadable(String),
    #[error("{}: refused: {why}", path.display())]
    Refused { path: PathBuf, why: Rejected },
    /// Valid, but another release of its version is known: nothing to publish.
    #[error("{}: refused: {why}", path.display())]
    Superseded { path: PathBuf, why: String },
    /// The release directory's chunks do not match the manifest, or cannot be stored.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Admitted, then gone before its import ended (removed meanwhile).
    #[error("the release was removed while it was imported")]
    Vanished,
}

/// Why a release directory could not be copied into the node (`upswarm release publish`).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The signer's directory lacks a chunk or holds a damaged one.
    #[error("{}: {source}", dir.display())]
    Source {
        dir: PathBuf,
        source: upswarm_content::ContentError,
    },
    /// This node could not store what it copied (its disk, its chunk store).
    #[error(transparent)]
    Store(#[from] upswarm_content::ContentError),
    /// The copying task ended without an answer.
    #[error("the import task failed: {0}")]
    Task(String),
}

/// Why a signed message handed over through the API was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// A trust root not newer than the current one: nothing to do.
    #[error("not newer than the current trust root (version {current}); nothing to do")]
    NotNewer { current: u64 },
}

/// Why `upswarm apply` / `rollback` / `defer` cannot have the version asked for. The API
/// answers 404 for what is not on this node and 409 for what is there but refused in this
/// state ([`ResolveError::not_found`]).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("this daemon manages no program (no [managed] section)")]
    NotManaged,
    #[error("no downloaded release {0} of the managed product; see `upswarm releases`")]
    NoSuchRelease(semver::Version),
    #[error("no downloaded release to apply")]
    NothingToApply,
    #[error("{0} was yanked by the control role: no node applies it, not even with --force")]
    Yanked(semver::Version),
    #[error("{0}; use --force to override")]
    NeedsForce(String),
    #[error("{0} failed on this node before; use --force to try again")]
    FailedBefore(semver::Version),
    #[error("no earlier version to roll back to (one that failed here or was yanked is none)")]
    NoEarlierVersion,
    #[error("{0} is not one of the earlier versions kept on this node")]
    NotKept(semver::Version),
    #[error("{}: version {version} is no longer kept on this node", dir.display())]
    Gone {
        dir: std::path::PathBuf,
        version: semver::Version,
    },
}

impl ResolveError {
    /// What was asked for is not on this node (as opposed to: refused in this state).
    pub fn not_found(&self) -> bool {
        matches!(
            self,
            ResolveError::NoSuchRelease(_)
                | ResolveError::NothingToApply
                | ResolveError::NoEarlierVersion
                | ResolveError::NotKept(_)
                | ResolveError::Gone { .. }
        )
    }
}

/// Why `upswarm explain` has nothing to explain (the API answers 404).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no release known yet")]
    NothingKnown,
    #[error("no known release {0} followed by this node")]
    NotFollowed(semver::Version),
}

/// A fleet query that names no state or release (the API answers 400).
#[derive(Debug, thiserror::Error)]
pub enum FleetQueryError {
    #[error("state: {0:?} is not a report state (one of {states})", states = FLEET_STATES.join(", "))]
    State(String),
    #[error("release: {0:?} is neither a release id (8 to 64 hex digits) nor a version")]
    Release(String),
    #[error("release: {0}")]
    ReleaseId(String),
}

/// Why `upswarm vote` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("unknown proposal {0}; see `upswarm activations`")]
    UnknownProposal(Hash32),
    #[error("this node has no voter key (voting.voter_key)")]
    NoVoterKey,
    #[error("cannot record the choice in the state store: {0}")]
    Store(String),
}
