//! Signature checks for proposals and votes. Every count goes through
//! [`upswarm_trust::count_signatures`].
//!
//! Owns the signature checks of proposals and votes, and `sign_vote`. It must not decide a
//! proposal's state (`state` does) nor judge the trust root itself (the caller verifies it and its
//! expiry).

use upswarm_proto::activation::ACTIVATION_VERSION;
use upswarm_proto::{
    Context, Hash32, KeyId, Proposal, Role, SignedEnvelope, TrustRoot, UpdateType, Vote,
};
use upswarm_trust::{SecretKey, Tally, count_signatures};

use crate::ActivationError;

/// A proposal signed by the release role's threshold for [`UpdateType::Protocol`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProposal {
    /// Proposal id: blake3 of the payload bytes (independent of the signatures attached).
    pub id: Hash32,
    pub proposal: Proposal,
    pub envelope: SignedEnvelope,
    /// The release-role tally that met the threshold.
    pub tally: Tally,
}

/// A vote signed by its voter, an electorate key of the root it was checked against.
///
/// Whether it *counts* is decided by [`crate::evaluate`] against the electorate current at
/// evaluation time, so a vote verified under an older root is revoked by a rotation that
/// removes its voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifiedVote {
    /// Id of the proposal voted for.
    pub proposal: Hash32,
    /// Key id of the voter.
    pub voter: KeyId,
    /// Unix seconds the voter says it became ready (self-reported).
    pub at: u64,
}

/// Verifies a protocol proposal envelope: decodes and validates the [`Proposal`], then
/// requires the release role's threshold for [`UpdateType::Protocol`] under
/// [`Context::Proposal`].
///
/// The trust root's own validity (signatures, expiry) is the caller's business.
pub fn verify_proposal(
    root: &TrustRoot,
    env: &SignedEnvelope,
) -> Result<VerifiedProposal, ActivationError> {
    let proposal: Proposal = env.open()?;
    let role = root.roles.release.as_role(UpdateType::Protocol);
    let tally = count_signatures("release", &role, Context::Proposal, env)
        .require()
        .map_err(ActivationError::Threshold)?;
    Ok(VerifiedProposal {
        id: env.payload_hash(),
        proposal,
        envelope: env.clone(),
        tally,
    })
}

/// Verifies a vote envelope: decodes the [`Vote`], requires its `voter` to be in
/// `root.roles.electorate`, and requires a valid signature by that key under
/// [`Context::Vote`]. Signatures by other keys are ignored.
pub fn verify_vote(
    root: &TrustRoot,
    env: &SignedEnvelope,
) -> Result<VerifiedVote, ActivationError> {
    let vote: Vote = env.open()?;
    let key = vote.voter.key_id();
    if root.roles.electorate.weight_of(&key).is_none() {
        return Err(ActivationError::NotAVoter { key });
    }
    let role = Role {
        keys: vec![vote.voter],
        threshold: 1,
    };
    let tally = count_signatures("electorate", &role, Context::Vote, env);
    if !tally.met() {
        return Err(ActivationError::BadSignature {
            key,
            tally: Box::new(tally),
        });
    }
    Ok(VerifiedVote {
        proposal: vote.proposal,
        voter: key,
        at: vote.at,
    })
}

