#![allow(clippy::unwrap_used, clippy::expect_used)]
//! NAT traversal in network namespaces: a public namespace with the bootstrap node (also a
//! relay) and a publisher, and two private networks, each a LAN behind its own router
//! namespace that masquerades (iptables MASQUERADE) onto the public side:
//!
//! ```text
//!   n1 192.168.1.2 ── r1 (NAT) 10.0.1.2 ──┐                  ┌── 10.0.2.2 r2 (NAT) ── n2 192.168.2.2
//!                                         10.0.1.1  public  10.0.2.1
//!                                           bootstrap/relay :4001, publisher :4002
//! ```
//!
//! The routers drop unsolicited inbound packets, like home routers. Daemons listen on TCP and
//! QUIC and reach the bootstrap node over QUIC. A release published on the public side
//! reaches both NATed nodes; both find out that they are private and hold a reservation on
//! the relay; a connection from n2 to n1 through the relay is then upgraded by hole punching
//! (here it usually is, over QUIC) or stays relayed, and `status` says which; a release only
//! the NATed nodes follow then goes from n1 to n2, and n2's per-source counters say whether
//! its bytes came over the direct or the relayed connection.
//! Needs root (`ip netns`); otherwise the test prints `SKIPPED: …` and returns.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::daemon::{Testnet, serial, wait_for};

/// The namespaces of one topology, and the iptables rules in them; removed on drop (after
/// the daemons in them were stopped: declare the [`Testnet`] after this).
struct Namespaces {
    names: Vec<String>,
    /// (namespace, table, rule arguments after `-A`/`-D`).
    rules: Vec<(String, String, Vec<String>)>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("setting up the namespaces: {e}");
    }
}

