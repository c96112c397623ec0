//! Process-level tests of applying updates: the real daemon supervising the real demo
//! program, health checks, automatic rollback, a client that goes away mid-apply, hooks
//! that hang, hostile API input, what SIGTERM does to the managed program. (Crashes at
//! every apply step: `tests/crash.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use crate::common::daemon::{
    Testnet, free_port, healthy, http_get, managed_config, outcomes, serial, version_served,
    wait_for,
};

/// A publisher and one managed node running demo 1.0.0.
fn setup(extra: &str) -> (Testnet, usize, u16) {
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn("node", &[0], &managed_config(port, extra));
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    let ok = wait_for(Duration::from_secs(60), || {
        version_served(port).as_deref() == Some("1.0.0")
    });
    assert!(ok, "1.0.0 never served:\n{}", net.daemons[node].log());
    let applied = wait_for(Duration::from_secs(20), || {
        outcomes(&net, node, "1.0.0") == ["applied"]
    });
    assert!(
        applied,
        "1.0.0 not recorded as applied: {:?}",
        net.daemons[node].history()
    );
    (net, node, port)
}

#[test]
fn a_good_release_is_applied_and_a_failing_one_rolled_back_with_its_data() {
    let _g = serial();
    let hooks = common::daemon::HookSink::start();
    let (net, node, port) = setup(&format!(
        "\n[webhooks]\nurls = [\"http://127.0.0.1:{}/hook\"]\n",
        hooks.port
    ));
    let data = net.daemons[node].dir.join("appdata/starts");

    let v11 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v11).0);
    assert!(wait_for(Duration::from_secs(60), || version_served(port)
        .as_deref()
        == Some("1.1.0")));
    assert!(wait_for(Duration::from_secs(10), || outcomes(
        &net, node, "1.1.0"
    ) == ["applied"]));
    let before_bad = std::fs::read_to_string(&data).unwrap();

    // 1.2.0 fails its health check: rolled back, binary and data back as they were.
    let bad = net.demo_release("1.2.0", "unhealthy", "hotfix", &[]);
    assert!(net.publish(0, &bad).0);
    let rolled = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.2.0") == ["rolled_back"]
    });
    assert!(
        rolled,
        "no rollback:\n{:?}\n{}",
        net.daemons[node].history(),
        net.daemons[node].log()
    );
    assert_eq!(version_served(port).as_deref(), Some("1.1.0"));
    assert!(wait_for(Duration::from_secs(10), || healthy(port)));
    let after = std::fs::read_to_string(&data).unwrap();
    assert_eq!(
        after,
        format!("{before_bad}1.1.0\n"),
        "the data directory was not restored from the backup"
    );
    assert!(!after.contains("1.2.0"));
    let current = std::fs::read_link(net.daemons[node].dir.join("data/current")).unwrap();
    assert!(current.ends_with("1.1.0"), "{current:?}");
    let h = net.daemons[node].history();
    let entry = h.iter().find(|e| e["to"] == "1.2.0").unwrap();
    assert!(
        entry["reason"].as_str().unwrap().contains("not healthy"),
        "{entry}"
    );
    assert!(entry["backup_ms"].is_u64());
    // Never retried automatically.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(outcomes(&net, node, "1.2.0"), vec!["rolled_back"]);
    let (_, check) = net.daemons[node].cli(&["check"]);
    // Its failure halted the rollout (one node, one report over the limit): the one reason
    // is the halt, which holds for the whole fleet.
    assert!(
        check.contains("demo 1.2.0 (hotfix): the rollout halted at "),
        "{check}"
    );
    // History through the CLI names it.
    let (ok, text) = net.daemons[node].cli(&["history"]);
    assert!(
        ok && text.contains("1.1.0 -> 1.2.0 (automatic): FAILED, rolled back in "),
        "{text}"
    );
}

