//! Phased rollout across real daemons: cohorts, gates, the network-wide halt, and signed
//! control messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use crate::common::daemon::{Testnet, free_port, managed_config, serial, version_served, wait_for};
use crate::common::evil::Evil;
use serde_json::Value;
use upswarm_proto::{Hash32, KeyId, Phase, RolloutPlan};

const FAST: &str = "[rollout]\nspread = \"2s\"\nresync_interval = \"2s\"\n";

pub(crate) struct Fleet {
    pub(crate) net: Testnet,
    pub(crate) nodes: Vec<usize>,
    pub(crate) ports: Vec<u16>,
}

/// A publisher and `n` managed nodes, all on demo 1.0.0 (a hotfix: one phase, everyone).
pub(crate) fn fleet(n: usize) -> Fleet {
    let mut net = Testnet::new();
    net.spawn("p", &[], FAST);
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let port = free_port();
        let boot = if i == 0 {
            vec![0]
        } else {
            vec![0, nodes[i - 1]]
        };
        nodes.push(net.spawn(&format!("n{i}"), &boot, &managed_config(port, "")));
        ports.push(port);
    }
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    let all = wait_for(Duration::from_secs(180), || {
        ports
            .iter()
            .all(|p| version_served(*p).as_deref() == Some("1.0.0"))
    });
    if !all {
        let lagging: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(_, p)| version_served(**p).as_deref() != Some("1.0.0"))
            .map(|(i, _)| {
                let d = &net.daemons[nodes[i]];
                format!("n{i}: {:?} {:?}", d.status(), d.history())
            })
            .collect();
        panic!("not every node got 1.0.0:\n{}", lagging.join("\n"));
    }
    Fleet { net, nodes, ports }
}

