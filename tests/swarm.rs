//! Process-level tests of the network: real daemons on loopback TCP, real libp2p, real
//! sled files, real signatures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use crate::common::daemon::{Testnet, serial, wait_for};
use crate::common::evil::Evil;

/// These tests start many processes; run them one at a time so that each gets the machine.
const MIB: usize = 1024 * 1024;

/// Assembled artifact of `version` on daemon `i`, compared with the source bytes.
fn artifact_matches(net: &Testnet, i: usize, rel_dir: &std::path::Path, version: &str) -> bool {
    let view = net.release_view(i, version).unwrap();
    let id = view["id"].as_str().unwrap();
    let got = std::fs::read(
        net.daemons[i]
            .dir
            .join("data/releases")
            .join(id)
            .join("node"),
    )
    .unwrap_or_default();
    let name = rel_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace("rel-", "");
    let want = std::fs::read(net.path().join(format!("{name}.bin"))).unwrap();
    got == want
}

#[test]
fn ten_nodes_fetch_a_32_mib_release_from_many_peers() {
    let _g = serial();
    let mut net = Testnet::new();
    // The publisher's upload is capped, so the others must also fetch from each other.
    net.spawn("p", &[], "[transfer]\nmax_upload_rate = \"6MiB\"");
    for i in 1..10 {
        net.spawn(&format!("n{i}"), &[0], "");
    }
    let rel = net.release("app", "1.0.0", 32 * MIB, &[]);
    let (ok, out) = net.publish(0, &rel);
    assert!(ok, "publish failed: {out}");
    let all = wait_for(Duration::from_secs(240), || {
        (1..10).all(|i| net.complete(i, "1.0.0"))
    });
    for (i, d) in net.daemons.iter().enumerate() {
        assert!(
            all,
            "node {i} did not complete:\n{:?}\n{}",
            net.release_view(i, "1.0.0"),
            d.log()
        );
    }
    let mut served_by_others = 0;
    for i in 1..10 {
        assert!(
            artifact_matches(&net, i, &rel, "1.0.0"),
            "node {i} has wrong bytes"
        );
        let view = net.release_view(i, "1.0.0").unwrap();
        let p = &view["progress"];
        let from = p["from_peers"].as_object().unwrap();
        assert_eq!(p["chunks_held"], p["chunks_total"]);
        assert_eq!(p["chunks_total"], 128);
        assert!(from.len() >= 2, "node {i} fetched from only {from:?}");
        let sum: u64 = from.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(sum, p["chunks_fetched"].as_u64().unwrap());
        served_by_others += net.daemons[i].counter("blobs_served");
    }
    assert!(served_by_others > 0, "downloaders never served each other");
}

/// Upload slots: a publisher with one slot and a slow uplink uploads one chunk at a time;
/// the requests that find no slot in time are answered "busy", which blames nobody, and the
/// downloaders get those chunks from each other.
#[test]
fn a_seed_with_one_upload_slot_answers_busy_and_everyone_completes_without_blame() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn(
        "p",
        &[],
        "[transfer]\nmax_upload_rate = \"1MiB\"\nupload_slots = 1",
    );
    for i in 1..5 {
        net.spawn(&format!("n{i}"), &[0], "");
    }
    // 16 chunks of 256 KiB, a quarter second each through the publisher's uplink: with four
    // downloaders asking four at a time, some wait longer than a slot is waited for.
    let rel = net.release("app", "1.0.0", 4 * MIB, &[]);
    assert!(net.publish(0, &rel).0);
    let all = wait_for(Duration::from_secs(120), || {
        (1..5).all(|i| net.complete(i, "1.0.0"))
    });
    assert!(all, "{}", net.daemons[0].log());
    for i in 1..5 {
        assert!(artifact_matches(&net, i, &rel, "1.0.0"), "node {i}");
    }
    assert!(
        net.daemons[0].counter("requests_busy") > 0,
        "the publisher never said busy: {:?}",
        net.daemons[0].status().map(|s| s["counters"].clone())
    );
    for (i, d) in net.daemons.iter().enumerate() {
        assert_eq!(d.counter("peers_banned"), 0, "node {i} banned someone");
    }
    let others: u64 = (1..5).map(|i| net.daemons[i].counter("blobs_served")).sum();
    assert!(others > 0, "the downloaders never served each other");
}

