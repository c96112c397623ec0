//! The signed envelope and domain-separation contexts.
//!
//! Owns the envelope, the context tags and the `Message` trait every payload type implements. It
//! never makes or verifies a signature (`upswarm-trust` does): `SignedEnvelope::open` only decodes
//! and validates the payload.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, check_version};
use crate::{Hash32, KeyId, ProtoError, SignatureBytes};

/// Version of the envelope format.
pub const ENVELOPE_VERSION: u32 = 1;

/// Most signatures one envelope may carry. Roles are small (a handful of signers); this
/// bounds the verification work an attacker can cause with one message.
pub const MAX_SIGNATURES: usize = 64;

/// The signed payload types. Each has its own context tag, mixed into the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    Root,
    Manifest,
    Control,
    Proposal,
    Vote,
    Health,
}

impl Context {
    /// The ASCII tag signed in front of the payload. No tag is a prefix of another.
    pub const fn tag(self) -> &'static str {
        match self {
            Context::Root => "upswarm/root/v1",
            Context::Manifest => "upswarm/manifest/v1",
            Context::Control => "upswarm/control/v1",
            Context::Proposal => "upswarm/proposal/v1",
            Context::Vote => "upswarm/vote/v1",
            Context::Health => "upswarm/health/v1",
        }
    }

    /// The exact bytes an ed25519 signature covers: `tag ‖ 0x00 ‖ payload`.
    pub fn signing_message(self, payload: &[u8]) -> Vec<u8> {
        let tag = self.tag().as_bytes();
        let mut msg = Vec::with_capacity(tag.len() + 1 + payload.len());
        msg.extend_from_slice(tag);
        msg.push(0);
        msg.extend_from_slice(payload);
        msg
    }
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// Key id of the signer: `blake3(public key)`.
    pub key: KeyId,
    /// ed25519 signature over `context.signing_message(payload)`.
    pub sig: SignatureBytes,
}

/// Payload bytes plus the signatures over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEnvelope {
    pub v: u32,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub sigs: Vec<SignatureEntry>,
}

impl SignedEnvelope {
    /// An envelope with no signatures yet.
    pub fn unsigned(payload: Vec<u8>) -> Self {
        SignedEnvelope {
            v: ENVELOPE_VERSION,
            payload,
            sigs: Vec::new(),
        }
    }

    /// Wraps a message, encoding it as the payload.
    pub fn wrap<M: Message>(message: &M) -> Self {
        Self::unsigned(codec::encode(message))
    }

    /// Decodes an envelope holding an `M`, checking `M`'s size limit first.
    pub fn decode<M: Message>(bytes: &[u8]) -> Result<Self, ProtoError> {
        Self::decode_limited(M::WHAT, bytes, M::MAX_BYTES)
    }

    /// Decodes an envelope with an explicit name and limit.
    pub fn decode_limited(
        what: &'static str,
        bytes: &[u8],
        limit: usize,
    ) -> Result<Self, ProtoError> {
        let env: SignedEnvelope = codec::decode(what, bytes, limit)?;
        check_version(what, env.v, ENVELOPE_VERSION)?;
        if env.sigs.len() > MAX_SIGNATURES {
            return Err(ProtoError::TooManySignatures {
                got: env.sigs.len(),
                limit: MAX_SIGNATURES,
            });
        }
        Ok(env)
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes and validates the payload as an `M`. Does not verify signatures.
    pub fn open<M: Message>(&self) -> Result<M, ProtoError> {
        M::decode(&self.payload)
    }

    /// blake3 of the payload bytes: the identity of the signed content, independent of
    /// which signatures are attached. For a manifest this is the release id.
    pub fn payload_hash(&self) -> Hash32 {
        Hash32::of(&self.payload)
    }

    /// Adds a signature unless one by the same key id is already present.
    /// Returns whether it was added.
    pub fn add_signature(&mut self, entry: SignatureEntry) -> bool {
        if self.sigs.iter().any(|s| s.key == entry.key) {
            return false;
        }
        self.sigs.push(entry);
        true
    }
}

/// A top-level payload type: how it is named, limited, versioned and validated.
pub trait Message: Serialize + DeserializeOwned {
    /// Name used in errors: "manifest", "trust root", ...
    const WHAT: &'static str;
    /// Newest format version this build writes and accepts.
    const VERSION: u32;
    /// Oldest format version this build still accepts (and writes when the message needs
    /// nothing newer).
    const OLDEST_VERSION: u32 = Self::VERSION;
    /// Limit on the encoded size of the *envelope* carrying this message.
    const MAX_BYTES: usize;
    /// Domain-separation context of signatures over this message.
    const CONTEXT: Context;

    /// The message's `v` field.
    fn version_field(&self) -> u32;

    /// Structural checks beyond what the types express.
    fn validate(&self) -> Result<(), ProtoError>;

    /// Decodes, checks the version and validates.
    fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let msg: Self = codec::decode(Self::WHAT, bytes, Self::MAX_BYTES)?;
        codec::check_version_range(
            Self::WHAT,
            msg.version_field(),
            Self::OLDEST_VERSION,
            Self::VERSION,
        )?;
        msg.validate()?;
        Ok(msg)
    }

    /// Encodes as CBOR.
    fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_prefix_free() {
        let all = [
            Context::Root,
            Context::Manifest,
            Context::Control,
            Context::Proposal,
            Context::Vote,
            Context::Health,
        ];
        for a in all {
            for b in all {
                if a != b {
                    let ma = a.signing_message(b"x");
                    let mb = b.signing_message(b"x");
                    assert_ne!(ma, mb);
                    assert!(!a.tag().starts_with(b.tag()) || a == b);
                }
            }
        }
    }

    #[test]
    fn add_signature_is_idempotent_per_key() {
        let mut env = SignedEnvelope::unsigned(vec![1, 2, 3]);
        let e = SignatureEntry {
            key: KeyId([1; 32]),
            sig: SignatureBytes([2; 64]),
        };
        assert!(env.add_signature(e.clone()));
        assert!(!env.add_signature(e));
        assert_eq!(env.sigs.len(), 1);
    }

    #[test]
    fn envelope_roundtrip() {
        let mut env = SignedEnvelope::unsigned(vec![9; 10]);
        env.add_signature(SignatureEntry {
            key: KeyId([1; 32]),
            sig: SignatureBytes([2; 64]),
        });
        let bytes = env.encode();
        let back = SignedEnvelope::decode_limited("test", &bytes, 1000).unwrap();
        assert_eq!(env, back);
    }
}
