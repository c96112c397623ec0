#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The daemon's outbound HTTPS: webhooks to a real TLS listener whose certificate is signed by
//! a test CA the daemon is told to trust — and refused by a daemon that does not trust it.

use crate::common;

use std::time::Duration;

use crate::common::daemon::{Testnet, serial, wait_for};
use crate::common::tls::{TestCa, TlsHookSink};

#[test]
fn https_webhooks_arrive_when_the_ca_is_trusted_and_never_otherwise() {
    let _g = serial();
    let mut net = Testnet::new();
    let ca = TestCa::new(net.path());
    let sink = TlsHookSink::start(&ca);
    let hooks = format!(
        "[webhooks]\nurls = [\"https://localhost:{}/hook\"]\nevents = [\"update_available\"]\n",
        sink.port
    );
    let trusting = net.spawn(
        "trusting",
        &[],
        &format!(
            "{hooks}[tls]\nextra_ca_file = \"{}\"\n",
            ca.ca_pem.display()
        ),
    );
    let sceptic = net.spawn("sceptic", &[trusting], &hooks);
    let rel = net.release("app", "1.0.0", 64 * 1024, &[]);
    let (ok, out) = net.publish(trusting, &rel);
    assert!(ok, "{out}");
    assert!(wait_for(Duration::from_secs(60), || net.complete(sceptic, "1.0.0")));
    let trusting_id = net.daemons[trusting].status().unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wait_for(Duration::from_secs(30), || sink
            .events()
            .contains(&("update_available".into(), trusting_id.clone()))),
        "the webhook never arrived over TLS: {:?}; log:\n{}",
        sink.events(),
        net.daemons[trusting].log()
    );
    // The node that does not trust the test CA must not have delivered anything: its TLS
    // handshake failed.
    assert!(
        wait_for(Duration::from_secs(30), || *sink
            .failed_handshakes
            .lock()
            .unwrap()
            >= 1),
        "the sceptic node never tried"
    );
    assert_eq!(sink.events().len(), 1, "{:?}", sink.events());
    assert!(
        net.daemons[sceptic].log().contains("webhook failed"),
        "{}",
        net.daemons[sceptic].log()
    );
}

#[test]
fn an_unreadable_ca_file_is_a_configuration_error_naming_the_field() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"d\"\ntrust_root = \"r\"\n[tls]\nextra_ca_file = \"{}\"\n",
            dir.path().join("bad.pem").display()
        ),
    )
    .unwrap();
    let out = common::upswarm()
        .args(["daemon", "--check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("tls.extra_ca_file"), "{text}");
}
