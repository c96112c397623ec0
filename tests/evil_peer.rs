#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A hostile peer (`upswarm-evil-peer`, built on the project's own network crate) against
//! real daemons: `max_len` games, oversized / truncated / non-canonical frames, a flood of
//! invalid gossip, an old signed manifest replayed as a DHT record, corrupt chunks and
//! bogus bitmaps served to downloaders. Every honest node must complete with the right
//! bytes, nothing honest may be lost from disk, and the offender must be penalised.

use std::path::Path;
use std::time::Duration;

use crate::common::daemon::{Testnet, serial, wait_for};
use crate::common::evil::Evil;
use crate::common::upswarm;
use serde_json::Value;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The score the daemon's gossipsub gives `peer`, if connected.
fn score_of(status: &Value, peer: &str) -> Option<f64> {
    status["peer_scores"]
        .as_array()?
        .iter()
        .find(|e| e[0] == peer)
        .and_then(|e| e[1].as_f64())
}

fn banned(status: &Value, peer: &str) -> bool {
    status["banned"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e[0] == peer))
}

#[test]
fn a_hostile_peer_cannot_hurt_honest_nodes() {
    let _g = serial();
    let mut net = Testnet::new();
    let seed = net.spawn("seed", &[], "");
    let old = net.release("demo", "1.0.0", 300_000, &[]);
    // 23 chunks: enough that each fresh node asks the liar (who claims to hold everything)
    // for three or more of them, however quickly the honest sources answer.
    let new = net.release("demo", "1.1.0", 6_000_000, &[]);
    for dir in [&old, &new] {
        let (ok, out) = net.publish(seed, dir);
        assert!(ok, "{out}");
    }
    assert!(net.complete(seed, "1.1.0"));
    let seed_addr = net.daemons[seed].addr.clone();
    let seed_id = net.daemons[seed].peer_id.clone();
    let network = ["--network".to_string(), "test".to_string()];

    // 1. The older, validly signed manifest replayed as the channel's "latest" DHT record:
    // the seed refuses to store it over the newer one.
    let refused_before = net.daemons[seed].counter("dht_records_rejected");
    let mut replay = Evil::spawn(
        &[
            &network[..],
            &[
                "--bootstrap".into(),
                seed_addr.clone(),
                "--dht-put".into(),
                s(&old.join("manifest.cbor")),
                "--linger".into(),
                "0".into(),
            ],
        ]
        .concat(),
    );
    replay.wait_event("done", Duration::from_secs(60));
    assert_eq!(replay.events("dht_put").len(), 2, "{:#?}", replay.seen);
    drop(replay);
    assert!(
        wait_for(Duration::from_secs(10), || net.daemons[seed]
            .counter("dht_records_rejected")
            >= refused_before + 2),
        "the seed did not refuse the replayed records"
    );

    // 2. A peer that floods invalid gossip, plays max_len games, sends malformed frames, and
    // serves corrupt chunks and full bitmaps for everything.
    let rejected_before = net.daemons[seed].counter("gossip_rejected");
    let mut evil = Evil::spawn(
        &[
            &network[..],
            &[
                "--bootstrap".into(),
                seed_addr.clone(),
                "--release".into(),
                s(&old),
                "--release".into(),
                s(&new),
                "--serve".into(),
                "corrupt".into(),
                "--bitmap".into(),
                "full".into(),
                "--provide".into(),
                "--flood".into(),
                "8".into(),
                "--flood-pause".into(),
                "4".into(),
                "--probe".into(),
                seed_id.clone(),
            ],
        ]
        .concat(),
    );
    let ready = evil.wait_event("ready", Duration::from_secs(30));
    let evil_id = ready["peer_id"].as_str().unwrap().to_string();
    let evil_addr = ready["addr"].as_str().unwrap().to_string();
    evil.wait_event("done", Duration::from_secs(120));

    // max_len games: the small limits are refused, and every blob is still served after.
    let probe = evil.events("max_len_probe")[0].clone();
    assert!(probe["blobs"].as_u64().unwrap() > 8, "{probe}");
    assert_eq!(probe["still_served"], probe["blobs"], "{probe}");
    assert_eq!(
        probe["refused_small"].as_u64(),
        probe["blobs"].as_u64().map(|n| 2 * n),
        "{probe}"
    );
    // Malformed frames get no answer; the good request after them does.
    for raw in evil.events("raw") {
        let good = raw["case"] == "good";
        assert_eq!(raw["answered"], good, "{raw}");
    }
    assert_eq!(evil.events("raw").len(), 7);

    // The flood: the offender's score falls below the graylist threshold and the second
    // batch is ignored unread.
    let status = net.daemons[seed].status().unwrap();
    let score = score_of(&status, &evil_id).expect("the seed scores the evil peer");
    assert!(
        score < upswarm_net::GRAYLIST_THRESHOLD,
        "score {score} is not below the graylist threshold"
    );
    let rejected = net.daemons[seed].counter("gossip_rejected") - rejected_before;
    assert!(
        (4..=8).contains(&rejected),
        "the seed rejected {rejected} of 16 invalid messages; the second batch should be \
         ignored once graylisted"
    );

    // 3. Fresh nodes bootstrapped to the seed and to the evil peer learn the newest release
    // from the DHT (the replay did not stick), download it despite the lies, ban the liar.
    let f1 = net.spawn_at("f1", &[seed_addr.clone(), evil_addr.clone()], "", &[]);
    let f2 = net.spawn_at("f2", &[seed_addr.clone(), evil_addr.clone()], "", &[]);
    for f in [f1, f2] {
        assert!(
            wait_for(Duration::from_secs(90), || net.complete(f, "1.1.0")),
            "{} did not complete 1.1.0; log:\n{}",
            net.daemons[f].name,
            net.daemons[f].log()
        );
        let status = net.daemons[f].status().unwrap();
        assert!(
            banned(&status, &evil_id),
            "{} did not ban the evil peer: {status:#}",
            net.daemons[f].name
        );
        let id = net.release_view(f, "1.1.0").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let got = std::fs::read(
            net.daemons[f]
                .dir
                .join("data/releases")
                .join(id)
                .join("node"),
        )
        .unwrap();
        let want = std::fs::read(net.path().join("demo-1.1.0.bin")).unwrap();
        assert!(got == want, "assembled artifact differs from the release");
    }
    let served = evil.wait_event("serving", Duration::from_secs(10));
    assert!(served["served_blobs"].as_u64().unwrap() > 0, "{served}");

    // 4. Nothing honest was lost: the seed's copy of the release (the file its chunks are
    // served from) still verifies against the signed manifest.
    let check = net.path().join("seed-check");
    std::fs::create_dir_all(&check).unwrap();
    std::fs::copy(new.join("manifest.cbor"), check.join("manifest.cbor")).unwrap();
    let id = net.release_view(seed, "1.1.0").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::os::unix::fs::symlink(
        net.daemons[seed]
            .dir
            .join("data/releases")
            .join(id)
            .join("node"),
        check.join("node"),
    )
    .unwrap();
    let out = upswarm()
        .args(["release", "verify", "--root"])
        .arg(net.path().join("root.cbor"))
        .arg(check.join("manifest.cbor"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the seed's copy no longer verifies: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
