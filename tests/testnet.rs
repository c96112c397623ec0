//! `upswarm testnet` stops every program it started — the daemons and the demo programs
//! they supervise — when its scenario succeeds, when it fails, and when it is interrupted
//! (Ctrl-C, SIGTERM).
//!
//! Each run gets a `TMPDIR` of its own; every process it starts inherits it, so the check
//! needs nothing from the implementation: no live process may have that `TMPDIR` in its
//! environment once `upswarm testnet` has exited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::daemon::serial;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

fn testnet(tmp: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_upswarm"))
        .arg("testnet")
        .args(args)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Live processes started under `tmp`.
fn started_under(tmp: &Path) -> Vec<i32> {
    upswarm::procs::with_env(&format!("TMPDIR={}", tmp.display()))
}

/// Waits (up to `limit`) for the testnet to exit; returns (success, output).
fn finish(child: Child, limit: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    let pid = child.id() as i32;
    while upswarm::procs::stat(pid).is_some_and(|s| s.state != 'Z') {
        if start.elapsed() > limit {
            upswarm::procs::signal(pid, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_nothing_left(tmp: &Path, out: &str) {
    let left = started_under(tmp);
    assert!(
        left.is_empty(),
        "still running after `upswarm testnet` exited: {left:?}\n{out}"
    );
}

#[test]
fn after_a_successful_scenario_nothing_it_started_is_left_running() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let child = testnet(tmp.path(), &["--nodes", "2", "--scenario", "good"]);
    let (code, out) = finish(child, Duration::from_secs(600));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK: all 2 nodes run 1.1.0"), "{out}");
    // The demo program goes out compressed (and 1.1.0 as deltas): bytes saved, shown.
    let saved: u64 = out
        .split("compressed and delta forms saved ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes-saved line: {out}"));
    assert!(saved > 0, "{out}");
    assert_nothing_left(tmp.path(), &out);
}

#[test]
fn after_a_failed_scenario_nothing_it_started_is_left_running() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    // Too short a timeout: the scenario fails while every daemon and program runs.
    let child = testnet(
        tmp.path(),
        &["--nodes", "2", "--scenario", "bad", "--timeout", "1s"],
    );
    let (code, out) = finish(child, Duration::from_secs(300));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("did not finish within"), "{out}");
    assert_nothing_left(tmp.path(), &out);
}

/// Starts a scenario, waits until demo programs run, then sends `signal`.
fn interrupted(scenario: &str, signal: Signal, code: i32) {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let child = testnet(tmp.path(), &["--nodes", "2", "--scenario", scenario]);
    let pid = child.id() as i32;
    let start = Instant::now();
    let programs = || {
        started_under(tmp.path())
            .into_iter()
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .is_ok_and(|e| e.ends_with("app") && e.starts_with(tmp.path()))
            })
            .count()
    };
    while programs() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the demo programs never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    upswarm::procs::signal(pid, signal);
    let (got, out) = finish(child, Duration::from_secs(120));
    assert_eq!(got, Some(code), "{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert_nothing_left(tmp.path(), &out);
    // Its working directory is gone too (no --keep).
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn ctrl_c_stops_everything_it_started() {
    interrupted("vote", Signal::SIGINT, 130);
}

#[test]
fn sigterm_stops_everything_it_started() {
    interrupted("bad", Signal::SIGTERM, 143);
}
