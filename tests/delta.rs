//! Delta updates and compressed transfer (issue 17), on a real testnet: every managed node
//! runs 1.0.0; 2.0.0 is published with a `zstd-patch` form from 1.0.0. A node holding 1.0.0
//! fetches only the delta; a node whose copies of 1.0.0 are damaged, and a node that holds
//! none, fall back to the compressed form; all three end running 2.0.0, verified.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::daemon::{
    Testnet, free_port, managed_config, outcomes, serial, version_served, wait_for,
};

const CHUNK: usize = 256 * 1024;

/// About 2 MiB of text-like bytes (16 symbols: compresses to about half).
fn payload(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..2 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789abcdef"[(x >> 60) as usize]
        })
        .collect()
}

/// A demo release with a third artifact, `payload` (written into the release's source
/// directory, `demo-src-VERSION`, beside the demo program and its `demo.toml`).
fn release(net: &Testnet, version: &str, data: &[u8], extra: &[&str]) -> PathBuf {
    let src = net.path().join(format!("demo-src-{version}"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("payload"), data).unwrap();
    let art = format!("payload={}", src.join("payload").display());
    let mut args = vec!["--artifact", art.as_str()];
    args.extend_from_slice(extra);
    net.demo_release(version, "healthy", "hotfix", &args)
}

fn inspect(dir: &Path) -> Value {
    let out = crate::common::upswarm()
        .args(["release", "inspect", "--json"])
        .arg(dir.join("manifest.cbor"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The forms of artifact `name` in `release inspect --json` output.
fn forms<'a>(m: &'a Value, name: &str) -> &'a Vec<Value> {
    m["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["forms"]
        .as_array()
        .unwrap()
}

/// How daemon `i` fetched artifact `name` of `version` (status: the download's `forms`).
fn form_use(net: &Testnet, i: usize, version: &str, name: &str) -> Option<Value> {
    net.release_view(i, version)?["progress"]["forms"]
        .as_array()?
        .iter()
        .find(|f| f["artifact"] == name)
        .cloned()
}

/// Overwrites every copy of `data` under `dir` (downloaded and installed files) with a
/// damaged one of the same size, and damages its chunks in `dir/chunks` if any (a node
/// keeps none of an artifact it holds whole: they are served from the file).
fn damage(dir: &Path, name: &str, data: &[u8]) {
    let mut bad = data.to_vec();
    bad[1000] ^= 0x55;
    let mut hit = 0;
    for sub in ["releases", "versions"] {
        for e in fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let p = e.path().join(name);
            if fs::read(&p).is_ok_and(|b| b == data) {
                fs::write(&p, &bad).unwrap();
                hit += 1;
            }
        }
    }
    // `versions/` may hard-link the assembled file: one write can damage both.
    assert!(hit >= 1, "no copy of the base under {}", dir.display());
    for c in data.chunks(CHUNK) {
        let h = blake3::hash(c).to_hex().to_string();
        let p = dir.join("chunks").join(&h[..2]).join(&h);
        if p.is_file() {
            fs::write(&p, b"damaged").unwrap();
        }
    }
}

/// Removes every copy of `data` under `dir`: no base at all.
fn remove(dir: &Path, name: &str, data: &[u8]) {
    for sub in ["releases", "versions"] {
        for e in fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let p = e.path().join(name);
            if fs::read(&p).is_ok_and(|b| b == data) {
                fs::remove_file(&p).unwrap();
            }
        }
    }
    for c in data.chunks(CHUNK) {
        let h = blake3::hash(c).to_hex().to_string();
        let _ = fs::remove_file(dir.join("chunks").join(&h[..2]).join(&h));
    }
}

#[test]
fn a_node_with_the_base_fetches_only_the_delta_and_the_others_fall_back() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes: Vec<usize> = ["with-base", "damaged-base", "no-base"]
        .iter()
        .zip(&ports)
        .map(|(name, port)| net.spawn(name, &[0], &managed_config(*port, "")))
        .collect();

    let p1 = payload(7);
    let v1 = release(&net, "1.0.0", &p1, &[]);
    assert!(net.publish(0, &v1).0);
    for (&i, &port) in nodes.iter().zip(&ports) {
        let ok = wait_for(Duration::from_secs(90), || {
            version_served(port).as_deref() == Some("1.0.0")
        });
        assert!(ok, "1.0.0 never served:\n{}", net.daemons[i].log());
    }

    // 2.0.0: a few bytes inserted at the start (no chunk of 1.0.0 is reusable) and one
    // changed in the middle.
    let mut p2 = b"2.0.0\n".to_vec();
    p2.extend_from_slice(&p1);
    p2[1_000_000] ^= 0x20;
    let base_dir = net.path().join("demo-src-1.0.0");
    let base = base_dir.to_string_lossy().into_owned();
    let v2 = release(&net, "2.0.0", &p2, &["--delta-from", &base]);
    let m2 = inspect(&v2);
    let pf = forms(&m2, "payload");
    let patch = pf.iter().find(|f| f["kind"] == "zstd-patch").unwrap();
    let zstd = pf.iter().find(|f| f["kind"] == "zstd").unwrap();
    let patch_size = patch["size"].as_u64().unwrap();
    let zstd_size = zstd["size"].as_u64().unwrap();
    assert!(patch_size < 4096, "delta of {patch_size} bytes");
    assert!(
        zstd_size < p2.len() as u64 * 3 / 4,
        "zstd form of {zstd_size} bytes"
    );
    assert_eq!(
        patch["base"].as_str().unwrap(),
        blake3::hash(&p1).to_hex().as_str()
    );
    // The demo program is the same in both: no delta of it, only its compressed form.
    assert!(
        forms(&m2, "app").iter().all(|f| f["kind"] == "zstd"),
        "{m2}"
    );

    damage(&net.daemons[nodes[1]].dir.join("data"), "payload", &p1);
    remove(&net.daemons[nodes[2]].dir.join("data"), "payload", &p1);
    let before = net.daemons[nodes[0]].counter("bytes_fetched");
    assert!(net.publish(0, &v2).0);
    for (&i, &port) in nodes.iter().zip(&ports) {
        let ok = wait_for(Duration::from_secs(120), || {
            version_served(port).as_deref() == Some("2.0.0")
        });
        assert!(ok, "2.0.0 never served:\n{}", net.daemons[i].log());
        assert!(wait_for(Duration::from_secs(20), || outcomes(
            &net, i, "2.0.0"
        ) == ["applied"]));
        let installed = net.daemons[i].dir.join("data/versions/2.0.0/payload");
        assert_eq!(fs::read(&installed).unwrap(), p2, "{}", installed.display());
    }

    // The node with the base: the delta, and little else (demo.toml's own delta).
    let u = form_use(&net, nodes[0], "2.0.0", "payload").unwrap();
    assert_eq!(u["form"], "zstd-patch", "{u}");
    assert_eq!(u["bytes_fetched"].as_u64().unwrap(), patch_size, "{u}");
    assert_eq!(
        u["bytes_saved"].as_u64().unwrap(),
        p2.len() as u64 - patch_size,
        "{u}"
    );
    let fetched = net.daemons[nodes[0]].counter("bytes_fetched") - before;
    assert!(
        fetched < patch_size + 4096,
        "the node with the base fetched {fetched} bytes for a delta of {patch_size}"
    );
    assert!(net.daemons[nodes[0]].counter("transfer_saved_bytes") >= p2.len() as u64 - patch_size);
    let (ok, text) = net.daemons[nodes[0]].cli(&["explain", "2.0.0"]);
    assert!(
        ok && text.contains("fetched   payload as zstd-patch from base "),
        "{text}"
    );

    // Damaged and missing bases: never used; the compressed form instead.
    for &i in &nodes[1..] {
        let u = form_use(&net, i, "2.0.0", "payload").unwrap();
        assert_eq!(u["form"], "zstd", "{u}");
        // At most the form (an end-game duplicate may leave a chunk uncounted).
        let b = u["bytes_fetched"].as_u64().unwrap();
        assert!(b > 0 && b <= zstd_size, "{u}");
        assert!(
            u["notes"][0]
                .as_str()
                .unwrap()
                .contains("base not held here"),
            "{u}"
        );
    }
    // 3.0.0 carries a delta that lies: its base is said to be the demo program (which the
    // node holds), but it was made against 1.0.0's payload. The node tries it, the output
    // does not hash to the target (or zstd refuses it), and it falls back to the
    // compressed form.
    let mut p3 = b"3.0.0\n".to_vec();
    p3.extend_from_slice(&p2);
    p3[1_500_000] ^= 0x20;
    let v3 = release(&net, "3.0.0", &p3, &["--delta-from", &base]);
    let app = fs::read(crate::common::daemon::demo_app_binary()).unwrap();
    relabel_payload_base(
        &net,
        &v3,
        upswarm_proto::Hash32(*blake3::hash(&app).as_bytes()),
    );
    let failed_before = net.daemons[nodes[0]].counter("forms_failed");
    assert!(net.publish(0, &v3).0);
    let ok = wait_for(Duration::from_secs(120), || {
        version_served(ports[0]).as_deref() == Some("3.0.0")
    });
    assert!(ok, "3.0.0 never served:\n{}", net.daemons[nodes[0]].log());
    let installed = net.daemons[nodes[0]]
        .dir
        .join("data/versions/3.0.0/payload");
    assert_eq!(fs::read(&installed).unwrap(), p3);
    let u = form_use(&net, nodes[0], "3.0.0", "payload").unwrap();
    assert_eq!(u["form"], "zstd", "{u}");
    let note = u["notes"][0].as_str().unwrap();
    assert!(note.starts_with("zstd-patch from "), "{u}");
    assert!(!note.contains("base not held"), "the base was held: {u}");
    assert!(net.daemons[nodes[0]].counter("forms_failed") > failed_before);

    let metrics = crate::common::daemon::http_get(net.daemons[nodes[0]].api_port(), "/metrics");
    if let Some((200, body)) = metrics {
        assert!(
            body.contains("upswarm_transfer_saved_bytes_total "),
            "{body}"
        );
    }
}

