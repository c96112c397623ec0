//! The core's judgements on signed input, without I/O: given what the node knows and the
//! time, what a manifest or a signed message does to it. The actor ([`super::Core`]) stores,
//! flushes, gossips and answers; these functions only decide, so they are tested here
//! without processes, sockets or disks.

use upswarm_proto::fetch::SignedKind;
use upswarm_proto::{Hash32, Manifest, ProtoError, SignedEnvelope};
use upswarm_trust::{RootChain, TimeCheck, TrustError, VerifiedManifest, verify_manifest};

use super::super::admission::{self, Staleness};
use super::super::rollout::{Added, CheckError, RolloutBook, verify_control, verify_health};
use super::super::voting::{ALL_PROPOSALS, VoteCheckError, VotingBook};

/// Why a signed input was refused. The message says what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// Not a well-formed message of its kind.
    #[error(transparent)]
    Malformed(#[from] ProtoError),
    /// Well-formed, but the signatures, the trust chain or the clock refuse it.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// A proposal or vote that the activation rules refuse.
    #[error(transparent)]
    Activation(#[from] upswarm_activation::ActivationError),
    /// A control message while the trust root names no control role.
    #[error("the trust root has no control role")]
    NoControlRole,
    /// Valid, but older than a release already known (stale).
    #[error("{0}")]
    Stale(String),
}

impl From<CheckError> for Rejected {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Malformed(e) => Rejected::Malformed(e),
            CheckError::Untrusted(e) => Rejected::Untrusted(e),
            CheckError::NoControlRole => Rejected::NoControlRole,
        }
    }
}

impl From<VoteCheckError> for Rejected {
    fn from(e: VoteCheckError) -> Self {
        match e {
            VoteCheckError::Invalid(e) => Rejected::Activation(e),
            VoteCheckError::Untrusted(e) => Rejected::Untrusted(e),
        }
    }
}

/// The verdict on a release manifest.
#[derive(Debug)]
pub(super) enum ManifestVerdict {
    /// New and valid: to be admitted.
    Accept(Box<VerifiedManifest>),
    /// Already known, by release id.
    Duplicate(Hash32),
    /// Valid, but not news: another release of the same version is known. Dropped without
    /// penalty (see `admission`, rule 3).
    Superseded(String),
    /// Invalid, or older than what is known: the sender is at fault.
    Reject(Rejected),
}

/// Judges manifest `bytes` against the current root at `time`, given the releases known
/// (`is_known` by id, `known` for staleness).
pub(super) fn judge_manifest<'a>(
    chain: &RootChain,
    is_known: impl Fn(&Hash32) -> bool,
    known: impl Iterator<Item = &'a Manifest>,
    bytes: &[u8],
    time: TimeCheck,
) -> ManifestVerdict {
    let env = match SignedEnvelope::decode::<Manifest>(bytes) {
        Ok(e) => e,
        Err(e) => return ManifestVerdict::Reject(e.into()),
    };
    let id = env.payload_hash();
    if is_known(&id) {
        return ManifestVerdict::Duplicate(id);
    }
    let verified = match verify_manifest(chain.current().root(), &env, time) {
        Ok(v) => v,
        Err(e) => return ManifestVerdict::Reject(e.into()),
    };
    let m = &verified.manifest;
    match admission::staleness(m, known) {
        Staleness::Fresh => ManifestVerdict::Accept(Box::new(verified)),
        Staleness::Older { newest } => ManifestVerdict::Reject(Rejected::Stale(format!(
            "stale: {} {} is not newer than {newest} already known on channel {} for its \
             platforms",
            m.name, m.version, m.channel
        ))),
        Staleness::SameVersion { newest } => ManifestVerdict::Superseded(format!(
            "{} {} has the version of another release ({newest}) already known on channel {} \
             for its platforms",
            m.name, m.version, m.channel
        )),
    }
}

/// What an accepted signed message (health report, control message, root, proposal,
/// vote) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Judged {
    /// Valid and taken into the books: store it under `about` and spread it. `durable`: it
    /// changes what the node does (a rotation, a yank or halt, a proposal), so it must be on
    /// disk before anything acts on it or passes it on.
    Accept { about: Hash32, durable: bool },
    /// Valid and kept under `about`, but not spread yet (a vote for a proposal not known
    /// yet).
    Keep { about: Hash32 },
    /// Nothing to do: about a release not known here, or a root not newer than ours.
    Ignore,
}