pub(crate) fn node_ids(f: &Fleet) -> Vec<KeyId> {
    f.nodes
        .iter()
        .map(|&i| {
            KeyId::from_hex(
                f.net.daemons[i].status().unwrap()["node_id"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect()
}

pub(crate) fn release_id(dir: &std::path::Path) -> Hash32 {
    let out = common::upswarm()
        .args(["release", "inspect", "--json"])
        .arg(dir.join("manifest.cbor"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Hash32::from_hex(v["release_id"].as_str().unwrap()).unwrap()
}

/// Creates `version` with a two-phase plan (canary 25 %, soak `soak`, halt above 20 %,
/// one report; then everyone), re-creating it until the canary cohort is neither empty nor
/// the whole fleet. Returns the release directory and each node's phase.
fn two_phase_release(
    f: &Fleet,
    version: &str,
    mode: &str,
    soak: &str,
) -> (std::path::PathBuf, Vec<usize>) {
    two_phase_release_with(f, version, mode, soak, "")
}

/// [`two_phase_release`] whose changelog also has the lines `changelog`.
pub(crate) fn two_phase_release_with(
    f: &Fleet,
    version: &str,
    mode: &str,
    soak: &str,
    changelog: &str,
) -> (std::path::PathBuf, Vec<usize>) {
    let extra = changelog;
    let ids = node_ids(f);
    let plan = RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 2500,
                min_soak_secs: 0,
                max_failure_bp: 2000,
                min_reports: 1,
            },
            Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp: 2000,
                min_reports: 1,
            },
        ],
    };
    for attempt in 0..20 {
        let dir = f.net.path().join(format!("rel-demo-{version}"));
        let _ = std::fs::remove_dir_all(&dir);
        let changelog = f.net.path().join("changes.md");
        std::fs::write(&changelog, format!("- attempt {attempt}\n{extra}")).unwrap();
        let phase0 = format!("25:{soak}:20:1");
        let dir = f.net.demo_release(
            version,
            mode,
            "minor",
            &[
                "--phase",
                &phase0,
                "--phase",
                "100",
                "--changelog",
                &changelog.to_string_lossy(),
            ],
        );
        let id = release_id(&dir);
        let cohorts = upswarm_rollout::Cohorts::new(&plan, &id, ids.iter().copied());
        let phases: Vec<usize> = ids.iter().map(|n| cohorts.phase(n)).collect();
        let canaries = phases.iter().filter(|p| **p == 0).count();
        if canaries >= 1 && canaries <= ids.len() / 2 {
            return (dir, phases);
        }
    }
    panic!("could not draw a usable canary cohort");
}

pub(crate) fn history_of(f: &Fleet, i: usize, version: &str) -> Vec<Value> {
    f.net.daemons[f.nodes[i]]
        .history()
        .into_iter()
        .filter(|e| e["to"] == version)
        .collect()
}

fn explain(f: &Fleet, i: usize, version: &str) -> Value {
    let (ok, out) = f.net.daemons[f.nodes[i]].cli(&["explain", version, "--json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn twenty_nodes_good_release_in_phases_then_bad_release_halts_at_the_canaries() {
    let _g = serial();
    let f = fleet(20);

    // Good release: everyone ends on it, nobody before their phase opened.
    let (good, phases) = two_phase_release(&f, "1.1.0", "healthy", "8s");
    assert!(f.net.publish(0, &good).0);
    // The new version serves before its health check passed; the apply is committed (and in
    // the history) only after that, so wait for both.
    let all = wait_for(Duration::from_secs(180), || {
        f.ports
            .iter()
            .all(|p| version_served(*p).as_deref() == Some("1.1.0"))
            && (0..f.ports.len()).all(|i| !history_of(&f, i, "1.1.0").is_empty())
    });
    assert!(all, "not everyone reached 1.1.0");
    // The manifest spread by gossip, not only through the slower DHT and resync paths.
    let by_gossip = f
        .nodes
        .iter()
        .filter(|&&n| {
            f.net
                .release_view(n, "1.1.0")
                .is_some_and(|r| r["source"] == "gossip")
        })
        .count();
    assert!(
        by_gossip >= 15,
        "only {by_gossip} of 20 nodes heard of 1.1.0 by gossip"
    );
    for (i, phase) in phases.iter().enumerate() {
        let h = history_of(&f, i, "1.1.0");
        assert_eq!(h.len(), 1, "node {i}: {h:?}");
        let started = h[0]["at"].as_u64().unwrap() * 1000 - h[0]["duration_ms"].as_u64().unwrap();
        let e = explain(&f, i, "1.1.0");
        let opened = e["rollout"]["evaluation"]["opened_at"][*phase]
            .as_u64()
            .expect("phase open");
        assert!(
            started / 1000 + 1 >= opened,
            "node {i} (phase {phase}) started at {started} ms, its phase opened at {opened}"
        );
        assert!(
            e["rollout"]["evaluation"]["out_of_cohort"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{e}"
        );
    }
    // Phase 1 opened only after the canaries' soak.
    let e = explain(&f, 0, "1.1.0");
    let opened = &e["rollout"]["evaluation"]["opened_at"];
    assert!(
        opened[1].as_u64().unwrap() >= opened[0].as_u64().unwrap() + 8,
        "{opened}"
    );

    // Bad release: only canaries install it, each rolls back, nobody else ever installs it.
    let (bad, phases) = two_phase_release(&f, "1.2.0", "unhealthy", "8s");
    let canaries: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] == 0).collect();
    let others: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] != 0).collect();
    assert!(f.net.publish(0, &bad).0);
    let rolled = wait_for(Duration::from_secs(120), || {
        canaries.iter().all(|&i| {
            history_of(&f, i, "1.2.0")
                .iter()
                .any(|e| e["outcome"] == "rolled_back")
        })
    });
    assert!(rolled, "canaries did not all roll back");
    // Well past the soak: later phases would have opened had the rollout not halted.
    std::thread::sleep(Duration::from_secs(14));
    for &i in &others {
        assert!(
            history_of(&f, i, "1.2.0").is_empty(),
            "node {i} of a later phase installed the bad release"
        );
        let e = explain(&f, i, "1.2.0");
        assert!(
            e["rollout"]["decision"]
                .as_str()
                .unwrap()
                .starts_with("never"),
            "{e}"
        );
    }
    for (i, port) in f.ports.iter().enumerate() {
        assert_eq!(version_served(*port).as_deref(), Some("1.1.0"), "node {i}");
    }
}

/// Creates `version` with the plan `--phase 10:6s:10:1 --phase 100` (a canary phase of
/// 10 %, 6 s soak, halt above 10 %, one report; then everyone), re-creating it until no
/// node's rank falls below 10 %: by rank alone the canary phase would be empty. Returns the
/// release directory and the index of the node that must be the canary (the lowest
/// ranked).
fn release_with_no_rank_in_the_canary_phase(
    f: &Fleet,
    version: &str,
    mode: &str,
) -> (std::path::PathBuf, usize) {
    let ids = node_ids(f);
    let plan = RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 1000,
                min_soak_secs: 6,
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
    };
    for attempt in 0..40 {
        let dir = f.net.path().join(format!("rel-demo-{version}"));
        let _ = std::fs::remove_dir_all(&dir);
        let changelog = f.net.path().join("changes.md");
        std::fs::write(&changelog, format!("- attempt {attempt}\n")).unwrap();
        let dir = f.net.demo_release(
            version,
            mode,
            "minor",
            &[
                "--phase",
                "10:6s:10:1",
                "--phase",
                "100",
                "--changelog",
                &changelog.to_string_lossy(),
            ],
        );
        let id = release_id(&dir);
        let by_rank = |n: &KeyId| upswarm_rollout::phase_of(&plan, upswarm_rollout::rank(&id, n));
        if ids.iter().all(|n| by_rank(n) == 1) {
            let cohorts = upswarm_rollout::Cohorts::new(&plan, &id, ids.iter().copied());
            assert_eq!(cohorts.sizes(), vec![1, ids.len() - 1]);
            let first = cohorts.placements().next().unwrap().node;
            let canary = ids.iter().position(|n| *n == first).unwrap();
            return (dir, canary);
        }
    }
    panic!("could not draw a release that ranks every node after 10 %");
}