#[test]
fn a_release_that_crashes_at_start_is_rolled_back() {
    let _g = serial();
    let (net, node, port) = setup("");
    let crash = net.demo_release("1.1.0", "crash", "hotfix", &[]);
    assert!(net.publish(0, &crash).0);
    let rolled = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.1.0") == ["rolled_back"]
    });
    assert!(rolled, "{}", net.daemons[node].log());
    let h = net.daemons[node].history();
    let reason = h.iter().find(|e| e["to"] == "1.1.0").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("exited"), "{reason}");
    assert!(wait_for(Duration::from_secs(10), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
}

#[test]
fn manual_policy_concurrent_apply_and_the_api_token() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn(
        "node",
        &[0],
        &format!("{}\n[policy]\nauto = []\n", managed_config(port, "")),
    );
    let v1 = net.demo_release("1.0.0", "slow", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.0.0")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        version_served(port),
        None,
        "applied although the policy is manual"
    );
    let (_, check) = net.daemons[node].cli(&["check"]);
    assert!(check.contains("manual"), "{check}");
    // Without the token: refused.
    let out = common::upswarm()
        .args(["apply", "--api", &net.daemons[node].api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("token"), "{text}");
    let wrong = net.path().join("wrong.token");
    std::fs::write(&wrong, "nope").unwrap();
    let out = common::upswarm()
        .args(["apply", "--api", &net.daemons[node].api, "--token-file"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wrong API token")
    );
    // Two applies at once: the second is refused with a clear message.
    let d = &net.daemons[node];
    let first = std::thread::scope(|s| {
        let h = s.spawn(|| d.cli(&["apply", "1.0.0"]));
        std::thread::sleep(Duration::from_millis(700));
        let (ok, second) = d.cli(&["apply", "1.0.0"]);
        assert!(
            !ok && second.contains("update already in progress"),
            "{second}"
        );
        h.join().unwrap()
    });
    assert!(first.0, "{}", first.1);
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    // Pin, then a newer release is held back; unpin releases it (still manual: check says so).
    let (ok, _) = d.cli(&["pin", "1.0.0"]);
    assert!(ok);
    let v2 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v2).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.1.0")));
    let (_, check) = d.cli(&["check"]);
    assert!(check.contains("pinned to 1.0.0"), "{check}");
    // Defer is bounded.
    d.cli(&["unpin"]);
    for _ in 0..3 {
        let (ok, out) = d.cli(&["defer", "1.1.0"]);
        assert!(ok, "{out}");
    }
    let (ok, out) = d.cli(&["defer", "1.1.0"]);
    assert!(!ok && out.contains("the limit is 3"), "{out}");
    // Manual rollback to an earlier version after a manual apply.
    let (ok, out) = d.cli(&["apply", "1.1.0"]);
    assert!(ok, "{out}");
    assert_eq!(version_served(port).as_deref(), Some("1.1.0"));
    let (ok, out) = d.cli(&["rollback"]);
    assert!(ok, "{out}");
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
}

#[test]
fn maintenance_windows_hold_updates() {
    let _g = serial();
    // A window that is never now: one hour, twelve hours from the current UTC hour.
    let now_h = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let start = (now_h + 12) % 24;
    let window = format!(
        "[[policy.windows]]\nstart = \"{start:02}:00\"\nend = \"{:02}:00\"\n",
        (start + 1) % 24
    );
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let node = net.spawn(
        "node",
        &[0],
        &format!("{}\n{window}", managed_config(port, "")),
    );
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.0.0")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(version_served(port), None);
    let (_, check) = net.daemons[node].cli(&["check"]);
    assert!(check.contains("outside the maintenance windows"), "{check}");
    // A security-critical release overrides the window (the default policy allows it).
    let sec = net.demo_release("1.0.1", "healthy", "hotfix", &["--security-critical"]);
    assert!(net.publish(0, &sec).0);
    assert!(wait_for(Duration::from_secs(60), || version_served(port)
        .as_deref()
        == Some("1.0.1")));
}

/// Processes of node `i`'s managed program.
fn managed_processes(net: &Testnet, i: usize) -> Vec<i32> {
    net.daemons[i].managed_processes()
}

#[test]
fn a_client_killed_mid_apply_does_not_stop_it_and_automatic_applies_go_on() {
    let _g = serial();
    // Hotfixes are automatic here; minor releases wait for `upswarm apply`.
    let hooks = common::daemon::HookSink::start();
    let (net, node, port) = setup(&format!(
        "\n[policy]\nauto = [\"hotfix\"]\n[webhooks]\nurls = [\"http://127.0.0.1:{}/hook\"]\n",
        hooks.port
    ));
    let d = &net.daemons[node];
    // 1.1.0 (minor, manual) starts slowly: the apply lasts a few seconds.
    let slow = net.demo_release_with(
        "1.1.0",
        "mode = \"slow\"\nstart_delay = \"3s\"\n",
        "minor",
        &[],
    );
    assert!(net.publish(0, &slow).0);
    assert!(wait_for(Duration::from_secs(60), || net.complete(node, "1.1.0")));
    let mut cli = common::upswarm()
        .args(["apply", "1.1.0", "--api", &d.api, "--token-file"])
        .arg(d.data_dir().join("api.token"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let applying = wait_for(Duration::from_secs(60), || {
        d.status_fast()
            .is_some_and(|s| !s["managed"]["applying"].is_null())
    });
    assert!(applying, "{}", d.log());
    // The operator's terminal goes away: SIGKILL to the CLI mid-apply.
    cli.kill().unwrap();
    cli.wait().unwrap();
    let done = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.1.0") == ["applied"]
            && version_served(port).as_deref() == Some("1.1.0")
    });
    assert!(done, "{:?}\n{}", d.history(), d.log());
    let s = d.status().unwrap();
    assert!(s["managed"]["applying"].is_null(), "{s}");
    assert_eq!(s["managed"]["current"], "1.1.0");
    let entry = d
        .history()
        .into_iter()
        .find(|e| e["to"] == "1.1.0")
        .unwrap();
    assert_eq!(entry["origin"], "manual", "{entry}");
    // A manual transition is reported like an automatic one.
    let manual_webhook =
        || {
            hooks.bodies.lock().unwrap().iter().any(|b| {
                b["event"] == "applied" && b["version"] == "1.1.0" && b["origin"] == "manual"
            })
        };
    assert!(
        wait_for(Duration::from_secs(20), manual_webhook),
        "{:?}",
        hooks.bodies.lock().unwrap()
    );
    // Automatic applies are not blocked: a hotfix goes in by itself.
    let fix = net.demo_release("1.1.1", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &fix).0);
    assert!(
        wait_for(Duration::from_secs(60), || outcomes(&net, node, "1.1.1")
            == ["applied"]),
        "{:?}\n{}",
        d.history(),
        d.log()
    );
    assert!(wait_for(Duration::from_secs(10), || version_served(port)
        .as_deref()
        == Some("1.1.1")));
    assert_eq!(managed_processes(&net, node).len(), 1);
}