/// The books a signed message may change.
pub(super) struct Books<'a> {
    pub(super) chain: &'a mut RootChain,
    pub(super) rollout: &'a mut RolloutBook,
    pub(super) voting: &'a mut VotingBook,
}

/// Judges a signed message of `kind` at `time` and takes it into `books` when valid;
/// `knows_release` says whether a health report's release is known here.
pub(super) fn judge_signed(
    books: Books<'_>,
    knows_release: impl Fn(&Hash32) -> bool,
    kind: SignedKind,
    bytes: &[u8],
    time: TimeCheck,
) -> Result<Judged, Rejected> {
    let accept = |about, durable| Ok(Judged::Accept { about, durable });
    match kind {
        SignedKind::Health => {
            let (_, r) = verify_health(bytes, time)?;
            if !knows_release(&r.release) {
                // About a release we do not know (yet): cannot judge it, do not spread it.
                return Ok(Judged::Ignore);
            }
            match books.rollout.add_health(&r) {
                // Valid, but beyond what the book keeps (a flood of reports): not stored,
                // not spread, and the peer that passed it on is not blamed.
                Added::Full => Ok(Judged::Ignore),
                Added::New | Added::Duplicate => accept(r.release, false),
            }
        }
        SignedKind::Control => {
            let (_, m) = verify_control(books.chain.current().root(), bytes, time)?;
            tracing::info!(release = %m.release, action = m.action.name(), "control message accepted");
            books.rollout.add_control(&m);
            accept(m.release, true)
        }
        SignedKind::Root => {
            let env = SignedEnvelope::decode::<upswarm_proto::TrustRoot>(bytes)?;
            let r = env.open::<upswarm_proto::TrustRoot>()?;
            if r.version <= books.chain.current().version() {
                return Ok(Judged::Ignore);
            }
            let v = books.chain.advance(&env)?;
            tracing::info!(version = v.version(), "trust root rotated");
            accept(ALL_PROPOSALS, true)
        }
        SignedKind::Proposal => {
            let root = books.chain.current().root().clone();
            let env = SignedEnvelope::decode::<upswarm_proto::Proposal>(bytes)?;
            books.voting.add_proposal(&root, &env)?;
            accept(ALL_PROPOSALS, true)
        }
        SignedKind::Vote => {
            let root = books.chain.current().root().clone();
            let env = SignedEnvelope::decode::<upswarm_proto::Vote>(bytes)?;
            match books.voting.add_vote(&root, &env, time)? {
                (proposal, true) => accept(proposal, false),
                (proposal, false) => Ok(Judged::Keep { about: proposal }),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use upswarm_proto::manifest::MANIFEST_VERSION;
    use upswarm_proto::{
        Artifact, Changelog, Context, ControlAction, ControlMessage, Electorate, HealthReport,
        HealthStatus, Message, Protocols, ReleaseRole, Role, Roles, TrustRoot, UpdateType,
    };
    use upswarm_trust::SecretKey;

    use super::*;

    pub(in crate::daemon::core) const NOW: u64 = 1_800_000_000;
    pub(in crate::daemon::core) const DAY: u64 = 86_400;

    fn time(now: u64) -> TimeCheck {
        TimeCheck { now, skew: 300 }
    }

    fn voter() -> SecretKey {
        SecretKey::from_seed(&[8; 32])
    }

    /// Two root keys, two release keys, two control keys; thresholds of 2.
    pub(in crate::daemon::core) struct Keys {
        root: Vec<SecretKey>,
        release: Vec<SecretKey>,
        pub(in crate::daemon::core) control: Vec<SecretKey>,
    }

    impl Keys {
        pub(in crate::daemon::core) fn new() -> Self {
            let k = |i: u8| SecretKey::from_seed(&[i; 32]);
            Keys {
                root: vec![k(1), k(2)],
                release: vec![k(3), k(4)],
                control: vec![k(5), k(6)],
            }
        }

        fn root(&self, version: u64, expires_at: u64) -> Vec<u8> {
            let role = |keys: &[SecretKey]| Role {
                keys: keys.iter().map(SecretKey::public).collect(),
                threshold: 2,
            };
            let tr = TrustRoot {
                v: 1,
                version,
                expires_at,
                roles: Roles {
                    root: role(&self.root),
                    release: ReleaseRole {
                        keys: self.release.iter().map(SecretKey::public).collect(),
                        threshold: 2,
                        floor: 1,
                        types: Default::default(),
                    },
                    control: Some(role(&self.control)),
                    electorate: Electorate {
                        voters: vec![upswarm_proto::Voter {
                            key: voter().public(),
                            weight: 1,
                        }],
                    },
                },
            };
            self.sign(&tr, Context::Root, &self.root)
        }

        pub(in crate::daemon::core) fn sign<M: Message>(
            &self,
            m: &M,
            ctx: Context,
            keys: &[SecretKey],
        ) -> Vec<u8> {
            let mut env = SignedEnvelope::wrap(m);
            for k in keys {
                k.sign_envelope(ctx, &mut env);
            }
            env.encode()
        }

        fn manifest(&self, version: &str, signers: usize) -> Vec<u8> {
            self.manifest_signed(version, None, NOW - DAY, signers)
        }

        /// A manifest of `version` with a rollout plan, created at `created_at`, signed by
        /// the release role's threshold.
        pub(in crate::daemon::core) fn manifest_with(
            &self,
            version: &str,
            rollout: Option<upswarm_proto::RolloutPlan>,
            created_at: u64,
        ) -> Vec<u8> {
            self.manifest_signed(version, rollout, created_at, 2)
        }

        fn manifest_signed(
            &self,
            version: &str,
            rollout: Option<upswarm_proto::RolloutPlan>,
            created_at: u64,
            signers: usize,
        ) -> Vec<u8> {
            let m = Manifest {
                v: MANIFEST_VERSION,
                name: "demo".into(),
                version: version.parse().unwrap(),
                channel: "stable".into(),
                update_type: UpdateType::Patch,
                security_critical: false,
                rollback: false,
                min_version: None,
                protocols: Protocols::default(),
                created_at,
                expires_at: NOW + DAY,
                changelog: Changelog::default(),
                rollout,
                mirrors: None,
                artifacts: vec![Artifact {
                    name: "app".into(),
                    platform: "any".into(),
                    size: 1,
                    mode: 0o755,
                    hash: Hash32([1; 32]),
                    chunk_size: 4096,
                    chunk_index: Hash32([2; 32]),
                    forms: None,
                }],
            };
            self.sign(&m, Context::Manifest, &self.release[..signers])
        }
    }

    /// What the node knows: a root chain, the books, the releases admitted.
    pub(in crate::daemon::core) struct Node {
        chain: RootChain,
        pub(in crate::daemon::core) rollout: RolloutBook,
        voting: VotingBook,
        releases: HashMap<Hash32, Manifest>,
    }

    impl Node {
        pub(in crate::daemon::core) fn new(keys: &Keys) -> Self {
            let env = SignedEnvelope::decode::<TrustRoot>(&keys.root(1, NOW + 30 * DAY)).unwrap();
            let (root, _) = upswarm_trust::verify_root_signatures(&env).unwrap();
            Node {
                chain: RootChain::new(root),
                rollout: RolloutBook::default(),
                voting: VotingBook::default(),
                releases: HashMap::new(),
            }
        }

        pub(in crate::daemon::core) fn manifest(
            &mut self,
            bytes: &[u8],
            now: u64,
        ) -> ManifestVerdict {
            let v = judge_manifest(
                &self.chain,
                |id| self.releases.contains_key(id),
                self.releases.values(),
                bytes,
                time(now),
            );
            if let ManifestVerdict::Accept(v) = &v {
                self.releases.insert(v.release_id, v.manifest.clone());
            }
            v
        }

        pub(in crate::daemon::core) fn signed(
            &mut self,
            kind: SignedKind,
            bytes: &[u8],
            now: u64,
        ) -> Result<Judged, Rejected> {
            let releases = &self.releases;
            judge_signed(
                Books {
                    chain: &mut self.chain,
                    rollout: &mut self.rollout,
                    voting: &mut self.voting,
                },
                |id| releases.contains_key(id),
                kind,
                bytes,
                time(now),
            )
        }
    }

    #[test]
    fn manifests_are_admitted_once_and_only_when_newer() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let v1 = keys.manifest("1.0.0", 2);
        let ManifestVerdict::Accept(first) = node.manifest(&v1, NOW) else {
            panic!("a valid manifest is accepted")
        };
        assert!(
            matches!(node.manifest(&v1, NOW), ManifestVerdict::Duplicate(id) if id == first.release_id)
        );
        let v2 = keys.manifest("1.1.0", 2);
        assert!(matches!(
            node.manifest(&v2, NOW),
            ManifestVerdict::Accept(_)
        ));
        // Older than what is known: refused as stale; the same version again (other bytes):
        // superseded, without blame.
        match node.manifest(&keys.manifest("1.0.5", 2), NOW) {
            ManifestVerdict::Reject(Rejected::Stale(why)) => {
                assert!(why.contains("stale"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let mut again = SignedEnvelope::decode::<Manifest>(&keys.manifest("1.1.0", 2)).unwrap();
        let mut m: Manifest = again.open().unwrap();
        m.created_at -= 1;
        again = SignedEnvelope::wrap(&m);
        for k in &keys.release {
            k.sign_envelope(Context::Manifest, &mut again);
        }
        assert!(matches!(
            node.manifest(&again.encode(), NOW),
            ManifestVerdict::Superseded(_)
        ));
    }

    #[test]
    fn manifests_below_the_threshold_or_out_of_time_are_rejected() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let one = keys.manifest("1.0.0", 1);
        assert!(matches!(
            node.manifest(&one, NOW),
            ManifestVerdict::Reject(Rejected::Untrusted(TrustError::SignatureThreshold {
                valid: 1,
                ..
            }))
        ));
        let two = keys.manifest("1.0.0", 2);
        // Past its expiry (plus the skew), and the clock is what was passed in.
        assert!(matches!(
            node.manifest(&two, NOW + 2 * DAY),
            ManifestVerdict::Reject(Rejected::Untrusted(TrustError::Expired { .. }))
        ));
        assert!(matches!(
            node.manifest(b"\xa0", NOW),
            ManifestVerdict::Reject(Rejected::Malformed(_))
        ));
        assert!(node.releases.is_empty(), "nothing refused is known");
    }

    #[test]
    fn roots_rotate_forward_only_and_durably() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        assert_eq!(
            node.signed(SignedKind::Root, &keys.root(1, NOW + DAY), NOW)
                .unwrap(),
            Judged::Ignore
        );
        assert!(matches!(
            node.signed(SignedKind::Root, &keys.root(3, NOW + DAY), NOW),
            Err(Rejected::Untrusted(TrustError::RootVersionGap {
                current: 1,
                got: 3
            }))
        ));
        assert_eq!(
            node.signed(SignedKind::Root, &keys.root(2, NOW + DAY), NOW)
                .unwrap(),
            Judged::Accept {
                about: ALL_PROPOSALS,
                durable: true
            }
        );
        assert_eq!(node.chain.current().version(), 2);
        // A root signed by one of two root keys does not rotate.
        let mut env = SignedEnvelope::decode::<TrustRoot>(&keys.root(3, NOW + DAY)).unwrap();
        env.sigs.truncate(1);
        assert!(matches!(
            node.signed(SignedKind::Root, &env.encode(), NOW),
            Err(Rejected::Untrusted(_))
        ));
        assert_eq!(node.chain.current().version(), 2);
    }

    #[test]
    fn a_yank_needs_the_control_threshold_and_is_durable() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let ManifestVerdict::Accept(v) = node.manifest(&keys.manifest("1.0.0", 2), NOW) else {
            panic!()
        };
        let id = v.release_id;
        let yank = ControlMessage {
            v: 1,
            release: id,
            action: ControlAction::Yank,
            issued_at: NOW,
            reason: "bad build".into(),
        };
        let one = keys.sign(&yank, Context::Control, &keys.control[..1]);
        assert!(node.signed(SignedKind::Control, &one, NOW).is_err());
        assert!(!node.rollout.yanked(&id));
        // Issued in the future (beyond the skew) at the time given: refused.
        let both = keys.sign(&yank, Context::Control, &keys.control);
        assert!(
            node.signed(SignedKind::Control, &both, NOW - 3_600)
                .is_err()
        );
        assert_eq!(
            node.signed(SignedKind::Control, &both, NOW).unwrap(),
            Judged::Accept {
                about: id,
                durable: true
            }
        );
        assert!(node.rollout.yanked(&id));
        assert_eq!(node.rollout.yank_reason(&id), Some("bad build"));
    }

    #[test]
    fn health_reports_about_unknown_releases_are_not_spread() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let reporter = SecretKey::from_seed(&[9; 32]);
        let report = |release| HealthReport {
            v: upswarm_proto::health::HEALTH_VERSION,
            node: reporter.public(),
            release,
            status: HealthStatus::Healthy,
            running: "1.0.0".parse().unwrap(),
            at: NOW,
            detail: String::new(),
        };
        let unknown = keys.sign(
            &report(Hash32([7; 32])),
            Context::Health,
            std::slice::from_ref(&reporter),
        );
        assert_eq!(
            node.signed(SignedKind::Health, &unknown, NOW).unwrap(),
            Judged::Ignore
        );
        let ManifestVerdict::Accept(v) = node.manifest(&keys.manifest("1.0.0", 2), NOW) else {
            panic!()
        };
        let known = keys.sign(
            &report(v.release_id),
            Context::Health,
            std::slice::from_ref(&reporter),
        );
        assert_eq!(
            node.signed(SignedKind::Health, &known, NOW).unwrap(),
            Judged::Accept {
                about: v.release_id,
                durable: false
            }
        );
        // Signed by another key than the node it names: refused.
        let forged = keys.sign(&report(v.release_id), Context::Health, &keys.control[..1]);
        assert!(matches!(
            node.signed(SignedKind::Health, &forged, NOW),
            Err(Rejected::Untrusted(TrustError::SignatureThreshold { .. }))
        ));
    }

    /// One node key signing report after report about a release: past the book's bound the
    /// reports are valid but ignored (not stored, not spread, nobody blamed).
    #[test]
    fn a_flood_of_reports_from_one_node_is_neither_kept_nor_spread() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let ManifestVerdict::Accept(v) = node.manifest(&keys.manifest("1.0.0", 2), NOW) else {
            panic!()
        };
        let flooder = SecretKey::from_seed(&[11; 32]);
        let judged: Vec<Judged> = (0..10u64)
            .map(|i| {
                let r = HealthReport {
                    v: upswarm_proto::health::HEALTH_VERSION,
                    node: flooder.public(),
                    release: v.release_id,
                    status: HealthStatus::Failed,
                    running: "1.0.0".parse().unwrap(),
                    at: NOW - i,
                    detail: String::new(),
                };
                let bytes = keys.sign(&r, Context::Health, std::slice::from_ref(&flooder));
                node.signed(SignedKind::Health, &bytes, NOW).unwrap()
            })
            .collect();
        let cap = crate::daemon::rollout::MAX_REPORTS_PER_NODE;
        assert!(
            judged[..cap]
                .iter()
                .all(|j| matches!(j, Judged::Accept { .. }))
        );
        assert!(
            judged[cap..].iter().all(|j| *j == Judged::Ignore),
            "{judged:?}"
        );
    }

    #[test]
    fn a_vote_before_its_proposal_is_kept_and_spread_only_after() {
        let keys = Keys::new();
        let mut node = Node::new(&keys);
        let proposal = upswarm_proto::Proposal {
            v: 1,
            protocol: "proto-v2".into(),
            description: String::new(),
            threshold_bp: 9_000,
            start_at: NOW - DAY,
            lock_in_deadline: NOW + DAY,
            activation_delay_secs: 3_600,
            lock_in_on_timeout: false,
        };
        let signed = keys.sign(&proposal, Context::Proposal, &keys.release);
        let id = SignedEnvelope::decode::<upswarm_proto::Proposal>(&signed)
            .unwrap()
            .payload_hash();
        let vote = |voter: &SecretKey| {
            let v = upswarm_proto::Vote {
                v: 1,
                proposal: id,
                voter: voter.public(),
                at: NOW,
            };
            keys.sign(&v, Context::Vote, std::slice::from_ref(voter))
        };
        assert_eq!(
            node.signed(SignedKind::Vote, &vote(&voter()), NOW).unwrap(),
            Judged::Keep { about: id }
        );
        // A key outside the electorate does not vote.
        assert!(
            node.signed(SignedKind::Vote, &vote(&keys.control[0]), NOW)
                .is_err()
        );
        // A proposal needs the release role's threshold.
        let one = keys.sign(&proposal, Context::Proposal, &keys.release[..1]);
        assert!(node.signed(SignedKind::Proposal, &one, NOW).is_err());
        assert_eq!(
            node.signed(SignedKind::Proposal, &signed, NOW).unwrap(),
            Judged::Accept {
                about: ALL_PROPOSALS,
                durable: true
            }
        );
        assert_eq!(
            node.signed(SignedKind::Vote, &vote(&voter()), NOW).unwrap(),
            Judged::Accept {
                about: id,
                durable: false
            }
        );
        assert!(node.voting.has_voted(&id, &voter().key_id()));
    }
}