/// The small fleet: three nodes, a canary phase whose share no node's rank falls
/// in. The lowest-ranked node is the canary all the same: a good release reaches it first
/// and the others only after its report; a broken one never goes past it.
#[test]
fn three_nodes_get_a_canary_and_a_broken_release_never_passes_it() {
    let _g = serial();
    let f = fleet(3);
    // Everyone has heard everyone's 1.0.0 report: they all draw the same cohorts.
    let known = wait_for(Duration::from_secs(60), || {
        (0..3).all(|i| explain(&f, i, "1.0.0")["known_nodes"] == 3)
    });
    assert!(known, "{}", explain(&f, 0, "1.0.0"));

    // A good release: the canary first, the others after its report and the soak.
    let (good, canary) = release_with_no_rank_in_the_canary_phase(&f, "1.1.0", "healthy");
    assert!(f.net.publish(0, &good).0);
    let all = wait_for(Duration::from_secs(180), || {
        f.ports
            .iter()
            .all(|p| version_served(*p).as_deref() == Some("1.1.0"))
            && (0..3).all(|i| !history_of(&f, i, "1.1.0").is_empty())
    });
    assert!(all, "not everyone reached 1.1.0");
    for i in 0..3 {
        let e = explain(&f, i, "1.1.0");
        let r = &e["rollout"];
        let ev = &r["evaluation"];
        assert_eq!(r["phase"], if i == canary { 0 } else { 1 }, "{e}");
        assert_eq!(r["rank_phase"], 1, "{e}");
        assert_eq!(ev["stats"][0]["known_nodes"], 1, "{e}");
        assert_eq!(ev["stats"][1]["known_nodes"], 2, "{e}");
        assert_eq!(ev["stats"][0]["reports"], 1, "the canary's report: {e}");
        assert!(ev["out_of_cohort"].as_array().unwrap().is_empty(), "{e}");
        let opened = &ev["opened_at"];
        let (o0, o1) = (opened[0].as_u64().unwrap(), opened[1].as_u64().unwrap());
        assert!(o1 >= o0 + 6, "phase 1 opened before the soak ended: {e}");
        assert!(
            ev["stats"][0]["quorum_at"].as_u64().unwrap() <= o1,
            "phase 1 opened before the canary's report: {e}"
        );
        if i == canary {
            assert!(
                r["cohort"]
                    .as_str()
                    .unwrap()
                    .contains("promoted from phase 1"),
                "{e}"
            );
            let (ok, text) = f.net.daemons[f.nodes[i]].cli(&["explain", "1.1.0"]);
            assert!(ok, "{text}");
            assert!(
                text.contains("phase 0, promoted from phase 1 (10 %–100 % of nodes): node 1 of 3 known in install order"),
                "{text}"
            );
        } else {
            let h = history_of(&f, i, "1.1.0");
            let started =
                h[0]["at"].as_u64().unwrap() * 1000 - h[0]["duration_ms"].as_u64().unwrap();
            assert!(
                started / 1000 + 1 >= o1,
                "node {i} started at {started} ms, before phase 1 opened at {o1}"
            );
        }
    }

    // A broken release: the canary installs it and rolls back; nobody else ever installs it.
    let (bad, canary) = release_with_no_rank_in_the_canary_phase(&f, "1.2.0", "unhealthy");
    let others: Vec<usize> = (0..3).filter(|i| *i != canary).collect();
    assert!(f.net.publish(0, &bad).0);
    let rolled = wait_for(Duration::from_secs(120), || {
        history_of(&f, canary, "1.2.0")
            .iter()
            .any(|e| e["outcome"] == "rolled_back")
    });
    assert!(
        rolled,
        "the canary did not roll back: {:?}",
        history_of(&f, canary, "1.2.0")
    );
    let halted = wait_for(Duration::from_secs(60), || {
        others.iter().all(|&i| {
            explain(&f, i, "1.2.0")["rollout"]["decision"]
                .as_str()
                .unwrap()
                .starts_with("never")
        })
    });
    assert!(halted, "{}", explain(&f, others[0], "1.2.0"));
    // Well past the soak: phase 1 would have opened had the rollout not halted.
    std::thread::sleep(Duration::from_secs(12));
    for &i in &others {
        assert!(
            history_of(&f, i, "1.2.0").is_empty(),
            "node {i} installed the broken release"
        );
        let e = explain(&f, i, "1.2.0");
        assert_eq!(e["rollout"]["evaluation"]["open"], 1, "{e}");
        assert_eq!(
            e["rollout"]["evaluation"]["halted"]["reason"], "failures",
            "{e}"
        );
        assert_eq!(e["rollout"]["evaluation"]["halted"]["phase"], 0, "{e}");
    }
    for (i, port) in f.ports.iter().enumerate() {
        assert_eq!(version_served(*port).as_deref(), Some("1.1.0"), "node {i}");
    }
}

