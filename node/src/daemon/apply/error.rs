//! Errors of the apply actor, as its callers (the API, the core) see them.
//!
//! Owns only the variants and their messages; it decides nothing, and the HTTP status of each is
//! the API's choice (`daemon::api`), not this module's.

use upswarm_store::StoreError;

/// Why a transition or an edit did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another transition (or the recovery of an interrupted one) is running.
    #[error("update already in progress: {0}")]
    Busy(String),
    /// Refused before anything changed; the release is marked failed.
    #[error("{0}")]
    Refused(String),
    /// Not applied now; the release stays eligible.
    #[error("{0}")]
    Postponed(String),
    /// An edit that breaks a rule (e.g. the deferral limit).
    #[error("{0}")]
    Invalid(String),
    #[error("the daemon is shutting down; an update in progress resumes at its next start")]
    ShuttingDown,
    /// A step could not be carried out; the journal keeps the transition and the actor
    /// retries it.
    #[error("{step} did not complete: {reason}; the journal keeps the update and it is retried")]
    Unfinished { step: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
