#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Setting a node up through the real binary: `upswarm init`, completions, man pages.

use std::process::Stdio;

use crate::common::upswarm;

fn run(args: &[&str]) -> (bool, String) {
    let out = upswarm().args(args).stdin(Stdio::null()).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{args:?}: {text}");
    (out.status.success(), text)
}

#[test]
fn init_writes_a_valid_commented_configuration_and_never_clobbers_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etc/upswarm.toml");
    let out_s = out.to_string_lossy().into_owned();
    let args = [
        "init",
        "--out",
        &out_s,
        "--network",
        "prod",
        "--data-dir",
        "/var/lib/upswarm",
        "--trust-root",
        "/etc/upswarm/root.cbor",
        "--bootstrap",
        "/dns4/seed1.example/tcp/4001/p2p/12D3KooWLdAzrb9UidhoMQjLTZ6NJY4D6LmZZq7SF6nDTeBR1dxj",
        "--product",
        "mynode",
        "--command",
        "mynode",
        "--health-url",
        "https://127.0.0.1:8443/health",
    ];
    let (ok, text) = run(&args);
    assert!(ok, "{text}");
    assert!(
        text.contains("next steps") && text.contains("--check-config"),
        "{text}"
    );
    let config = std::fs::read_to_string(&out).unwrap();
    assert!(
        config.contains("# ") && config.contains("network = \"prod\""),
        "{config}"
    );
    let (ok, text) = run(&["daemon", "--config", &out_s, "--check-config"]);
    assert!(ok && text.contains("valid"), "{text}");
    // A second run refuses to overwrite it.
    let (ok, text) = run(&args);
    assert!(
        !ok && text.contains("already exists") && text.contains("--force"),
        "{text}"
    );
    // A managed program needs its product.
    let other = dir.path().join("b.toml").to_string_lossy().into_owned();
    let (ok, text) = run(&["init", "--yes", "--out", &other, "--command", "mynode"]);
    assert!(!ok && text.contains("--product"), "{text}");
    assert!(!dir.path().join("b.toml").exists());
    // Without a program: a distributing node, valid too.
    let (ok, text) = run(&["init", "--yes", "--out", &other]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["daemon", "--config", &other, "--check-config"]);
    assert!(ok, "{text}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, text) = run(&["completions", shell]);
        assert!(
            ok && text.contains("upswarm") && text.contains("release"),
            "{shell}"
        );
    }
    let (ok, _) = run(&["completions", "tcsh"]);
    assert!(!ok);
    let (ok, page) = run(&["man"]);
    assert!(ok && page.contains(".TH upswarm"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(&["man", "--out", &dir.path().to_string_lossy()]);
    assert!(ok, "{text}");
    for page in [
        "upswarm.1",
        "upswarm-daemon.1",
        "upswarm-release-create.1",
        "upswarm-init.1",
    ] {
        let body = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(body.contains(".TH"), "{page}");
    }
    // Into a pipe nobody reads: a quiet end.
    let mut child = upswarm()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
