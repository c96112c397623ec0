//! Crash tests of the apply procedure under a **manual** policy (nothing re-applies a
//! release behind the test's back): the daemon is SIGKILLed at the entry and in the middle
//! of every journaled step, forward and rollback, and at random moments of applies; after
//! each kill it is only restarted — no operator action — and must end where the
//! interrupted transition was heading, with the invariant:
//!
//! - exactly one managed process, of the version `current` names, serving and healthy
//!   (every version that becomes current here is a healthy one);
//! - no step in progress, recovery over;
//! - one history entry per transition (the interrupted one recorded once, with its restart
//!   counted), with the expected outcome;
//! - the next apply works, and nothing needs `--force`.
//!
//! "In the middle" uses real slowness where there is some to use (a hook that sleeps, a
//! program that stops or becomes healthy slowly, a data directory of many files); the steps
//! that take no time are crashed right after they were carried out, before the next one
//! is journaled, with the `fault-injection` build's crash points.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Without the `fault-injection` build the matrix test is left out, and its helpers idle.
#![cfg_attr(not(feature = "fault-injection"), allow(dead_code))]

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Testnet, free_port, http_get, serial, wait_for};

/// How a release of the demo program behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Demo {
    Healthy,
    /// Healthy after a 3 s start.
    SlowStart,
    /// Healthy; keeps running 3 s after it is asked to stop.
    SlowStop,
    /// Exits at start: the health check fails at once.
    Crash,
    /// Never healthy (the check waits for its deadline); stops slowly.
    UnhealthySlowStop,
}

impl Demo {
    fn toml(self) -> &'static str {
        match self {
            Demo::Healthy => "mode = \"healthy\"\n",
            Demo::SlowStart => "mode = \"slow\"\nstart_delay = \"3s\"\n",
            Demo::SlowStop => "mode = \"healthy\"\nstop_delay = \"3s\"\n",
            Demo::Crash => "mode = \"crash\"\n",
            Demo::UnhealthySlowStop => "mode = \"unhealthy\"\nstop_delay = \"3s\"\n",
        }
    }

    fn healthy(self) -> bool {
        matches!(self, Demo::Healthy | Demo::SlowStart | Demo::SlowStop)
    }
}

/// One managed node (manual policy) and what the test expects of it.
struct Node {
    net: Testnet,
    port: u16,
    /// Transitions started so far (= history entries expected).
    transitions: usize,
    current: String,
}

const NODE: usize = 0;

