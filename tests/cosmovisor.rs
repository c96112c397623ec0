//! Cosmovisor mode, process-level: the real daemon runs the demo program playing a Cosmos
//! chain (`upswarm-demo-app --home`) in cosmovisor's layout; at the upgrade height the chain
//! writes `upgrade-info.json` and exits, like x/upgrade, and the daemon switches to the
//! release that names the upgrade (`release create --upgrade v2`) — or, with none, waits
//! with an alarm and never starts the old binary again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::common::daemon::{Testnet, demo_app_binary, free_port, serial, wait_for};

/// The height the genesis binary halts at (the test moves the chain close to it).
const UPGRADE_HEIGHT: u64 = 1000;

/// A chain home with `cosmovisor/genesis/bin/app` (demo 1.0.0, halting for upgrade v2).
fn chain_home(net: &Testnet) -> PathBuf {
    let home = net.path().join("chain");
    let bin = home.join("cosmovisor/genesis/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(home.join("data")).unwrap();
    fs::copy(demo_app_binary(), bin.join("app")).unwrap();
    fs::write(
        bin.join("demo.toml"),
        format!(
            "version = \"1.0.0\"\nupgrade_name = \"v2\"\nupgrade_height = {UPGRADE_HEIGHT}\n\
             block_time = \"100ms\"\n"
        ),
    )
    .unwrap();
    home
}

fn config(home: &Path, port: u16) -> String {
    config_with(home, port, "20s")
}

fn config_with(home: &Path, port: u16, deadline: &str) -> String {
    format!(
        "products = [\"demo\"]\n\
         [managed]\nmode = \"cosmovisor\"\nshutdown_grace = \"5s\"\nrestart_backoff = \"300ms\"\n\
         [managed.cosmovisor]\nhome = \"{home}\"\nname = \"app\"\n\
         args = [\"--home\", \"{home}\", \"--listen\", \"127.0.0.1:{port}\"]\npoll_interval = \"100ms\"\n\
         [managed.health]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"200ms\"\nsuccesses = 3\ndeadline = \"{deadline}\"\n\
         [rollout]\nspread = \"1s\"\nresync_interval = \"2s\"\n",
        home = home.display()
    )
}

fn height(home: &Path) -> u64 {
    fs::read_to_string(home.join("data/height"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Moves the chain to a few blocks before the upgrade height (the chain reads its height
/// file before each block).
fn near_the_height(home: &Path) {
    let ok = wait_for(Duration::from_secs(30), || {
        if home.join("data/upgrade-info.json").exists() || height(home) >= UPGRADE_HEIGHT - 5 {
            return true;
        }
        fs::write(home.join("data/height"), (UPGRADE_HEIGHT - 5).to_string()).unwrap();
        false
    });
    assert!(ok, "the chain never moved to its upgrade height");
}

/// (height, version) of every block the chain made.
fn blocks(home: &Path) -> Vec<(u64, String)> {
    fs::read_to_string(home.join("data/blocks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (h, v) = l.split_once(' ')?;
            Some((h.parse().ok()?, v.to_string()))
        })
        .collect()
}

/// The release of demo 2.0.0 that implements upgrade v2 (artifacts `app`, `demo.toml`).
fn upgrade_release(net: &Testnet) -> PathBuf {
    upgrade_release_with(net, "healthy")
}

fn upgrade_release_with(net: &Testnet, mode: &str) -> PathBuf {
    net.demo_release_with(
        "2.0.0",
        &format!("mode = \"{mode}\"\nblock_time = \"100ms\"\n"),
        "major",
        &["--upgrade", "v2"],
    )
}

/// The new binary made blocks past the height, the old one none at or past it.
fn assert_switched(net: &Testnet, node: usize, home: &Path) {
    let ok = wait_for(Duration::from_secs(60), || {
        blocks(home)
            .iter()
            .any(|(h, v)| v == "2.0.0" && *h > UPGRADE_HEIGHT + 3)
    });
    assert!(
        ok,
        "the new binary never ran past the height: {:?}\n{}",
        blocks(home).last(),
        net.daemons[node].log()
    );
    let old_past: Vec<_> = blocks(home)
        .into_iter()
        .filter(|(h, v)| v == "1.0.0" && *h >= UPGRADE_HEIGHT)
        .collect();
    assert!(
        old_past.is_empty(),
        "the old binary ran past the height: {old_past:?}"
    );
    assert_eq!(
        fs::read_link(home.join("cosmovisor/current")).unwrap(),
        home.join("cosmovisor/upgrades/v2")
    );
    // What the operator sees: the upgrade in history and status, no alarm.
    let ok = wait_for(Duration::from_secs(20), || {
        net.daemons[node].history().iter().any(|e| {
            e["to"] == "2.0.0"
                && e["outcome"] == "applied"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("cosmovisor upgrade v2 at height 1000"))
        })
    });
    assert!(ok, "history: {:?}", net.daemons[node].history());
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["cosmovisor"]["current"], "v2", "{s}");
    assert!(s["managed"]["cosmovisor"]["pending"].is_null(), "{s}");
    assert_eq!(s["managed"]["program"]["running"], true, "{s}");
    assert_eq!(s["alarms"], serde_json::json!([]), "{s}");
    let (ok, text) = net.daemons[node].cli(&["status"]);
    assert!(ok && text.contains("current v2"), "{text}");
    assert!(!text.contains("ALARM"), "{text}");
}

#[test]
fn a_staged_release_is_switched_to_at_the_upgrade_height() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let home = chain_home(&net);
    let port = free_port();
    let node = net.spawn("node", &[0], &config(&home, port));
    assert!(
        wait_for(Duration::from_secs(30), || height(&home) > 2),
        "the genesis binary never made blocks:\n{}",
        net.daemons[node].log()
    );

    let v2 = upgrade_release(&net);
    let (ok, out) = net.publish(0, &v2);
    assert!(ok, "{out}");
    // Fetched, verified and staged ahead of the height; not applied.
    let ok = wait_for(Duration::from_secs(60), || {
        net.daemons[node].status().is_some_and(|s| {
            s["managed"]["cosmovisor"]["staged"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "v2 (release 2.0.0)"))
        })
    });
    assert!(ok, "v2 never staged:\n{}", net.daemons[node].log());
    assert!(home.join("cosmovisor/upgrades/v2/bin/app").is_file());
    assert_eq!(
        fs::read_link(home.join("cosmovisor/current")).unwrap(),
        home.join("cosmovisor/genesis"),
        "switched before the upgrade height"
    );
    assert!(blocks(&home).iter().all(|(_, v)| v == "1.0.0"));
    let (ok, text) = net.daemons[node].cli(&["check"]);
    assert!(
        ok && text.contains("switched to when the chain halts for upgrade v2"),
        "{text}"
    );

    near_the_height(&home);
    assert_switched(&net, node, &home);
    // The old binary started once, the new one once.
    assert_eq!(
        fs::read_to_string(home.join("data/starts")).unwrap(),
        "1.0.0\n2.0.0\n"
    );
    // The data directory was backed up before the switch (UNSAFE_SKIP_BACKUP unset).
    assert!(home.join("data-backup-v2/height").is_file());
    drop(net);
}

#[test]
fn without_a_release_the_chain_waits_with_an_alarm_then_switches_when_it_arrives() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let home = chain_home(&net);
    let port = free_port();
    let node = net.spawn("node", &[0], &config(&home, port));
    assert!(
        wait_for(Duration::from_secs(30), || height(&home) > 2),
        "the genesis binary never made blocks:\n{}",
        net.daemons[node].log()
    );
    near_the_height(&home);

    // The chain halts; nothing implements v2: an alarm naming the upgrade and the height.
    let alarm = |s: &serde_json::Value| {
        s["alarms"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x.as_str().is_some_and(|t| {
                    t.contains("upgrade v2 at height 1000") && t.contains("cosmos-upgrade.v2")
                })
            })
        })
    };
    let ok = wait_for(Duration::from_secs(30), || {
        net.daemons[node].status().is_some_and(|s| alarm(&s))
    });
    assert!(ok, "no alarm: {:?}", net.daemons[node].status());
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["program"]["running"], false, "{s}");
    assert_eq!(s["managed"]["cosmovisor"]["pending"]["name"], "v2", "{s}");
    assert_eq!(s["managed"]["cosmovisor"]["pending"]["height"], 1000, "{s}");
    let (_, text) = net.daemons[node].cli(&["status"]);
    assert!(
        text.contains("ALARM") && text.contains("halted for upgrade v2 at height 1000"),
        "{text}"
    );
    // A manual apply is refused: the switch happens only at the upgrade.
    let (ok, text) = net.daemons[node].cli(&["apply"]);
    assert!(!ok, "{text}");

    // A daemon killed while it waits does not start the old binary on its next start.
    net.daemons[node].kill();
    net.daemons[node].start();
    let ok = wait_for(Duration::from_secs(30), || {
        net.daemons[node].status().is_some_and(|s| alarm(&s))
    });
    assert!(
        ok,
        "no alarm after a restart: {:?}",
        net.daemons[node].status()
    );
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["program"]["running"], false, "{s}");
    assert_eq!(
        fs::read_to_string(home.join("data/starts")).unwrap(),
        "1.0.0\n"
    );

    // Then the release arrives: switched with no operator action.
    let v2 = upgrade_release(&net);
    let (ok, out) = net.publish(0, &v2);
    assert!(ok, "{out}");
    assert_switched(&net, node, &home);
    // The old binary was never started again while the node waited.
    assert_eq!(
        fs::read_to_string(home.join("data/starts")).unwrap(),
        "1.0.0\n2.0.0\n"
    );
    drop(net);
}

