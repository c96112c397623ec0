//! The crate's error type.
//!
//! Owns only the variants, their messages and `ActivationError::tally`; it holds no check itself
//! (`verify` produces these errors).

use upswarm_proto::{KeyId, ProtoError};
use upswarm_trust::{Tally, TrustError};

/// Why a proposal or vote envelope was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// The payload is not a well-formed proposal / vote (size, CBOR, version, fields).
    #[error(transparent)]
    Proto(#[from] ProtoError),

    /// The proposal is not signed by the release role's threshold for protocol updates.
    #[error("protocol proposal rejected: {0}")]
    Threshold(#[source] TrustError),

    /// The vote names a voter key that is not in the trust root's electorate.
    #[error("vote rejected: voter key {key} is not in the trust root's electorate")]
    NotAVoter { key: KeyId },

    /// The vote carries no valid signature by its own voter key under the vote context
    /// (missing, forged, or made for another message type).
    #[error(
        "vote rejected: it carries no valid signature by its voter key {key} under the vote context\n{tally}"
    )]
    BadSignature { key: KeyId, tally: Box<Tally> },
}

impl ActivationError {
    /// The signature tally behind a signature failure, if that is what this is.
    pub fn tally(&self) -> Option<&Tally> {
        match self {
            ActivationError::Threshold(e) => e.tally(),
            ActivationError::BadSignature { tally, .. } => Some(tally),
            _ => None,
        }
    }
}