#[test]
fn a_corrupting_peer_is_banned_and_honest_nodes_complete() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "[transfer]\nmax_upload_rate = \"3MiB\"");
    let rel = net.release("app", "1.0.0", 8 * MIB, &[]);
    assert!(net.publish(p, &rel).0);
    // A peer that claims every chunk and serves each with a flipped byte.
    let p_addr = net.daemons[p].addr.clone();
    let rel_s = rel.to_string_lossy().into_owned();
    let (evil, evil_id, evil_addr) = Evil::start(
        &[&p_addr],
        &[
            "--release",
            &rel_s,
            "--serve",
            "corrupt",
            "--bitmap",
            "full",
            "--provide",
        ],
    );
    let boot = [evil_addr.clone(), p_addr.clone()];
    let extra = "[transfer]\nmax_in_flight_per_peer = 2";
    let h1 = net.spawn_at("h1", &boot, extra, &[]);
    let h2 = net.spawn_at("h2", &boot, extra, &[]);
    let done = wait_for(Duration::from_secs(180), || {
        net.complete(h1, "1.0.0") && net.complete(h2, "1.0.0")
    });
    assert!(
        done,
        "honest nodes did not complete:\n{}\n{}",
        net.daemons[h1].log(),
        net.daemons[h2].log()
    );
    for i in [h1, h2] {
        let d = &net.daemons[i];
        assert!(
            d.counter("bad_chunks_received") > 0,
            "{}: never detected",
            d.name
        );
        assert!(d.counter("peers_banned") >= 1, "{}: never banned", d.name);
        let banned = d.status().unwrap()["banned"].to_string();
        assert!(banned.contains(&evil_id), "{}: {banned}", d.name);
        assert!(artifact_matches(&net, i, &rel, "1.0.0"));
    }
    drop(evil);
}

#[test]
fn an_undersigned_manifest_is_neither_stored_nor_forwarded() {
    let _g = serial();
    let mut net = Testnet::new();
    let a = net.spawn("a", &[], "");
    // Signed by one key; the patch threshold of the test root is 2.
    let rel = net.release("app", "9.9.9", 64 * 1024, &[]);
    let under = net.path().join("under");
    copy_dir(&rel, &under);
    let m = under.join("manifest.cbor");
    let env = upswarm_proto::SignedEnvelope::decode::<upswarm_proto::Manifest>(
        &std::fs::read(&m).unwrap(),
    )
    .unwrap();
    let mut one = env.clone();
    one.sigs.truncate(1);
    std::fs::write(&m, one.encode()).unwrap();
    // B refuses the evil peer, so anything it gets must have come through A. The evil peer
    // waits until B is up before it gossips.
    let a_addr = net.daemons[a].addr.clone();
    let m_s = m.to_string_lossy().into_owned();
    let (mut evil, evil_id, _) =
        Evil::start(&[&a_addr], &["--gossip-release", &m_s, "--settle", "8"]);
    let b = net.spawn_denying("b", &[a], "", &[&evil_id]);
    let gossip = evil.wait_event("gossip", Duration::from_secs(30));
    assert!(
        gossip["result"].as_str().unwrap().starts_with("Ok"),
        "{gossip}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || net.daemons[a]
            .counter("gossip_rejected")
            >= 1),
        "A never rejected it"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        net.release_view(a, "9.9.9").is_none(),
        "A stored an undersigned release"
    );
    assert!(
        net.release_view(b, "9.9.9").is_none(),
        "B got an undersigned release"
    );
    let s = net.daemons[b].status().unwrap();
    assert_eq!(
        s["counters"]["gossip_rejected"], 0,
        "B received it: A must have forwarded it"
    );
    assert_eq!(s["counters"]["gossip_accepted"], 0);
    // An honest daemon refuses the same publish through its API.
    let (ok, out) = net.publish(a, &under);
    assert!(!ok && out.contains("needs 2 valid signature(s)"), "{out}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_replayed_older_manifest_is_ignored() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let a = net.spawn("a", &[p], "");
    let old = net.release("app", "1.0.0", 256 * 1024, &[]);
    let new = net.release("app", "1.1.0", 256 * 1024, &[]);
    assert!(net.publish(p, &old).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(a, "1.0.0")));
    assert!(net.publish(p, &new).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(a, "1.1.0")));
    // A node that only ever saw 1.1.0, and a replayer.
    let late = net.spawn("late", &[a], "");
    assert!(
        wait_for(Duration::from_secs(60), || net.complete(late, "1.1.0")),
        "late node never found 1.1.0"
    );
    let before = net.daemons[late].counter("gossip_rejected");
    let late_addr = net.daemons[late].addr.clone();
    let old_m = old.join("manifest.cbor").to_string_lossy().into_owned();
    let (mut replayer, _, _) = Evil::start(&[&late_addr], &["--gossip-release", &old_m]);
    let gossip = replayer.wait_event("gossip", Duration::from_secs(30));
    assert!(
        gossip["result"].as_str().unwrap_or("").starts_with("Ok"),
        "{gossip}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || net.daemons[late]
            .counter("gossip_rejected")
            > before),
        "the late node did not reject the replayed manifest"
    );
    assert!(
        net.release_view(late, "1.0.0").is_none(),
        "the replayed older release was stored"
    );
    // The honest API refuses to publish a release older than the latest.
    let (ok, out) = net.publish(late, &old);
    assert!(!ok && out.contains("stale"), "{out}");
}