impl Namespaces {
    /// Creates namespace `name`; `Err` when `ip netns` is not permitted.
    fn add(&mut self, name: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", name])?;
        self.names.push(name.to_string());
        must(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Ok(())
    }

    /// A veth pair `a`@`ns_a` (address `ip_a`) — `b`@`ns_b` (`ip_b`), both up.
    fn link(&self, ns_a: &str, a: &str, ip_a: &str, ns_b: &str, b: &str, ip_b: &str) {
        must(&[
            "ip", "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b,
        ]);
        for (ns, dev, ip) in [(ns_a, a, ip_a), (ns_b, b, ip_b)] {
            must(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
    }

    fn forward(&self, ns: &str) {
        must(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
    }

    fn iptables(&mut self, ns: &str, table: &str, rule: &[&str]) {
        let mut args = vec!["ip", "netns", "exec", ns, "iptables", "-t", table, "-A"];
        args.extend(rule);
        must(&args);
        self.rules.push((
            ns.to_string(),
            table.to_string(),
            rule.iter().map(|s| s.to_string()).collect(),
        ));
    }

    /// A home router on `ns`: masquerades what leaves by `wan`, and drops what arrives
    /// there unsolicited (the packet is dropped before its conntrack entry is confirmed, so
    /// a hole punch's first packet does not spoil the mapping of the reply).
    fn nat_router(&mut self, ns: &str, wan: &str) {
        self.iptables(ns, "nat", &["POSTROUTING", "-o", wan, "-j", "MASQUERADE"]);
        self.iptables(
            ns,
            "filter",
            &[
                "INPUT",
                "-i",
                wan,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-j",
                "DROP",
            ],
        );
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for (ns, table, rule) in self.rules.drain(..).rev() {
            let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-t", &table, "-D"];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = run(&args) {
                eprintln!("cleanup: {e}");
            }
        }
        // Deleting a namespace deletes the veth ends in it.
        for ns in self.names.drain(..).rev() {
            if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn netns(ns: &str) -> Vec<String> {
    ["ip", "netns", "exec", ns]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn listen(port: u16) -> Vec<String> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{port}"),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
    ]
}

fn reachability(net: &Testnet, i: usize) -> Value {
    net.daemons[i]
        .status()
        .map(|s| s["reachability"].clone())
        .unwrap_or(Value::Null)
}

/// How daemon `i` is connected to `peer`: `"direct"`, `"relayed"`, or `None`.
fn link(net: &Testnet, i: usize, peer: &str) -> Option<String> {
    let s = net.daemons[i].status()?;
    s["peer_links"]
        .as_array()?
        .iter()
        .find_map(|l| (l[0] == peer).then(|| l[1].as_str().unwrap_or_default().to_string()))
}

/// The namespaces of the topology above (public `p`, routers `r1`/`r2`, one private node
/// namespace behind each); `None` (after printing `SKIPPED: …`) when `ip netns` is not
/// permitted.
struct Topology {
    ns: Namespaces,
    p: String,
    n1: String,
    n2: String,
}

fn topology() -> Option<Topology> {
    let id = std::process::id() % 100_000;
    let (p, r1, n1, r2, n2) = (
        format!("usw{id}p"),
        format!("usw{id}r1"),
        format!("usw{id}n1"),
        format!("usw{id}r2"),
        format!("usw{id}n2"),
    );
    let mut ns = Namespaces {
        names: Vec::new(),
        rules: Vec::new(),
    };
    if let Err(e) = ns.add(&p) {
        println!("SKIPPED: network namespaces are not permitted here ({e})");
        return None;
    }
    for name in [&r1, &n1, &r2, &n2] {
        ns.add(name).unwrap_or_else(|e| panic!("{e}"));
    }
    let v = format!("u{id}");
    // Public side: p has 10.0.1.1 towards r1 and 10.0.2.1 towards r2 and routes between
    // them (so the two NATs can reach each other's public address, as on the internet).
    ns.link(
        &p,
        &format!("{v}a1"),
        "10.0.1.1/24",
        &r1,
        &format!("{v}w1"),
        "10.0.1.2/24",
    );
    ns.link(
        &p,
        &format!("{v}a2"),
        "10.0.2.1/24",
        &r2,
        &format!("{v}w2"),
        "10.0.2.2/24",
    );
    ns.forward(&p);
    for (k, r, n) in [(1, &r1, &n1), (2, &r2, &n2)] {
        ns.link(
            r,
            &format!("{v}l{k}"),
            &format!("192.168.{k}.1/24"),
            n,
            &format!("{v}n{k}"),
            &format!("192.168.{k}.2/24"),
        );
        must(&[
            "ip",
            "-n",
            r,
            "route",
            "add",
            "default",
            "via",
            &format!("10.0.{k}.1"),
        ]);
        must(&[
            "ip",
            "-n",
            n,
            "route",
            "add",
            "default",
            "via",
            &format!("192.168.{k}.1"),
        ]);
        ns.forward(r);
        ns.nat_router(r, &format!("{v}w{k}"));
    }

    Some(Topology { ns, p, n1, n2 })
}

#[test]
fn a_release_reaches_nodes_behind_two_nats_and_status_tells_direct_from_relayed() {
    let _g = serial();
    let Some(Topology { ns, p, n1, n2 }) = topology() else {
        return;
    };
    // Declared after `ns`: dropped (every daemon stopped) before the namespaces go.
    let mut net = Testnet::new();
    net.prefix = netns(&p);
    net.listen = listen(4001);
    net.network_extra = "relay_server = true\n".into();
    let boot = net.spawn("bootstrap", &[], "");
    let relay_id = net.daemons[boot].peer_id.clone();
    let relay_from = |k: u8| format!("/ip4/10.0.{k}.1/udp/4001/quic-v1/p2p/{relay_id}");

    net.network_extra = String::new();
    net.listen = listen(4002);
    let publisher = net.spawn_at("publisher", &[relay_from(1)], "", &[]);

    let mut nated = Vec::new();
    for (k, n) in [(1u8, &n1), (2, &n2)] {
        net.prefix = netns(n);
        net.listen = listen(4001);
        net.network_extra = format!("relays = [\"{}\"]\n", relay_from(k));
        // The NATed nodes also follow channel `edge`, which no public node follows.
        nated.push(net.spawn_at(
            &format!("nat{k}"),
            &[relay_from(k)],
            "channels = [\"stable\", \"edge\"]\n",
            &[],
        ));
    }

    // Both NATed nodes learn that they are private and reserve a slot on the relay; the
    // bootstrap node learns that it is public.
    for &i in &nated {
        assert!(
            wait_for(Duration::from_secs(120), || {
                let r = reachability(&net, i);
                r["state"] == "private"
                    && r["relays"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == relay_id.as_str()))
            }),
            "{} is not reported private via the relay: {}; log:\n{}",
            net.daemons[i].name,
            reachability(&net, i),
            net.daemons[i].log()
        );
        let (ok, text) = net.daemons[i].cli(&["status"]);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("reachable private via relay {relay_id}")),
            "{text}"
        );
    }
    assert!(
        wait_for(
            Duration::from_secs(60),
            || reachability(&net, boot)["state"] == "public"
        ),
        "the bootstrap node is not reported public: {}",
        reachability(&net, boot)
    );

    // A release published on the public side reaches every NATed node.
    let rel = net.release("app", "1.0.0", 1024 * 1024, &[]);
    let (ok, out) = net.publish(publisher, &rel);
    assert!(ok, "{out}");
    for &i in &nated {
        assert!(
            wait_for(Duration::from_secs(120), || net.complete(i, "1.0.0")),
            "{} did not complete the release; log:\n{}",
            net.daemons[i].name,
            net.daemons[i].log()
        );
    }

    // nat2 connects to nat1 through the relay; DCUtR then tries to punch a hole.
    let (a, b) = (nated[0], nated[1]);
    let a_id = net.daemons[a].peer_id.clone();
    let circuit = format!("{}/p2p-circuit/p2p/{a_id}", relay_from(2));
    let (ok, out) = net.daemons[b].cli(&["peer", "add", &circuit]);
    assert!(ok, "nat2 cannot reach nat1 through the relay: {out}");
    let punches = |i: usize| {
        net.daemons[i].counter("hole_punch_succeeded") + net.daemons[i].counter("hole_punch_failed")
    };
    assert!(
        wait_for(Duration::from_secs(120), || punches(a) + punches(b) > 0),
        "no hole punch was attempted; logs:\n{}\n{}",
        net.daemons[a].log(),
        net.daemons[b].log()
    );
    let succeeded = net.daemons[a].counter("hole_punch_succeeded")
        + net.daemons[b].counter("hole_punch_succeeded");
    let expected = if succeeded > 0 { "direct" } else { "relayed" };
    // What status says about the nat2 → nat1 connection agrees with the counters.
    assert!(
        wait_for(Duration::from_secs(30), || link(&net, b, &a_id).as_deref()
            == Some(expected)),
        "nat2's status says its connection to nat1 is {:?}, the hole-punch counters say {expected}",
        link(&net, b, &a_id)
    );
    println!(
        "nat2 → nat1: {expected} (hole punches: nat1 {}/{} ok/failed, nat2 {}/{})",
        net.daemons[a].counter("hole_punch_succeeded"),
        net.daemons[a].counter("hole_punch_failed"),
        net.daemons[b].counter("hole_punch_succeeded"),
        net.daemons[b].counter("hole_punch_failed"),
    );
    // Connections to the public nodes are direct.
    for &i in &nated {
        assert_eq!(
            link(&net, i, &relay_id).as_deref(),
            Some("direct"),
            "{}",
            net.daemons[i].name
        );
    }

    // Chunks between the two NATs: a release on channel `edge`, which only the NATed nodes
    // follow, published by nat1, can reach nat2 only from nat1 — over the link the status
    // reported. nat2's counters say which kind of connection carried every byte.
    let bytes =
        |i: usize, source: &str| net.daemons[i].counter(&format!("download_bytes_{source}"));
    let (direct0, relayed0) = (bytes(b, "peer_direct"), bytes(b, "peer_relayed"));
    const EDGE: u64 = 300 * 1024;
    let edge = edge_release(&net, EDGE as usize);
    let (ok, out) = net.publish(a, &edge);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(120), || net.complete(b, "9.0.0")),
        "nat2 did not get the release from nat1 ({expected}); log:\n{}",
        net.daemons[b].log()
    );
    let (direct, relayed) = (
        bytes(b, "peer_direct") - direct0,
        bytes(b, "peer_relayed") - relayed0,
    );
    let want = if expected == "direct" {
        (EDGE, 0)
    } else {
        (0, EDGE)
    };
    assert_eq!(
        (direct, relayed),
        want,
        "nat2's bytes from nat1 (direct, relayed), the link being {expected}"
    );
    let from = net.release_view(b, "9.0.0").unwrap()["progress"]["from_peers"].clone();
    assert!(
        from.as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key(&a_id)),
        "nat2 took chunks from {from}, not only from nat1 {a_id}"
    );
    println!("nat1 → nat2: {EDGE} bytes of chunks over the {expected} connection");
    drop(net);
    drop(ns);
}