impl Node {
    /// A node supervising the demo program, with a pre-upgrade hook that sleeps while the
    /// file `slow-hook` exists, and `fault` as its crash points (fault-injection builds).
    fn new(fault: Option<&str>) -> Self {
        let mut net = Testnet::new();
        let port = free_port();
        let hook = net.path().join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "echo \"pre-upgrade $UPSWARM_FROM -> $UPSWARM_TO\"\n\
                 if [ -f {dir}/slow-hook ]; then sleep 3; fi\nexit 0\n",
                dir = net.path().display()
            ),
        )
        .unwrap();
        let config = format!(
            "products = [\"demo\"]\n\
             [managed]\ncommand = \"app\"\nargs = [\"--listen\", \"127.0.0.1:{port}\", \"--data\", \"{{data_dir}}\"]\n\
             data_dir = \"appdata\"\nshutdown_grace = \"10s\"\nrestart_backoff = \"300ms\"\nkeep_versions = 4\n\
             [managed.health]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"200ms\"\nsuccesses = 3\ndeadline = \"8s\"\n\
             [managed.hooks]\npre_upgrade = [\"sh\", \"{hook}\"]\n\
             [policy]\nauto = []\n",
            hook = hook.display()
        );
        let i = net.add("node", &[], &config, &[]);
        if let Some(spec) = fault {
            net.daemons[i]
                .env
                .push(("UPSWARM_FAULT_APPLY".into(), spec.into()));
        }
        net.daemons[i].start();
        let mut node = Node {
            net,
            port,
            transitions: 0,
            current: String::new(),
        };
        node.publish("1.0.0", Demo::Healthy);
        let (ok, out) = node.cli(&["apply", "1.0.0"]);
        assert!(ok, "{out}");
        node.transitions = 1;
        node.current = "1.0.0".into();
        node.settle("1.0.0", "applied", 0);
        node
    }

    fn d(&self) -> &common::daemon::Daemon {
        &self.net.daemons[NODE]
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        self.d().cli(args)
    }

    /// Creates release `version` and hands it to the node (no network needed).
    fn publish(&self, version: &str, demo: Demo) {
        let dir = self
            .net
            .demo_release_with(version, demo.toml(), "hotfix", &[]);
        let (ok, out) = self.net.publish(NODE, &dir);
        assert!(ok, "{out}");
        assert!(wait_for(Duration::from_secs(60), || self
            .net
            .complete(NODE, version)));
    }

    /// `upswarm apply VERSION` (or `upswarm rollback`) in the background.
    fn spawn_cli(&self, args: &[&str]) -> Child {
        common::upswarm()
            .args(args)
            .args(["--api", &self.d().api, "--token-file"])
            .arg(self.d().data_dir().join("api.token"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Polls the status until the transition is at `step`.
    fn wait_step(&self, step: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self
                .d()
                .status_fast()
                .is_some_and(|s| s["managed"]["applying"][0] == step)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        false
    }

    fn appdata(&self) -> PathBuf {
        self.d().dir.join("appdata")
    }

    fn served(&self) -> Option<String> {
        http_get(self.port, "/version")
            .filter(|(c, _)| *c == 200)
            .map(|(_, b)| b)
    }

    fn healthy(&self) -> bool {
        http_get(self.port, "/health").is_some_and(|(c, _)| c == 200)
    }

    /// Waits until the node is settled on `self.current`, then asserts the invariant; the
    /// last history entry is for `to` with `outcome` after `restarts` daemon restarts.
    fn settle(&self, to: &str, outcome: &str, restarts: u64) {
        let want = self.current.clone();
        let settled = wait_for(Duration::from_secs(90), || {
            self.d().status_fast().is_some_and(|s| {
                let m = &s["managed"];
                m["applying"].is_null()
                    && m["recovering"] == false
                    && m["program"]["running"] == true
                    && m["current"] == want.as_str()
            }) && self.served().as_deref() == Some(want.as_str())
                && self.healthy()
        });
        let status = self.d().status_fast();
        assert!(
            settled,
            "not settled on {want} (to {to}): serving {:?}, status {status:?}\nlog:\n{}",
            self.served(),
            tail(&self.d().log(), 60)
        );
        // Exactly one managed process (a stopped orphan may take a moment to be reaped).
        let one = wait_for(Duration::from_secs(20), || {
            self.d().managed_processes().len() == 1
        });
        assert!(
            one,
            "managed processes: {:?}\n{}",
            self.d().managed_processes(),
            tail(&self.d().log(), 60)
        );
        let history = self.d().history();
        assert_eq!(
            history.len(),
            self.transitions,
            "one history entry per transition: {history:#?}"
        );
        let last = history.last().unwrap();
        assert_eq!(last["to"], to, "{last}");
        assert_eq!(last["outcome"], outcome, "{last}");
        assert_eq!(last["restarts"], restarts, "{last}");
    }

    /// SIGKILL (if it has not killed itself) and start again — nothing else.
    fn crash_and_restart(&mut self) {
        self.net.daemons[NODE].kill();
        self.net.daemons[NODE].start();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where in a step the daemon dies.
#[derive(Debug, Clone, Copy)]
enum At {
    /// Right after the step is journaled (crash point `entry`).
    Entry,
    /// Right after the step was carried out, before the next is journaled (crash point
    /// `done`).
    Done,
    /// SIGKILL from outside while the step is slowly carried out.
    Middle,
}

/// Makes the data directory big (many small files): backups and restores take seconds.
fn fill(dir: &std::path::Path) {
    let big = dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..8_000 {
        std::fs::write(big.join(format!("f{i}")), [7u8; 512]).unwrap();
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn sigkill_at_the_entry_and_in_the_middle_of_every_step_then_restart_finishes_the_job() {
    let _g = serial();
    use At::*;
    use Demo::*;
    // (step, where, the release applied, what it leads to); versions 1.1.0, 1.2.0, … in
    // this order. `None` as the step: a plain apply that sets up the next case.
    #[derive(Clone, Copy)]
    enum Op {
        Apply,
        Rollback,
    }
    let cases: Vec<(Option<&str>, At, Demo, Op)> = vec![
        (Some("prechecks"), Entry, Healthy, Op::Apply),
        (Some("prechecks"), Done, Healthy, Op::Apply),
        (Some("backup"), Entry, Healthy, Op::Apply),
        (Some("backup"), Middle, Healthy, Op::Apply),
        (Some("pre_hook"), Entry, Healthy, Op::Apply),
        (Some("pre_hook"), Middle, Healthy, Op::Apply),
        (Some("stop"), Entry, SlowStop, Op::Apply),
        (Some("stop"), Middle, Healthy, Op::Apply),
        (Some("switch"), Entry, Healthy, Op::Apply),
        (Some("switch"), Done, Healthy, Op::Apply),
        (Some("start"), Entry, Healthy, Op::Apply),
        (Some("start"), Done, Healthy, Op::Apply),
        (Some("health_check"), Entry, Healthy, Op::Apply),
        (Some("health_check"), Middle, SlowStart, Op::Apply),
        (Some("commit"), Entry, Healthy, Op::Apply),
        (Some("commit"), Done, Healthy, Op::Apply),
        // A manual rollback (back to the previous version, restoring its data backup);
        // the second one to another version (a crash point names the version).
        (Some("restore"), Entry, Healthy, Op::Rollback),
        (None, Entry, Healthy, Op::Apply),
        (None, Entry, Healthy, Op::Apply),
        (Some("restore"), Middle, Healthy, Op::Rollback),
        // Rollbacks of failed releases.
        (Some("rb_stop"), Entry, Crash, Op::Apply),
        (Some("rb_stop"), Middle, UnhealthySlowStop, Op::Apply),
        (Some("rb_switch"), Entry, Crash, Op::Apply),
        (Some("rb_switch"), Done, Crash, Op::Apply),
        (Some("rb_restore"), Entry, Crash, Op::Apply),
        (Some("rb_restore"), Middle, Crash, Op::Apply),
        (Some("rb_start"), Entry, Crash, Op::Apply),
        (Some("rb_start"), Done, Crash, Op::Apply),
        (Some("rb_health_check"), Entry, Crash, Op::Apply),
        (None, Entry, SlowStart, Op::Apply),
        (Some("rb_health_check"), Middle, Crash, Op::Apply),
        (Some("rb_commit"), Entry, Crash, Op::Apply),
        (Some("rb_commit"), Done, Crash, Op::Apply),
        // And after all that, a plain apply works.
        (None, Entry, Healthy, Op::Apply),
    ];
    // Every crash point up front, each for its own version (a resumed transition never
    // crashes again): one daemon configuration for the whole run.
    let mut specs = Vec::new();
    let mut versions = Vec::new();
    let mut applied: Vec<String> = vec!["1.0.0".into()];
    for (n, (step, at, _, op)) in cases.iter().enumerate() {
        let v = format!("1.{}.0", n + 1);
        // A rollback goes back to the version before the current one.
        let target = match op {
            Op::Apply => v.clone(),
            Op::Rollback => applied[applied.len() - 2].clone(),
        };
        if let (Some(step), Entry | Done) = (step, at) {
            let when = if matches!(at, Entry) { "entry" } else { "done" };
            let kind = match op {
                Op::Apply => "apply",
                Op::Rollback => "rollback",
            };
            specs.push(format!("{kind}/{when}:{step}@{target}"));
        }
        versions.push((v.clone(), target.clone()));
        match op {
            Op::Apply if cases[n].2.healthy() => applied.push(v),
            Op::Apply => {}
            Op::Rollback => {
                applied.pop();
            }
        }
    }
    let mut node = Node::new(Some(&specs.join(",")));
    let started = Instant::now();
    let steps: Vec<(Option<&str>, At)> = cases.iter().map(|c| (c.0, c.1)).collect();
    for (n, ((step, at, demo, op), (v, target))) in cases.into_iter().zip(versions).enumerate() {
        let case = format!("{step:?} {at:?} ({v}, {demo:?})");
        eprintln!("== [{:>5.1}s] {case}", started.elapsed().as_secs_f64());
        let middle = matches!(at, Middle) && step.is_some();
        // Real slowness for the middle of slow steps: a sleeping hook; a data directory
        // of many files, for a slow backup, or for a slow restore (of a backup taken
        // when the data was big: by this transition, or by the one before a rollback).
        let slow_hook = node.net.path().join("slow-hook");
        let before_slow_restore = matches!(steps.get(n + 1), Some((Some("restore"), Middle)));
        match (step, middle) {
            (Some("pre_hook"), true) => std::fs::write(&slow_hook, b"").unwrap(),
            (Some("backup" | "rb_restore"), true) => fill(&node.appdata()),
            (None, _) if before_slow_restore => fill(&node.appdata()),
            _ => {}
        }
        let args: Vec<&str> = match op {
            Op::Apply => {
                node.publish(&v, demo);
                vec!["apply", &v]
            }
            Op::Rollback => vec!["rollback"],
        };
        node.transitions += 1;
        let (outcome, next) = match op {
            Op::Apply if demo.healthy() => ("applied", v.clone()),
            Op::Apply => ("rolled_back", node.current.clone()),
            Op::Rollback => ("applied", target.clone()),
        };
        match (step, middle) {
            (None, _) => {
                let (ok, out) = node.cli(&args);
                assert!(ok, "{case}: {out}");
                node.current = next;
                node.settle(&target, outcome, 0);
                if !before_slow_restore {
                    let _ = std::fs::remove_dir_all(node.appdata().join("big"));
                }
                continue;
            }
            (Some(step), true) => {
                let mut cli = node.spawn_cli(&args);
                assert!(
                    node.wait_step(step),
                    "{case}: never saw step {step}\n{}",
                    tail(&node.d().log(), 60)
                );
                node.crash_and_restart();
                let _ = cli.kill();
                let _ = cli.wait();
            }
            (Some(step), false) => {
                // The crash point kills the daemon; the CLI sees the connection drop.
                let (ok, out) = node.cli(&args);
                assert!(!ok, "{case}: the daemon did not crash at {step}: {out}");
                assert!(
                    node.d().log().contains("fault injection: SIGKILL now"),
                    "{case}: no crash point hit (is this a fault-injection build?)"
                );
                node.crash_and_restart();
            }
        }
        node.current = next;
        node.settle(&target, outcome, 1);
        let _ = std::fs::remove_file(&slow_hook);
        let _ = std::fs::remove_dir_all(node.appdata().join("big"));
    }
    eprintln!("== matrix done in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn thirty_sigkills_at_random_moments_of_applies_then_restart_finishes_the_job() {
    let _g = serial();
    use rand::{RngExt, SeedableRng};
    let seed: u64 = std::env::var("UPSWARM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!("seed {seed} (set UPSWARM_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut node = Node::new(None);
    // How long an apply takes here, from the command to its end: the kills are spread
    // over that span.
    let span = |node: &mut Node, v: &str, demo: Demo| {
        node.publish(v, demo);
        let t = Instant::now();
        let (ok, out) = node.cli(&["apply", v]);
        assert_eq!(ok, demo.healthy(), "{out}");
        node.transitions += 1;
        if demo.healthy() {
            node.current = v.to_string();
        }
        node.settle(v, if ok { "applied" } else { "rolled_back" }, 0);
        t.elapsed()
    };
    let healthy_span = span(&mut node, "2.0.1", Demo::Healthy);
    let crash_span = span(&mut node, "2.0.2", Demo::Crash);
    eprintln!("an apply takes {healthy_span:?}, a failed one {crash_span:?}");
    let started = Instant::now();
    let (mut kills, mut interrupted) = (0, 0);
    while interrupted < 30 {
        kills += 1;
        assert!(
            kills <= 120,
            "only {interrupted} of {kills} kills landed in an apply"
        );
        let v = format!("2.{kills}.0");
        // Every third release fails its health check (and is rolled back).
        let demo = if kills % 3 == 0 {
            Demo::Crash
        } else {
            Demo::Healthy
        };
        let span = if demo.healthy() {
            healthy_span
        } else {
            crash_span
        };
        node.publish(&v, demo);
        let delay = span.mul_f64(rng.random_range(0.0..1.0));
        let mut cli = node.spawn_cli(&["apply", &v]);
        std::thread::sleep(delay);
        node.crash_and_restart();
        let _ = cli.kill();
        let _ = cli.wait();
        // Recovery done, then: did the kill land in the apply (it was finished after the
        // restart), after it, or before the daemon took the request (then nothing
        // happened, and the apply is simply asked for again)?
        assert!(wait_for(Duration::from_secs(90), || {
            node.d().status_fast().is_some_and(|s| {
                s["managed"]["applying"].is_null() && s["managed"]["recovering"] == false
            })
        }));
        let entry = node
            .d()
            .history()
            .into_iter()
            .find(|e| e["to"] == v.as_str());
        node.transitions += 1;
        let restarts = match &entry {
            Some(e) => e["restarts"].as_u64().unwrap(),
            None => {
                let (ok, out) = node.cli(&["apply", &v]);
                assert_eq!(ok, demo.healthy(), "{v}: {out}");
                0
            }
        };
        interrupted += usize::from(restarts == 1);
        eprintln!(
            "== [{:>5.1}s] kill {kills} ({v}, {demo:?}) after {delay:?}: {}",
            started.elapsed().as_secs_f64(),
            match (&entry, restarts) {
                (None, _) => "before the apply began",
                (Some(_), 0) => "after the apply ended",
                _ => "during the apply",
            }
        );
        let outcome = if demo.healthy() {
            node.current = v.clone();
            "applied"
        } else {
            "rolled_back"
        };
        node.settle(&v, outcome, restarts);
    }
    eprintln!(
        "== {interrupted} of {kills} kills landed during an apply; {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
