#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Daemons that reach each other only over QUIC, only over IPv6, or through a bootstrap
//! address given as a DNS name: each time a release published on one is fetched by the
//! other.

use std::time::Duration;

use crate::common::daemon::{Testnet, serial, wait_for};

/// Every listen address of daemon `i` (with `/p2p/`).
fn listen_addrs(net: &Testnet, i: usize) -> Vec<String> {
    std::fs::read_to_string(net.daemons[i].dir.join("data/listen.addrs"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Publishes a small release on daemon `a` and waits for daemon `b` to complete it.
fn fetched(net: &Testnet, a: usize, b: usize) {
    let rel = net.release("app", "1.0.0", 600 * 1024, &[]);
    let (ok, out) = net.publish(a, &rel);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(60), || net.complete(b, "1.0.0")),
        "the release did not travel; log:\n{}",
        net.daemons[b].log()
    );
}

#[test]
fn daemons_that_speak_only_quic_exchange_a_release() {
    let _g = serial();
    let mut net = Testnet::new();
    net.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()];
    let a = net.spawn("a", &[], "");
    assert!(
        net.daemons[a].addr.contains("/quic-v1/"),
        "{}",
        net.daemons[a].addr
    );
    let b = net.spawn("b", &[a], "");
    fetched(&net, a, b);
}

#[test]
fn daemons_on_ipv6_loopback_exchange_a_release() {
    let _g = serial();
    let mut net = Testnet::new();
    net.listen = vec!["/ip6/::1/tcp/0".into()];
    let a = net.spawn("a", &[], "");
    assert!(
        net.daemons[a].addr.starts_with("/ip6/::1/"),
        "{}",
        net.daemons[a].addr
    );
    let b = net.spawn("b", &[a], "");
    fetched(&net, a, b);
}

#[test]
fn a_bootstrap_peer_given_by_dns_name_is_reached() {
    let _g = serial();
    let mut net = Testnet::new();
    let a = net.spawn("a", &[], "");
    // /ip4/127.0.0.1/tcp/PORT/p2p/ID  →  /dns4/localhost/tcp/PORT/p2p/ID
    let tcp = listen_addrs(&net, a)
        .into_iter()
        .find(|x| x.starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap();
    let by_name = tcp.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    let b = net.spawn_at("b", &[by_name], "", &[]);
    fetched(&net, a, b);
}
