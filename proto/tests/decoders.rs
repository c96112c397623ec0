#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: no input makes any decoder panic, and valid messages round-trip.

use proptest::prelude::*;
use upswarm_proto::manifest::MANIFEST_VERSION;
use upswarm_proto::{
    Artifact, Changelog, ChunkIndex, ControlAction, ControlMessage, Electorate, Hash32,
    HealthReport, HealthStatus, KeyId, Manifest, Message, Phase, Proposal, Protocols, PublicKey,
    ReleaseRole, Role, Roles, RolloutPlan, SignatureBytes, SignatureEntry, SignedEnvelope,
    TrustRoot, UpdateType, Vote, Voter,
};

fn sample_manifest() -> Manifest {
    Manifest {
        v: MANIFEST_VERSION,
        name: "demo".into(),
        version: semver::Version::new(1, 2, 3),
        channel: "stable".into(),
        update_type: UpdateType::Minor,
        security_critical: false,
        rollback: false,
        min_version: Some(semver::Version::new(1, 0, 0)),
        protocols: Protocols {
            provides: vec!["p2".into()],
            requires: vec![],
        },
        created_at: 1,
        expires_at: 2,
        changelog: Changelog {
            features: vec!["x".into()],
            fixes: vec![],
            security: vec![],
        },
        rollout: Some(RolloutPlan {
            phases: vec![
                Phase {
                    until_bp: 500,
                    min_soak_secs: 10,
                    max_failure_bp: 1000,
                    min_reports: 1,
                },
                Phase {
                    until_bp: 10_000,
                    min_soak_secs: 0,
                    max_failure_bp: 1000,
                    min_reports: 1,
                },
            ],
        }),
        mirrors: None,
        artifacts: vec![sample_artifact()],
    }
}

fn sample_artifact() -> Artifact {
    Artifact {
        name: "node".into(),
        platform: "linux-x86_64".into(),
        size: 3 * 65536 + 5,
        mode: 0o755,
        hash: Hash32([3; 32]),
        chunk_size: 65536,
        chunk_index: Hash32([4; 32]),
        forms: None,
    }
}

fn sample_root() -> TrustRoot {
    TrustRoot {
        v: 1,
        version: 1,
        expires_at: 10,
        roles: Roles {
            root: Role {
                keys: vec![PublicKey([1; 32])],
                threshold: 1,
            },
            release: ReleaseRole {
                keys: vec![PublicKey([2; 32]), PublicKey([3; 32])],
                threshold: 2,
                floor: 1,
                types: [(UpdateType::Hotfix, 1)].into_iter().collect(),
            },
            control: Some(Role {
                keys: vec![PublicKey([4; 32])],
                threshold: 1,
            }),
            electorate: Electorate {
                voters: vec![Voter {
                    key: PublicKey([5; 32]),
                    weight: 7,
                }],
            },
        },
    }
}

fn sample_envelope<M: Message>(m: &M) -> Vec<u8> {
    let mut env = SignedEnvelope::wrap(m);
    env.add_signature(SignatureEntry {
        key: KeyId([9; 32]),
        sig: SignatureBytes([8; 64]),
    });
    env.encode()
}

fn sample_index() -> Vec<u8> {
    let hashes: Vec<Hash32> = (0..4u8).map(|i| Hash32([i; 32])).collect();
    ChunkIndex::new(3 * 65536 + 5, 65536, &hashes).encode()
}

/// Runs every decoder on `bytes`; the only requirement is that none panics.
fn decode_all(bytes: &[u8]) {
    let _ = SignedEnvelope::decode::<Manifest>(bytes).map(|e| e.open::<Manifest>());
    let _ = SignedEnvelope::decode::<TrustRoot>(bytes).map(|e| e.open::<TrustRoot>());
    let _ = Manifest::decode(bytes);
    let _ = TrustRoot::decode(bytes);
    let _ = ChunkIndex::decode_for(bytes, &sample_artifact());
    let _ = SignedEnvelope::decode::<HealthReport>(bytes).map(|e| e.open::<HealthReport>());
    let _ = SignedEnvelope::decode::<ControlMessage>(bytes).map(|e| e.open::<ControlMessage>());
    let _ = SignedEnvelope::decode::<Proposal>(bytes).map(|e| e.open::<Proposal>());
    let _ = SignedEnvelope::decode::<Vote>(bytes).map(|e| e.open::<Vote>());
    let _ = HealthReport::decode(bytes);
    let _ = ControlMessage::decode(bytes);
    let _ = Proposal::decode(bytes);
    let _ = Vote::decode(bytes);
}

