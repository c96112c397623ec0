//! The crate's error type, `ContentError`: what can go wrong with content on disk, each error
//! naming its path or hash.
//!
//! Owns only the variants and their messages. Whether an error is this node's disk or a peer's
//! fault is the caller's call (the daemon's fetcher), never decided here.

use std::path::PathBuf;

use upswarm_proto::{Hash32, ProtoError};

/// What can go wrong with content on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{what} does not match its hash: expected {expected}, got {got}")]
    HashMismatch {
        what: &'static str,
        expected: Hash32,
        got: Hash32,
    },

    #[error("chunk {hash} is missing from the store at {path}")]
    Missing { hash: Hash32, path: PathBuf },

    #[error("chunk {hash} in the store at {path} was corrupt and has been removed")]
    Corrupt { hash: Hash32, path: PathBuf },

    #[error("chunk {hash} in the store at {path} does not match its hash (left in place)")]
    Damaged { hash: Hash32, path: PathBuf },

    #[error("{what} is {got} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        limit: u64,
        got: u64,
    },

    #[error("artifact {name}: {source}")]
    Index { name: String, source: ProtoError },

    #[error(
        "artifact {name}: whole-file hash mismatch: manifest says {expected}, the bytes give {got}"
    )]
    WholeFile {
        name: String,
        expected: Hash32,
        got: Hash32,
    },

    #[error("{path}: {got} bytes, but artifact {name} is {expected} bytes")]
    FileSize {
        name: String,
        path: PathBuf,
        expected: u64,
        got: u64,
    },

    #[error("chunk size {0} is outside the accepted range")]
    BadChunkSize(u32),
}

impl ContentError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContentError {
        let path = path.into();
        move |source| ContentError::Io { op, path, source }
    }
}
