//! Replays the committed corpus through every target's body, without libFuzzer: a quick
//! check on the stable toolchain (`cd fuzz && cargo test`) that the seeds still run clean,
//! and the place for regression inputs found by fuzzing.

use std::fs;
use std::path::Path;

type Body = fn(&[u8]);
type Accepts = fn(&[u8]) -> bool;

const TARGETS: &[(&str, Body)] = &[
    ("envelope", upswarm_fuzz::envelope),
    ("manifest", upswarm_fuzz::message::<upswarm_proto::Manifest>),
    (
        "trust_root",
        upswarm_fuzz::message::<upswarm_proto::TrustRoot>,
    ),
    (
        "control",
        upswarm_fuzz::message::<upswarm_proto::ControlMessage>,
    ),
    (
        "health",
        upswarm_fuzz::message::<upswarm_proto::HealthReport>,
    ),
    ("proposal", upswarm_fuzz::message::<upswarm_proto::Proposal>),
    ("vote", upswarm_fuzz::message::<upswarm_proto::Vote>),
    ("chunk_index", upswarm_fuzz::chunk_index),
    ("fetch_request", upswarm_fuzz::fetch_request),
    ("fetch_response", upswarm_fuzz::fetch_response),
    ("canonical", upswarm_fuzz::canonical),
    ("roundtrip", upswarm_fuzz::roundtrip_all),
    ("verify", upswarm_fuzz::verify),
    ("key_file", upswarm_fuzz::key_file),
    ("zstd_form", upswarm_fuzz::zstd_form),
];

#[test]
fn every_target_has_a_corpus_and_runs_it_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, body) in TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let bytes = fs::read(&path).expect("corpus file");
            body(&bytes);
            n += 1;
        }
        assert!(n > 0, "no seeds for {name}");
    }
}

#[test]
fn committed_corpus_is_what_the_generator_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in upswarm_fuzz::seeds::all() {
        let path = root.join(target).join(&name);
        let on_disk = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == bytes,
            "{} is stale: run `cargo run --example seeds`",
            path.display()
        );
    }
}

#[test]
fn every_valid_seed_is_accepted() {
    // A seed named valid-* that its decoder refuses would make the fuzzer start from
    // nothing; check the generator's samples really are valid.
    use upswarm_proto::{
        ControlMessage, HealthReport, Manifest, Message, Proposal, TrustRoot, Vote,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let accept: &[(&str, Accepts)] = &[
        ("manifest", |b| Manifest::decode(b).is_ok()),
        ("trust_root", |b| TrustRoot::decode(b).is_ok()),
        ("control", |b| ControlMessage::decode(b).is_ok()),
        ("health", |b| HealthReport::decode(b).is_ok()),
        ("proposal", |b| Proposal::decode(b).is_ok()),
        ("vote", |b| Vote::decode(b).is_ok()),
        ("envelope", |b| {
            upswarm_proto::SignedEnvelope::decode_limited("envelope", b, 64 * 1024).is_ok()
        }),
        ("fetch_request", |b| {
            upswarm_proto::fetch::decode_framed_request(b).is_ok()
        }),
        ("fetch_response", |b| {
            upswarm_proto::fetch::decode_framed_response(b).is_ok()
        }),
        ("canonical", |b| {
            upswarm_proto::codec::check_canonical("seed", b).is_ok()
        }),
    ];
    for (target, ok) in accept {
        for entry in fs::read_dir(root.join(target)).expect("corpus dir") {
            let path = entry.expect("corpus entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let bytes = fs::read(&path).expect("corpus file");
            if name.starts_with("valid-") {
                assert!(ok(&bytes), "{target}/{name} is refused");
            } else if name.starts_with("hostile-") && *target != "canonical" {
                assert!(!ok(&bytes), "{target}/{name} is accepted");
            }
        }
    }
}
