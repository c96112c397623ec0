//! Process-level tests of applying updates: the real daemon supervising the real demo
//! program, health checks, automatic rollback, crash recovery at every apply step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::daemon::{Testnet, free_port, http_get, managed_config, wait_for};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn version_served(port: u16) -> Option<String> {
    http_get(port, "/version")
        .filter(|(c, _)| *c == 200)
        .map(|(_, b)| b)
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|(c, _)| c == 200)
}

fn outcomes(net: &Testnet, i: usize, to: &str) -> Vec<String> {
    net.daemons[i]
        .history()
        .iter()
        .filter(|e| e["to"] == to)
        .map(|e| e["outcome"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A publisher and one managed node running demo 1.0.0.
fn setup(extra: &str) -> (Testnet, usize, u16) {
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn("node", &[0], &managed_config(port, extra));
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    let ok = wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.0.0")
    });
    assert!(ok, "1.0.0 never served:\n{}", net.daemons[node].log());
    let applied = wait_for(Duration::from_secs(20), || {
        outcomes(&net, node, "1.0.0") == ["applied"]
    });
    assert!(
        applied,
        "1.0.0 not recorded as applied: {:?}",
        net.daemons[node].history()
    );
    (net, node, port)
}

#[test]
fn a_good_release_is_applied_and_a_failing_one_rolled_back_with_its_data() {
    let _g = serial();
    let hooks = common::daemon::HookSink::start();
    let (net, node, port) = setup(&format!(
        "\n[webhooks]\nurls = [\"http://127.0.0.1:{}/hook\"]\n",
        hooks.port
    ));
    let data = net.daemons[node].dir.join("appdata/starts");

    let v11 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v11).0);
    assert!(wait_for(Duration::from_secs(60), || version_served(port)
        .as_deref()
        == Some("1.1.0")));
    assert!(wait_for(Duration::from_secs(10), || outcomes(
        &net, node, "1.1.0"
    ) == ["applied"]));
    let before_bad = std::fs::read_to_string(&data).unwrap();

    // 1.2.0 fails its health check: rolled back, binary and data back as they were.
    let bad = net.demo_release("1.2.0", "unhealthy", "hotfix", &[]);
    assert!(net.publish(0, &bad).0);
    let rolled = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.2.0") == ["rolled_back"]
    });
    assert!(
        rolled,
        "no rollback:\n{:?}\n{}",
        net.daemons[node].history(),
        net.daemons[node].log()
    );
    assert_eq!(version_served(port).as_deref(), Some("1.1.0"));
    assert!(wait_for(Duration::from_secs(10), || healthy(port)));
    let after = std::fs::read_to_string(&data).unwrap();
    assert_eq!(
        after,
        format!("{before_bad}1.1.0\n"),
        "the data directory was not restored from the backup"
    );
    assert!(!after.contains("1.2.0"));
    let current = std::fs::read_link(net.daemons[node].dir.join("data/current")).unwrap();
    assert!(current.ends_with("1.1.0"), "{current:?}");
    let h = net.daemons[node].history();
    let entry = h.iter().find(|e| e["to"] == "1.2.0").unwrap();
    assert!(
        entry["reason"].as_str().unwrap().contains("not healthy"),
        "{entry}"
    );
    assert!(entry["backup_ms"].is_u64());
    // Never retried automatically.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(outcomes(&net, node, "1.2.0"), vec!["rolled_back"]);
    let (_, check) = net.daemons[node].cli(&["check"]);
    assert!(check.contains("failed on this node before"), "{check}");
    // History through the CLI names it.
    let (ok, text) = net.daemons[node].cli(&["history"]);
    assert!(
        ok && text.contains("1.2.0") && text.contains("RolledBack"),
        "{text}"
    );
}