/// Builds and signs a READY vote by `key` for `proposal`, dated `at` (unix seconds).
pub fn sign_vote(key: &SecretKey, proposal: Hash32, at: u64) -> SignedEnvelope {
    let vote = Vote {
        v: ACTIVATION_VERSION,
        proposal,
        voter: key.public(),
        at,
    };
    let mut env = SignedEnvelope::wrap(&vote);
    key.sign_envelope(Context::Vote, &mut env);
    env
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use upswarm_proto::root::ROOT_VERSION;
    use upswarm_proto::{Electorate, ReleaseRole, Roles, Voter};
    use upswarm_trust::Outcome;

    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    /// Release keys 1, 2, 3 (protocol threshold 2); voters 10 (weight 3) and 11 (weight 1).
    fn root() -> TrustRoot {
        let mut types = BTreeMap::new();
        types.insert(UpdateType::Protocol, 2);
        TrustRoot {
            v: ROOT_VERSION,
            version: 1,
            expires_at: u64::MAX,
            roles: Roles {
                root: Role {
                    keys: vec![key(0).public()],
                    threshold: 1,
                },
                release: ReleaseRole {
                    keys: vec![key(1).public(), key(2).public(), key(3).public()],
                    threshold: 1,
                    floor: 1,
                    types,
                },
                control: None,
                electorate: Electorate {
                    voters: vec![
                        Voter {
                            key: key(10).public(),
                            weight: 3,
                        },
                        Voter {
                            key: key(11).public(),
                            weight: 1,
                        },
                    ],
                },
            },
        }
    }

    fn proposal() -> Proposal {
        Proposal {
            v: ACTIVATION_VERSION,
            protocol: "sync-v2".into(),
            description: "faster sync".into(),
            threshold_bp: 9000,
            start_at: 1000,
            lock_in_deadline: 2000,
            activation_delay_secs: 600,
            lock_in_on_timeout: false,
        }
    }

    fn signed_proposal(signers: &[u8]) -> SignedEnvelope {
        let mut env = SignedEnvelope::wrap(&proposal());
        for s in signers {
            key(*s).sign_envelope(Context::Proposal, &mut env);
        }
        env
    }

    #[test]
    fn proposal_with_threshold_verifies() {
        let env = signed_proposal(&[1, 3]);
        let vp = verify_proposal(&root(), &env).unwrap();
        assert_eq!(vp.id, env.payload_hash());
        assert_eq!(vp.proposal, proposal());
        assert_eq!(vp.tally.valid, 2);
        // The id does not depend on which signatures are attached.
        assert_eq!(vp.id, signed_proposal(&[2, 1]).payload_hash());
    }

    #[test]
    fn under_signed_proposal_is_rejected() {
        // One release key where the protocol threshold is 2; a voter key does not help.
        let env = signed_proposal(&[1, 10]);
        let err = verify_proposal(&root(), &env).unwrap_err();
        assert!(matches!(err, ActivationError::Threshold(_)), "{err}");
        let tally = err.tally().unwrap();
        assert_eq!((tally.valid, tally.threshold), (1, 2));
        assert!(err.to_string().contains("release"), "{err}");
    }

    #[test]
    fn proposal_signed_under_another_context_is_rejected() {
        let mut env = SignedEnvelope::wrap(&proposal());
        key(1).sign_envelope(Context::Manifest, &mut env);
        key(2).sign_envelope(Context::Manifest, &mut env);
        let err = verify_proposal(&root(), &env).unwrap_err();
        assert_eq!(err.tally().unwrap().valid, 0);
    }

    #[test]
    fn malformed_proposal_is_a_proto_error() {
        let env = SignedEnvelope::unsigned(b"not cbor".to_vec());
        assert!(matches!(
            verify_proposal(&root(), &env),
            Err(ActivationError::Proto(_))
        ));
    }

    #[test]
    fn good_vote_verifies() {
        let id = signed_proposal(&[1, 2]).payload_hash();
        let env = sign_vote(&key(10), id, 1234);
        let v = verify_vote(&root(), &env).unwrap();
        assert_eq!(
            v,
            VerifiedVote {
                proposal: id,
                voter: key(10).key_id(),
                at: 1234
            }
        );
        // It survives the wire.
        let back = SignedEnvelope::decode::<Vote>(&env.encode()).unwrap();
        assert_eq!(verify_vote(&root(), &back).unwrap(), v);
    }

    #[test]
    fn vote_by_non_voter_is_rejected() {
        let env = sign_vote(&key(1), Hash32([7; 32]), 1234);
        let err = verify_vote(&root(), &env).unwrap_err();
        match &err {
            ActivationError::NotAVoter { key: k } => assert_eq!(*k, key(1).key_id()),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("electorate"));
    }

    #[test]
    fn vote_signature_replayed_under_manifest_context_is_rejected() {
        let vote = Vote {
            v: ACTIVATION_VERSION,
            proposal: Hash32([7; 32]),
            voter: key(10).public(),
            at: 1234,
        };
        let mut env = SignedEnvelope::wrap(&vote);
        key(10).sign_envelope(Context::Manifest, &mut env);
        let err = verify_vote(&root(), &env).unwrap_err();
        match &err {
            ActivationError::BadSignature { key: k, tally } => {
                assert_eq!(*k, key(10).key_id());
                assert_eq!(tally.verdicts[0].outcome, Outcome::BadSignature);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn vote_signed_by_another_voter_is_rejected() {
        // Voter 11 signs a vote that claims to be by voter 10.
        let vote = Vote {
            v: ACTIVATION_VERSION,
            proposal: Hash32([7; 32]),
            voter: key(10).public(),
            at: 1234,
        };
        let mut env = SignedEnvelope::wrap(&vote);
        key(11).sign_envelope(Context::Vote, &mut env);
        let err = verify_vote(&root(), &env).unwrap_err();
        assert!(matches!(err, ActivationError::BadSignature { .. }), "{err}");
        assert_eq!(err.tally().unwrap().verdicts[0].outcome, Outcome::NotInRole);
    }

    #[test]
    fn unsigned_vote_is_rejected() {
        let mut env = sign_vote(&key(10), Hash32([7; 32]), 1234);
        env.sigs.clear();
        assert!(matches!(
            verify_vote(&root(), &env),
            Err(ActivationError::BadSignature { .. })
        ));
    }

    #[test]
    fn tampered_vote_time_is_rejected() {
        let env = sign_vote(&key(10), Hash32([7; 32]), 1234);
        let forged = Vote {
            v: ACTIVATION_VERSION,
            proposal: Hash32([7; 32]),
            voter: key(10).public(),
            at: 1000,
        };
        let mut tampered = SignedEnvelope::wrap(&forged);
        tampered.sigs = env.sigs.clone();
        assert!(matches!(
            verify_vote(&root(), &tampered),
            Err(ActivationError::BadSignature { .. })
        ));
    }
}
