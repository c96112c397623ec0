//! The one function that counts signatures.
//!
//! Owns signature verification: nothing else in upswarm verifies an ed25519 signature. It must not
//! pick the role or threshold (the caller passes them) nor look inside the payload or at any clock.

use std::collections::BTreeSet;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use upswarm_proto::{Context, KeyId, Role, SignedEnvelope};

use crate::TrustError;

/// What happened to one signature of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid signature by a key of the role: counted.
    Counted,
    /// The role's key already has a counted signature: ignored.
    Duplicate,
    /// The key id is not one of the role's keys (unknown, or of another role): ignored.
    NotInRole,
    /// The key is in the role but the signature does not verify over this payload under this
    /// context (forged, corrupted, or made for another message type): ignored.
    BadSignature,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Counted => "counted",
            Outcome::Duplicate => "ignored: this key already signed",
            Outcome::NotInRole => "ignored: not a key of this role",
            Outcome::BadSignature => "ignored: signature does not verify",
        })
    }
}

/// One signature and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigVerdict {
    pub key: KeyId,
    pub outcome: Outcome,
}

/// The result of counting an envelope's signatures for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Role name: "root", "release", "control", "electorate".
    pub role: &'static str,
    /// What was signed: "manifest", "trust root", ...
    pub context: &'static str,
    pub threshold: u32,
    /// Distinct keys of the role with a valid signature.
    pub valid: u32,
    /// One verdict per signature, in envelope order.
    pub verdicts: Vec<SigVerdict>,
}

impl Tally {
    /// Whether the threshold is met.
    pub fn met(&self) -> bool {
        self.valid >= self.threshold
    }

    /// Key ids that counted.
    pub fn counted(&self) -> impl Iterator<Item = &KeyId> {
        self.verdicts
            .iter()
            .filter(|v| v.outcome == Outcome::Counted)
            .map(|v| &v.key)
    }

    /// `Ok(self)` when the threshold is met, else [`TrustError::SignatureThreshold`].
    pub fn require(self) -> Result<Tally, TrustError> {
        if self.met() {
            Ok(self)
        } else {
            Err(TrustError::SignatureThreshold {
                role: self.role,
                context: self.context,
                threshold: self.threshold,
                valid: self.valid,
                tally: Box::new(self),
            })
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} role: {} of {} required valid signature(s){}",
            self.role,
            self.valid,
            self.threshold,
            if self.met() {
                " — threshold met"
            } else {
                " — THRESHOLD NOT MET"
            }
        )?;
        if self.verdicts.is_empty() {
            writeln!(f, "  (no signatures)")?;
        }
        for v in &self.verdicts {
            writeln!(f, "  key {}: {}", v.key, v.outcome)?;
        }
        Ok(())
    }
}

/// Counts the distinct keys of `role` that validly signed `envelope`'s payload under
/// `context`. Every threshold decision in upswarm is made from this function's result.
///
/// - each key id of the role counts at most once, however many signatures it has;
/// - signatures by key ids outside the role are ignored, never counted;
/// - signatures are verified with `verify_strict` over `context.signing_message(payload)`,
///   i.e. over the exact bytes carried, never a re-serialisation.
pub fn count_signatures(
    role_name: &'static str,
    role: &Role,
    context: Context,
    envelope: &SignedEnvelope,
) -> Tally {
    let message = context.signing_message(&envelope.payload);
    let mut counted: BTreeSet<KeyId> = BTreeSet::new();
    let mut verdicts = Vec::with_capacity(envelope.sigs.len());
    for entry in &envelope.sigs {
        let outcome = if counted.contains(&entry.key) {
            Outcome::Duplicate
        } else {
            match role.keys.iter().find(|k| k.key_id() == entry.key) {
                None => Outcome::NotInRole,
                Some(pk) => {
                    let ok = VerifyingKey::from_bytes(&pk.0)
                        .and_then(|vk| {
                            vk.verify_strict(&message, &Signature::from_bytes(&entry.sig.0))
                        })
                        .is_ok();
                    if ok {
                        counted.insert(entry.key);
                        Outcome::Counted
                    } else {
                        Outcome::BadSignature
                    }
                }
            }
        };
        verdicts.push(SigVerdict {
            key: entry.key,
            outcome,
        });
    }
    Tally {
        role: role_name,
        context: context_name(context),
        threshold: role.threshold,
        valid: u32::try_from(counted.len()).unwrap_or(u32::MAX),
        verdicts,
    }
}

fn context_name(c: Context) -> &'static str {
    match c {
        Context::Root => "trust root",
        Context::Manifest => "manifest",
        Context::Control => "control message",
        Context::Proposal => "protocol proposal",
        Context::Vote => "vote",
        Context::Health => "health report",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    fn role(keys: &[&SecretKey], threshold: u32) -> Role {
        Role {
            keys: keys.iter().map(|k| k.public()).collect(),
            threshold,
        }
    }

    #[test]
    fn counts_distinct_valid_signatures_of_the_role_only() {
        let a = SecretKey::from_seed(&[1; 32]);
        let b = SecretKey::from_seed(&[2; 32]);
        let outsider = SecretKey::from_seed(&[3; 32]);
        let r = role(&[&a, &b], 2);
        let mut env = SignedEnvelope::unsigned(b"payload".to_vec());
        a.sign_envelope(Context::Manifest, &mut env);
        // Same key again, forced in (sign_envelope would refuse): counts once.
        env.sigs.push(a.sign(Context::Manifest, &env.payload));
        outsider.sign_envelope(Context::Manifest, &mut env);
        let t = count_signatures("release", &r, Context::Manifest, &env);
        assert_eq!(t.valid, 1);
        assert!(!t.met());
        assert_eq!(
            t.verdicts.iter().map(|v| v.outcome).collect::<Vec<_>>(),
            vec![Outcome::Counted, Outcome::Duplicate, Outcome::NotInRole]
        );
        b.sign_envelope(Context::Manifest, &mut env);
        assert!(count_signatures("release", &r, Context::Manifest, &env).met());
    }

    #[test]
    fn wrong_context_does_not_verify() {
        let a = SecretKey::from_seed(&[1; 32]);
        let r = role(&[&a], 1);
        let mut env = SignedEnvelope::unsigned(b"payload".to_vec());
        a.sign_envelope(Context::Manifest, &mut env);
        let t = count_signatures("root", &r, Context::Root, &env);
        assert_eq!(t.verdicts[0].outcome, Outcome::BadSignature);
        assert!(!t.met());
    }

    #[test]
    fn bad_then_good_signature_by_same_key_counts_once() {
        let a = SecretKey::from_seed(&[1; 32]);
        let r = role(&[&a], 1);
        let mut env = SignedEnvelope::unsigned(b"payload".to_vec());
        let mut forged = a.sign(Context::Manifest, &env.payload);
        forged.sig.0[0] ^= 1;
        env.sigs.push(forged);
        env.sigs.push(a.sign(Context::Manifest, &env.payload));
        let t = count_signatures("release", &r, Context::Manifest, &env);
        assert_eq!(t.valid, 1);
        assert_eq!(t.verdicts[0].outcome, Outcome::BadSignature);
        assert_eq!(t.verdicts[1].outcome, Outcome::Counted);
    }
}