/// A release of product `edge-app` 9.0.0 on channel `edge` (a `size`-byte artifact), signed
/// by s10 and s11.
fn edge_release(net: &Testnet, size: usize) -> std::path::PathBuf {
    let art = net.path().join("edge-app.bin");
    std::fs::write(
        &art,
        (0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let out = net.path().join("rel-edge");
    let run = |args: &[&str]| {
        let o = crate::common::upswarm().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let (art_s, out_s) = (
        format!("node={}", art.display()),
        out.to_string_lossy().into_owned(),
    );
    run(&[
        "release",
        "create",
        "--name",
        "edge-app",
        "--version",
        "9.0.0",
        "--type",
        "patch",
        "--channel",
        "edge",
        "--artifact",
        &art_s,
        "--chunk-size",
        "64KiB",
        "--platform",
        "any",
        // Plain bytes on the wire: the test counts the artifact's bytes per connection.
        "--no-compress",
        "--out",
        &out_s,
    ]);
    let manifest = out.join("manifest.cbor").to_string_lossy().into_owned();
    for k in ["s10.key", "s11.key"] {
        let key = net.path().join(k).to_string_lossy().into_owned();
        run(&["release", "sign", "--key", &key, &manifest]);
    }
    out
}

/// Benchmark, run by `scripts/bench-nat.sh` (see `BENCHMARKS.md`): in the topology above, a
/// release published by the node behind the first NAT (its only holder: the bootstrap node
/// follows no product) is fetched by the node behind the second, once after a hole punch and
/// once with the relay as the only path (the direct paths between the two NATs rejected
/// on the public side). Prints both times and their ratio.
#[test]
#[ignore = "benchmark: scripts/bench-nat.sh"]
fn bench_release_to_a_nated_node_hole_punched_vs_relay_only() {
    let _g = serial();
    let mib: usize = std::env::var("UPSWARM_BENCH_NAT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let Some(mut t) = topology() else {
        return;
    };
    let (punched, punched_link) = bench_round(&t, mib);
    for (a, b) in [
        ("10.0.1.0/24", "10.0.2.0/24"),
        ("10.0.2.0/24", "10.0.1.0/24"),
    ] {
        let p = t.p.clone();
        t.ns.iptables(&p, "filter", &["FORWARD", "-s", a, "-d", b, "-j", "REJECT"]);
    }
    let (relayed, relayed_link) = bench_round(&t, mib);
    println!("release of {mib} MiB, from behind NAT 1 to behind NAT 2:");
    println!("hole punching: {punched:.2} s (connection {punched_link})");
    println!("relay only:    {relayed:.2} s (connection {relayed_link})");
    println!("ratio relay only / hole punching: {:.2}", relayed / punched);
}

/// One round of the benchmark: seconds from publication to completion, and how the fetcher
/// was connected to the publisher ("direct" or "relayed").
fn bench_round(t: &Topology, mib: usize) -> (f64, String) {
    let mut net = Testnet::new();
    net.prefix = netns(&t.p);
    net.listen = listen(4001);
    net.network_extra = "relay_server = true\nrelay_max_circuit_bytes = \"4GiB\"\n\
                         relay_max_circuit_duration = \"1h\"\n"
        .into();
    let boot = net.spawn("bootstrap", &[], "products = [\"none\"]\n");
    let relay_id = net.daemons[boot].peer_id.clone();
    let relay_from = |k: u8| format!("/ip4/10.0.{k}.1/udp/4001/quic-v1/p2p/{relay_id}");
    let mut nated = Vec::new();
    for (k, n) in [(1u8, &t.n1), (2, &t.n2)] {
        net.prefix = netns(n);
        net.network_extra = format!("relays = [\"{}\"]\n", relay_from(k));
        nated.push(net.spawn_at(&format!("nat{k}"), &[relay_from(k)], "", &[]));
    }
    let (src, dst) = (nated[0], nated[1]);
    for &i in &nated {
        assert!(
            wait_for(Duration::from_secs(120), || {
                reachability(&net, i)["relays"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            }),
            "{} holds no relay reservation",
            net.daemons[i].name
        );
    }
    let src_id = net.daemons[src].peer_id.clone();
    let circuit = format!("{}/p2p-circuit/p2p/{src_id}", relay_from(2));
    let punches = |i: usize| {
        net.daemons[i].counter("hole_punch_succeeded") + net.daemons[i].counter("hole_punch_failed")
    };
    // Connect through the relay; the hole punch ends (or gives up) before the release is
    // published. Should no punch have ended after a while, dial the circuit again.
    for _ in 0..5 {
        let (ok, out) = net.daemons[dst].cli(&["peer", "add", &circuit]);
        assert!(ok, "{out}");
        if wait_for(Duration::from_secs(15), || punches(src) + punches(dst) > 0) {
            break;
        }
    }
    let link_now = link(&net, dst, &src_id).unwrap_or_else(|| "none".into());
    let rel = net.release("app", "1.0.0", mib << 20, &[]);
    let start = std::time::Instant::now();
    let (ok, out) = net.publish(src, &rel);
    assert!(ok, "{out}");
    assert!(
        wait_for(Duration::from_secs(900), || net.complete(dst, "1.0.0")),
        "the release did not arrive; log:\n{}",
        net.daemons[dst].log()
    );
    (start.elapsed().as_secs_f64(), link_now)
}