fn sample_health() -> HealthReport {
    HealthReport {
        v: 1,
        node: PublicKey([6; 32]),
        release: Hash32([7; 32]),
        status: HealthStatus::RolledBack,
        running: semver::Version::new(1, 0, 0),
        at: 5,
        detail: "probe failed".into(),
    }
}

fn sample_control() -> ControlMessage {
    ControlMessage {
        v: 1,
        release: Hash32([7; 32]),
        action: ControlAction::Advance { to_phase: 2 },
        issued_at: 9,
        reason: "canaries fine".into(),
    }
}

fn sample_proposal() -> Proposal {
    Proposal {
        v: 1,
        protocol: "proto-v2".into(),
        description: "new block format".into(),
        threshold_bp: 9000,
        start_at: 10,
        lock_in_deadline: 100,
        activation_delay_secs: 60,
        lock_in_on_timeout: false,
    }
}

fn sample_vote() -> Vote {
    Vote {
        v: 1,
        proposal: Hash32([8; 32]),
        voter: PublicKey([9; 32]),
        at: 11,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *m {
            Mutation::Flip(i, x) => bytes[i % n] ^= x,
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Insert(i, b) => bytes.insert(i % n, b),
            Mutation::Remove(i) => {
                bytes.remove(i % n);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(which in 0..9usize, muts in proptest::collection::vec(mutation(), 1..6)) {
        let base = match which {
            0 => sample_envelope(&sample_manifest()),
            1 => sample_envelope(&sample_root()),
            2 => sample_manifest().encode(),
            3 => sample_root().encode(),
            4 => sample_envelope(&sample_health()),
            5 => sample_envelope(&sample_control()),
            6 => sample_envelope(&sample_proposal()),
            7 => sample_envelope(&sample_vote()),
            _ => sample_index(),
        };
        decode_all(&mutate(base, &muts));
    }

    #[test]
    fn valid_manifests_round_trip(
        name in "[a-z][a-z0-9_-]{0,20}",
        major in 0u64..100, minor in 0u64..100,
        size in 0u64..(1 << 30),
        chunk_size in 4096u32..(1 << 24),
        mode in 0u32..0o777,
        features in proptest::collection::vec(".{0,40}", 0..4),
    ) {
        let mut m = sample_manifest();
        m.name = name;
        m.version = semver::Version::new(major, minor, 0);
        m.min_version = None;
        m.changelog.features = features;
        m.artifacts[0].size = size;
        m.artifacts[0].chunk_size = chunk_size;
        m.artifacts[0].mode = mode;
        m.validate().unwrap();
        let env = SignedEnvelope::decode::<Manifest>(&sample_envelope(&m)).unwrap();
        prop_assert_eq!(env.open::<Manifest>().unwrap(), m);
    }
}

#[test]
fn samples_are_valid() {
    SignedEnvelope::decode::<Manifest>(&sample_envelope(&sample_manifest()))
        .unwrap()
        .open::<Manifest>()
        .unwrap();
    SignedEnvelope::decode::<TrustRoot>(&sample_envelope(&sample_root()))
        .unwrap()
        .open::<TrustRoot>()
        .unwrap();
    ChunkIndex::decode_for(&sample_index(), &sample_artifact()).unwrap();
    SignedEnvelope::decode::<HealthReport>(&sample_envelope(&sample_health()))
        .unwrap()
        .open::<HealthReport>()
        .unwrap();
    SignedEnvelope::decode::<ControlMessage>(&sample_envelope(&sample_control()))
        .unwrap()
        .open::<ControlMessage>()
        .unwrap();
    SignedEnvelope::decode::<Proposal>(&sample_envelope(&sample_proposal()))
        .unwrap()
        .open::<Proposal>()
        .unwrap();
    SignedEnvelope::decode::<Vote>(&sample_envelope(&sample_vote()))
        .unwrap()
        .open::<Vote>()
        .unwrap();
}
