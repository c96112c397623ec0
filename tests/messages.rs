//! What the operator reads: the one true reason a release is held (`check`, `explain`,
//! `apply`), and the text of the everyday commands, asserted on real daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use crate::common::daemon::{Testnet, free_port, managed_config, serial, version_served, wait_for};
use serde_json::Value;
use upswarm_proto::{Hash32, KeyId, Phase, RolloutPlan};

/// A word of ten digits: a raw unix time where an RFC 3339 one belongs.
fn raw_unix_time(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 10 && w.bytes().all(|b| b.is_ascii_digit()))
}

/// A maintenance window that is never now: one hour, twelve hours from the current UTC hour.
fn closed_window() -> String {
    let now_h = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let start = (now_h + 12) % 24;
    format!(
        "[[policy.windows]]\nstart = \"{start:02}:00\"\nend = \"{:02}:00\"\n",
        (start + 1) % 24
    )
}

fn release_id(dir: &std::path::Path) -> Hash32 {
    let out = common::upswarm()
        .args(["release", "inspect", "--json"])
        .arg(dir.join("manifest.cbor"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Hash32::from_hex(v["release_id"].as_str().unwrap()).unwrap()
}

/// The `check` line of `version`.
fn check_line(net: &Testnet, i: usize, version: &str) -> String {
    let (ok, out) = net.daemons[i].cli(&["check"]);
    assert!(ok, "{out}");
    out.lines()
        .find(|l| l.starts_with(&format!("demo {version} ")))
        .unwrap_or_else(|| panic!("no line for {version} in:\n{out}"))
        .to_string()
}

fn explain_json(net: &Testnet, i: usize, version: &str) -> Value {
    let (ok, out) = net.daemons[i].cli(&["explain", version, "--json"]);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

fn explain_text(net: &Testnet, i: usize, version: &str) -> String {
    let (ok, out) = net.daemons[i].cli(&["explain", version]);
    assert!(ok, "{out}");
    assert!(raw_unix_time(&out).is_none(), "a raw unix time in:\n{out}");
    out
}

/// Two managed nodes whose maintenance window is never open, so nothing installs by
/// itself: each hold is the one true reason. The running release is "installed"; a node
/// of a later phase waits for its phase ("only phase 0 is open"), the canary for the
/// window; a release halted by the canary's failure is "halted" on both (not "failed
/// before … --force", not "outside the maintenance windows"); a yanked one is "yanked",
/// and `apply` refuses it even with `--force`.
#[test]
fn each_hold_has_one_true_reason() {
    let _g = serial();
    let window = closed_window();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let ports = [free_port(), free_port()];
    let n0 = net.spawn(
        "n0",
        &[0],
        &format!("{}\n{window}", managed_config(ports[0], "")),
    );
    let n1 = net.spawn(
        "n1",
        &[0, n0],
        &format!("{}\n{window}", managed_config(ports[1], "")),
    );
    let n = [n0, n1];
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || n
        .iter()
        .all(|&i| net.complete(i, "1.0.0"))));
    // Held by the window alone (once this node's install delay in the phase is over).
    let held = wait_for(Duration::from_secs(20), || {
        check_line(&net, n[0], "1.0.0") == "demo 1.0.0 (hotfix): outside the maintenance windows"
    });
    assert!(held, "{}", check_line(&net, n[0], "1.0.0"));
    for &i in &n {
        let (ok, out) = net.daemons[i].cli(&["apply", "1.0.0"]);
        assert!(ok, "{out}");
    }
    // The running release is installed, not "install now".
    let text = explain_text(&net, n[0], "1.0.0");
    assert!(
        text.contains("verdict   installed: this node runs 1.0.0"),
        "{text}"
    );
    assert!(!text.contains("install now"), "{text}");
    assert_eq!(
        check_line(&net, n[0], "1.0.0"),
        "demo 1.0.0 (hotfix): installed: this node runs 1.0.0"
    );

    // Both nodes know both (from their 1.0.0 reports): a two-phase release splits them.
    let known = wait_for(Duration::from_secs(60), || {
        n.iter()
            .all(|&i| explain_json(&net, i, "1.0.0")["known_nodes"] == 2)
    });
    assert!(known, "{}", explain_json(&net, n[0], "1.0.0"));
    let ids: Vec<KeyId> = n
        .iter()
        .map(|&i| {
            KeyId::from_hex(
                net.daemons[i].status().unwrap()["node_id"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let plan = RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 5000,
                min_soak_secs: 3600,
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
    let mut split = None;
    for attempt in 0..40 {
        let _ = std::fs::remove_dir_all(net.path().join("rel-demo-1.1.0"));
        let changelog = net.path().join("changes.md");
        std::fs::write(&changelog, format!("- attempt {attempt}\n")).unwrap();
        let dir = net.demo_release(
            "1.1.0",
            "crash",
            "minor",
            &[
                "--phase",
                "50:1h:10:1",
                "--phase",
                "100",
                "--changelog",
                &changelog.to_string_lossy(),
            ],
        );
        let cohorts = upswarm_rollout::Cohorts::new(&plan, &release_id(&dir), ids.clone());
        let phases: Vec<usize> = ids.iter().map(|id| cohorts.phase(id)).collect();
        if phases.contains(&0) && phases.contains(&1) {
            let canary = phases.iter().position(|p| *p == 0).unwrap();
            split = Some((dir, n[canary], n[1 - canary]));
            break;
        }
    }
    let (v11, canary, later) = split.expect("a release that splits the two nodes");
    assert!(net.publish(0, &v11).0);
    assert!(wait_for(Duration::from_secs(60), || n
        .iter()
        .all(|&i| net.complete(i, "1.1.0"))));
    // The later node waits for its phase; one phase of two is open.
    let text = explain_text(&net, later, "1.1.0");
    assert!(
        text.contains("rollout   wait: this node is in phase 1; only phase 0 is open"),
        "{text}"
    );
    assert!(
        text.contains("phases    1 of 2 open — phase 0 opened at 20"),
        "{text}"
    );
    assert!(!text.contains("0..1"), "{text}");
    assert_eq!(
        check_line(&net, later, "1.1.0"),
        "demo 1.1.0 (minor): rollout: wait: this node is in phase 1; only phase 0 is open"
    );
    // The canary's phase is open: the window is all that holds it.
    let text = explain_text(&net, canary, "1.1.0");
    assert!(
        text.contains("rollout   phase 0 is open to this node"),
        "{text}"
    );
    assert!(
        text.contains("verdict   outside the maintenance windows"),
        "{text}"
    );

    // The canary applies it by hand; it crashes and is rolled back: the rollout halts.
    let (ok, out) = net.daemons[canary].cli(&["apply", "1.1.0"]);
    assert!(!ok && out.contains("rolled back"), "{out}");
    let halted = wait_for(Duration::from_secs(60), || {
        n.iter()
            .all(|&i| !explain_json(&net, i, "1.1.0")["rollout"]["evaluation"]["halted"].is_null())
    });
    assert!(halted, "{}", explain_json(&net, later, "1.1.0"));
    for &i in &n {
        let line = check_line(&net, i, "1.1.0");
        assert!(
            line.starts_with("demo 1.1.0 (minor): the rollout halted at 20")
                && line.ends_with(
                    ": phase 0 had 1 failure(s) in 1 report(s), over the 10 % allowed: no node installs it"
                ),
            "{line}"
        );
        assert!(raw_unix_time(&line).is_none(), "{line}");
        let text = explain_text(&net, i, "1.1.0");
        assert!(text.contains("halted    halted at 20"), "{text}");
        assert!(
            text.contains("verdict   the rollout halted at 20"),
            "{text}"
        );
    }

    // A yanked release: rolled back from, explained as yanked, never offered with --force.
    let v12 = net.demo_release("1.2.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v12).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(canary, "1.2.0")));
    let (ok, out) = net.daemons[canary].cli(&["apply", "1.2.0"]);
    assert!(ok, "{out}");
    let port = ports[n.iter().position(|&i| i == canary).unwrap()];
    assert_eq!(version_served(port).as_deref(), Some("1.2.0"));
    let c20 = net.path().join("c20.key").to_string_lossy().into_owned();
    let c21 = net.path().join("c21.key").to_string_lossy().into_owned();
    let (ok, out) = net.daemons[0].cli(&["control", "yank", "1.2.0", "--key", &c20, "--key", &c21]);
    assert!(ok, "{out}");
    let back = wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.0.0")
            && net.daemons[canary].managed_version().as_deref() == Some("1.0.0")
    });
    assert!(back, "{:?}", net.daemons[canary].history());
    let line = check_line(&net, canary, "1.2.0");
    assert!(
        line.starts_with("demo 1.2.0 (hotfix): yanked by the control role at 20")
            && line.ends_with(": no node installs it, and nodes that ran it rolled back"),
        "{line}"
    );
    assert!(!line.contains("--force") && !line.contains("failed on this node"));
    let text = explain_text(&net, canary, "1.2.0");
    assert!(
        text.contains("verdict   yanked by the control role at 20"),
        "{text}"
    );
    assert!(!text.contains("--force"), "{text}");
    for args in [&["apply", "1.2.0"][..], &["apply", "1.2.0", "--force"][..]] {
        let (ok, out) = net.daemons[canary].cli(args);
        assert!(!ok, "{out}");
        assert!(
            out.contains(
                "1.2.0 was yanked by the control role: no node applies it, not even with --force"
            ),
            "{out}"
        );
    }
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
}

/// The everyday commands' text on one node: `status` needs no token, the 401 names
/// `--token-file`, `pin`/`unpin` speak in sentences and warn about an unknown version (and
/// `check` says so), `progress` says when nothing downloads, text `history` shows
/// durations and a yank's reason, `control` echoes the action and the release, `peer add`
/// fails on a dead address, the log has no colour codes, `upswarm-demo-app --help` works.
#[test]
fn everyday_commands_say_what_happened() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn("node", &[0], &managed_config(port, ""));
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.0.0") && !net.daemons[node].history().is_empty()
    }));
    let d = &net.daemons[node];
    let run = |args: &[&str]| {
        let out = common::upswarm()
            .args(args)
            .args(["--api", &d.api])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // `status` reads only: a missing token file does not matter.
    let (ok, out, err) = run(&["status", "--token-file", "/nonexistent/api.token"]);
    assert!(ok && out.contains("managed   version 1.0.0"), "{out}{err}");
    // A call that changes the node without a token names the option to use.
    let (ok, _, err) = run(&["pin", "1.0.0"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("pass --token-file <data_dir>/api.token"),
        "{err}"
    );

    // pin / unpin in sentences; an unknown version is accepted with a warning, and `check`
    // says so.
    let (ok, out) = d.cli(&["pin", "9.9.9"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("pinned to 9.9.9: this node installs no other version until `upswarm unpin`"),
        "{out}"
    );
    assert!(
        out.contains(
            "warning: this node knows no release 9.9.9: nothing is installed until one arrives"
        ),
        "{out}"
    );
    let (ok, out) = d.cli(&["check"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: pinned to 9.9.9, but this node knows no release 9.9.9"),
        "{out}"
    );
    let (ok, out) = d.cli(&["unpin"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "unpinned: updates follow the policy again");
    let (ok, out) = d.cli(&["pin", "1.0.0"]);
    assert!(ok && !out.contains("warning"), "{out}");
    let (ok, out) = d.cli(&["check"]);
    assert!(ok && !out.contains("warning"), "{out}");
    let (ok, _) = d.cli(&["unpin"]);
    assert!(ok);

    // Nothing downloads now.
    let (ok, out) = d.cli(&["progress"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "nothing is downloading");

    // A release, then its yank with a reason: `control` echoes both; the history has the
    // durations and the reason.
    let v11 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v11).0);
    assert!(wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.1.0") && d.history().len() == 2
    }));
    let id = release_id(&v11).to_hex();
    let c20 = net.path().join("c20.key").to_string_lossy().into_owned();
    let c21 = net.path().join("c21.key").to_string_lossy().into_owned();
    let (ok, out) = d.cli(&[
        "control",
        "yank",
        "1.1.0",
        "--key",
        &c20,
        "--key",
        &c21,
        "--reason",
        "bad build",
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "published: yank of demo 1.1.0 (release {}) (2 signature(s))",
            &id[..16]
        )
    );
    assert!(wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.0.0") && d.history().len() == 3
    }));
    let (ok, out) = d.cli(&["history"]);
    assert!(ok, "{out}");
    assert!(raw_unix_time(&out).is_none(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  apply (none) -> 1.0.0 (automatic): applied in ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  apply 1.0.0 -> 1.1.0 (automatic): applied in ")),
        "{out}"
    );
    let yank = lines
        .iter()
        .find(|l| l.contains("  rollback 1.1.0 -> 1.0.0 (after a yank): applied in "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        yank.ends_with(" — yanked by the control role: bad build"),
        "{yank}"
    );

    // `peer add`: a live peer connects; a dead address is an error that says so.
    let p_addr = net.daemons[0].addr.clone();
    let (ok, out) = d.cli(&["peer", "add", &p_addr]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("connected to {p_addr}"));
    let dead = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let (ok, out) = d.cli(&["peer", "add", &dead]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("cannot dial {dead}: Connection refused")),
        "{out}"
    );

    // The daemon's stderr is a file here: no colour codes in it.
    let log = d.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in the log");

    // The demo program explains itself.
    let out = std::process::Command::new(common::daemon::demo_app_binary())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("usage: upswarm-demo-app [--listen ADDR] [--data DIR | --home DIR]"),
        "{text}"
    );
}
