#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile inputs to the trust and wire-format layers, each asserted to fail with a
//! specific error.

use crate::common::*;
use upswarm_content::{ChunkStore, ContentError, chunk_file, verify_artifact};
use upswarm_proto::{
    Artifact, Context, Manifest, Message, ProtoError, SignedEnvelope, TrustRoot, UpdateType,
};
use upswarm_trust::{
    Outcome, RootChain, TimeCheck, TrustError, verify_manifest, verify_root, verify_rotation,
};

const T: TimeCheck = TimeCheck {
    now: NOW,
    skew: 300,
};

fn threshold_err(e: TrustError) -> (&'static str, u32, u32, Vec<Outcome>) {
    match e {
        TrustError::SignatureThreshold {
            role,
            threshold,
            valid,
            tally,
            ..
        } => (
            role,
            threshold,
            valid,
            tally.verdicts.iter().map(|v| v.outcome).collect(),
        ),
        other => panic!("expected a threshold error, got {other}"),
    }
}

fn root() -> TrustRoot {
    verify_root(&standard_root(), T).unwrap().0.root().clone()
}

#[test]
fn a_valid_release_verifies() {
    let m = manifest(UpdateType::Minor, FAR);
    let env = signed_manifest(&m, &[&key(10), &key(11)]);
    let v = verify_manifest(&root(), &env, T).unwrap();
    assert_eq!(v.tally.valid, 2);
    assert_eq!(v.release_id, env.payload_hash());
}

#[test]
fn signature_by_an_unknown_key_is_ignored() {
    let env = signed_manifest(&manifest(UpdateType::Minor, FAR), &[&key(10), &key(99)]);
    let (role, threshold, valid, outcomes) =
        threshold_err(verify_manifest(&root(), &env, T).unwrap_err());
    assert_eq!((role, threshold, valid), ("release", 2, 1));
    assert_eq!(outcomes, vec![Outcome::Counted, Outcome::NotInRole]);
}

#[test]
fn the_same_key_signing_twice_counts_once() {
    let m = manifest(UpdateType::Minor, FAR);
    let mut env = signed_manifest(&m, &[&key(10)]);
    // Bypass the idempotent signer: push the same key's signature again.
    env.sigs.push(key(10).sign(Context::Manifest, &env.payload));
    let (_, _, valid, outcomes) = threshold_err(verify_manifest(&root(), &env, T).unwrap_err());
    assert_eq!(valid, 1);
    assert_eq!(outcomes, vec![Outcome::Counted, Outcome::Duplicate]);
}

#[test]
fn a_key_of_another_role_is_not_counted() {
    // Root key 1 and control key 20 sign a manifest: neither is a release key.
    let env = signed_manifest(&manifest(UpdateType::Hotfix, FAR), &[&key(1), &key(20)]);
    let (_, threshold, valid, outcomes) =
        threshold_err(verify_manifest(&root(), &env, T).unwrap_err());
    assert_eq!((threshold, valid), (1, 0));
    assert_eq!(outcomes, vec![Outcome::NotInRole, Outcome::NotInRole]);
}

#[test]
fn per_type_thresholds_and_floor_apply() {
    let r = root();
    let one = signed_manifest(&manifest(UpdateType::Hotfix, FAR), &[&key(10)]);
    verify_manifest(&r, &one, T).unwrap();
    let two_major = signed_manifest(&manifest(UpdateType::Major, FAR), &[&key(10), &key(11)]);
    let (_, threshold, valid, _) = threshold_err(verify_manifest(&r, &two_major, T).unwrap_err());
    assert_eq!((threshold, valid), (3, 2));
    // A root whose floor is 2 lifts the hotfix threshold of 1 to 2... but a root that
    // *declares* a per-type threshold under its floor is refused outright.
    let mut roles = roles();
    roles.release.floor = 2;
    let env = signed_root(1, FAR, roles, &[&key(1), &key(2)]);
    assert!(matches!(
        verify_root(&env, T),
        Err(TrustError::Proto(ProtoError::InvalidField { .. }))
    ));
}

