//! Process-level tests of disk use: retention of installed versions (`keep_versions`) with
//! failed and yanked versions in the history, and garbage collection of the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::common::daemon::{
    Testnet, free_port, managed_config, outcomes, serial, version_served, wait_for,
};
use serde_json::Value;

/// The version directories under `versions/`.
fn versions_on_disk(net: &Testnet, i: usize) -> BTreeSet<String> {
    std::fs::read_dir(net.daemons[i].dir.join("data/versions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn previous(net: &Testnet, i: usize) -> Vec<String> {
    net.daemons[i].status().unwrap()["managed"]["previous"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn release_id(dir: &Path) -> String {
    let out = common::upswarm()
        .args(["release", "inspect", "--json"])
        .arg(dir.join("manifest.cbor"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["release_id"].as_str().unwrap().to_string()
}

/// Publishes demo `version` (`mode`: healthy or unhealthy) and waits for its outcome.
fn publish_and_wait(net: &Testnet, node: usize, version: &str, mode: &str, outcome: &str) {
    let rel = net.demo_release(version, mode, "hotfix", &[]);
    assert!(net.publish(0, &rel).0);
    let done = wait_for(Duration::from_secs(90), || {
        outcomes(net, node, version) == [outcome]
    });
    assert!(
        done,
        "{version} not {outcome}: {:?}\n{}",
        net.daemons[node].history(),
        net.daemons[node].log()
    );
}

/// A publisher and one managed node running demo 1.0.0.
fn setup(extra: &str) -> (Testnet, usize, u16) {
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn("node", &[0], &managed_config(port, extra));
    publish_and_wait(&net, node, "1.0.0", "healthy", "applied");
    (net, node, port)
}

#[test]
fn retention_prunes_failed_and_yanked_versions_first_and_keeps_the_last_good_one() {
    let _g = serial();
    let (net, node, port) = setup("keep_versions = 3\n");
    publish_and_wait(&net, node, "1.1.0", "healthy", "applied");
    // 1.2.0 fails its health check: rolled back to 1.1.0, marked failed.
    publish_and_wait(&net, node, "1.2.0", "unhealthy", "rolled_back");
    publish_and_wait(&net, node, "1.3.0", "healthy", "applied");
    let v14 = "1.4.0";
    publish_and_wait(&net, node, v14, "healthy", "applied");

    // Four good versions and a failed one, three kept: the failed one went first, then the
    // oldest good one.
    assert!(
        wait_for(Duration::from_secs(10), || versions_on_disk(&net, node)
            == set(&["1.1.0", "1.3.0", "1.4.0"])),
        "{:?}",
        versions_on_disk(&net, node)
    );
    assert_eq!(previous(&net, node), ["1.3.0", "1.1.0"]);

    // 1.3.0 is yanked while it is an earlier version (the node runs 1.4.0): it is no
    // rollback target any more; 1.1.0, the last good version, stays.
    let rel13 = net.path().join("rel-demo-1.3.0");
    let id = release_id(&rel13);
    let (c20, c21) = (net.path().join("c20.key"), net.path().join("c21.key"));
    let (ok, out) = net.daemons[0].cli(&[
        "control",
        "yank",
        &id,
        "--key",
        &c20.to_string_lossy(),
        "--key",
        &c21.to_string_lossy(),
        "--reason",
        "bad migration",
    ]);
    assert!(ok, "{out}");
    let pruned = wait_for(Duration::from_secs(60), || {
        versions_on_disk(&net, node) == set(&["1.1.0", "1.4.0"])
    });
    assert!(
        pruned,
        "{:?}\n{}",
        versions_on_disk(&net, node),
        net.daemons[node].log()
    );
    assert_eq!(previous(&net, node), ["1.1.0"]);
    assert_eq!(version_served(port).as_deref(), Some(v14));
    let (ok, text) = net.daemons[node].cli(&["status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("earlier versions kept: 1.1.0 (rollback goes to 1.1.0)"),
        "{text}"
    );
    assert!(
        !text.contains("1.0.0 (") && !text.contains("1.3.0,"),
        "{text}"
    );

    // The operator goes back: pinned first, so the newest release is not applied again.
    let (ok, out) = net.daemons[node].cli(&["pin", "1.1.0"]);
    assert!(ok, "{out}");
    let (ok, out) = net.daemons[node].cli(&["rollback"]);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(30), || version_served(port).as_deref()
            == Some("1.1.0")),
        "{}",
        net.daemons[node].log()
    );
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["current"], "1.1.0");
    assert_eq!(s["managed"]["program"]["running"], true);
    let link = std::fs::read_link(net.daemons[node].dir.join("data/current")).unwrap();
    assert!(link.ends_with("1.1.0"), "{link:?}");
}

fn release_view(net: &Testnet, i: usize, name: &str, version: &str) -> Option<Value> {
    net.daemons[i].status()?["releases"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name && r["version"] == version)
        .cloned()
}

fn state(net: &Testnet, i: usize, name: &str, version: &str) -> String {
    release_view(net, i, name, version)
        .and_then(|r| r["download"]["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Sum of the artifact sizes of a release directory made by `release create`.
fn artifact_bytes(dir: &Path) -> u64 {
    let out = common::upswarm()
        .args(["release", "inspect", "--json"])
        .arg(dir.join("manifest.cbor"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["manifest"]["artifacts"]
        .as_array()
        .or_else(|| v["artifacts"].as_array())
        .unwrap_or_else(|| panic!("no artifacts in {v}"))
        .iter()
        .map(|a| a["size"].as_u64().unwrap())
        .sum()
}

#[test]
fn gc_bounds_disk_use_by_the_retention_settings_and_keeps_every_release_still_needed() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    // The node also follows `bulk`, a product it does not run: volume for the collector.
    let config = managed_config(port, "product = \"demo\"\nkeep_versions = 3\n").replace(
        "products = [\"demo\"]\n",
        "products = [\"demo\", \"bulk\"]\n",
    ) + "[retention]\nkeep_releases = 1\ngrace = \"0s\"\nkeep_backups = 1\ninterval = \"1h\"\n";
    let node = net.spawn("node", &[0], &config);
    publish_and_wait(&net, node, "1.0.0", "healthy", "applied");
    publish_and_wait(&net, node, "1.1.0", "healthy", "applied");
    const MIB: usize = 1 << 20;
    let bulk: Vec<String> = (0..5).map(|i| format!("2.{i}.0")).collect();
    for v in &bulk {
        let rel = net.release("bulk", v, MIB, &[]);
        assert!(net.publish(0, &rel).0);
    }
    let all = wait_for(Duration::from_secs(120), || {
        bulk.iter()
            .all(|v| state(&net, node, "bulk", v) == "complete")
    });
    assert!(all, "{}", net.daemons[node].log());
    let before = net.daemons[node].status().unwrap()["disk"].clone();
    assert!(
        before["releases"].as_u64().unwrap() >= 5 * MIB as u64,
        "{before}"
    );

    // Dry run: what would go, and the bytes; nothing is removed.
    let (ok, text) = net.daemons[node].cli(&["gc", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("would remove 4 release(s), "), "{text}");
    for v in &bulk[..4] {
        assert!(
            text.contains(&format!("  release bulk {v} [stable] ")),
            "{text}"
        );
    }
    assert!(text.contains("— 1.0 MiB of artifacts"), "{text}");
    assert!(text.contains("  chunks  "), "{text}");
    assert!(
        !text.contains("bulk 2.4.0") && !text.contains("release demo"),
        "{text}"
    );
    for v in &bulk {
        assert_eq!(state(&net, node, "bulk", v), "complete");
    }

    // The collection: four bulk releases go, with their chunks.
    let (ok, text) = net.daemons[node].cli(&["gc"]);
    assert!(ok && text.starts_with("removed 4 release(s), "), "{text}");
    for v in &bulk[..4] {
        assert_eq!(state(&net, node, "bulk", v), "removed", "{v}");
        let id = release_id(&net.path().join(format!("rel-bulk-{v}")));
        assert!(
            !net.daemons[node]
                .dir
                .join("data/releases")
                .join(id)
                .exists()
        );
    }
    // Disk use is bounded by what the settings keep: the newest bulk release, demo 1.1.0
    // (the newest) and 1.0.0 (installed: the rollback target), plus the chunk indexes.
    let kept: u64 = [
        net.path().join("rel-bulk-2.4.0"),
        net.path().join("rel-demo-1.1.0"),
        net.path().join("rel-demo-1.0.0"),
    ]
    .iter()
    .map(|d| artifact_bytes(d))
    .sum();
    let s = net.daemons[node].status().unwrap();
    let disk = &s["disk"];
    assert!(
        disk["chunks"].as_u64().unwrap() <= kept + 64 * 1024,
        "{disk} > {kept}"
    );
    assert!(
        disk["releases"].as_u64().unwrap() <= kept,
        "{disk} > {kept}"
    );
    assert!(disk["total"].as_u64().unwrap() < before["total"].as_u64().unwrap());
    let (ok, text) = net.daemons[node].cli(&["status"]);
    assert!(ok && text.contains("\ndisk      "), "{text}");

    // Every release still needed is intact: bulk 2.4.0 byte for byte, and a new node that
    // joins through this one fetches and verifies it.
    let id = release_id(&net.path().join("rel-bulk-2.4.0"));
    let assembled = net.daemons[node]
        .dir
        .join("data/releases")
        .join(&id)
        .join("node");
    assert_eq!(
        std::fs::read(&assembled).unwrap(),
        std::fs::read(net.path().join("bulk-2.4.0.bin")).unwrap()
    );
    assert_eq!(state(&net, node, "bulk", "2.4.0"), "complete");
    let late = net.spawn("late", &[node], "products = [\"bulk\"]\n");
    assert!(
        wait_for(Duration::from_secs(120), || state(
            &net, late, "bulk", "2.4.0"
        ) == "complete"),
        "{}",
        net.daemons[late].log()
    );
    // The rollback target works.
    let (ok, out) = net.daemons[node].cli(&["pin", "1.0.0"]);
    assert!(ok, "{out}");
    let (ok, out) = net.daemons[node].cli(&["rollback"]);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(30), || version_served(port).as_deref()
            == Some("1.0.0")),
        "{}",
        net.daemons[node].log()
    );

    // Collecting changes the node: without the token it is refused.
    let out = common::upswarm()
        .args(["gc", "--dry-run", "--api", &net.daemons[node].api])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("token"), "{err}");

    // Nothing more to collect; a removed release is not fetched again.
    let (ok, text) = net.daemons[node].cli(&["gc", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(!text.contains("release "), "{text}");
    assert_eq!(state(&net, node, "bulk", "2.0.0"), "removed");
}

/// Bytes allocated on disk under `dirs`: blocks in use, each file once however many hard
/// links it has (`du` without apparent sizes).
fn allocated(dirs: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn walk(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| walk(&e.path(), seen))
                .sum()
        } else if seen.insert((m.dev(), m.ino())) {
            m.blocks() * 512
        } else {
            0
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.iter().map(|d| walk(d, &mut seen)).sum()
}

/// One copy on disk: a node that downloaded and installed a release holds its bytes once —
/// the installed version is the downloaded file (a hard link), and no chunk files repeat
/// it. After a restart it still serves every chunk, from that file, to a node that can get
/// them from nowhere else.
#[test]
fn a_downloaded_and_installed_release_is_on_disk_once_and_still_served() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn("node", &[p], &managed_config(port, "product = \"demo\"\n"));
    // Plain bytes only: a node that fetches an encoded form keeps it too, to seed it.
    let rel = net.demo_release("1.0.0", "healthy", "hotfix", &["--no-compress"]);
    assert!(net.publish(p, &rel).0);
    assert!(
        wait_for(Duration::from_secs(90), || version_served(port).as_deref()
            == Some("1.0.0")),
        "{}",
        net.daemons[node].log()
    );
    let size = artifact_bytes(&rel);
    let data = net.daemons[node].dir.join("data");
    let parts = [
        data.join("chunks"),
        data.join("releases"),
        data.join("versions"),
    ];
    let used = allocated(&parts);
    // The bound: chunk indexes and the last block of each file.
    let bound = 64 * 1024;
    assert!(
        used <= size + bound,
        "{used} bytes on disk for a release of {size} bytes (chunks {}, releases {}, versions {})",
        allocated(&parts[..1]),
        allocated(&parts[1..2]),
        allocated(&parts[2..]),
    );
    assert!(
        used >= size,
        "{used} bytes on disk, less than the release's {size}: is it all there?"
    );
    println!("release of {size} bytes: {used} bytes on disk");

    // After a restart, a new node gets every chunk from this one, served from the installed
    // file: the publisher (still up, so that the new node finds the release) has lost its
    // copy and answers "don't have".
    net.daemons[node].stop(Duration::from_secs(30));
    net.daemons[node].start();
    let pdata = net.daemons[p].dir.join("data");
    for sub in ["releases", "chunks"] {
        std::fs::remove_dir_all(pdata.join(sub)).unwrap();
    }
    let late = net.spawn("late", &[node], "products = [\"demo\"]\n");
    assert!(
        wait_for(Duration::from_secs(120), || state(
            &net, late, "demo", "1.0.0"
        ) == "complete"),
        "{}\n{}",
        net.daemons[late].log(),
        net.daemons[node].log()
    );
    let from = net.release_view(late, "1.0.0").unwrap()["progress"]["from_peers"].clone();
    let node_id = net.daemons[node].peer_id.clone();
    assert!(
        from.as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key(&node_id)),
        "the new node took chunks from {from}, not only from {node_id}"
    );
    assert_eq!(
        allocated(&parts),
        used,
        "the restart changed what is on disk"
    );
}
