#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTPS mirrors as the last resort: a release whose only holder is a mirror (a real TLS
//! file server with a test CA the daemons trust) reaches nodes, which then share it among
//! themselves; a mirror serving a corrupted range is penalised and the chunk is taken from
//! another mirror. Where chunks came from is read from the nodes' counters.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::daemon::{Testnet, http_get, serial, wait_for};
use crate::common::evil::Evil;
use crate::common::tls::{TestCa, TlsFileServer};

/// Six chunks of 256 KiB, the last one short.
const SIZE: u64 = 5 * 256 * 1024 + 1000;
/// Where the test releases' artifact (`node`, platform `any`) sits on a mirror.
const PATH: &str = "/releases/any/node";

/// Copies the artifact of release `name`-`version` to `www` as a mirror lays it out.
fn lay_out(net: &Testnet, www: &Path, name: &str, version: &str) {
    let dest = www.join(PATH.trim_start_matches('/'));
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::copy(net.path().join(format!("{name}-{version}.bin")), dest).unwrap();
}

fn tls(ca: &TestCa) -> String {
    format!("[tls]\nextra_ca_file = \"{}\"\n", ca.ca_pem.display())
}

/// Bytes daemon `i` received from peers (direct and relayed) and from mirrors.
fn sources(net: &Testnet, i: usize) -> (u64, u64) {
    let d = &net.daemons[i];
    (
        d.counter("download_bytes_peer_direct") + d.counter("download_bytes_peer_relayed"),
        d.counter("download_bytes_mirror"),
    )
}

fn logs(net: &Testnet) -> String {
    net.daemons
        .iter()
        .map(|d| format!("--- {}\n{}", d.dir.display(), d.log()))
        .collect()
}

#[test]
fn a_release_held_only_by_an_https_mirror_reaches_nodes_which_then_share_it() {
    let _g = serial();
    let mut net = Testnet::new();
    let ca = TestCa::new(net.path());
    let www = net.path().join("www");
    let mirror = TlsFileServer::start(&ca, &www);
    let base = format!("https://localhost:{}/releases", mirror.port);
    let rel = net.release("app", "1.0.0", SIZE as usize, &["--mirror", &base]);
    lay_out(&net, &www, "app", "1.0.0");

    // A seed following another product: it keeps the release's DHT records and gossips
    // it, but never holds a chunk of it. The publisher is killed before any node that
    // follows the release exists: from then on only the mirror holds its bytes.
    let seed = net.spawn("seed", &[], "products = [\"other\"]\n");
    let publisher = net.spawn("publisher", &[seed], "");
    let (ok, out) = net.publish(publisher, &rel);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(60), || net
            .release_view(seed, "1.0.0")
            .is_some()),
        "the seed never heard of the release:\n{}",
        logs(&net)
    );
    net.daemons[publisher].kill();

    let quick = format!("{}[mirrors]\nafter = \"1s\"\n", tls(&ca));
    let a = net.spawn("a", &[seed], &quick);
    let b = net.spawn("b", &[seed], &quick);
    assert!(
        wait_for(Duration::from_secs(180), || net.complete(a, "1.0.0")
            && net.complete(b, "1.0.0")),
        "the nodes did not complete from the mirror:\n{}",
        logs(&net)
    );
    // Every byte is accounted for, and the mirror's bytes reached the nodes.
    let (pa, ma) = sources(&net, a);
    let (pb, mb) = sources(&net, b);
    assert_eq!(pa + ma, SIZE, "a: peers {pa}, mirror {ma}");
    assert_eq!(pb + mb, SIZE, "b: peers {pb}, mirror {mb}");
    assert!(ma + mb >= SIZE, "a {ma} + b {mb} from the mirror");
    assert!(mirror.bytes_served(PATH) >= SIZE);
    assert_eq!(net.daemons[a].counter("mirror_faults"), 0);
    assert_eq!(net.daemons[seed].counter("download_bytes_mirror"), 0);

    // A later node: its peers hold the release now, and it takes it from them. (Its
    // mirror fallback only starts after an hour: the test must not depend on how fast it
    // finds its peers.)
    let served_before = mirror.bytes_served(PATH);
    let c = net.spawn(
        "c",
        &[seed],
        &format!("{}[mirrors]\nafter = \"1h\"\n", tls(&ca)),
    );
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(c, "1.0.0")),
        "the later node did not complete from its peers:\n{}",
        logs(&net)
    );
    assert_eq!(sources(&net, c), (SIZE, 0));
    assert_eq!(net.daemons[c].counter("download_chunks_peer_direct"), 6);
    assert_eq!(mirror.bytes_served(PATH), served_before);
    // Prometheus sees the same, as one family with a `source` label.
    let (code, metrics) = http_get(net.daemons[c].api_port(), "/metrics").unwrap();
    assert_eq!(code, 200);
    for line in [
        format!("upswarm_download_bytes_total{{source=\"peer_direct\"}} {SIZE}"),
        "upswarm_download_bytes_total{source=\"mirror\"} 0".to_string(),
        "upswarm_download_chunks_total{source=\"peer_relayed\"} 0".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("# TYPE upswarm_download_bytes_total"))
            .count(),
        1
    );
    // And `explain` says where the chunks came from.
    let (ok, text) = net.daemons[a].cli(&["explain", "1.0.0"]);
    assert!(ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("chunks") && l.contains("from mirrors")),
        "{text}"
    );
}

