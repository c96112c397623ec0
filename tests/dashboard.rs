//! The web dashboard in a real browser, and the fleet of a 20-node testnet: one testnet
//! for both (it is the slowest thing to set up).
//!
//! The browser is Debian's `chromium`, headless. Without it the browser part prints
//! SKIPPED — and fails when `UPSWARM_REQUIRE_CHROMIUM` is set (`.ci/run` installs chromium
//! and sets it). `UPSWARM_DASHBOARD_SCREENSHOT=PATH` keeps the screenshot (the README's
//! `docs/img/dashboard.png` is made so).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::daemon::{serial, version_served, wait_for};
use crate::rollout::{fleet, history_of, node_ids, release_id, two_phase_release_with};

/// A changelog line a hostile signer could write: the page must show it, not run it.
const HOSTILE: &str = "<script>document.title='owned'</script><img src=x onerror=alert(1)> & more";

/// A headless chromium, killed with every process it started (its own process group) when
/// dropped: on every path, a failed assertion included.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs `chromium --headless` with `args` and `url`; waits for it to end (at most 90 s);
/// returns its standard output. `None` when chromium is not installed.
fn chromium(args: &[&str], url: &str) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-crash-reporter",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("chromium: {e}"),
    };
    let mut b = Browser {
        child,
        _profile: profile,
    };
    // Read its output on a thread, so that a full pipe never blocks it.
    let mut out = b.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let start = Instant::now();
    while b.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "chromium did not finish within 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The group (renderer and helpers) goes with it.
    drop(b);
    Some(reader.join().unwrap())
}

/// Whether the browser test must run (CI), rather than be skipped without chromium.
fn chromium_required() -> bool {
    std::env::var_os("UPSWARM_REQUIRE_CHROMIUM").is_some()
}