#[test]
fn a_peer_that_never_answers_does_not_stall_the_download() {
    let _g = serial();
    let mut net = Testnet::new();
    // The publisher is slow enough that requests to the mute peer time out mid-download.
    let p = net.spawn("p", &[], "[transfer]\nmax_upload_rate = \"1MiB\"");
    let rel = net.release("app", "1.0.0", 4 * MIB, &[]);
    assert!(net.publish(p, &rel).0);
    // A peer that claims every chunk and never answers a chunk request.
    let p_addr = net.daemons[p].addr.clone();
    let rel_s = rel.to_string_lossy().into_owned();
    let (_mute, _, mute_addr) = Evil::start(
        &[&p_addr],
        &[
            "--release",
            &rel_s,
            "--serve",
            "silent",
            "--bitmap",
            "full",
            "--provide",
        ],
    );
    let h = net.spawn_at(
        "h",
        &[mute_addr, p_addr],
        "[transfer]\nrequest_timeout = \"2s\"",
        &[],
    );
    let done = wait_for(Duration::from_secs(120), || net.complete(h, "1.0.0"));
    assert!(done, "download stalled:\n{}", net.daemons[h].log());
    assert!(artifact_matches(&net, h, &rel, "1.0.0"));
    assert!(
        net.daemons[h].counter("requests_failed") >= 1,
        "the mute peer was never asked"
    );
}

#[test]
fn a_node_started_after_publication_finds_the_release_in_the_dht() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let a = net.spawn("a", &[p], "");
    // Four identical 256 KiB chunks: the same content is fetched once and fills every place.
    let rel = net.release_with("app", "2.0.0", &vec![7u8; MIB], &[]);
    assert!(net.publish(p, &rel).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(a, "2.0.0")));
    std::thread::sleep(Duration::from_secs(2));
    let late = net.spawn("late", &[a], "");
    assert!(
        wait_for(Duration::from_secs(30), || net.complete(late, "2.0.0")),
        "{}",
        net.daemons[late].log()
    );
    assert_eq!(net.release_view(late, "2.0.0").unwrap()["source"], "dht");
    assert!(artifact_matches(&net, late, &rel, "2.0.0"));
}

/// Chunks of `version` daemon `i` holds.
fn chunks_held(net: &Testnet, i: usize, version: &str) -> u64 {
    net.release_view(i, version)
        .and_then(|r| r["progress"]["chunks_held"].as_u64())
        .unwrap_or(0)
}

/// A publisher capped at 3 MiB/s and a node `d` downloading its 24 MiB release 1.0.0,
/// returned once `d` holds at least `min_held` chunks: (net, d, release dir).
fn mid_download(min_held: u64) -> (Testnet, usize, std::path::PathBuf) {
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "[transfer]\nmax_upload_rate = \"3MiB\"");
    let d = net.spawn("d", &[p], "");
    let rel = net.release("app", "1.0.0", 24 * MIB, &[]);
    assert!(net.publish(p, &rel).0);
    assert!(
        wait_for(Duration::from_secs(60), || chunks_held(&net, d, "1.0.0")
            >= min_held),
        "download did not get going"
    );
    (net, d, rel)
}

