//! The fleet as operators see it: `upswarm fleet` from signed health reports, `/healthz`
//! and `/readyz`, the trust-root expiry alarm, and what Prometheus reads (`/metrics` and
//! the alert rules, checked with `promtool` when it is installed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::daemon::{Testnet, free_port, http_get, managed_config, serial, wait_for};
use crate::common::{key, roles, signed_root};

const DAY: u64 = 86400;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `upswarm fleet --json [args]` on daemon `i`.
fn fleet_json(net: &Testnet, i: usize, args: &[&str]) -> Value {
    let mut a = vec!["fleet", "--json"];
    a.extend_from_slice(args);
    let (ok, out) = net.daemons[i].cli(&a);
    assert!(ok, "upswarm fleet: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// What a managed node says about itself: (node id, version it runs, the state and the
/// release version its last health report has, from its own history).
type Truth = (String, String, String, String);

fn own_truth(net: &Testnet, i: usize) -> Option<Truth> {
    let d = &net.daemons[i];
    let s = d.status()?;
    if !s["managed"]["applying"].is_null() {
        return None;
    }
    let running = s["managed"]["current"].as_str()?.to_string();
    let last = d.history().into_iter().max_by_key(|h| h["at"].as_u64())?;
    let (state, about) = match last["outcome"].as_str()? {
        "applied" => ("healthy", last["to"].as_str()?),
        "rolled_back" => ("rolled_back", last["to"].as_str()?),
        _ => return None,
    };
    Some((
        s["node_id"].as_str()?.to_string(),
        running,
        state.to_string(),
        about.to_string(),
    ))
}

/// Each node's status and history, for a failure message.
fn describe(net: &Testnet, nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|&i| {
            let d = &net.daemons[i];
            format!("{}: {:?}\n{:?}", d.name, d.status(), d.history())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fleet's row of `node` as (version, state, release version).
fn row(fleet: &Value, node: &str) -> Option<(String, String, String)> {
    let n = fleet["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == node)?;
    Some((
        n["version"].as_str()?.to_string(),
        n["state"].as_str()?.to_string(),
        n["release_version"].as_str()?.to_string(),
    ))
}

/// A publisher and three managed nodes: after 1.0.0 and a 1.1.0 that fails its health
/// check, `upswarm fleet` on the publisher (which manages nothing) lists every managed node
/// with the version it runs and its last report, as each node itself records it; the
/// filters select by version, state and release; bad filters are refused by name.
#[test]
fn fleet_lists_every_node_with_its_version_and_last_report() {
    let _g = serial();
    let mut net = Testnet::new();
    let fast = "[rollout]\nspread = \"1s\"\nresync_interval = \"2s\"\n";
    net.spawn("p", &[], fast);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let boot = if i == 0 {
            vec![0]
        } else {
            vec![0, nodes[i - 1]]
        };
        nodes.push(net.spawn(&format!("n{i}"), &boot, &managed_config(free_port(), "")));
    }
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);

    // Every node on 1.0.0, healthy, in the publisher's fleet.
    let all_healthy = wait_for(Duration::from_secs(180), || {
        let f = fleet_json(&net, 0, &[]);
        nodes.iter().all(|&i| {
            own_truth(&net, i).is_some_and(|(id, ..)| {
                row(&f, &id) == Some(("1.0.0".into(), "healthy".into(), "1.0.0".into()))
            })
        })
    });
    assert!(
        all_healthy,
        "fleet on the publisher: {:#}\nthe nodes: {}",
        fleet_json(&net, 0, &[]),
        describe(&net, &nodes)
    );
    let ids: Vec<String> = nodes
        .iter()
        .map(|&i| own_truth(&net, i).unwrap().0)
        .collect();
    let (ok, table) = net.daemons[0].cli(&["fleet"]);
    assert!(ok, "{table}");
    assert!(table.contains("3 nodes known"), "{table}");
    assert!(table.contains("3 on 1.0.0"), "{table}");
    for id in &ids {
        let line = table
            .lines()
            .find(|l| l.starts_with(&id[..16]))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert!(line.contains("1.0.0") && line.contains("healthy"), "{line}");
    }

    // 1.1.0 fails its health check wherever it is installed.
    let bad = net.demo_release("1.1.0", "unhealthy", "hotfix", &[]);
    assert!(net.publish(0, &bad).0);
    let settled = wait_for(Duration::from_secs(240), || {
        let truths: Vec<_> = nodes.iter().map(|&i| own_truth(&net, i)).collect();
        if truths.iter().any(Option::is_none)
            || !truths.iter().flatten().any(|t| t.2 == "rolled_back")
        {
            return false;
        }
        let f = fleet_json(&net, 0, &[]);
        truths.iter().flatten().all(|(id, running, state, about)| {
            row(&f, id) == Some((running.clone(), state.clone(), about.clone()))
        })
    });
    let truths: Vec<_> = nodes.iter().map(|&i| own_truth(&net, i)).collect();
    assert!(
        settled,
        "the nodes say {truths:?}; the publisher's fleet: {:#}\nthe nodes: {}",
        fleet_json(&net, 0, &[]),
        describe(&net, &nodes)
    );
    let truths: Vec<_> = truths.into_iter().flatten().collect();

    // A node rolled back out of three: the rollout of 1.1.0 halts, and the publisher's
    // metrics say so (what the UpswarmRolloutHalted alert reads).
    let halted = wait_for(Duration::from_secs(60), || {
        http_get(net.daemons[0].api_port(), "/metrics")
            .is_some_and(|(_, m)| m.contains("\nupswarm_rollouts_halted 1\n"))
    });
    assert!(
        halted,
        "{:?}\n{}",
        http_get(net.daemons[0].api_port(), "/metrics"),
        net.daemons[0].cli(&["explain", "1.1.0"]).1
    );

    // The same picture from a managed node, in the table.
    let (ok, table) = net.daemons[nodes[2]].cli(&["fleet"]);
    assert!(ok, "{table}");
    assert!(table.contains("current rollout: demo 1.1.0"), "{table}");
    for (id, running, state, _) in &truths {
        let line = table
            .lines()
            .find(|l| l.starts_with(&id[..16]))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert!(
            line.contains(running.as_str()) && line.contains(state.as_str()),
            "{line}"
        );
    }

    // Filters.
    let ids_of = |f: &Value| -> Vec<String> {
        let mut v: Vec<String> = f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let expect = |pick: &dyn Fn(&Truth) -> bool| -> Vec<String> {
        let mut v: Vec<String> = truths
            .iter()
            .filter(|t| pick(t))
            .map(|t| t.0.clone())
            .collect();
        v.sort();
        v
    };
    let rolled = fleet_json(&net, 0, &["--state", "rolled_back"]);
    assert_eq!(ids_of(&rolled), expect(&|t| t.2 == "rolled_back"));
    assert_eq!(rolled["nodes_known"], 3);
    let about_bad = fleet_json(&net, 0, &["--release", "1.1.0"]);
    assert_eq!(ids_of(&about_bad), expect(&|t| t.3 == "1.1.0"));
    let on_v1 = fleet_json(&net, 0, &["--version", "1.0.0"]);
    assert_eq!(ids_of(&on_v1), expect(&|t| t.1 == "1.0.0"));
    let none = net.daemons[0].cli(&["fleet", "--version", "9.9.9"]);
    assert!(none.0 && none.1.contains("no node matches"), "{}", none.1);

    let (ok, out) = net.daemons[0].cli(&["fleet", "--state", "broken"]);
    assert!(!ok && out.contains("broken"), "{out}");
    let (ok, out) = net.daemons[0].cli(&["fleet", "--release", "not a release"]);
    assert!(
        !ok && out.contains("--release") && out.contains("neither a release id"),
        "{out}"
    );
    let (code, body) = http_get(net.daemons[0].api_port(), "/v1/fleet?state=broken").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a report state"), "{body}");
}

/// `/healthz` answers `ok` while the daemon runs; `/readyz` answers 200 with its checks
/// when ready, and 503 naming the failed check when the only bootstrap peer is gone. No
/// token is needed.
#[test]
fn health_and_ready_endpoints_answer_as_documented() {
    let _g = serial();
    let mut net = Testnet::new();
    let a = net.spawn("a", &[], "");
    let b = net.spawn("b", &[a], "");
    let port_a = net.daemons[a].api_port();
    let port_b = net.daemons[b].api_port();

    assert_eq!(http_get(port_a, "/healthz"), Some((200, "ok\n".into())));
    let (code, body) = http_get(port_a, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["trust_root", "state", "listening", "peers"]);

    let ready_b = wait_for(Duration::from_secs(60), || {
        http_get(port_b, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert!(ready_b, "{:?}", http_get(port_b, "/readyz"));

    // B's only bootstrap peer stops: B is alive but not ready.
    net.daemons[a].stop(Duration::from_secs(10));
    let unready = wait_for(Duration::from_secs(60), || {
        http_get(port_b, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    let (code, body) = http_get(port_b, "/readyz").unwrap();
    assert!(unready, "{code} {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    let peers = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "peers")
        .unwrap();
    assert_eq!(peers["ok"], false, "{body}");
    assert!(
        peers["detail"].as_str().unwrap().contains("0 connected"),
        "{body}"
    );
    assert_eq!(http_get(port_b, "/healthz"), Some((200, "ok\n".into())));
}

/// Runs `promtool` with `args` and `stdin`; `None` (after printing SKIPPED) when it is not
/// installed.
fn promtool(args: &[&str], stdin: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: promtool is not installed (Debian: apt-get install prometheus)");
            return None;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// A pinned root that expires in 10 days: `status` shows its expiry and an alarm (the
/// default warning period is 30 days), the log and the `root_expiring` webhook (once) say
/// so, `/metrics` has the expiry time; with a warning
/// period of 5 days there is no alarm. The metrics pass `promtool check metrics`.
#[test]
fn a_root_expiring_soon_raises_an_alarm_and_metrics_pass_promtool() {
    let _g = serial();
    let mut net = Testnet::new();
    let expires_at = now() + 10 * DAY;
    let root = signed_root(1, expires_at, roles(), &[&key(1), &key(2)]);
    std::fs::write(net.path().join("root.cbor"), root.encode()).unwrap();
    let hooks = crate::common::daemon::HookSink::start();
    let warned = net.spawn(
        "warned",
        &[],
        &format!(
            "[webhooks]\nurls = [\"http://127.0.0.1:{}/hook\"]\nevents = [\"root_expiring\"]\n",
            hooks.port
        ),
    );
    let calm = net.spawn("calm", &[], "[alarms]\nroot_expiry_warning = \"5d\"\n");

    let d = &net.daemons[warned];
    let (ok, text) = d.cli(&["status"]);
    assert!(ok, "{text}");
    assert!(text.contains("trust root version 1 (expires "), "{text}");
    let alarm = text
        .lines()
        .find(|l| l.starts_with("ALARM"))
        .unwrap_or_else(|| panic!("no alarm:\n{text}"));
    assert!(
        alarm.contains("trust root expires soon: version 1") && alarm.contains("in 10 days"),
        "{alarm}"
    );
    let s = d.status().unwrap();
    assert_eq!(s["root_expires_at"], expires_at);
    assert!(s["alarms"][0].as_str().unwrap().contains("expires soon"));
    assert!(d.log().contains("trust root expires soon"), "{}", d.log());
    let sent = wait_for(Duration::from_secs(20), || {
        hooks.events() == ["root_expiring"]
    });
    let bodies = hooks.bodies.lock().unwrap().clone();
    assert!(sent, "{bodies:?}");
    assert_eq!(bodies[0]["expires_at"], expires_at);
    assert_eq!(bodies[0]["root_version"], 1);

    let (code, metrics) = http_get(d.api_port(), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!(
            "\nupswarm_root_expiry_timestamp_seconds {expires_at}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("# HELP upswarm_gossip_accepted_total "));
    assert!(metrics.contains("# TYPE upswarm_updates_rolled_back_total counter"));
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(gauge("upswarm_data_dir_used_bytes") > 0, "{metrics}");
    let free = gauge("upswarm_data_dir_available_bytes");
    assert!(free > 0 && free <= gauge("upswarm_data_dir_filesystem_bytes"));

    let (ok, text) = net.daemons[calm].cli(&["status"]);
    assert!(ok && !text.contains("ALARM"), "{text}");

    if let Some((ok, out)) = promtool(&["check", "metrics"], &metrics) {
        assert!(ok, "promtool check metrics:\n{out}\n{metrics}");
    }
}

/// The alert rules shipped in deploy/prometheus pass `promtool check rules`.
#[test]
fn alert_rules_pass_promtool() {
    let _g = serial();
    let rules: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "deploy",
        "prometheus",
        "upswarm-alerts.yml",
    ]
    .iter()
    .collect();
    assert!(rules.is_file(), "{} is missing", rules.display());
    let path = rules.to_string_lossy().into_owned();
    if let Some((ok, out)) = promtool(&["check", "rules", &path], "") {
        assert!(ok, "promtool check rules:\n{out}");
        assert!(out.contains("SUCCESS"), "{out}");
    }
}