#[test]
fn a_release_that_crashes_at_start_is_rolled_back() {
    let _g = serial();
    let (net, node, port) = setup("");
    let crash = net.demo_release("1.1.0", "crash", "hotfix", &[]);
    assert!(net.publish(0, &crash).0);
    let rolled = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.1.0") == ["rolled_back"]
    });
    assert!(rolled, "{}", net.daemons[node].log());
    let h = net.daemons[node].history();
    let reason = h.iter().find(|e| e["to"] == "1.1.0").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("exited"), "{reason}");
    assert!(wait_for(Duration::from_secs(10), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
}

#[test]
fn manual_policy_concurrent_apply_and_the_api_token() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn(
        "node",
        &[0],
        &format!("{}\n[policy]\nauto = []\n", managed_config(port, "")),
    );
    let v1 = net.demo_release("1.0.0", "slow", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.0.0")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        version_served(port),
        None,
        "applied although the policy is manual"
    );
    let (_, check) = net.daemons[node].cli(&["check"]);
    assert!(check.contains("manual"), "{check}");
    // Without the token: refused.
    let out = common::upswarm()
        .args(["apply", "--api", &net.daemons[node].api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("token"), "{text}");
    let wrong = net.path().join("wrong.token");
    std::fs::write(&wrong, "nope").unwrap();
    let out = common::upswarm()
        .args(["apply", "--api", &net.daemons[node].api, "--token-file"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wrong API token")
    );
    // Two applies at once: the second is refused with a clear message.
    let d = &net.daemons[node];
    let first = std::thread::scope(|s| {
        let h = s.spawn(|| d.cli(&["apply", "1.0.0"]));
        std::thread::sleep(Duration::from_millis(700));
        let (ok, second) = d.cli(&["apply", "1.0.0"]);
        assert!(
            !ok && second.contains("update already in progress"),
            "{second}"
        );
        h.join().unwrap()
    });
    assert!(first.0, "{}", first.1);
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    // Pin, then a newer release is held back; unpin releases it (still manual: check says so).
    let (ok, _) = d.cli(&["pin", "1.0.0"]);
    assert!(ok);
    let v2 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v2).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.1.0")));
    let (_, check) = d.cli(&["check"]);
    assert!(check.contains("pinned to 1.0.0"), "{check}");
    // Defer is bounded.
    d.cli(&["unpin"]);
    for _ in 0..3 {
        let (ok, out) = d.cli(&["defer", "1.1.0"]);
        assert!(ok, "{out}");
    }
    let (ok, out) = d.cli(&["defer", "1.1.0"]);
    assert!(!ok && out.contains("the limit is 3"), "{out}");
    // Manual rollback to an earlier version after a manual apply.
    let (ok, out) = d.cli(&["apply", "1.1.0"]);
    assert!(ok, "{out}");
    assert_eq!(version_served(port).as_deref(), Some("1.1.0"));
    let (ok, out) = d.cli(&["rollback"]);
    assert!(ok, "{out}");
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
}

#[test]
fn maintenance_windows_hold_updates() {
    let _g = serial();
    // A window that is never now: one hour, twelve hours from the current UTC hour.
    let now_h = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let start = (now_h + 12) % 24;
    let window = format!(
        "[[policy.windows]]\nstart = \"{start:02}:00\"\nend = \"{:02}:00\"\n",
        (start + 1) % 24
    );
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn(
        "node",
        &[0],
        &format!("{}\n{window}", managed_config(port, "")),
    );
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.0.0")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(version_served(port), None);
    let (_, check) = net.daemons[node].cli(&["check"]);
    assert!(check.contains("outside the maintenance windows"), "{check}");
    // A security-critical release overrides the window (the default policy allows it).
    let sec = net.demo_release("1.0.1", "healthy", "hotfix", &["--security-critical"]);
    assert!(net.publish(0, &sec).0);
    assert!(wait_for(Duration::from_secs(60), || version_served(port)
        .as_deref()
        == Some("1.0.1")));
}

/// Kills the daemon (SIGKILL) while it sits at `step` of applying 1.1.0 (`mode` decides
/// whether 1.1.0 is healthy), restarts it, and checks the node ends on `expect` — running,
/// healthy, one program instance, no apply in progress.
fn kill_during(step: &str, mode: &str, expect: &str) {
    let _g = serial();
    let (mut net, node, port) = setup("");
    // Restart with the pause configured for 1.1.0 only.
    {
        let d = &mut net.daemons[node];
        let text = std::fs::read_to_string(&d.config).unwrap().replace(
            "[managed]\n",
            &format!("[fault_injection]\napply_pause_at = \"{step}@1.1.0\"\n[managed]\n"),
        );
        std::fs::write(&d.config, text).unwrap();
        d.kill();
        d.start();
    }
    assert!(wait_for(Duration::from_secs(20), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
    let v2 = net.demo_release("1.1.0", mode, "hotfix", &[]);
    assert!(net.publish(0, &v2).0);
    let at_step = wait_for(Duration::from_secs(60), || {
        net.daemons[node]
            .status()
            .is_some_and(|s| s["managed"]["applying"][0] == step)
    });
    assert!(
        at_step,
        "never reached {step}:\n{}",
        net.daemons[node].log()
    );
    net.daemons[node].kill();
    net.daemons[node].start();
    let done = wait_for(Duration::from_secs(90), || {
        net.daemons[node]
            .status()
            .is_some_and(|s| s["managed"]["applying"].is_null())
            && version_served(port).as_deref() == Some(expect)
            && healthy(port)
    });
    assert!(
        done,
        "after a kill at {step}: serving {:?}\n{}",
        version_served(port),
        net.daemons[node].log()
    );
    // Exactly one program instance: the pid file names a live process and the port answers.
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["current"], expect, "{s}");
    assert!(s["managed"]["program"]["running"].as_bool().unwrap(), "{s}");
}

#[test]
fn sigkill_during_prechecks() {
    kill_during("prechecks", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_backup() {
    kill_during("backup", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_pre_hook() {
    kill_during("pre_hook", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_stop() {
    kill_during("stop", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_switch() {
    kill_during("switch", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_start() {
    kill_during("start", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_health_check() {
    kill_during("health_check", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_commit() {
    kill_during("commit", "healthy", "1.1.0");
}
#[test]
fn sigkill_during_rollback_switch() {
    kill_during("rb_switch", "unhealthy", "1.0.0");
}
#[test]
fn sigkill_during_rollback_restore() {
    kill_during("rb_restore", "unhealthy", "1.0.0");
}