#[test]
fn a_hanging_pre_upgrade_hook_is_killed_at_its_timeout_and_the_apply_refused_with_its_output() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    let hook = net.path().join("migrate.sh");
    let marker = net.path().join("hook-child.pid");
    std::fs::write(
        &hook,
        format!(
            "echo \"migrating $UPSWARM_FROM -> $UPSWARM_TO\"\n\
             echo 'step 1 of 2 done' >&2\n\
             if [ \"$UPSWARM_TO\" = 1.1.0 ]; then sleep 600 & echo $! > {m}; wait; fi\n",
            m = marker.display()
        ),
    )
    .unwrap();
    let node = net.spawn(
        "node",
        &[0],
        &managed_config(
            port,
            &format!(
                "[managed.hooks]\npre_upgrade = [\"sh\", \"{}\"]\ntimeout = \"3s\"\n",
                hook.display()
            ),
        ),
    );
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || outcomes(
        &net, node, "1.0.0"
    ) == ["applied"]));
    let v2 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v2).0);
    let refused = wait_for(Duration::from_secs(60), || {
        outcomes(&net, node, "1.1.0") == ["refused"]
    });
    let d = &net.daemons[node];
    assert!(refused, "{:?}\n{}", d.history(), d.log());
    let h = d.history();
    let e = h.iter().find(|e| e["to"] == "1.1.0").unwrap();
    let reason = e["reason"].as_str().unwrap();
    assert!(reason.contains("timed out after 3s"), "{e}");
    let output = e["hook_output"].as_str().unwrap();
    assert!(
        output.contains("migrating 1.0.0 -> 1.1.0") && output.contains("step 1 of 2 done"),
        "{e}"
    );
    // The hook and what it started were killed, not left behind.
    let child: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !upswarm::procs::alive(child)),
        "the hook's child {child} still runs"
    );
    // Nothing changed: 1.0.0 serves, healthy; not retried; the log has the output too.
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    assert!(healthy(port));
    assert!(d.log().contains("step 1 of 2 done"));
    let (ok, text) = d.cli(&["history"]);
    assert!(ok && text.contains("| step 1 of 2 done"), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(outcomes(&net, node, "1.1.0"), ["refused"]);
    let s = d.status().unwrap();
    assert!(s["managed"]["applying"].is_null(), "{s}");
}

