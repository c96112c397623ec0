//! Protocol activation across real daemons: readiness votes from upgraded nodes, lock-in,
//! the same activation time everywhere, convergence after a partition heals, and the managed
//! program learning the activation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use crate::common::daemon::{Testnet, free_port, http_get, managed_config, serial, wait_for};
use crate::common::{key, roles};
use serde_json::Value;
use upswarm_proto::{Electorate, Voter};

const FAST: &str = "[rollout]\nspread = \"1s\"\nresync_interval = \"2s\"\n";

fn activations(net: &Testnet, i: usize) -> Vec<Value> {
    let (ok, out) = net.daemons[i].cli(&["activations", "--json"]);
    if !ok {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn proposal_state(net: &Testnet, i: usize) -> Option<(String, Option<u64>)> {
    activations(net, i).first().map(|a| {
        (
            a["state"].as_str().unwrap_or("").to_string(),
            a["activation_at"].as_u64(),
        )
    })
}

#[test]
fn votes_lock_in_a_proposal_with_one_activation_time_even_across_a_healed_partition() {
    let _g = serial();
    // 20 voters; node i votes with key 100 + i, weight 1 + i % 3 (total 39).
    let n = 20usize;
    let mut r = roles();
    r.electorate = Electorate {
        voters: (0..n)
            .map(|i| Voter {
                key: key(100 + i as u8).public(),
                weight: 1 + (i % 3) as u64,
            })
            .collect(),
    };
    let mut net = Testnet::with_roles(r);
    for i in 0..n {
        upswarm_trust::write_keypair(&net.path().join(format!("v{i}")), &key(100 + i as u8))
            .unwrap();
    }
    // Two sides that cannot reach each other: each with its own publisher.
    let side_a = net.spawn("pa", &[], FAST);
    let side_b = net.spawn("pb", &[], FAST);
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let publisher = if i < n / 2 { side_a } else { side_b };
        let boot = if i == 0 || i == n / 2 {
            vec![publisher]
        } else {
            vec![publisher, nodes[i - 1]]
        };
        let port = free_port();
        let extra = format!(
            "{}[voting]\nvoter_key = \"../v{i}.key\"\n",
            managed_config(port, "")
        );
        nodes.push(net.spawn(&format!("n{i}"), &boot, &extra));
        ports.push(port);
    }
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    for p in [side_a, side_b] {
        assert!(net.publish(p, &v1).0);
    }
    let served =
        |port: u16, v: &str| http_get(port, "/version").is_some_and(|(c, b)| c == 200 && b == v);
    assert!(
        wait_for(Duration::from_secs(180), || ports
            .iter()
            .all(|p| served(*p, "1.0.0"))),
        "1.0.0 not everywhere"
    );

    // The proposal: proto-v2 at 75 % of the weight; neither side alone has it.
    let file = net.path().join("proposal.cbor");
    let out = common::upswarm()
        .args([
            "proposal",
            "create",
            "--protocol",
            "proto-v2",
            "--threshold",
            "75%",
            "--deadline-in",
            "1h",
        ])
        .args(["--activation-delay", "20s", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in ["s10.key", "s11.key"] {
        let out = common::upswarm()
            .args(["proposal", "sign", "--key"])
            .arg(net.path().join(k))
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    for p in [side_a, side_b] {
        let (ok, out) = net.daemons[p].cli(&["proposal", "publish", &file.to_string_lossy()]);
        assert!(ok, "{out}");
    }
    // Nobody is ready: 1.0.0 does not provide proto-v2.
    std::thread::sleep(Duration::from_secs(4));
    for &i in &nodes {
        let a = activations(&net, i);
        assert_eq!(a.len(), 1, "node {i} does not know the proposal: {a:?}");
        assert_eq!(a[0]["state"], "STARTED");
        assert_eq!(a[0]["voted"], false);
    }

    // 1.1.0 provides proto-v2: nodes upgrade, become ready, vote. Each side reaches only
    // about half the weight.
    let v2 = net.demo_release("1.1.0", "healthy", "hotfix", &["--provides", "proto-v2"]);
    for p in [side_a, side_b] {
        assert!(net.publish(p, &v2).0);
    }
    let voted = wait_for(Duration::from_secs(180), || {
        nodes.iter().all(|&i| {
            activations(&net, i)
                .first()
                .is_some_and(|a| a["voted"] == true)
        })
    });
    assert!(voted, "not every node voted");
    std::thread::sleep(Duration::from_secs(5));
    for &i in &nodes {
        let (state, _) = proposal_state(&net, i).unwrap();
        assert_eq!(
            state, "STARTED",
            "node {i} locked in with only its side's votes"
        );
    }

    // Heal the partition: the sides exchange votes and agree on one activation time.
    let (ok, out) = net.daemons[side_a].cli(&["peer", "add", &net.daemons[side_b].addr]);
    assert!(ok, "{out}");
    let converged = wait_for(Duration::from_secs(90), || {
        let states: Vec<Option<(String, Option<u64>)>> =
            nodes.iter().map(|&i| proposal_state(&net, i)).collect();
        states.iter().all(|s| {
            s.as_ref()
                .is_some_and(|(st, at)| (st == "LOCKED_IN" || st == "ACTIVE") && at.is_some())
        }) && states
            .windows(2)
            .all(|w| w[0].as_ref().map(|s| s.1) == w[1].as_ref().map(|s| s.1))
    });
    assert!(
        converged,
        "no common lock-in: {:?}",
        nodes
            .iter()
            .map(|&i| proposal_state(&net, i))
            .collect::<Vec<_>>()
    );
    let at = proposal_state(&net, nodes[0]).unwrap().1.unwrap();
    // The managed program sees the activation through the file (served by the demo app).
    let active = wait_for(Duration::from_secs(60), || {
        ports.iter().all(|p| {
            http_get(*p, "/activations").is_some_and(|(c, body)| {
                c == 200
                    && serde_json::from_str::<Value>(&body)
                        .is_ok_and(|v| v[0]["state"] == "ACTIVE" && v[0]["activation_at"] == at)
            })
        })
    });
    assert!(active, "the demo programs did not all see ACTIVE at {at}");
    for &i in &nodes {
        let s = net.daemons[i].status().unwrap();
        assert!(s["alarms"].as_array().unwrap().is_empty(), "{s}");
    }
}

#[test]
fn an_active_protocol_the_software_lacks_raises_the_upgrade_alarm() {
    let _g = serial();
    // One voter with all the weight, on a node that runs the new software; a second node
    // (not a voter) stays on 1.0.0 by pinning.
    let mut r = roles();
    r.electorate = Electorate {
        voters: vec![Voter {
            key: key(100).public(),
            weight: 1,
        }],
    };
    let mut net = Testnet::with_roles(r);
    upswarm_trust::write_keypair(&net.path().join("v0"), &key(100)).unwrap();
    let p = net.spawn("p", &[], FAST);
    let (pa, pb) = (free_port(), free_port());
    let a = net.spawn(
        "a",
        &[p],
        &format!(
            "{}[voting]\nvoter_key = \"../v0.key\"\n",
            managed_config(pa, "")
        ),
    );
    let b = net.spawn("b", &[p], &managed_config(pb, ""));
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(p, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || net.daemons[b]
        .managed_version()
        .as_deref()
        == Some("1.0.0")));
    let (ok, out) = net.daemons[b].cli(&["pin", "1.0.0"]);
    assert!(ok, "{out}");
    let file = net.path().join("proposal.cbor");
    let out = common::upswarm()
        .args([
            "proposal",
            "create",
            "--protocol",
            "proto-v2",
            "--threshold",
            "100%",
            "--activation-delay",
            "3s",
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    for k in ["s10.key", "s11.key"] {
        assert!(
            common::upswarm()
                .args(["proposal", "sign", "--key"])
                .arg(net.path().join(k))
                .arg(&file)
                .status()
                .unwrap()
                .success()
        );
    }
    // Under-signed proposals are refused.
    let one = net.path().join("one.cbor");
    std::fs::copy(&file, &one).unwrap();
    let env = upswarm_proto::SignedEnvelope::decode::<upswarm_proto::Proposal>(
        &std::fs::read(&one).unwrap(),
    )
    .unwrap();
    let mut under = env.clone();
    under.sigs.truncate(1);
    std::fs::write(&one, under.encode()).unwrap();
    let (ok, out) = net.daemons[p].cli(&["proposal", "publish", &one.to_string_lossy()]);
    assert!(!ok && out.contains("needs 2 valid signature(s)"), "{out}");
    let (ok, out) = net.daemons[p].cli(&["proposal", "publish", &file.to_string_lossy()]);
    assert!(ok, "{out}");
    let v2 = net.demo_release("1.1.0", "healthy", "hotfix", &["--provides", "proto-v2"]);
    assert!(net.publish(p, &v2).0);
    let alarm = wait_for(Duration::from_secs(90), || {
        net.daemons[b].status().is_some_and(|s| {
            s["alarms"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().unwrap_or("").contains("upgrade required"))
            })
        })
    });
    assert!(
        alarm,
        "no upgrade-required alarm on the node left behind:\n{}",
        net.daemons[b].log()
    );
    assert_eq!(net.daemons[b].counter("upgrade_required"), 1);
    let sa = net.daemons[a].status().unwrap();
    assert!(sa["alarms"].as_array().unwrap().is_empty(), "{sa}");
    let (_, text) = net.daemons[b].cli(&["activations"]);
    assert!(text.contains("ALARM: upgrade required"), "{text}");
}