#[test]
fn a_mirror_serving_a_corrupted_range_is_penalised_and_the_chunk_taken_from_another() {
    let _g = serial();
    let mut net = Testnet::new();
    let ca = TestCa::new(net.path());
    let www = net.path().join("www");
    let bad = TlsFileServer::start(&ca, &www);
    let good = TlsFileServer::start(&ca, &www);
    // One byte of chunk 1 is flipped in whatever the bad mirror serves.
    *bad.corrupt_at.lock().unwrap() = Some(256 * 1024 + 17);
    let good_base = format!("https://localhost:{}/releases", good.port);
    let bad_base = format!("https://localhost:{}/releases", bad.port);
    // The release names the good mirror; the node's own configuration names the bad one,
    // which it therefore tries first.
    let rel = net.release("app", "2.0.0", SIZE as usize, &["--mirror", &good_base]);
    lay_out(&net, &www, "app", "2.0.0");
    let n = net.spawn(
        "n",
        &[],
        &format!(
            "{}[mirrors]\nurls = [\"{bad_base}\"]\nafter = \"1s\"\nbackoff = \"1h\"\n",
            tls(&ca)
        ),
    );
    // A peer that knows the release and its chunk index but holds no chunk: the node
    // learns the release and the index from it; every chunk must come from a mirror, by
    // range requests.
    let addr = net.daemons[n].addr.clone();
    let rel_s = rel.to_string_lossy().into_owned();
    let manifest = rel.join("manifest.cbor").to_string_lossy().into_owned();
    let (_evil, _, _) = Evil::start(
        &[&addr],
        &[
            "--release",
            &rel_s,
            "--serve",
            "index-only",
            "--dht-put",
            &manifest,
        ],
    );
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(n, "2.0.0")),
        "the node did not complete from the mirrors:\n{}",
        logs(&net)
    );
    let d = &net.daemons[n];
    assert!(
        *bad.corrupted.lock().unwrap() >= 1,
        "the bad range was never asked for"
    );
    assert!(d.counter("mirror_faults") >= 1, "{}", d.log());
    assert!(d.log().contains("mirror fault"), "{}", d.log());
    assert_eq!(sources(&net, n), (0, SIZE));
    assert_eq!(d.counter("download_chunks_mirror"), 6);
    // Range requests of one chunk each, never the whole file; the corrupted chunk came
    // from the good mirror.
    let served = |m: &TlsFileServer| m.served.lock().unwrap().clone();
    for (_, range, bytes) in served(&bad).iter().chain(served(&good).iter()) {
        assert!(range.is_some() && *bytes <= 256 * 1024, "{range:?} {bytes}");
    }
    assert!(
        served(&good)
            .iter()
            .any(|(_, r, _)| r.as_deref()
                == Some(&format!("bytes={}-{}", 256 * 1024, 512 * 1024 - 1))),
        "chunk 1 was not taken from the good mirror: {:?}",
        served(&good)
    );
    let (ok, text) = d.cli(&["explain", "2.0.0"]);
    assert!(ok, "{text}");
    assert!(text.contains("mirror faults"), "{text}");
}

#[test]
fn release_create_signs_mirrors_into_the_manifest_and_refuses_bad_ones_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("a.bin");
    fs::write(&art, b"hello mirrors").unwrap();
    let artifact = format!("my node={}", art.display());
    let create = |out: &str, mirrors: &[&str]| {
        let mut args = vec![
            "release",
            "create",
            "--name",
            "app",
            "--version",
            "1.0.0",
            "--type",
            "patch",
            "--channel",
            "stable",
            "--artifact",
            &artifact,
            "--platform",
            "any",
            "--out",
            out,
        ];
        for m in mirrors {
            args.extend_from_slice(&["--mirror", m]);
        }
        let o = crate::common::upswarm()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    for (bad, why) in [
        ("https://m.example/r/", "ends with '/'"),
        ("ftp://m.example/r", "https:// or http://"),
        ("https://m.example/r?x=1", "'?'"),
    ] {
        let (ok, text) = create("bad", &[bad]);
        assert!(!ok, "{bad}: {text}");
        assert!(
            text.contains("--mirror") && text.contains(why),
            "{bad}: {text}"
        );
    }
    let (ok, text) = create("dup", &["https://m.example/r", "https://m.example/r"]);
    assert!(!ok && text.contains("twice"), "{text}");

    let (ok, text) = create("good", &["https://m.example/r", "http://10.0.0.9:8080/x"]);
    assert!(ok, "{text}");
    let inspect = crate::common::upswarm()
        .args(["release", "inspect"])
        .arg(dir.path().join("good/manifest.cbor"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    // The artifact name is percent-encoded in the mirror's path.
    assert!(text.contains("https://m.example/r/any/my%20node"), "{text}");
    assert!(text.contains("  http://10.0.0.9:8080/x"), "{text}");
}