#[test]
fn hostile_api_input_is_refused_at_the_door_and_changes_nothing() {
    let _g = serial();
    let (net, node, _port) = setup("");
    let d = &net.daemons[node];
    let (ok, out) = d.cli(&["pin", "1.0.0"]);
    assert!(ok, "{out}");
    let before = d.status().unwrap()["managed"].clone();
    let state = |s: &serde_json::Value| {
        let m = &s["managed"];
        (
            m["current"].clone(),
            m["previous"].clone(),
            m["failed"].clone(),
            m["pinned"].clone(),
        )
    };
    let long = format!("1.0.0-{}", "a".repeat(4091));
    assert_eq!(long.len(), 4097);
    let (ok, out) = d.cli(&["pin", &long]);
    assert!(!ok, "{out}");
    assert!(out.contains("version") && out.contains("400"), "{out}");
    assert!(
        !out.contains(&"a".repeat(200)),
        "the error echoes the whole input: {out}"
    );
    let token = std::fs::read_to_string(d.data_dir().join("api.token")).unwrap();
    let token = token.trim();
    // Raw requests: (path, body) → each a 4xx naming the field, nothing changed.
    let huge = "x".repeat(300 * 1024);
    let cases: Vec<(&str, String, &str)> = vec![
        ("/v1/pin", format!("{{\"version\": \"{long}\"}}"), "version"),
        (
            "/v1/pin",
            "{\"version\": \"not.a.version\"}".into(),
            "version",
        ),
        ("/v1/pin", "{\"version\": 7}".into(), "version"),
        (
            "/v1/pin",
            "{\"version\": \"1.0.0\", \"extra\": 1}".into(),
            "extra",
        ),
        (
            "/v1/apply",
            format!("{{\"version\": \"{long}\"}}"),
            "version",
        ),
        (
            "/v1/defer",
            format!("{{\"version\": \"{long}\"}}"),
            "version",
        ),
        ("/v1/rollback", "{\"version\": \"1.0\"}".into(), "version"),
        (
            "/v1/vote",
            format!("{{\"proposal\": \"{}\"}}", "ab".repeat(5000)),
            "proposal",
        ),
        (
            "/v1/peers",
            format!("{{\"addr\": \"{}\"}}", "/ip4".repeat(1000)),
            "addr",
        ),
        (
            "/v1/control",
            format!("{{\"envelope_hex\": \"{}\"}}", "00".repeat(70_000)),
            "envelope_hex",
        ),
        (
            "/v1/publish",
            format!("{{\"dir\": \"/{}\"}}", "d".repeat(5000)),
            "dir",
        ),
        ("/v1/pin", huge.clone(), "length limit"),
    ];
    for (path, body, field) in &cases {
        let Some((code, answer)) = http_post(d.api_port(), path, token, body) else {
            // A body over the size limit may be cut off with the connection (the server
            // stops reading it): refused all the same.
            assert_eq!(*field, "length limit", "{path}: no answer");
            continue;
        };
        assert!(
            (400..500).contains(&code),
            "{path} {}: HTTP {code} {answer}",
            &body[..body.len().min(80)]
        );
        assert!(
            answer.to_lowercase().contains(&field.to_lowercase()),
            "{path}: the error does not name {field}: {answer}"
        );
    }
    // Well-formed calls refused on their merits say whose move it is: 404 what this node
    // does not have, 409 valid but nothing to do here, 422 a signed message that does not
    // verify.
    let root = std::fs::read(net.dir.path().join("root.cbor")).unwrap();
    let hex: String = root.iter().map(|b| format!("{b:02x}")).collect();
    let mut refused: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/vote",
            format!("{{\"proposal\": \"{}\"}}", "ab".repeat(32)),
            404,
            "unknown proposal",
        ),
        (
            "/v1/root",
            format!("{{\"envelope_hex\": \"{hex}\"}}"),
            409,
            "not newer",
        ),
        (
            "/v1/proposal",
            format!("{{\"envelope_hex\": \"{hex}\"}}"),
            422,
            "proposal refused",
        ),
    ];
    // Another release of the version already known (other bytes): valid, nothing to do.
    let twin = net.demo_release("1.0.0+twin", "healthy", "hotfix", &[]);
    refused.push((
        "/v1/publish",
        format!("{{\"dir\": \"{}\"}}", twin.display()),
        409,
        "has the version of another release",
    ));
    // A directory that holds no manifest: refused naming the file, nothing admitted.
    let empty = d.data_dir().join("not-a-release");
    std::fs::create_dir_all(&empty).unwrap();
    refused.push((
        "/v1/publish",
        format!("{{\"dir\": \"{}\"}}", empty.display()),
        422,
        "manifest.cbor",
    ));
    for (path, body, want, says) in &refused {
        let (code, answer) = http_post(d.api_port(), path, token, body).unwrap();
        assert!(
            code == *want && answer.contains(says),
            "{path}: HTTP {code} {answer}"
        );
    }
    let (code, answer) = http_get(
        d.api_port(),
        &format!("/v1/explain?version={}", &long[..300]),
    )
    .unwrap();
    assert!(
        (400..500).contains(&code) && answer.contains("version"),
        "{code} {answer}"
    );
    let after = d.status().unwrap();
    assert_eq!(
        state(&after),
        state(&serde_json::json!({ "managed": before }))
    );
    assert_eq!(after["managed"]["pinned"], "1.0.0");
    // The daemon still works: unpin, and rollback has nothing to go back to, as before.
    assert!(d.cli(&["unpin"]).0);
    let (ok, out) = d.cli(&["rollback"]);
    assert!(!ok && out.contains("no earlier version"), "{out}");
}

