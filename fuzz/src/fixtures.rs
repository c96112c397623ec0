//! Fixed keys, a pinned trust root and one valid sample of every message, shared by the
//! targets (the `verify` target checks signatures against them) and by the seed generator.

use std::sync::OnceLock;

use upswarm_proto::activation::ACTIVATION_VERSION;
use upswarm_proto::control::CONTROL_VERSION;
use upswarm_proto::health::HEALTH_VERSION;
use upswarm_proto::manifest::MANIFEST_VERSION;
use upswarm_proto::root::ROOT_VERSION;
use upswarm_proto::{
    Artifact, Changelog, ChunkIndex, Context, ControlAction, ControlMessage, Electorate, Hash32,
    HealthReport, HealthStatus, Manifest, Message, Phase, Proposal, Protocols, ReleaseRole, Role,
    Roles, RolloutPlan, SignedEnvelope, TrustRoot, UpdateType, Vote, Voter,
};
use upswarm_trust::{SecretKey, TimeCheck, VerifiedRoot, verify_root_signatures};

/// The clock of the `verify` target: 2027-01-15. Fixtures are created before it and
/// expire after it, so that a fuzzed input is judged the same on every run.
pub const NOW: u64 = 1_800_000_000;
/// `created_at` / `issued_at` / `at` of the samples.
pub const CREATED: u64 = 1_790_000_000;
/// `expires_at` of the samples.
pub const EXPIRES: u64 = 1_900_000_000;

/// The fixed time check of the `verify` target.
pub fn time() -> TimeCheck {
    TimeCheck {
        now: NOW,
        skew: upswarm_trust::DEFAULT_SKEW_SECS,
    }
}

/// The keys of the fixture's roles (deterministic seeds).
#[derive(Debug)]
pub struct Keys {
    pub root: SecretKey,
    pub release_a: SecretKey,
    pub release_b: SecretKey,
    pub control: SecretKey,
    pub voter: SecretKey,
    pub node: SecretKey,
    /// In no role.
    pub outsider: SecretKey,
}

/// The fixture: keys and the pinned (version 1) trust root.
#[derive(Debug)]
pub struct Fixture {
    pub keys: Keys,
    pub root: TrustRoot,
    pub pinned: VerifiedRoot,
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = Keys {
            root: SecretKey::from_seed(&[1; 32]),
            release_a: SecretKey::from_seed(&[2; 32]),
            release_b: SecretKey::from_seed(&[3; 32]),
            control: SecretKey::from_seed(&[4; 32]),
            voter: SecretKey::from_seed(&[5; 32]),
            node: SecretKey::from_seed(&[6; 32]),
            outsider: SecretKey::from_seed(&[7; 32]),
        };
        let root = trust_root(&keys, 1);
        let env = sign(&root, &[&keys.root]);
        let (pinned, _) = verify_root_signatures(&env)
            .unwrap_or_else(|e| panic!("the fixture's trust root does not verify: {e}"));
        Fixture { keys, root, pinned }
    })
}

/// The fixture's trust root at `version` (the same roles in every version).
pub fn trust_root(keys: &Keys, version: u64) -> TrustRoot {
    TrustRoot {
        v: ROOT_VERSION,
        version,
        expires_at: EXPIRES,
        roles: Roles {
            root: Role {
                keys: vec![keys.root.public()],
                threshold: 1,
            },
            release: ReleaseRole {
                keys: vec![keys.release_a.public(), keys.release_b.public()],
                threshold: 2,
                floor: 1,
                types: [(UpdateType::Hotfix, 1), (UpdateType::Protocol, 2)]
                    .into_iter()
                    .collect(),
            },
            control: Some(Role {
                keys: vec![keys.control.public()],
                threshold: 1,
            }),
            electorate: Electorate {
                voters: vec![Voter {
                    key: keys.voter.public(),
                    weight: 3,
                }],
            },
        },
    }
}

/// `message` in an envelope signed by `signers` under its own context.
pub fn sign<M: Message>(message: &M, signers: &[&SecretKey]) -> SignedEnvelope {
    let mut env = SignedEnvelope::wrap(message);
    for k in signers {
        k.sign_envelope(M::CONTEXT, &mut env);
    }
    env
}

/// A four-chunk artifact (the last chunk short).
pub fn artifact() -> Artifact {
    let index = chunk_index();
    Artifact {
        name: "node-bin".into(),
        platform: "linux-x86_64".into(),
        size: index.size,
        mode: 0o755,
        hash: Hash32([3; 32]),
        chunk_size: index.chunk_size,
        chunk_index: Hash32::of(&index.encode()),
        forms: None,
    }
}

/// The chunk index of [`artifact`].
pub fn chunk_index() -> ChunkIndex {
    let hashes: Vec<Hash32> = (0..4u8).map(|i| Hash32([i + 10; 32])).collect();
    ChunkIndex::new(3 * 65_536 + 5, 65_536, &hashes)
}