/// `GET path` with the response headers: (status line and headers, body).
fn get_with_headers(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

/// 20 managed nodes on demo 1.0.0; 1.1.0 in two phases breaks at its canaries: those that
/// installed it roll back, and the rollout halts. Then:
/// - `upswarm fleet` on a node lists all 20 nodes, each with the version it runs and its
///   last report, within a bounded wait after the last report; its coverage over time
///   ends with "20 on 1.0.0";
/// - the dashboard of a node, loaded in headless chromium, shows the phases and their gates
///   (halted), the halt, each node's version, the coverage, and the hostile changelog line
///   as text (escaped; the CSP forbids scripts anyway); a screenshot is taken.
#[test]
fn dashboard_in_a_browser_and_the_fleet_of_twenty_nodes() {
    let _g = serial();
    let f = fleet(20);
    let ids: Vec<String> = node_ids(&f).iter().map(|k| k.to_hex()).collect();

    let (bad, phases) = two_phase_release_with(
        &f,
        "1.1.0",
        "unhealthy",
        "8s",
        &format!("# Security\n- {HOSTILE}\n"),
    );
    let bad_id = release_id(&bad).to_hex();
    let canaries: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] == 0).collect();
    let others: Vec<usize> = (0..phases.len()).filter(|i| phases[*i] != 0).collect();
    assert!(f.net.publish(0, &bad).0);
    // The first canary to fail halts the rollout: the canaries that had not started by then
    // never install it. Wait until one rolled back and every canary is idle again.
    let rolled_back = |i: usize| {
        history_of(&f, i, "1.1.0")
            .iter()
            .any(|e| e["outcome"] == "rolled_back")
    };
    let settled = wait_for(Duration::from_secs(120), || {
        canaries.iter().any(|&i| rolled_back(i))
            && canaries.iter().all(|&i| {
                let d = &f.net.daemons[f.nodes[i]];
                d.status_fast()
                    .is_some_and(|s| s["managed"]["applying"].is_null())
                    && (rolled_back(i) || history_of(&f, i, "1.1.0").is_empty())
            })
    });
    assert!(
        settled,
        "canaries {canaries:?}: no rollback, or not settled"
    );
    for (i, port) in f.ports.iter().enumerate() {
        assert_eq!(version_served(*port).as_deref(), Some("1.0.0"), "node {i}");
    }
    for &i in &others {
        assert!(
            history_of(&f, i, "1.1.0").is_empty(),
            "node {i} installed 1.1.0"
        );
    }

    // The fleet, on a node of the later phase: every node, its version, its last report
    // (as its own history says).
    let viewer = f.nodes[*others.last().unwrap()];
    let expected = |i: usize| -> (&str, &str, &str) {
        if rolled_back(i) {
            ("1.0.0", "rolled_back", "1.1.0")
        } else {
            ("1.0.0", "healthy", "1.0.0")
        }
    };
    let fleet_json = || -> Value {
        let (ok, out) = f.net.daemons[viewer].cli(&["fleet", "--json"]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap()
    };
    let matches = |fl: &Value| {
        fl["nodes_known"] == 20
            && ids.iter().enumerate().all(|(i, id)| {
                fl["nodes"].as_array().unwrap().iter().any(|n| {
                    n["node_id"] == id.as_str()
                        && (
                            n["version"].as_str().unwrap(),
                            n["state"].as_str().unwrap(),
                            n["release_version"].as_str().unwrap_or(""),
                        ) == expected(i)
                })
            })
    };
    let listed = wait_for(Duration::from_secs(30), || matches(&fleet_json()));
    assert!(listed, "{:#}", fleet_json());
    let (ok, table) = f.net.daemons[viewer].cli(&["fleet"]);
    assert!(ok, "{table}");
    assert!(table.contains("20 nodes known"), "{table}");
    assert!(table.contains("20 on 1.0.0"), "{table}");
    for id in &ids {
        let line = table
            .lines()
            .find(|l| l.starts_with(&id[..16]))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert!(line.contains("1.0.0"), "{line}");
    }
    // Coverage over time: a sample when the counts change (every 10 s at most).
    let sampled = wait_for(Duration::from_secs(30), || {
        let h = &fleet_json()["history"];
        h.as_array().and_then(|a| a.last()).is_some_and(|s| {
            s["versions"] == serde_json::json!([{"version": "1.0.0", "nodes": 20}])
        })
    });
    assert!(sampled, "{:#}", fleet_json()["history"]);
    let (ok, hist) = f.net.daemons[viewer].cli(&["fleet", "--history"]);
    assert!(ok, "{hist}");
    assert!(
        hist.starts_with("coverage over time: ")
            && hist.lines().last().unwrap().ends_with("  20 on 1.0.0"),
        "{hist}"
    );

    // The page: its headers, then in the browser.
    let port = f.net.daemons[viewer].api_port();
    let halted = wait_for(Duration::from_secs(30), || {
        get_with_headers(port, "/").1.contains("HALTED: phase 0")
    });
    let (head, page) = get_with_headers(port, "/");
    assert!(halted, "{page}");
    assert!(head.starts_with("http/1.0 200 "), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none'; style-src 'self';"),
        "{head}"
    );
    let (head, css) = get_with_headers(port, "/ui/style.css");
    assert!(head.contains("content-type: text/css"), "{head}");
    assert!(css.contains(".halted"), "{css}");

    let url = format!("http://127.0.0.1:{port}/");
    let Some(dom) = chromium(&["--dump-dom"], &url) else {
        println!(
            "SKIPPED: the browser part: chromium is not installed (Debian: apt-get install chromium)"
        );
        assert!(
            !chromium_required(),
            "UPSWARM_REQUIRE_CHROMIUM is set, but chromium is not installed"
        );
        return;
    };
    // The rollout of 1.1.0: both phases halted, the halt named; 1.0.0's single phase open.
    let article = dom
        .split(&format!("id=\"rollout-{bad_id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no rollout of {bad_id} in\n{dom}"));
    let article = article.split("</article>").next().unwrap();
    assert!(
        article.contains("HALTED: phase 0 went over its failure limit"),
        "{article}"
    );
    assert!(
        article.contains("data-phase=\"0\" data-gate=\"halted\""),
        "{article}"
    );
    assert!(
        article.contains("data-phase=\"1\" data-gate=\"halted\""),
        "{article}"
    );
    assert!(dom.contains("data-phase=\"0\" data-gate=\"open\""), "{dom}");
    // The hostile line as text: no script element, no image, the text escaped.
    assert!(
        article.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &amp; more"),
        "{article}"
    );
    assert!(!dom.contains("<script") && !dom.contains("<img"), "{dom}");
    assert!(!dom.contains("<title>owned"), "{dom}");
    // Every node with the version it runs.
    for (i, id) in ids.iter().enumerate() {
        let row = dom
            .split(&format!("data-node=\"{id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for node {i} ({id}) in\n{dom}"));
        let row = row.split("</tr>").next().unwrap();
        let (version, state, _) = expected(i);
        assert!(
            row.contains(&format!("<td class=\"version\">{version}</td>"))
                && row.contains(&format!("<td class=\"report\">{state}</td>")),
            "node {i}: {row}"
        );
    }
    assert!(dom.contains("20 nodes known"), "{dom}");
    assert!(dom.contains("<b>20</b> on 1.0.0"), "{dom}");
    assert!(dom.contains("<svg class=\"chart\""), "{dom}");
    assert!(dom.contains("<b id=\"running\">1.0.0</b>"), "{dom}");

    // The screenshot.
    let shots = tempfile::tempdir().unwrap();
    let shot = shots.path().join("dashboard.png");
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        &url,
    )
    .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    if let Some(keep) = std::env::var_os("UPSWARM_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&keep)).unwrap();
        println!(
            "dashboard screenshot saved to {}",
            Path::new(&keep).display()
        );
    }
}
