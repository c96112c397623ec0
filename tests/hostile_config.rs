//! Hostile configuration files: every field the daemon uses is checked at load, and each
//! problem is a clear error naming the file and the field — never a panic, never a daemon
//! that starts and then cannot work. `upswarm daemon --check-config` runs exactly that
//! validation and exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A minimal valid file (a trust root that exists), plus `extra`.
fn write_config(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("root.cbor"), common::standard_root().encode()).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("data_dir = \"data-{name}\"\ntrust_root = \"root.cbor\"\n{extra}"),
    )
    .unwrap();
    path
}

/// Runs `upswarm daemon ARGS --config FILE`, giving up (and failing) after a minute.
fn daemon(args: &[&str], config: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_upswarm"))
        .arg("daemon")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`upswarm daemon {args:?}` with {} kept running",
                config.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const MANAGED: &str = "[managed]\nproduct = \"demo\"\ncommand = \"app\"\n";

#[test]
fn every_hostile_value_is_a_clear_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "dht",
            "[network_options]\ndht_refresh = \"0s\"\n".into(),
            "network_options.dht_refresh",
        ),
        (
            "resync",
            "[rollout]\nresync_interval = \"0s\"\n".into(),
            "rollout.resync_interval",
        ),
        (
            "skew",
            "clock_skew = \"100000000000y\"\n".into(),
            "clock_skew",
        ),
        (
            "day",
            "[[policy.windows]]\ndays = [\"funday\"]\nstart = \"02:00\"\nend = \"04:00\"\n".into(),
            "funday",
        ),
        (
            "tz",
            "[[policy.windows]]\nstart = \"02:00\"\nend = \"04:00\"\ntimezone = \"Mars/Olympus\"\n"
                .into(),
            "Mars/Olympus",
        ),
        (
            "time",
            "[[policy.windows]]\nstart = \"25:99\"\nend = \"04:00\"\n".into(),
            "25:99",
        ),
        (
            "url",
            format!("{MANAGED}[managed.health]\nhttp = \"not a url\"\n"),
            "managed.health.http",
        ),
        (
            "interval",
            format!("{MANAGED}[managed.health]\ninterval = \"0s\"\n"),
            "managed.health.interval",
        ),
        (
            "successes",
            format!("{MANAGED}[managed.health]\nsuccesses = 0\n"),
            "managed.health.successes",
        ),
        (
            "deadline",
            format!("{MANAGED}[managed.health]\ndeadline = \"0s\"\n"),
            "managed.health.deadline",
        ),
        (
            "timeout",
            format!("{MANAGED}[managed.health]\ntimeout = \"0s\"\n"),
            "managed.health.timeout",
        ),
        (
            "signal",
            format!("{MANAGED}stop_signal = \"SIGFOO\"\n"),
            "managed.stop_signal",
        ),
        (
            "event",
            "[webhooks]\nurls = [\"http://127.0.0.1:9/x\"]\nevents = [\"exploded\"]\n".into(),
            "webhooks.events[0]",
        ),
        (
            "hookurl",
            "[webhooks]\nurls = [\"file:///etc/passwd\"]\n".into(),
            "webhooks.urls[0]",
        ),
        (
            "command",
            "[managed]\ncommand = \"\"\n".into(),
            "managed.command",
        ),
        (
            "external",
            "[managed]\nmode = \"external\"\ncommand = \"/usr/bin/mynode\"\n".into(),
            "managed.hooks.start",
        ),
        (
            "hooktimeout",
            format!("{MANAGED}[managed.hooks]\ntimeout = \"0s\"\n"),
            "managed.hooks.timeout",
        ),
        (
            "pause",
            "[fault_injection]\napply_pause_at = \"commit\"\n".into(),
            "fault_injection",
        ),
        ("unknown", "chanels = [\"stable\"]\n".into(), "chanels"),
        ("duration", "clock_skew = \"soon\"\n".into(), "clock_skew"),
        (
            "peer",
            "[network_options]\ndenied_peers = [\"nobody\"]\n".into(),
            "network_options.denied_peers[0]",
        ),
        (
            "mirror",
            "[mirrors]\nurls = [\"ftp://files.example/r\"]\n".into(),
            "mirrors.urls[0]",
        ),
        (
            "mirror-slots",
            "[mirrors]\nmax_in_flight = 0\n".into(),
            "mirrors.max_in_flight",
        ),
        (
            "decode-window",
            "[transfer]\nmax_decode_window = 5\n".into(),
            "transfer.max_decode_window",
        ),
    ];
    for (name, extra, field) in &cases {
        let file = write_config(dir.path(), &format!("{name}.toml"), extra);
        let (ok, out) = daemon(&["--check-config"], &file);
        assert!(!ok, "{name}: accepted:\n{out}");
        assert!(
            out.contains(field),
            "{name}: the error does not name {field}:\n{out}"
        );
        assert!(
            out.contains(&file.display().to_string()),
            "{name}: the error does not name the file:\n{out}"
        );
        assert!(!out.contains("panicked"), "{name}: panic:\n{out}");
    }
    // Several problems at once: all of them are reported.
    let file = write_config(
        dir.path(),
        "many.toml",
        &format!(
            "{MANAGED}stop_signal = \"SIGFOO\"\n[managed.health]\ninterval = \"0s\"\n[rollout]\nresync_interval = \"0s\"\n"
        ),
    );
    let (ok, out) = daemon(&["--check-config"], &file);
    assert!(!ok);
    for field in [
        "managed.stop_signal",
        "managed.health.interval",
        "rollout.resync_interval",
    ] {
        assert!(out.contains(field), "{field} missing:\n{out}");
    }
}

#[test]
fn the_daemon_refuses_to_start_on_the_same_errors_and_check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    // The findings that used to panic the core or start a daemon that could never work:
    // the daemon exits at once with the error, and writes nothing to its data directory.
    for (name, extra, field) in [
        (
            "dht",
            "[network_options]\ndht_refresh = \"0s\"\n",
            "network_options.dht_refresh",
        ),
        (
            "resync",
            "[rollout]\nresync_interval = \"0s\"\n",
            "rollout.resync_interval",
        ),
    ] {
        let file = write_config(dir.path(), &format!("{name}.toml"), extra);
        let (ok, out) = daemon(&[], &file);
        assert!(
            !ok && out.contains(field) && !out.contains("panicked"),
            "{out}"
        );
        assert!(!dir.path().join(format!("data-{name}.toml")).exists());
    }
    let file = write_config(
        dir.path(),
        "good.toml",
        "[managed]\nproduct = \"demo\"\ncommand = \"app\"\nstop_signal = \"SIGINT\"\n\
         [managed.hooks]\npre_upgrade = [\"/bin/true\"]\ntimeout = \"10m\"\n\
         [[policy.windows]]\ndays = [\"tue\"]\nstart = \"22:00\"\nend = \"02:00\"\ntimezone = \"Europe/Berlin\"\n\
         [webhooks]\nurls = [\"https://alerts.example/upswarm\"]\nevents = [\"applied\", \"failed\"]\n",
    );
    let (ok, out) = daemon(&["--check-config"], &file);
    assert!(ok, "{out}");
    assert!(out.contains("valid"), "{out}");
    assert!(
        !dir.path().join("data-good.toml").exists(),
        "--check-config started something"
    );
}