/// Rewrites the release in `dir` so that its payload's `zstd-patch` form names `base` as
/// its base, and signs it again (s10, s11, s12): a delta the signers got wrong.
fn relabel_payload_base(net: &Testnet, dir: &Path, base: upswarm_proto::Hash32) {
    use upswarm_proto::{Manifest, SignedEnvelope};
    let path = dir.join("manifest.cbor");
    let env = SignedEnvelope::decode::<Manifest>(&fs::read(&path).unwrap()).unwrap();
    let mut m: Manifest = env.open().unwrap();
    let a = m
        .artifacts
        .iter_mut()
        .find(|a| a.name == "payload")
        .unwrap();
    let f = a
        .forms
        .as_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f.base.is_some())
        .unwrap();
    f.base = Some(base);
    fs::write(&path, SignedEnvelope::wrap(&m).encode()).unwrap();
    for k in ["s10.key", "s11.key", "s12.key"] {
        let out = crate::common::upswarm()
            .args(["release", "sign", "--key"])
            .arg(net.path().join(k))
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn release_create_refuses_bad_delta_sources() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    fs::write(&a, payload(1)).unwrap();
    fs::write(&b, b"x").unwrap();
    let run = |extra: &[&str]| {
        let out = crate::common::upswarm()
            .args([
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
                "--platform",
                "any",
            ])
            .arg("--artifact")
            .arg(format!("a={}", a.display()))
            .arg("--artifact")
            .arg(format!("b={}", b.display()))
            .arg("--out")
            .arg(dir.path().join(format!("out{}", extra.len())))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["--delta-from", &a.to_string_lossy()]);
    assert!(
        !ok && err.contains("a single file is a base only for a release of one artifact"),
        "{err}"
    );
    let (ok, err) = run(&["--delta-from", "/nonexistent/dir", "--no-compress"]);
    assert!(
        !ok && err.contains("--delta-from /nonexistent/dir: cannot read"),
        "{err}"
    );
}
