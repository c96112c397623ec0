//! The crate's error type, `TrustError`: everything that makes a key file, root or manifest
//! untrustworthy.
//!
//! Owns only the variants and their messages; it decides nothing (the checks that produce them live
//! in the other modules).

use std::path::PathBuf;

use upswarm_proto::ProtoError;

use crate::Tally;

/// Everything that makes a key file, root or manifest untrustworthy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error(transparent)]
    Proto(#[from] ProtoError),

    #[error("{context} needs {threshold} valid signature(s) from the {role} role, found {valid}")]
    SignatureThreshold {
        role: &'static str,
        context: &'static str,
        threshold: u32,
        valid: u32,
        tally: Box<Tally>,
    },

    #[error(
        "{what} expired at {expired_at} (unix seconds); now is {now}, allowed clock skew {skew}s"
    )]
    Expired {
        what: &'static str,
        expired_at: u64,
        now: u64,
        skew: u64,
    },

    #[error(
        "{what} has {field} {at} (unix seconds), in the future: now is {now}, allowed clock skew {skew}s"
    )]
    FromTheFuture {
        what: &'static str,
        field: &'static str,
        at: u64,
        now: u64,
        skew: u64,
    },

    #[error(
        "trust root version {got} is not newer than the current version {current} (rollback refused)"
    )]
    RootRollback { current: u64, got: u64 },

    #[error(
        "trust root version {got} does not follow version {current}; every rotation must be applied in order"
    )]
    RootVersionGap { current: u64, got: u64 },

    #[error("cannot read key file {path}: {source}")]
    KeyFileIo {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("key file {path} is not valid: {reason}")]
    BadKeyFile { path: PathBuf, reason: String },

    #[error(
        "secret key file {path} has mode {mode:#o}; it must not be readable by group or others (chmod 600)"
    )]
    InsecureKeyFile { path: PathBuf, mode: u32 },

    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists { path: PathBuf },

    #[error("the system random number generator failed: {0}")]
    Random(String),
}

impl TrustError {
    /// The signature tally behind a threshold failure, if that is what this is.
    pub fn tally(&self) -> Option<&Tally> {
        match self {
            TrustError::SignatureThreshold { tally, .. } => Some(tally),
            _ => None,
        }
    }
}
