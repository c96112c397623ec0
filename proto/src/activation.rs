//! Protocol activation: proposals (signed by the release role) and readiness votes (signed
//! by electorate keys).
//!
//! Owns the two message types and their field checks. It checks no signature and computes no state:
//! `upswarm-activation` does both.

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::manifest::BP_ALL;
use crate::{Hash32, ProtoError, PublicKey, check_ident};

/// Format version of [`Proposal`] and [`Vote`].
pub const ACTIVATION_VERSION: u32 = 1;
/// Limit on an encoded, signed proposal.
pub const MAX_PROPOSAL_BYTES: usize = 16 * 1024;
/// Limit on an encoded, signed vote.
pub const MAX_VOTE_BYTES: usize = 1024;

/// A proposal to activate a protocol version / feature once enough electorate weight runs
/// software supporting it. Its id is blake3 of its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub v: u32,
    /// The protocol version / feature, as named in manifests' `protocols.provides`.
    pub protocol: String,
    /// Human description (≤ 1 KiB).
    pub description: String,
    /// Fraction of the electorate's total weight needed, in basis points (9000 = 90 %).
    pub threshold_bp: u16,
    /// Unix seconds: votes before this are not counted; the proposal is DEFINED until then.
    pub start_at: u64,
    /// Unix seconds: if not locked in by then, the proposal FAILS (or locks in, see below).
    pub lock_in_deadline: u64,
    /// Seconds between the lock-in time and activation; must be well above clock skew.
    pub activation_delay_secs: u64,
    /// Lock in at the deadline even when the threshold was not reached.
    pub lock_in_on_timeout: bool,
}

/// A readiness attestation: the voter's node runs, healthy, software supporting the
/// proposal's protocol. Signed by `voter` (an electorate key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub v: u32,
    /// Proposal id.
    pub proposal: Hash32,
    pub voter: PublicKey,
    /// Unix seconds when the node became ready (and signed).
    pub at: u64,
}

impl Message for Proposal {
    const WHAT: &'static str = "protocol proposal";
    const VERSION: u32 = ACTIVATION_VERSION;
    const MAX_BYTES: usize = MAX_PROPOSAL_BYTES;
    const CONTEXT: Context = Context::Proposal;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        const W: &str = "protocol proposal";
        check_ident(W, "protocol", &self.protocol, 64)?;
        if self.description.len() > 1024 {
            return Err(ProtoError::invalid(
                W,
                "description",
                "longer than 1024 bytes",
            ));
        }
        if self.threshold_bp == 0 || self.threshold_bp > BP_ALL {
            return Err(ProtoError::invalid(
                W,
                "threshold_bp",
                format!("{} is not in 1..=10000", self.threshold_bp),
            ));
        }
        crate::check_time(W, "start_at", self.start_at)?;
        crate::check_time(W, "lock_in_deadline", self.lock_in_deadline)?;
        crate::check_duration(W, "activation_delay_secs", self.activation_delay_secs)?;
        if self.lock_in_deadline <= self.start_at {
            return Err(ProtoError::invalid(
                W,
                "lock_in_deadline",
                "must be after start_at",
            ));
        }
        Ok(())
    }
}

impl Message for Vote {
    const WHAT: &'static str = "vote";
    const VERSION: u32 = ACTIVATION_VERSION;
    const MAX_BYTES: usize = MAX_VOTE_BYTES;
    const CONTEXT: Context = Context::Vote;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        crate::check_time("vote", "at", self.at)
    }
}