/// POST `body` to `path` on loopback with the token; returns (status, body). The body is
/// sent only once the server asks for it (`Expect: 100-continue`): a body refused for its
/// size is then never written into a connection the server has closed.
fn http_post(port: u16, path: &str, token: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut first = [0u8; 12];
    s.read_exact(&mut first).ok()?;
    let mut text = String::from_utf8_lossy(&first).into_owned();
    if text.starts_with("HTTP/1.1 100") {
        // Skip the rest of the interim response, then send the body.
        let mut b = [0u8; 1];
        let mut tail = String::new();
        while !tail.ends_with("\r\n\r\n") {
            s.read_exact(&mut b).ok()?;
            tail.push(b[0] as char);
        }
        s.write_all(body.as_bytes()).ok()?;
        text.clear();
    }
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let answer = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, answer))
}

#[test]
fn sigterm_stops_the_managed_program_even_a_script_and_a_restart_runs_exactly_one() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    // The program is a shell script that runs the demo program as its child (not exec):
    // an interpreter, whose executable is not under versions/.
    let node = net.spawn(
        "node",
        &[0],
        &managed_config(port, "")
            .replace("command = \"app\"", "command = \"run.sh\"")
            .replace("args = [", "args = [\"{version_dir}/app\", "),
    );
    let src = net.path().join("script-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("run.sh"),
        "#!/bin/sh\n\"$@\"\necho \"app exited: $?\"\n",
    )
    .unwrap();
    std::fs::copy(common::daemon::demo_app_binary(), src.join("app")).unwrap();
    std::fs::write(
        src.join("demo.toml"),
        "version = \"1.0.0\"\nmode = \"healthy\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let out = net.path().join("rel-script");
    let run = |args: &[&str]| {
        let o = common::upswarm().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
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
        "--platform",
        "any",
        "--chunk-size",
        "256KiB",
        "--artifact",
        &format!("run.sh={}", src.join("run.sh").display()),
        "--artifact",
        &format!("app={}", src.join("app").display()),
        "--artifact",
        &format!("demo.toml={}", src.join("demo.toml").display()),
        "--out",
        &out.to_string_lossy(),
    ]);
    for k in ["s10.key", "s11.key", "s12.key"] {
        run(&[
            "release",
            "sign",
            "--key",
            &net.path().join(k).to_string_lossy(),
            &out.join("manifest.cbor").to_string_lossy(),
        ]);
    }
    assert!(net.publish(0, &out).0);
    assert!(
        wait_for(Duration::from_secs(60), || version_served(port).as_deref()
            == Some("1.0.0")),
        "{}",
        net.daemons[node].log()
    );
    assert!(wait_for(Duration::from_secs(20), || outcomes(
        &net, node, "1.0.0"
    ) == ["applied"]));
    // Two processes: the script and the program it runs.
    assert!(wait_for(Duration::from_secs(10), || managed_processes(
        &net, node
    )
    .len()
        == 2));

    // SIGTERM: the daemon stops the program (the script's whole process group) and exits.
    let status = net.daemons[node].stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        wait_for(Duration::from_secs(10), || managed_processes(&net, node)
            .is_empty()),
        "left running after SIGTERM: {:?}",
        managed_processes(&net, node)
    );
    assert!(http_get(port, "/version").is_none());
    assert!(!net.daemons[node].data_dir().join("managed.pid").exists());

    // Restart: exactly one instance, and the status is true.
    net.daemons[node].start();
    assert!(wait_for(Duration::from_secs(30), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["program"]["running"], true, "{s}");
    assert_eq!(managed_processes(&net, node).len(), 2);

    // SIGKILL leaves the script and its child running; the next start finds them by pid and
    // start time (whatever the executable) and runs exactly one instance again.
    let before = managed_processes(&net, node);
    net.daemons[node].kill();
    assert_eq!(
        managed_processes(&net, node),
        before,
        "SIGKILL took the program along"
    );
    net.daemons[node].start();
    assert!(
        wait_for(Duration::from_secs(30), || {
            let now = managed_processes(&net, node);
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        }),
        "{:?} vs {:?}\n{}",
        managed_processes(&net, node),
        before,
        net.daemons[node].log()
    );
    assert!(wait_for(Duration::from_secs(30), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
    let s = net.daemons[node].status().unwrap();
    assert_eq!(s["managed"]["program"]["running"], true, "{s}");
    assert!(s["managed"]["applying"].is_null(), "{s}");
    assert_eq!(net.daemons[node].history().len(), 1);
}

#[test]
fn a_release_of_another_product_is_never_applied_to_the_managed_program() {
    let _g = serial();
    let mut net = Testnet::new();
    net.spawn("p", &[], "");
    let port = free_port();
    // The node follows every product; its program is bound to `demo`.
    let config = managed_config(port, "product = \"demo\"")
        .replace("products = [\"demo\"]\n", "products = []\n");
    let node = net.spawn("node", &[0], &config);
    let v1 = net.demo_release("1.0.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v1).0);
    assert!(wait_for(Duration::from_secs(60), || version_served(port)
        .as_deref()
        == Some("1.0.0")));
    // Another product on the same channel, newer, with an artifact of the same name.
    let other = net.path().join("rel-other-9.9.9");
    let src = net.path().join("demo-src-1.0.0");
    let (app, toml) = (
        format!("app={}", src.join("app").display()),
        format!("demo.toml={}", src.join("demo.toml").display()),
    );
    let out = common::upswarm()
        .args([
            "release",
            "create",
            "--name",
            "other",
            "--version",
            "9.9.9",
            "--type",
            "hotfix",
            "--channel",
            "stable",
            "--artifact",
            &app,
            "--artifact",
            &toml,
            "--platform",
            "any",
            "--out",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in ["s10.key", "s11.key"] {
        let out = common::upswarm()
            .args(["release", "sign", "--key"])
            .arg(net.path().join(k))
            .arg(other.join("manifest.cbor"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert!(net.publish(0, &other).0);
    assert!(
        wait_for(Duration::from_secs(60), || net.complete(node, "9.9.9")),
        "the node should still download (and seed) the other product"
    );
    // Its own product's next release is applied; the other product's never.
    let v11 = net.demo_release("1.1.0", "healthy", "hotfix", &[]);
    assert!(net.publish(0, &v11).0);
    assert!(
        wait_for(Duration::from_secs(60), || version_served(port).as_deref()
            == Some("1.1.0")),
        "{}",
        net.daemons[node].log()
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(version_served(port).as_deref(), Some("1.1.0"));
    assert!(
        outcomes(&net, node, "9.9.9").is_empty(),
        "{:?}",
        net.daemons[node].history()
    );
    let (ok, check) = net.daemons[node].cli(&["check", "--json"]);
    assert!(ok, "{check}");
    assert!(!check.contains("9.9.9"), "{check}");
    // `explain` says so, instead of "will be applied now".
    let (ok, text) = net.daemons[node].cli(&["explain", "9.9.9"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "verdict   never installed here: this node's program runs demo releases, not other"
        ),
        "{text}"
    );
}

/// `upswarm release create` + sign with s10, s11; returns the release directory.
fn create_release(net: &Testnet, out: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = net.path().join(out);
    let o = common::upswarm()
        .args(["release", "create"])
        .args(args)
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in ["s10.key", "s11.key"] {
        let o = common::upswarm()
            .args(["release", "sign", "--key"])
            .arg(net.path().join(k))
            .arg(dir.join("manifest.cbor"))
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    dir
}

#[test]
fn one_release_for_two_platforms_each_node_installs_its_own_and_nobody_is_penalised() {
    let _g = serial();
    let mut net = Testnet::new();
    let p = net.spawn("p", &[], "");
    let bin = common::daemon::demo_app_binary();
    let src = net.path().join("multi-src");
    std::fs::create_dir_all(&src).unwrap();
    for plat in ["plat-a", "plat-b"] {
        std::fs::write(
            src.join(format!("{plat}.toml")),
            format!("# built for {plat}\nversion = \"1.0.0\"\nmode = \"healthy\"\n"),
        )
        .unwrap();
    }
    let spec = |name: &str, plat: &str, path: &std::path::Path| {
        format!("{name}@{plat}={}", path.display())
    };
    let (a1, a2) = (spec("app", "plat-a", &bin), spec("app", "plat-b", &bin));
    let t1 = spec("demo.toml", "plat-a", &src.join("plat-a.toml"));
    let t2 = spec("demo.toml", "plat-b", &src.join("plat-b.toml"));
    let rel = create_release(
        &net,
        "rel-multi",
        &[
            "--name",
            "demo",
            "--version",
            "1.0.0",
            "--type",
            "hotfix",
            "--channel",
            "stable",
            "--artifact",
            &a1,
            "--artifact",
            &t1,
            "--artifact",
            &a2,
            "--artifact",
            &t2,
        ],
    );
    let (pa, pb) = (free_port(), free_port());
    let na = net.spawn(
        "na",
        &[p],
        &format!("platform = \"plat-a\"\n{}", managed_config(pa, "")),
    );
    let nb = net.spawn(
        "nb",
        &[p],
        &format!("platform = \"plat-b\"\n{}", managed_config(pb, "")),
    );
    assert!(net.publish(p, &rel).0);
    for (n, port, plat) in [(na, pa, "plat-a"), (nb, pb, "plat-b")] {
        assert!(
            wait_for(Duration::from_secs(60), || version_served(port).as_deref()
                == Some("1.0.0")),
            "{}",
            net.daemons[n].log()
        );
        let installed =
            std::fs::read_to_string(net.daemons[n].dir.join("data/versions/1.0.0/demo.toml"))
                .unwrap();
        assert!(
            installed.contains(&format!("built for {plat}")),
            "{installed}"
        );
        // Only its own platform's artifacts were fetched and assembled.
        let id = net.release_view(n, "1.0.0").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let files: Vec<String> =
            std::fs::read_dir(net.daemons[n].dir.join("data/releases").join(id))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| !f.starts_with('.'))
                .collect();
        assert_eq!(files.len(), 2, "{files:?}");
    }
    // Two separate releases of one version, one per platform, are not "stale" either.
    let only_a = create_release(
        &net,
        "rel-a",
        &[
            "--name",
            "demo",
            "--version",
            "1.1.0",
            "--type",
            "hotfix",
            "--channel",
            "stable",
            "--artifact",
            &a1,
            "--artifact",
            &t1,
        ],
    );
    let only_b = create_release(
        &net,
        "rel-b",
        &[
            "--name",
            "demo",
            "--version",
            "1.1.0",
            "--type",
            "hotfix",
            "--channel",
            "stable",
            "--artifact",
            &a2,
            "--artifact",
            &t2,
        ],
    );
    assert!(net.publish(p, &only_a).0);
    let (ok, out) = net.publish(p, &only_b);
    assert!(ok, "{out}");
    for n in [na, nb] {
        assert!(
            wait_for(Duration::from_secs(60), || {
                // Two releases 1.1.0 are known; the one for this node's platform completes.
                net.daemons[n].status().is_some_and(|s| {
                    s["releases"].as_array().is_some_and(|rs| {
                        rs.iter().filter(|r| r["version"] == "1.1.0").count() == 2
                            && rs.iter().any(|r| {
                                r["version"] == "1.1.0" && r["download"]["state"] == "complete"
                            })
                    })
                })
            }),
            "{}",
            net.daemons[n].log()
        );
    }
    for i in [p, na, nb] {
        let d = &net.daemons[i];
        assert_eq!(
            d.counter("gossip_rejected"),
            0,
            "{} rejected gossip",
            d.name
        );
        assert_eq!(d.counter("peers_banned"), 0, "{} banned someone", d.name);
    }
}