#[test]
fn a_manifest_signature_replayed_as_a_root_signature_does_not_verify() {
    // Root key 1 signs some payload as a *manifest*; an attacker copies that signature into
    // a root envelope over the same bytes.
    let r = TrustRoot {
        v: 1,
        version: 1,
        expires_at: FAR,
        roles: roles(),
    };
    let mut env = SignedEnvelope::wrap(&r);
    let mut replayed = key(1).sign(Context::Manifest, &env.payload);
    env.sigs.push(replayed.clone());
    key(2).sign_envelope(Context::Root, &mut env);
    let (role, _, valid, outcomes) = threshold_err(verify_root(&env, T).unwrap_err());
    assert_eq!((role, valid), ("root", 1));
    assert_eq!(outcomes, vec![Outcome::BadSignature, Outcome::Counted]);
    // And the other way round: a vote signature never counts on a manifest.
    let m = manifest(UpdateType::Hotfix, FAR);
    let mut menv = SignedEnvelope::wrap(&m);
    replayed = key(10).sign(Context::Vote, &menv.payload);
    menv.sigs.push(replayed);
    let (_, _, _, outcomes) = threshold_err(verify_manifest(&root(), &menv, T).unwrap_err());
    assert_eq!(outcomes, vec![Outcome::BadSignature]);
}

#[test]
fn an_expired_root_is_rejected() {
    let env = signed_root(1, NOW - 1000, roles(), &[&key(1), &key(2)]);
    match verify_root(&env, T) {
        Err(TrustError::Expired {
            what: "trust root",
            expired_at,
            ..
        }) => assert_eq!(expired_at, NOW - 1000),
        other => panic!("expected expiry, got {other:?}"),
    }
    // Within the clock-skew allowance it is still accepted.
    let env = signed_root(1, NOW - 100, roles(), &[&key(1), &key(2)]);
    verify_root(&env, T).unwrap();
    // And a manifest is not accepted under an expired root either.
    let expired_root = TrustRoot {
        v: 1,
        version: 1,
        expires_at: NOW - 1000,
        roles: roles(),
    };
    let menv = signed_manifest(&manifest(UpdateType::Hotfix, FAR), &[&key(10)]);
    assert!(matches!(
        verify_manifest(&expired_root, &menv, T),
        Err(TrustError::Expired {
            what: "trust root",
            ..
        })
    ));
}

#[test]
fn an_expired_manifest_is_rejected() {
    let mut m = manifest(UpdateType::Hotfix, NOW - 1000);
    m.created_at = NOW - 5000;
    let env = signed_manifest(&m, &[&key(10)]);
    assert!(matches!(
        verify_manifest(&root(), &env, T),
        Err(TrustError::Expired {
            what: "manifest",
            ..
        })
    ));
}

#[test]
fn root_versions_never_go_back() {
    let v1 = verify_root(&standard_root(), T).unwrap().0;
    let v2_env = signed_root(2, FAR, roles(), &[&key(1), &key(2)]);
    let mut chain = RootChain::new(v1.clone());
    chain.advance(&v2_env).unwrap();
    assert_eq!(chain.current().version(), 2);
    // Version 1 again (and version 2 again) is a rollback.
    let again = signed_root(1, FAR, roles(), &[&key(1), &key(2)]);
    assert!(matches!(
        chain.advance(&again),
        Err(TrustError::RootRollback { current: 2, got: 1 })
    ));
    assert!(matches!(
        chain.advance(&v2_env),
        Err(TrustError::RootRollback { current: 2, got: 2 })
    ));
    // Skipping a version is refused too.
    let v4 = signed_root(4, FAR, roles(), &[&key(1), &key(2)]);
    assert!(matches!(
        chain.advance(&v4),
        Err(TrustError::RootVersionGap { current: 2, got: 4 })
    ));
}

#[test]
fn a_rotation_signed_only_by_the_new_keys_is_rejected() {
    let v1 = verify_root(&standard_root(), T).unwrap().0;
    let mut new_roles = roles();
    new_roles.root.keys = vec![key(5).public(), key(6).public()];
    let only_new = signed_root(2, FAR, new_roles.clone(), &[&key(5), &key(6)]);
    let (role, threshold, valid, _) = threshold_err(verify_rotation(&v1, &only_new).unwrap_err());
    assert_eq!(
        (role, threshold, valid),
        ("root (of the previous root)", 2, 0)
    );
    // Only the old keys: the new root role has not accepted it.
    let only_old = signed_root(2, FAR, new_roles.clone(), &[&key(1), &key(2)]);
    let (role, _, valid, _) = threshold_err(verify_rotation(&v1, &only_old).unwrap_err());
    assert_eq!((role, valid), ("root (of the new root)", 0));
    // Both: accepted, and the chain rebuilds from stored envelopes.
    let both = signed_root(2, FAR, new_roles, &[&key(1), &key(2), &key(5), &key(6)]);
    verify_rotation(&v1, &both).unwrap();
    let chain = RootChain::from_envelopes(&[standard_root(), both]).unwrap();
    assert_eq!(chain.current().version(), 2);
}

