//! Helpers shared by the integration tests: deterministic keys, roots and manifests, and the
//! path of the `upswarm` binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use upswarm_proto::manifest::MANIFEST_VERSION;
use upswarm_proto::root::ROOT_VERSION;
use upswarm_proto::{
    Artifact, Changelog, Context, Electorate, Hash32, Manifest, Protocols, ReleaseRole, Role,
    Roles, SignedEnvelope, TrustRoot, UpdateType, Voter,
};
use upswarm_trust::SecretKey;

pub mod daemon;
pub mod evil;
pub mod tls;

/// The `upswarm` binary built for this test run.
pub fn upswarm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_upswarm"))
}

/// A deterministic key: `key(1)`, `key(2)`, … are distinct.
pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A far-future expiry.
pub const FAR: u64 = 4_000_000_000;
/// "Now" for tests that do not use the system clock.
pub const NOW: u64 = 1_800_000_000;

/// Keys of the standard test root: root keys 1, 2 (2-of-2); release keys 10, 11, 12 (2-of-3,
/// hotfix 1, major 3); control keys 20, 21 (2-of-2); voters 30 (weight 3) and 31 (weight 1).
pub fn roles() -> Roles {
    let pk = |n| key(n).public();
    Roles {
        root: Role {
            keys: vec![pk(1), pk(2)],
            threshold: 2,
        },
        release: ReleaseRole {
            keys: vec![pk(10), pk(11), pk(12)],
            threshold: 2,
            floor: 1,
            types: [(UpdateType::Hotfix, 1), (UpdateType::Major, 3)]
                .into_iter()
                .collect(),
        },
        control: Some(Role {
            keys: vec![pk(20), pk(21)],
            threshold: 2,
        }),
        electorate: Electorate {
            voters: vec![
                Voter {
                    key: pk(30),
                    weight: 3,
                },
                Voter {
                    key: pk(31),
                    weight: 1,
                },
            ],
        },
    }
}

/// A root of `version` with `roles`, signed by `signers`.
pub fn signed_root(
    version: u64,
    expires_at: u64,
    roles: Roles,
    signers: &[&SecretKey],
) -> SignedEnvelope {
    let root = TrustRoot {
        v: ROOT_VERSION,
        version,
        expires_at,
        roles,
    };
    let mut env = SignedEnvelope::wrap(&root);
    for k in signers {
        k.sign_envelope(Context::Root, &mut env);
    }
    env
}

/// The standard root, version 1, signed by both root keys.
pub fn standard_root() -> SignedEnvelope {
    signed_root(1, FAR, roles(), &[&key(1), &key(2)])
}

/// A valid manifest of `ty` with one artifact.
pub fn manifest(ty: UpdateType, expires_at: u64) -> Manifest {
    Manifest {
        v: MANIFEST_VERSION,
        name: "demo".into(),
        version: semver::Version::new(1, 2, 3),
        channel: "stable".into(),
        update_type: ty,
        security_critical: false,
        rollback: false,
        min_version: None,
        protocols: Protocols::default(),
        created_at: NOW - 10,
        expires_at,
        changelog: Changelog::default(),
        rollout: None,
        mirrors: None,
        artifacts: vec![Artifact {
            name: "node".into(),
            platform: "any".into(),
            size: 10,
            mode: 0o755,
            hash: Hash32([1; 32]),
            chunk_size: 1 << 20,
            chunk_index: Hash32([2; 32]),
            forms: None,
        }],
    }
}

/// `manifest` wrapped and signed by `signers`.
pub fn signed_manifest(m: &Manifest, signers: &[&SecretKey]) -> SignedEnvelope {
    let mut env = SignedEnvelope::wrap(m);
    for k in signers {
        k.sign_envelope(Context::Manifest, &mut env);
    }
    env
}

/// Writes a key pair under `dir` and returns (secret path, public path).
pub fn write_key(dir: &Path, name: &str, n: u8) -> (PathBuf, PathBuf) {
    upswarm_trust::write_keypair(&dir.join(name), &key(n)).unwrap()
}