/// Graceful shutdown (SIGTERM) in the middle of a download: the daemon stops its downloads,
/// flushes its state and exits 0, reporting what it stopped; nothing of it is left running;
/// the next start resumes with what was fetched.
#[test]
fn sigterm_mid_download_stops_cleanly_and_the_next_start_resumes() {
    let _g = serial();
    let (mut net, d, rel) = mid_download(20);
    let pid = net.daemons[d].pid().unwrap() as i32;
    let status = net.daemons[d].stop(Duration::from_secs(60));
    let log = net.daemons[d].log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?} after SIGTERM; log:\n{log}"
    );
    assert!(
        !upswarm::procs::alive(pid),
        "the daemon's process is still there"
    );
    for line in [
        "shutting down",
        "download stopped by shutdown",
        "core stopped",
        "stopped",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    let stopped_with: u64 = log
        .lines()
        .find(|l| l.contains("download stopped by shutdown"))
        .and_then(|l| l.split("chunks_held=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the shutdown line names the chunks held");
    assert!(stopped_with >= 20, "{stopped_with} chunks held at shutdown");
    net.daemons[d].start();
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(d, "1.0.0")),
        "{}",
        net.daemons[d].log()
    );
    let view = net.release_view(d, "1.0.0").unwrap();
    let reused = view["progress"]["chunks_reused"].as_u64().unwrap();
    assert!(
        reused >= stopped_with,
        "only {reused} chunks reused after the restart, {stopped_with} were held at shutdown"
    );
    assert!(artifact_matches(&net, d, &rel, "1.0.0"));
}

#[test]
fn a_node_killed_mid_download_resumes_with_only_the_missing_chunks() {
    let _g = serial();
    let (mut net, d, rel) = mid_download(30);
    let held = |net: &Testnet| chunks_held(net, d, "1.0.0");
    let before = held(&net);
    net.daemons[d].kill();
    net.daemons[d].start();
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(d, "1.0.0")),
        "{}",
        net.daemons[d].log()
    );
    let view = net.release_view(d, "1.0.0").unwrap();
    let p = &view["progress"];
    let (total, reused, fetched) = (
        p["chunks_total"].as_u64().unwrap(),
        p["chunks_reused"].as_u64().unwrap(),
        p["chunks_fetched"].as_u64().unwrap(),
    );
    assert_eq!(total, 96);
    assert!(
        reused >= before,
        "only {reused} chunks reused after restart, {before} were held before"
    );
    assert_eq!(
        reused + fetched,
        total,
        "chunks fetched twice: reused {reused} + fetched {fetched} != {total}"
    );
    assert!(artifact_matches(&net, d, &rel, "1.0.0"));
}

