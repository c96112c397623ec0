#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The offline signing flow through the real `upswarm` binary: keys, roots, rotation,
//! releases — and what the user sees when the input is wrong.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::common::upswarm;

fn run(dir: &Path, args: &[&str]) -> Output {
    upswarm()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run upswarm")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "upswarm {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns stdout + stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "upswarm {args:?} should have failed:\n{text}"
    );
    assert!(
        !text.contains("panicked"),
        "upswarm {args:?} panicked:\n{text}"
    );
    text
}

/// Keys r1 r2 (root, 2-of-2), s1 s2 s3 (release, 2-of-3), c1 (control), v1 (voter); a
/// signed root.cbor; and a 3 MiB artifact app.bin.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["r1", "r2", "s1", "s2", "s3", "c1", "v1"] {
        let id = ok(d, &["key", "gen", "--out", k]);
        assert_eq!(id.trim().len(), 64, "key id is 64 hex digits: {id}");
        assert_eq!(
            fs::metadata(d.join(format!("{k}.key")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    ok(
        d,
        &[
            "root",
            "init",
            "--out",
            "root.cbor",
            "--root-key",
            "r1.pub",
            "r2.pub",
            "--root-threshold",
            "2",
            "--release-key",
            "s1.pub",
            "s2.pub",
            "s3.pub",
            "--release-threshold",
            "2",
            "--type-threshold",
            "hotfix=1",
            "--control-key",
            "c1.pub",
            "--control-threshold",
            "1",
            "--voter",
            "v1.pub=5",
        ],
    );
    ok(d, &["root", "sign", "--key", "r1.key", "root.cbor"]);
    ok(d, &["root", "sign", "--key", "r2.key", "root.cbor"]);
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(d.join("app.bin"), data).unwrap();
    dir
}

fn create_release(d: &Path, out: &str) {
    ok(
        d,
        &[
            "release",
            "create",
            "--name",
            "demo",
            "--version",
            "1.0.0",
            "--type",
            "minor",
            "--channel",
            "stable",
            "--artifact",
            "node=app.bin",
            "--chunk-size",
            "256KiB",
            "--out",
            out,
        ],
    );
}

#[test]
fn key_root_release_flow() {
    let dir = setup();
    let d = dir.path();
    assert!(ok(d, &["root", "verify", "root.cbor"]).contains("OK"));
    create_release(d, "rel");
    let m = "rel/manifest.cbor";
    // Unsigned: rejected with a report.
    let report = fails(d, &["release", "verify", "--root", "root.cbor", m]);
    assert!(report.contains("0 valid of 2 required"), "{report}");
    ok(d, &["release", "sign", "--key", "s1.key", m]);
    let before = fs::read(d.join(m)).unwrap();
    let again = ok(d, &["release", "sign", "--key", "s1.key", m]);
    assert!(again.contains("nothing added"), "{again}");
    assert_eq!(
        fs::read(d.join(m)).unwrap(),
        before,
        "signing twice with one key changes nothing"
    );
    // A root key's signature is ignored and the report says why.
    ok(d, &["release", "sign", "--key", "r1.key", m]);
    let report = fails(d, &["release", "verify", "--root", "root.cbor", m]);
    assert!(report.contains("1 valid of 2 required"), "{report}");
    assert!(
        report.contains("key of the root role, not of this role"),
        "{report}"
    );
    ok(d, &["release", "sign", "--key", "s2.key", m]);
    let report = ok(d, &["release", "verify", "--root", "root.cbor", m]);
    assert!(
        report.contains("2 valid of 2 required") && report.contains("hashes match"),
        "{report}"
    );
    let summary = ok(d, &["release", "inspect", m]);
    assert!(
        summary.contains("demo 1.0.0") && summary.contains("12 chunk(s)"),
        "{summary}"
    );
    let json = ok(d, &["release", "inspect", "--json", m]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["manifest"]["version"], "1.0.0");
}

#[test]
fn tampered_or_missing_chunks_fail_verification() {
    let dir = setup();
    let d = dir.path();
    create_release(d, "rel");
    for k in ["s1.key", "s2.key"] {
        ok(d, &["release", "sign", "--key", k, "rel/manifest.cbor"]);
    }
    // Flip one byte of one chunk file.
    let chunk = walk_files(&d.join("rel/chunks"))
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() == 256 * 1024)
        .unwrap();
    let mut bytes = fs::read(&chunk).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&chunk, &bytes).unwrap();
    let verify = [
        "release",
        "verify",
        "--root",
        "root.cbor",
        "rel/manifest.cbor",
    ];
    let report = fails(d, &verify);
    assert!(
        report.contains("artifact node") && report.contains("does not match its hash"),
        "{report}"
    );
    // `verify` only reads: the damaged chunk is still there, as it was, and a second
    // run reports the same damage.
    assert_eq!(fs::read(&chunk).unwrap(), bytes);
    let report = fails(d, &verify);
    assert!(report.contains("does not match its hash"), "{report}");
    // A chunk that is gone: still a clear failure.
    fs::remove_file(&chunk).unwrap();
    let report = fails(d, &verify);
    assert!(report.contains("missing"), "{report}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn rotation_needs_old_and_new_root_keys() {
    let dir = setup();
    let d = dir.path();
    ok(d, &["key", "gen", "--out", "r3"]);
    ok(
        d,
        &[
            "root",
            "rotate",
            "--previous",
            "root.cbor",
            "--out",
            "root2.cbor",
            "--root-key",
            "r2.pub",
            "r3.pub",
        ],
    );
    let inspect = ok(d, &["root", "inspect", "root2.cbor"]);
    assert!(inspect.contains("version 2"), "{inspect}");
    // Release role carried over from version 1.
    assert!(inspect.contains("release:    2 of"), "{inspect}");
    ok(d, &["root", "sign", "--key", "r3.key", "root2.cbor"]);
    ok(d, &["root", "sign", "--key", "r2.key", "root2.cbor"]);
    // Signed by the new root role only (r2 + r3); the old role (r1 + r2) has only r2.
    let report = fails(
        d,
        &["root", "verify", "root2.cbor", "--previous", "root.cbor"],
    );
    assert!(
        report.contains("previous root") && report.contains("1 valid of 2"),
        "{report}"
    );
    ok(d, &["root", "sign", "--key", "r1.key", "root2.cbor"]);
    ok(
        d,
        &["root", "verify", "root2.cbor", "--previous", "root.cbor"],
    );
    // Going back: the old root is not a rotation of the new one.
    let report = fails(
        d,
        &["root", "verify", "root.cbor", "--previous", "root2.cbor"],
    );
    assert!(report.contains("rollback"), "{report}");
}

#[test]
fn hostile_files_get_clear_errors() {
    let dir = setup();
    let d = dir.path();
    // A 100 MB file passed as a manifest: refused from its size, without reading it.
    let f = fs::File::create(d.join("huge.cbor")).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    let err = fails(d, &["release", "inspect", "huge.cbor"]);
    assert!(
        err.contains("huge.cbor") && err.contains("over the limit of 65536 bytes"),
        "{err}"
    );
    // Random bytes.
    fs::write(d.join("noise.cbor"), b"\x9f\xff\x00garbage\x13\x37").unwrap();
    let err = fails(d, &["root", "verify", "noise.cbor"]);
    assert!(
        err.contains("noise.cbor") && err.contains("not a valid trust root"),
        "{err}"
    );
    // Truncated root.
    let root = fs::read(d.join("root.cbor")).unwrap();
    fs::write(d.join("cut.cbor"), &root[..root.len() / 2]).unwrap();
    let err = fails(d, &["root", "verify", "cut.cbor"]);
    assert!(
        err.contains("cut.cbor") && err.contains("truncated"),
        "{err}"
    );
    // A root passed where a manifest is expected.
    let err = fails(d, &["release", "inspect", "root.cbor"]);
    assert!(
        err.contains("root.cbor") && err.contains("not a valid manifest"),
        "{err}"
    );
    // Missing file.
    let err = fails(d, &["release", "verify", "--root", "nope.cbor", "x.cbor"]);
    assert!(err.contains("nope.cbor"), "{err}");
    // Artifact names that could escape a directory.
    for name in ["../evil", "bin/node"] {
        let spec = format!("{name}=app.bin");
        let err = fails(
            d,
            &[
                "release",
                "create",
                "--name",
                "x",
                "--version",
                "1.0.0",
                "--type",
                "patch",
                "--channel",
                "stable",
                "--artifact",
                &spec,
                "--out",
                "bad",
            ],
        );
        assert!(err.contains("not a plain file name"), "{err}");
    }
    // A secret key where a public key belongs, and a world-readable secret key.
    let err = fails(
        d,
        &[
            "root",
            "init",
            "--out",
            "x.cbor",
            "--root-key",
            "r1.key",
            "--root-threshold",
            "1",
            "--release-key",
            "s1.pub",
            "--release-threshold",
            "1",
        ],
    );
    assert!(err.contains("r1.key") && err.contains("SECRET"), "{err}");
    fs::set_permissions(d.join("s3.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(d, &["root", "sign", "--key", "s3.key", "root.cbor"]);
    assert!(err.contains("s3.key") && err.contains("chmod 600"), "{err}");
    // Impossible thresholds.
    let err = fails(
        d,
        &[
            "root",
            "init",
            "--out",
            "y.cbor",
            "--root-key",
            "r1.pub",
            "--root-threshold",
            "2",
            "--release-key",
            "s1.pub",
            "--release-threshold",
            "1",
        ],
    );
    assert!(err.contains("threshold 2 is more than the 1 keys"), "{err}");
    // Bad CLI values name the flag's value.
    let err = fails(
        d,
        &[
            "release",
            "create",
            "--name",
            "x",
            "--version",
            "one",
            "--type",
            "patch",
            "--channel",
            "stable",
            "--artifact",
            "a=app.bin",
            "--out",
            "bad",
        ],
    );
    assert!(err.contains("one"), "{err}");
    let err = fails(
        d,
        &[
            "release",
            "create",
            "--name",
            "x",
            "--version",
            "1.0.0",
            "--type",
            "mayor",
            "--channel",
            "stable",
            "--artifact",
            "a=app.bin",
            "--out",
            "bad",
        ],
    );
    assert!(err.contains("unknown update type"), "{err}");
    assert!(!d.join("bad/manifest.cbor").exists());
}

#[test]
fn an_expired_manifest_fails_verification() {
    let dir = setup();
    let d = dir.path();
    ok(
        d,
        &[
            "release",
            "create",
            "--name",
            "demo",
            "--version",
            "1.0.0",
            "--type",
            "hotfix",
            "--channel",
            "stable",
            "--artifact",
            "node=app.bin",
            "--expires-in",
            "1s",
            "--out",
            "rel",
        ],
    );
    ok(
        d,
        &["release", "sign", "--key", "s1.key", "rel/manifest.cbor"],
    );
    // Within the default 5-minute skew allowance it is still valid...
    ok(
        d,
        &[
            "release",
            "verify",
            "--root",
            "root.cbor",
            "rel/manifest.cbor",
        ],
    );
    // ...but not once it is past its expiry with no skew allowed.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let report = fails(
        d,
        &[
            "release",
            "verify",
            "--skew",
            "0s",
            "--root",
            "root.cbor",
            "rel/manifest.cbor",
        ],
    );
    assert!(report.contains("manifest expired at"), "{report}");
}

/// Times past year 9999, terminal escapes in signer-written text, and a reader that goes
/// away: every command answers with a clear error or safe text, never a panic.
#[test]
fn hostile_times_text_and_broken_pipes() {
    use crate::common::{key, manifest, roles, signed_manifest, signed_root};
    use upswarm_proto::UpdateType;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("std.cbor"), common::standard_root().encode()).unwrap();

    // A manifest expiring after 9999-12-31T23:59:59Z is refused by every command alike.
    let m = manifest(UpdateType::Minor, 253_402_300_800);
    let env = signed_manifest(&m, &[&key(10), &key(11)]);
    fs::write(d.join("late.cbor"), env.encode()).unwrap();
    for args in [
        &["release", "inspect", "late.cbor"][..],
        &["release", "verify", "--root", "std.cbor", "late.cbor"][..],
    ] {
        let err = fails(d, args);
        assert!(err.contains("expires_at") && err.contains("9999"), "{err}");
    }
    // The same for a root.
    let root = signed_root(1, u64::MAX, roles(), &[&key(1), &key(2)]);
    fs::write(d.join("late-root.cbor"), root.encode()).unwrap();
    for sub in ["inspect", "verify"] {
        let err = fails(d, &["root", sub, "late-root.cbor"]);
        assert!(err.contains("expires_at"), "{err}");
    }
    // The last representable time is shown as it is.
    let m = manifest(UpdateType::Minor, 253_402_300_799);
    let env = signed_manifest(&m, &[&key(10), &key(11)]);
    fs::write(d.join("edge.cbor"), env.encode()).unwrap();
    let shown = ok(d, &["release", "inspect", "edge.cbor"]);
    assert!(shown.contains("9999-12-31T23:59:59Z"), "{shown}");

    // Escape sequences and bidi overrides in the changelog are shown, not obeyed.
    let mut m = manifest(UpdateType::Minor, common::FAR);
    m.changelog.features = vec!["clear\u{1b}[2J screen".into(), "txt.\u{202e}exe".into()];
    let env = signed_manifest(&m, &[&key(10), &key(11)]);
    fs::write(d.join("esc.cbor"), env.encode()).unwrap();
    let shown = ok(d, &["release", "inspect", "esc.cbor"]);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert!(
        shown.contains("\\u{1b}[2J") && shown.contains("\\u{202e}"),
        "{shown}"
    );

    // Output into a pipe nobody reads any more ends quietly.
    let mut child = upswarm()
        .current_dir(d)
        .args(["release", "inspect", "esc.cbor"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Three node ids in a file (with a comment and a blank line), read back.
fn node_list(d: &Path) -> Vec<upswarm_proto::KeyId> {
    let ids: Vec<upswarm_proto::KeyId> = ["n1", "n2", "n3"]
        .iter()
        .map(|k| {
            let out = ok(d, &["key", "gen", "--out", k]);
            upswarm_proto::KeyId::from_hex(out.trim()).unwrap()
        })
        .collect();
    fs::write(
        d.join("nodes.txt"),
        format!(
            "# the fleet\n{}\n\n{}  # second\n{}\n",
            ids[0].to_hex(),
            ids[1].to_hex(),
            ids[2].to_hex()
        ),
    )
    .unwrap();
    ids
}

/// The fleet before publication: three nodes, a 34 % canary phase that none of
/// their ranks falls in. `release inspect --nodes` shows the canary the nodes will draw.
#[test]
fn release_inspect_previews_the_cohorts_of_a_node_list() {
    let dir = setup();
    let d = dir.path();
    let ids = node_list(d);
    let plan = upswarm_proto::RolloutPlan {
        phases: vec![
            upswarm_proto::Phase {
                until_bp: 3400,
                min_soak_secs: 30,
                max_failure_bp: 1000,
                min_reports: 1,
            },
            upswarm_proto::Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp: 1000,
                min_reports: 1,
            },
        ],
    };
    // Re-create the release (another changelog, another id) until no rank is below 34 %.
    let mut found = None;
    for attempt in 0..60 {
        let out = format!("rel{attempt}");
        fs::write(d.join("changes.md"), format!("- attempt {attempt}\n")).unwrap();
        ok(
            d,
            &[
                "release",
                "create",
                "--name",
                "demo",
                "--version",
                "1.0.0",
                "--type",
                "minor",
                "--channel",
                "stable",
                "--artifact",
                "node=app.bin",
                "--changelog",
                "changes.md",
                "--phase",
                "34:30s:10:1",
                "--phase",
                "100",
                "--out",
                &out,
            ],
        );
        let manifest = format!("{out}/manifest.cbor");
        let v: serde_json::Value =
            serde_json::from_str(&ok(d, &["release", "inspect", "--json", &manifest])).unwrap();
        let id = upswarm_proto::Hash32::from_hex(v["release_id"].as_str().unwrap()).unwrap();
        if ids
            .iter()
            .all(|n| upswarm_rollout::phase_of(&plan, upswarm_rollout::rank(&id, n)) == 1)
        {
            found = Some((manifest, id));
            break;
        }
    }
    let (manifest, id) = found.expect("a release that ranks no node below 34 %");
    let cohorts = upswarm_rollout::Cohorts::new(&plan, &id, ids.iter().copied());
    let order: Vec<upswarm_rollout::Placement> = cohorts.placements().collect();

    let text = ok(
        d,
        &["release", "inspect", &manifest, "--nodes", "nodes.txt"],
    );
    for needle in [
        "cohorts      3 node(s) from nodes.txt",
        "  phase 0: 1 node(s)\n  phase 1: 2 node(s)\n",
        "install order (phase by phase; inside a phase each node installs its delay after the phase opened, spread 1m)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // One row per node, in install order: the lowest rank is the canary, promoted.
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("install order"))
        .skip(2)
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (row, p) in rows.iter().zip(&order) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], (p.position + 1).to_string(), "{row}");
        assert_eq!(cols[1], p.phase.to_string(), "{row}");
        assert_eq!(
            cols[2],
            format!("{:.4}", p.rank.fraction() * 100.0),
            "{row}"
        );
        assert_eq!(cols[6], p.node.to_hex(), "{row}");
    }
    assert!(rows[0].ends_with("(promoted from phase 1)"), "{text}");
    assert!(!rows[1].contains("promoted") && !rows[2].contains("promoted"));
    assert!(rows[0].split_whitespace().nth(1) == Some("0"));

    // The same as JSON, with install delays for the given spread.
    let v: serde_json::Value = serde_json::from_str(&ok(
        d,
        &[
            "release",
            "inspect",
            "--json",
            &manifest,
            "--nodes",
            "nodes.txt",
            "--spread",
            "90s",
        ],
    ))
    .unwrap();
    let c = &v["cohorts"];
    assert_eq!(c["nodes"], 3);
    assert_eq!(c["phase_sizes"], serde_json::json!([1, 2]));
    assert_eq!(c["spread_secs"], 90);
    for (i, p) in order.iter().enumerate() {
        let o = &c["order"][i];
        assert_eq!(o["node"], p.node.to_hex());
        assert_eq!(o["phase"], p.phase);
        assert_eq!(o["rank_phase"], 1);
        assert_eq!(o["promoted"], i == 0);
        let delay =
            upswarm_rollout::install_delay(&id, &p.node, std::time::Duration::from_secs(90));
        assert_eq!(o["install_delay_secs"], delay.as_secs());
    }

    // Bad lists: the line and what a node id is.
    fs::write(
        d.join("bad.txt"),
        format!("{}\nnot-a-node\n", ids[0].to_hex()),
    )
    .unwrap();
    let err = fails(d, &["release", "inspect", &manifest, "--nodes", "bad.txt"]);
    assert!(
        err.contains("bad.txt:2: \"not-a-node\" is not a node id (64 hex digits"),
        "{err}"
    );
    fs::write(d.join("empty.txt"), "# nobody\n\n").unwrap();
    let err = fails(
        d,
        &["release", "inspect", &manifest, "--nodes", "empty.txt"],
    );
    assert!(err.contains("empty.txt: no node ids in the list"), "{err}");
    let err = fails(
        d,
        &["release", "inspect", &manifest, "--nodes", "missing.txt"],
    );
    assert!(err.contains("missing.txt"), "{err}");
    let err = fails(d, &["release", "inspect", &manifest, "--spread", "10s"]);
    assert!(err.contains("--nodes"), "{err}");
}

/// `upswarm sim --nodes 3`: a canary, and a bad release halts there.
#[test]
fn sim_of_three_nodes_has_a_canary_and_halts_a_bad_release_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ok(d, &["sim", "--nodes", "3", "--report-loss", "0"]);
    assert!(good.contains("(1 / 1 / 1 / 0 nodes)"), "{good}");
    assert!(
        good.contains("installed:        3 (100.00 % of nodes"),
        "{good}"
    );
    for plan in [vec![], vec!["--phase", "34:30s:10:1", "--phase", "100"]] {
        let mut args = vec![
            "sim",
            "--nodes",
            "3",
            "--failure",
            "1",
            "--report-loss",
            "0",
        ];
        args.extend(plan);
        let bad = ok(d, &args);
        assert!(
            bad.contains("installed:        1 (33.33 % of nodes"),
            "{bad}"
        );
        assert!(
            bad.contains("halted at") && bad.contains("phase 0 had 1 failure(s)"),
            "{bad}"
        );
        assert!(bad.contains("phases opened at: [0s, -"), "{bad}");
    }
}