#[test]
fn an_unhealthy_upgrade_stops_the_chain_with_an_alarm_and_no_rollback() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let home = chain_home(&net);
    let port = free_port();
    let node = net.spawn("node", &[0], &config_with(&home, port, "3s"));
    assert!(
        wait_for(Duration::from_secs(30), || height(&home) > 2),
        "the genesis binary never made blocks:\n{}",
        net.daemons[node].log()
    );
    let v2 = upgrade_release_with(&net, "unhealthy");
    let (ok, out) = net.publish(0, &v2);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(60), || home
            .join("cosmovisor/upgrades/v2/bin/app")
            .is_file()),
        "v2 never staged:\n{}",
        net.daemons[node].log()
    );
    near_the_height(&home);

    // The new binary fails its health check: stopped, in history and status, no rollback.
    let ok = wait_for(Duration::from_secs(60), || {
        net.daemons[node].history().iter().any(|e| {
            e["to"] == "2.0.0"
                && e["outcome"] == "halted"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("no rollback"))
        })
    });
    assert!(ok, "history: {:?}", net.daemons[node].history());
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["program"]["running"], false, "{s}");
    assert!(
        s["alarms"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .is_some_and(|t| t.contains("upgrade v2 at height 1000") && t.contains("no rollback"))),
        "{s}"
    );
    let (_, text) = net.daemons[node].cli(&["history"]);
    assert!(
        text.contains("FAILED, stopped (no rollback past an upgrade height)"),
        "{text}"
    );
    assert_eq!(
        fs::read_link(home.join("cosmovisor/current")).unwrap(),
        home.join("cosmovisor/upgrades/v2")
    );
    let old_past: Vec<_> = blocks(&home)
        .into_iter()
        .filter(|(h, v)| v == "1.0.0" && *h >= UPGRADE_HEIGHT)
        .collect();
    assert!(
        old_past.is_empty(),
        "the old binary ran past the height: {old_past:?}"
    );
    // Neither binary is started again.
    assert_eq!(
        fs::read_to_string(home.join("data/starts")).unwrap(),
        "1.0.0\n2.0.0\n"
    );
    let (_, text) = net.daemons[node].cli(&["status"]);
    assert!(
        text.contains("ALARM") && text.contains("NOT RUNNING"),
        "{text}"
    );
    drop(net);
}