#[test]
fn truncated_cbor_is_rejected() {
    let bytes = signed_manifest(&manifest(UpdateType::Hotfix, FAR), &[&key(10)]).encode();
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        let err = SignedEnvelope::decode::<Manifest>(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ProtoError::Malformed { .. }),
            "cut at {cut}: {err}"
        );
    }
    let payload = manifest(UpdateType::Hotfix, FAR).encode();
    let err = Manifest::decode(&payload[..payload.len() - 3]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn random_bytes_are_rejected() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(SignedEnvelope::decode::<Manifest>(&bytes).is_err());
    assert!(SignedEnvelope::decode::<TrustRoot>(&bytes).is_err());
    assert!(Manifest::decode(&bytes).is_err());
    assert!(TrustRoot::decode(&bytes).is_err());
}

#[test]
fn an_oversized_manifest_is_rejected_before_parsing() {
    let big = vec![0u8; upswarm_proto::manifest::MAX_MANIFEST_BYTES + 1];
    assert!(matches!(
        SignedEnvelope::decode::<Manifest>(&big),
        Err(ProtoError::TooLarge {
            what: "manifest",
            limit: 65536,
            ..
        })
    ));
}

#[test]
fn artifact_names_with_slashes_or_dots_are_rejected() {
    for bad in ["../../etc/passwd", "bin/node", "..", "a\\b"] {
        let mut m = manifest(UpdateType::Hotfix, FAR);
        m.artifacts[0].name = bad.into();
        // Even correctly signed, the manifest does not decode.
        let env = signed_manifest(&m, &[&key(10)]);
        let err = verify_manifest(&root(), &env, T).unwrap_err();
        assert!(
            matches!(
                err,
                TrustError::Proto(ProtoError::UnsafeArtifactName { .. })
            ),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn setuid_modes_and_absurd_chunk_counts_are_rejected() {
    let mut m = manifest(UpdateType::Hotfix, FAR);
    m.artifacts[0].mode = 0o4755;
    assert!(matches!(m.validate(), Err(ProtoError::InvalidField { .. })));
    let mut m = manifest(UpdateType::Hotfix, FAR);
    m.artifacts[0].size = u64::MAX;
    m.artifacts[0].chunk_size = 4096;
    let err = m.validate().unwrap_err();
    assert!(err.to_string().contains("chunks"), "{err}");
}

#[test]
fn a_chunk_whose_bytes_do_not_match_its_hash_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.bin");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    let store = ChunkStore::open(dir.path().join("chunks")).unwrap();
    let c = chunk_file(&src, 65536, &store).unwrap();
    let artifact = Artifact {
        name: "a.bin".into(),
        platform: "any".into(),
        size: c.size,
        mode: 0o644,
        hash: c.hash,
        chunk_size: 65536,
        chunk_index: c.index_hash,
        forms: None,
    };
    verify_artifact(&store, &artifact).unwrap();
    // Receiving: bytes that do not match the expected hash are never stored.
    let h = c.index.hash(0);
    let err = store.put_verified(&h, &[0u8; 65536]).unwrap_err();
    assert!(matches!(err, ContentError::HashMismatch { .. }), "{err}");
    // On disk: a tampered chunk is detected when read — reported by the read-only check,
    // removed (to be fetched again) by a read that uses it.
    std::fs::write(store.path_of(&h), [0u8; 65536]).unwrap();
    assert!(matches!(
        verify_artifact(&store, &artifact),
        Err(ContentError::Damaged { .. })
    ));
    assert!(store.contains(&h));
    assert!(matches!(
        store.get(&h, 65536),
        Err(ContentError::Corrupt { .. })
    ));
    assert!(!store.contains(&h));
}

/// A control message payload written by hand, field by field, so that it can be spelled in
/// ways a serializer would not.
fn control_map(action: &[u8], issued_at: u32, extra_after: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    // Five pairs, in canonical key order: v, action, reason, release, issued_at.
    p.push(0xa5);
    p.extend_from_slice(&[0x61, b'v', 0x01]);
    p.extend_from_slice(&[0x66]);
    p.extend_from_slice(b"action");
    p.extend_from_slice(action);
    p.extend_from_slice(extra_after);
    p.extend_from_slice(&[0x66]);
    p.extend_from_slice(b"reason");
    p.extend_from_slice(&[0x60]);
    p.extend_from_slice(&[0x67]);
    p.extend_from_slice(b"release");
    p.extend_from_slice(&[0x58, 0x20]);
    p.extend_from_slice(&[7u8; 32]);
    p.extend_from_slice(&[0x69]);
    p.extend_from_slice(b"issued_at");
    p.push(0x1a);
    p.extend_from_slice(&issued_at.to_be_bytes());
    p
}

fn signed_control(payload: Vec<u8>) -> SignedEnvelope {
    let mut env = SignedEnvelope::unsigned(payload);
    key(20).sign_envelope(Context::Control, &mut env);
    key(21).sign_envelope(Context::Control, &mut env);
    env
}

#[test]
fn an_undercounted_map_cannot_smuggle_an_advance() {
    use upswarm::daemon::rollout::verify_control;
    let root = root();
    // `action: "advance"` followed by a stray `{to_phase: 7}` inside a map whose header
    // counts five pairs: a lenient reader took this as advance(7); a standard one reads a
    // different map plus a trailing item. Both must refuse it.
    let mut stray = vec![0xa1, 0x68];
    stray.extend_from_slice(b"to_phase");
    stray.push(0x07);
    let mut action = vec![0x67];
    action.extend_from_slice(b"advance");
    let issued = NOW - 60;
    let env = signed_control(control_map(&action, issued as u32, &stray));
    let err = verify_control(&root, &env.encode(), T).unwrap_err();
    assert!(
        matches!(err, upswarm::daemon::rollout::CheckError::Malformed(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("control message"), "{err}");
    // The honest spelling of the same order is accepted.
    let mut msg = upswarm_proto::ControlMessage {
        v: 1,
        release: upswarm_proto::Hash32([7; 32]),
        action: upswarm_proto::ControlAction::Advance { to_phase: 7 },
        issued_at: issued,
        reason: String::new(),
    };
    let env = signed_control(msg.encode());
    let (_, got) = verify_control(&root, &env.encode(), T).unwrap();
    assert_eq!(got, msg);
    // A control message from the future (beyond the skew) or past year 9999 is refused:
    // otherwise one pause would outrank every later resume.
    msg.issued_at = NOW + 3600;
    let env = signed_control(msg.encode());
    let err = verify_control(&root, &env.encode(), T).unwrap_err();
    assert!(err.to_string().contains("in the future"), "{err}");
    msg.issued_at = u64::MAX;
    let env = signed_control(msg.encode());
    let err = verify_control(&root, &env.encode(), T).unwrap_err();
    assert!(err.to_string().contains("issued_at"), "{err}");
}

#[test]
fn every_non_canonical_spelling_of_a_signed_manifest_is_refused() {
    let m = manifest(UpdateType::Minor, FAR);
    let good = m.encode();
    assert!(Manifest::decode(&good).is_ok());
    // Each variant still holds "the same" manifest for a lenient reader.
    let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
    // Indefinite-length outer map.
    let mut v = good.clone();
    v[0] = 0xbf;
    v.push(0xff);
    variants.push(("indefinite", v));
    // A tag (epoch time) around the whole manifest.
    let mut v = vec![0xc1];
    v.extend_from_slice(&good);
    variants.push(("tag", v));
    // The `v` field's value 1 in a two-byte form.
    let mut v = good.clone();
    let at = v.windows(3).position(|w| w == [0x61, b'v', 0x01]).unwrap();
    v.splice(at + 2..at + 3, [0x18, 0x01]);
    variants.push(("shortest", v));
    // `null` of min_version spelled `undefined`.
    let mut v = good.clone();
    let key = b"\x6bmin_version";
    let at = v.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(v[at], 0xf6);
    v[at] = 0xf7;
    variants.push(("undefined", v));
    // The key `v` as a byte string.
    let mut v = good.clone();
    let at = v.windows(2).position(|w| w == [0x61, b'v']).unwrap();
    v[at] = 0x41;
    variants.push(("not a text string", v));
    for (needle, bytes) in variants {
        let err = Manifest::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        // The same inside a signed envelope, as it travels.
        let env = signed_manifest_bytes(bytes);
        let err = SignedEnvelope::decode::<Manifest>(&env.encode())
            .and_then(|e| e.open::<Manifest>())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

fn signed_manifest_bytes(payload: Vec<u8>) -> SignedEnvelope {
    let mut env = SignedEnvelope::unsigned(payload);
    key(10).sign_envelope(Context::Manifest, &mut env);
    key(11).sign_envelope(Context::Manifest, &mut env);
    env
}
