//! # upswarm-proto — the wire format
//!
//! Every byte upswarm puts on the wire or on a signer's disk is one of the types here,
//! encoded as CBOR (RFC 8949) through [`codec`]. `docs/wire-format.md` describes the same
//! thing for implementers in other languages.
//!
//! Goals:
//! - Every top-level message carries a version field `v` and has a byte-size limit that is
//!   checked before decoding allocates anything.
//! - Signed messages travel in a [`SignedEnvelope`]: the exact payload bytes plus signatures.
//!   Verifiers check the carried bytes; nothing is re-serialised before verification.
//! - Every signed payload type has its own domain-separation [`Context`], so a signature
//!   over one type can never verify as another.
//! - Decoded messages are structurally validated (names, sizes, thresholds) so that the
//!   rest of the code never sees, say, an artifact named `../etc/passwd`.
//!
//! Non-goals: no I/O, no signature verification (see `upswarm-trust`), no policy.

pub mod activation;
pub mod chunk;
pub mod codec;
pub mod control;
pub mod envelope;
pub mod fetch;
pub mod health;
pub mod ids;
pub mod manifest;
pub mod root;

pub use activation::{Proposal, Vote};
pub use chunk::ChunkIndex;
pub use control::{ControlAction, ControlMessage};
pub use envelope::{Context, Message, SignatureEntry, SignedEnvelope};
pub use health::{HealthReport, HealthStatus};
pub use ids::{Hash32, KeyId, PublicKey, SignatureBytes};
pub use manifest::{Artifact, Changelog, Manifest, Phase, Protocols, RolloutPlan, UpdateType};
pub use root::{Electorate, ReleaseRole, Role, Roles, TrustRoot, Voter};

/// Everything that can be wrong with bytes claiming to be an upswarm message.
///
/// `what` names the message ("manifest", "trust root", "chunk index", ...), so that a
/// caller that adds the file name or peer id gives the user a complete picture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    #[error("{what} is {got} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        limit: usize,
        got: u64,
    },

    #[error("{what} is not valid CBOR for this message: {detail}")]
    Malformed { what: &'static str, detail: String },

    #[error("{what} is not in canonical CBOR form: {detail}")]
    NotCanonical { what: &'static str, detail: String },

    #[error("{what} has {extra} unexpected bytes after the end of the message")]
    TrailingBytes { what: &'static str, extra: usize },

    #[error(
        "{what} has format version {got}; this build understands versions {oldest} to {supported}"
    )]
    UnsupportedVersion {
        what: &'static str,
        got: u32,
        oldest: u32,
        supported: u32,
    },

    #[error("{what}: field `{field}` is invalid: {reason}")]
    InvalidField {
        what: &'static str,
        field: String,
        reason: String,
    },

    #[error("artifact name {name:?} is not a plain file name: {reason}")]
    UnsafeArtifactName { name: String, reason: &'static str },

    #[error("chunk index does not match its artifact: {reason}")]
    ChunkIndexMismatch { reason: String },

    #[error("envelope carries {got} signatures, more than the limit of {limit}")]
    TooManySignatures { got: usize, limit: usize },

    #[error("{what} must be {expected_len} bytes of hex")]
    BadHex {
        what: &'static str,
        expected_len: usize,
    },

    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

impl ProtoError {
    /// Shorthand for [`ProtoError::InvalidField`].
    pub fn invalid(
        what: &'static str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ProtoError::InvalidField {
            what,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The latest absolute time a payload may carry, in unix seconds: 9999-12-31T23:59:59Z.
/// Expiry times use it as "never"; anything later is refused, so every time can be shown.
pub const MAX_TIME: u64 = 253_402_300_799;

/// The longest duration a payload may carry (a phase's soak, an activation delay): ten
/// years of 365 days, in seconds.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 86_400;

/// Checks an absolute time field against [`MAX_TIME`].
pub(crate) fn check_time(what: &'static str, field: &str, t: u64) -> Result<(), ProtoError> {
    if t > MAX_TIME {
        return Err(ProtoError::invalid(
            what,
            field,
            format!("{t} is after {MAX_TIME} (9999-12-31T23:59:59Z), the latest time accepted"),
        ));
    }
    Ok(())
}

/// Checks a duration field against [`MAX_DURATION_SECS`].
pub(crate) fn check_duration(what: &'static str, field: &str, secs: u64) -> Result<(), ProtoError> {
    if secs > MAX_DURATION_SECS {
        return Err(ProtoError::invalid(
            what,
            field,
            format!(
                "{secs} s is longer than {MAX_DURATION_SECS} s (ten years), the longest accepted"
            ),
        ));
    }
    Ok(())
}

/// Checks a short identifier (product name, channel, platform, protocol name):
/// 1..=`max` characters of ASCII letters, digits, `.`, `_`, `-`, not starting with `.` or `-`.
pub(crate) fn check_ident(
    what: &'static str,
    field: &str,
    value: &str,
    max: usize,
) -> Result<(), ProtoError> {
    if value.is_empty() || value.len() > max {
        return Err(ProtoError::invalid(
            what,
            field,
            format!("must be 1 to {max} characters, got {}", value.len()),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ProtoError::invalid(
            what,
            field,
            format!("{value:?} may only contain ASCII letters, digits, '.', '_' and '-'"),
        ));
    }
    if value.starts_with(['.', '-']) {
        return Err(ProtoError::invalid(
            what,
            field,
            format!("{value:?} must not start with '.' or '-'"),
        ));
    }
    Ok(())
}