#[test]
fn pause_resume_yank_and_undersigned_control_messages() {
    let _g = serial();
    let f = fleet(6);
    let (rel, phases) = two_phase_release(&f, "1.1.0", "healthy", "6s");
    let id = release_id(&rel).to_hex();
    let later: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] != 0).collect();
    let canaries: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] == 0).collect();
    let c20 = f.net.path().join("c20.key");
    let c21 = f.net.path().join("c21.key");
    let (c20, c21) = (
        c20.to_string_lossy().into_owned(),
        c21.to_string_lossy().into_owned(),
    );
    let p = &f.net.daemons[0];

    // One of two control signatures: refused by the daemon.
    let (ok, out) = p.cli(&["control", "pause", &id, "--key", &c20]);
    assert!(!ok && out.contains("needs 2 valid signature(s)"), "{out}");

    // Paused before publication: nobody installs.
    let (ok, out) = p.cli(&[
        "control", "pause", &id, "--key", &c20, "--key", &c21, "--reason", "test",
    ]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(f.net.publish(0, &rel).0);
    assert!(wait_for(Duration::from_secs(60), || f
        .nodes
        .iter()
        .all(|&i| f.net.complete(i, "1.1.0"))));
    std::thread::sleep(Duration::from_secs(10));
    for (i, port) in f.ports.iter().enumerate() {
        assert_eq!(
            version_served(*port).as_deref(),
            Some("1.0.0"),
            "node {i} installed while paused"
        );
    }
    let e = explain(&f, later[0], "1.1.0");
    assert!(
        e["rollout"]["decision"]
            .as_str()
            .unwrap()
            .contains("paused"),
        "{e}"
    );

    // Resumed: the rollout proceeds to everyone.
    std::thread::sleep(Duration::from_secs(1));
    let (ok, out) = p.cli(&["control", "resume", &id, "--key", &c20, "--key", &c21]);
    assert!(ok, "{out}");
    let all = wait_for(Duration::from_secs(120), || {
        f.ports
            .iter()
            .all(|p| version_served(*p).as_deref() == Some("1.1.0"))
    });
    assert!(all, "resume did not complete the rollout");
    let _ = canaries;

    // Co-signed offline, then published: yank rolls everyone back.
    let file = f.net.path().join("yank.cbor");
    let (ok, out) = p.cli(&[
        "control",
        "yank",
        &id,
        "--key",
        &c20,
        "--out",
        &file.to_string_lossy(),
    ]);
    assert!(ok, "{out}");
    let out = common::upswarm()
        .args(["control", "sign", "--key", &c21])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (ok, out) = f.net.daemons[f.nodes[0]].cli(&["control", "publish", &file.to_string_lossy()]);
    assert!(ok, "{out}");
    let back = wait_for(Duration::from_secs(120), || {
        f.ports
            .iter()
            .all(|p| version_served(*p).as_deref() == Some("1.0.0"))
    });
    assert!(back, "yank did not roll everyone back");

    // An under-signed control message gossiped by a misbehaving node is rejected by its
    // peers and not stored.
    let under = f.net.path().join("advance-undersigned.cbor");
    let (ok, out) = p.cli(&[
        "control",
        "advance",
        &id,
        "--to-phase",
        "1",
        "--key",
        &c20,
        "--out",
        &under.to_string_lossy(),
    ]);
    assert!(ok, "{out}");
    let before: u64 = f
        .nodes
        .iter()
        .map(|&i| f.net.daemons[i].counter("gossip_rejected"))
        .sum();
    let addr = f.net.daemons[f.nodes[0]].addr.clone();
    let (mut evil, _, _) = Evil::start(&[&addr], &["--gossip-control", &under.to_string_lossy()]);
    let gossip = evil.wait_event("gossip", Duration::from_secs(30));
    assert!(
        gossip["result"].as_str().unwrap_or("").starts_with("Ok"),
        "{gossip}"
    );
    let rejected = wait_for(Duration::from_secs(20), || {
        f.nodes
            .iter()
            .map(|&i| f.net.daemons[i].counter("gossip_rejected"))
            .sum::<u64>()
            > before
    });
    assert!(rejected, "nobody rejected the under-signed control message");
}