/// A manifest with every optional part filled in.
pub fn manifest_full() -> Manifest {
    Manifest {
        v: MANIFEST_VERSION,
        name: "demo".into(),
        version: "1.2.3-rc.1+build.7"
            .parse()
            .unwrap_or_else(|e| panic!("fixture version: {e}")),
        channel: "stable".into(),
        update_type: UpdateType::Minor,
        security_critical: false,
        rollback: false,
        min_version: Some(semver::Version::new(1, 0, 0)),
        protocols: Protocols {
            provides: vec!["proto-v2".into()],
            requires: vec!["proto-v1".into()],
        },
        created_at: CREATED,
        expires_at: EXPIRES,
        changelog: Changelog {
            features: vec!["faster sync".into()],
            fixes: vec!["no crash on \u{e9}".into()],
            security: vec![],
        },
        rollout: Some(RolloutPlan {
            phases: vec![
                Phase {
                    until_bp: 500,
                    min_soak_secs: 600,
                    max_failure_bp: 1_000,
                    min_reports: 1,
                },
                Phase {
                    until_bp: 10_000,
                    min_soak_secs: 0,
                    max_failure_bp: 1_000,
                    min_reports: 1,
                },
            ],
        }),
        mirrors: None,
        artifacts: vec![artifact()],
    }
}

/// [`manifest_full`] in format version 2: two mirrors, a zstd form and a zstd-patch form.
pub fn manifest_v2() -> Manifest {
    use upswarm_proto::manifest::{Form, FormKind};
    let mut m = manifest_full();
    m.mirrors = Some(vec![
        "https://mirror.example/releases".into(),
        "http://10.0.0.1:8080/r".into(),
    ]);
    let form = |kind, base| Form {
        kind,
        base,
        size: 70_000,
        hash: Hash32([4; 32]),
        chunk_size: 65_536,
        chunk_index: Hash32([5; 32]),
    };
    m.artifacts[0].forms = Some(vec![
        form(FormKind::Zstd, None),
        form(FormKind::ZstdPatch, Some(Hash32([6; 32]))),
    ]);
    m.settle_version();
    m
}

/// A manifest with every optional part absent (hotfix: one release signature suffices).
pub fn manifest_minimal() -> Manifest {
    Manifest {
        v: MANIFEST_VERSION,
        name: "a".into(),
        version: semver::Version::new(0, 0, 1),
        channel: "beta".into(),
        update_type: UpdateType::Hotfix,
        security_critical: true,
        rollback: true,
        min_version: None,
        protocols: Protocols::default(),
        created_at: 0,
        expires_at: upswarm_proto::MAX_TIME,
        changelog: Changelog::default(),
        rollout: None,
        mirrors: None,
        artifacts: vec![Artifact {
            name: "x".into(),
            platform: "any".into(),
            size: 0,
            mode: 0,
            hash: Hash32([0; 32]),
            chunk_size: upswarm_proto::manifest::MIN_CHUNK_SIZE,
            chunk_index: Hash32([0; 32]),
            forms: None,
        }],
    }
}

/// One control message per action.
pub fn control_messages() -> Vec<ControlMessage> {
    [
        ControlAction::Pause,
        ControlAction::Resume,
        ControlAction::Abort,
        ControlAction::Advance { to_phase: 2 },
        ControlAction::Yank,
    ]
    .into_iter()
    .map(|action| ControlMessage {
        v: CONTROL_VERSION,
        release: Hash32([8; 32]),
        action,
        issued_at: CREATED,
        reason: format!("{} for the test", action.name()),
    })
    .collect()
}

/// One health report per status, by the fixture's node key.
pub fn health_reports(keys: &Keys) -> Vec<HealthReport> {
    [
        HealthStatus::Installed,
        HealthStatus::Healthy,
        HealthStatus::Failed,
        HealthStatus::RolledBack,
    ]
    .into_iter()
    .map(|status| HealthReport {
        v: HEALTH_VERSION,
        node: keys.node.public(),
        release: Hash32([8; 32]),
        status,
        running: semver::Version::new(1, 2, 3),
        at: CREATED,
        detail: if status.is_failure() {
            "probe failed".into()
        } else {
            String::new()
        },
    })
    .collect()
}

/// A protocol proposal.
pub fn proposal() -> Proposal {
    Proposal {
        v: ACTIVATION_VERSION,
        protocol: "proto-v2".into(),
        description: "new block format".into(),
        threshold_bp: 9_000,
        start_at: CREATED,
        lock_in_deadline: EXPIRES,
        activation_delay_secs: 3_600,
        lock_in_on_timeout: true,
    }
}

/// A vote by the fixture's voter for [`proposal`].
pub fn vote(keys: &Keys) -> Vote {
    Vote {
        v: ACTIVATION_VERSION,
        proposal: Hash32::of(&proposal().encode()),
        voter: keys.voter.public(),
        at: CREATED,
    }
}

/// The context's signature over `env`'s payload by `key`, added even when `key` already
/// signed (for duplicate-signature seeds).
pub fn push_signature(env: &mut SignedEnvelope, key: &SecretKey, context: Context) {
    env.sigs.push(key.sign(context, &env.payload));
}