#[test]
fn a_release_with_several_multi_chunk_artifacts_completes() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let a = net.spawn("a", &[p], "");
    let extra = net.path().join("second.bin");
    std::fs::write(
        &extra,
        (0..3 * MIB as u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let second = format!("second={}", extra.display());
    let rel = net.release("app", "1.0.0", 2 * MIB, &["--artifact", &second]);
    assert!(net.publish(p, &rel).0);
    assert!(
        wait_for(Duration::from_secs(60), || net.complete(a, "1.0.0")),
        "{}",
        net.daemons[a].log()
    );
    let id = net.release_view(a, "1.0.0").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = std::fs::read(
        net.daemons[a]
            .dir
            .join("data/releases")
            .join(id)
            .join("second"),
    )
    .unwrap();
    assert_eq!(got, std::fs::read(&extra).unwrap());
}

#[test]
fn a_trust_root_rotation_spreads_survives_restarts_and_changes_who_may_sign() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let a = net.spawn("a", &[p], "");
    // Version 2: signer 11 leaves the release role (now 10 and 12, 2 of 2).
    let mut roles = common::roles();
    roles.release.keys = vec![common::key(10).public(), common::key(12).public()];
    roles.release.types.clear();
    let v2 = common::signed_root(2, common::FAR, roles, &[&common::key(1), &common::key(2)]);
    let file = net.path().join("root-v2.cbor");
    std::fs::write(&file, v2.encode()).unwrap();
    // An out-of-order or unsigned root is refused.
    let bad = common::signed_root(
        3,
        common::FAR,
        common::roles(),
        &[&common::key(1), &common::key(2)],
    );
    let bad_file = net.path().join("root-v3.cbor");
    std::fs::write(&bad_file, bad.encode()).unwrap();
    let (ok, out) = net.daemons[p].cli(&["root", "publish", &bad_file.to_string_lossy()]);
    assert!(!ok && out.contains("does not follow version 1"), "{out}");
    let (ok, out) = net.daemons[p].cli(&["root", "publish", &file.to_string_lossy()]);
    assert!(ok, "{out}");
    let version = |net: &Testnet, i: usize| {
        net.daemons[i]
            .status()
            .and_then(|s| s["root_version"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(30), || version(&net, a) == 2),
        "the rotation did not spread"
    );
    // A node that was not there pulls it; a restarted node keeps it.
    let late = net.spawn("late", &[a], "");
    assert!(
        wait_for(Duration::from_secs(30), || version(&net, late) == 2),
        "the late node never got the new root"
    );
    net.daemons[a].kill();
    net.daemons[a].start();
    assert_eq!(version(&net, a), 2);
    // A release signed by 10 and 11: 11 no longer counts.
    let rel = net.release("app", "1.0.0", 64 * 1024, &[]);
    let (ok, out) = net.publish(p, &rel);
    assert!(!ok && out.contains("needs 2 valid signature(s)"), "{out}");
}

/// A tmpfs mounted for the life of a test (unmounted on drop, also on failure).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where mounting is not permitted (not root, or no mount namespace rights).
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill_disk(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    while f.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    // The last partial block, byte by byte is too slow; small writes fill most of the rest.
    let small = vec![0u8; 4096];
    while f.write_all(&small).is_ok() {
        written += small.len() as u64;
    }
    let _ = f.flush();
    written
}

/// A full disk is this node's own condition: the download stops with a clear status, no
/// peer is penalised, and it goes on by itself once space returns — in the same run, and
/// (for a release refused up front for space) after a restart.
#[test]
fn a_full_disk_blocks_the_download_blames_nobody_and_it_goes_on_when_space_returns() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "[transfer]\nmax_upload_rate = \"3MiB\"");
    let d = net.add("d", &[p], "", &[]);
    let data = net.daemons[d].data_dir();
    // Declared after `net`, so it is dropped (unmounted) before the test dir goes.
    let Some(_disk) = Tmpfs::mount(&data, "128m") else {
        eprintln!(
            "SKIPPED: a tmpfs cannot be mounted here (needs root); the full-disk test did not run"
        );
        return;
    };
    // Room that can be given back later.
    std::fs::write(data.join("ballast"), vec![0u8; 40 << 20]).unwrap();
    net.daemons[d].start();
    let seed_peer = net.daemons[p].peer_id.clone();

    // 1. The disk fills up in the middle of a download.
    let rel = net.release("app", "1.0.0", 24 * MIB, &[]);
    assert!(net.publish(p, &rel).0);
    let progress = |net: &Testnet, v: &str| {
        net.release_view(d, v)
            .map(|r| r["progress"].clone())
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(60), || {
            progress(&net, "1.0.0")["chunks_held"]
                .as_u64()
                .is_some_and(|h| h >= 6)
        }),
        "download did not get going"
    );
    let filler = data.join("filler");
    fill_disk(&filler);
    assert!(
        wait_for(Duration::from_secs(60), || {
            progress(&net, "1.0.0")["blocked"]
                .as_str()
                .is_some_and(|b| b.contains("cannot store chunks"))
        }),
        "no blocked download reported: {}\n{}",
        progress(&net, "1.0.0"),
        net.daemons[d].log()
    );
    let (ok, text) = net.daemons[d].cli(&["releases"]);
    assert!(ok && text.contains("BLOCKED at"), "{text}");
    assert!(net.daemons[d].counter("downloads_blocked") >= 1);
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(d, "1.0.0")),
        "the download did not go on after space returned:\n{}",
        net.daemons[d].log()
    );
    assert!(progress(&net, "1.0.0")["blocked"].is_null());
    assert!(artifact_matches(&net, d, &rel, "1.0.0"));

    // 2. A release larger than the free space is refused up front — and tried again. Free
    // now: 128 MiB less the ballast (40), 1.0.0 (24, on disk once) and the state; 2.0.0
    // fits only once the ballast is gone.
    let rel2 = net.release("app", "2.0.0", 80 * MIB, &[]);
    assert!(net.publish(p, &rel2).0);
    let state = |net: &Testnet| {
        net.release_view(d, "2.0.0")
            .map(|r| r["download"].clone())
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(60), || state(&net)["state"]
            == "blocked"),
        "2.0.0 not blocked for space: {}",
        state(&net)
    );
    assert!(
        state(&net)["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not enough disk space")),
        "{}",
        state(&net)
    );
    let (ok, text) = net.daemons[d].cli(&["releases"]);
    assert!(ok && text.contains("BLOCKED since"), "{text}");
    // Space comes back while the daemon is down; the next start goes on by itself.
    let status = net.daemons[d].stop(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    std::fs::remove_file(data.join("ballast")).unwrap();
    net.daemons[d].start();
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(d, "2.0.0")),
        "2.0.0 not fetched after space returned and a restart: {}\n{}",
        state(&net),
        net.daemons[d].log()
    );
    assert!(artifact_matches(&net, d, &rel2, "2.0.0"));

    // Nobody was blamed for this node's disk.
    let s = net.daemons[d].status().unwrap();
    assert_eq!(s["counters"]["peers_banned"], 0, "{s}");
    assert!(
        !s["banned"].to_string().contains(&seed_peer),
        "the seed was banned: {s}"
    );
}
