//! The web dashboard (`GET /` on the control API's address): one read-only HTML page,
//! rendered on the server from the very views the JSON API serves (`GET /v1/status`,
//! `upswarm explain` of each followed release, `GET /v1/fleet`, `GET /v1/activations`).
//! It refreshes itself every [`REFRESH_SECS`] seconds; no script runs, and the
//! Content-Security-Policy ([`CSP`]) lets none run nor load from anywhere but the
//! stylesheet at [`STYLE_PATH`].
//!
//! Every text a signer, a peer or an operator wrote (release names, versions, channels,
//! changelogs, halt reasons, proposal descriptions, alarms...) goes through [`esc`]: the
//! page shows it, never obeys it.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::{
    ActivationView, DownloadState, ExplainView, FleetView, ProgressView, ReleaseView, StatusView,
};

/// How often the page reloads itself (seconds).
pub const REFRESH_SECS: u32 = 5;
/// Rollouts shown: those of the newest followed releases.
pub const MAX_ROLLOUTS: usize = 8;
/// Rows of the fleet table shown (the whole inventory is in `upswarm fleet`).
pub const MAX_FLEET_ROWS: usize = 500;
/// Where the stylesheet is served.
pub const STYLE_PATH: &str = "/ui/style.css";
/// The page's Content-Security-Policy: nothing may load or run but the stylesheet from
/// this address; no form posts, no base URL change, no framing by another page.
pub const CSP: &str = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything the page shows: the API's own views.
#[derive(Debug)]
pub struct Dashboard {
    pub status: StatusView,
    pub rollouts: Vec<ExplainView>,
    pub fleet: FleetView,
    pub activations: Vec<ActivationView>,
    /// The daemon's own version.
    pub daemon_version: String,
    /// Unix time the page is for.
    pub now: u64,
}

/// Text made safe inside HTML elements and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A unix time as `2026-12-02 16:40:10 UTC` (`-` for 0).
fn time(t: u64) -> String {
    if t == 0 {
        return "-".into();
    }
    i64::try_from(t)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The first `n` characters of an id (escaped).
fn short(id: &str, n: usize) -> String {
    esc(&id.chars().take(n).collect::<String>())
}

/// A count of the evaluation (0 if missing).
fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn percent_bp(bp: u64) -> String {
    format!("{:.2} %", bp as f64 / 100.0)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The page.
pub fn render(d: &Dashboard) -> String {
    let s = &d.status;
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>upswarm · {}</title><link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head>\n<body>\n\
         <header><h1>upswarm</h1><p>node <code id=\"node-id\">{}</code> · network <b>{}</b> · \
         daemon {} · {}</p></header>\n",
        short(&s.node_id, 16),
        esc(&s.node_id),
        esc(&s.network),
        esc(&d.daemon_version),
        time(d.now),
    );
    for a in &s.alarms {
        let _ = writeln!(h, "<p class=\"alarm\">ALARM: {}</p>", esc(a));
    }
    node_section(&mut h, s, d.now);
    rollouts_section(&mut h, &d.rollouts, d.now);
    releases_section(&mut h, &s.releases);
    fleet_section(&mut h, &d.fleet, d.now);
    proposals_section(&mut h, &d.activations);
    let _ = write!(
        h,
        "<footer>Read-only: changes go through the <code>upswarm</code> command line with the \
         API token. This page reloads every {REFRESH_SECS} s. JSON: <code>/v1/status</code>, \
         <code>/v1/fleet</code>, <code>/v1/explain</code>, <code>/v1/activations</code>.</footer>\n\
         </body></html>\n"
    );
    h
}

fn node_section(h: &mut String, s: &StatusView, now: u64) {
    let running = match &s.managed {
        Some(m) => match &m.current {
            Some(v) => {
                let mut t = format!("<b id=\"running\">{}</b>", esc(v));
                if let Some((step, to)) = &m.applying {
                    let _ = write!(t, " (applying {}: {})", esc(to), esc(step));
                }
                if let Some(p) = &m.pinned {
                    let _ = write!(t, " · pinned to {}", esc(p));
                }
                t
            }
            None => "none installed yet".into(),
        },
        None => "manages no program".into(),
    };
    let r = &s.reachability;
    let mut reach = esc(&r.state);
    if let Some(a) = &r.address {
        let _ = write!(reach, " at <code>{}</code>", esc(a));
    }
    if !r.relays.is_empty() {
        let relays: Vec<String> = r.relays.iter().map(|p| short(p, 12)).collect();
        let _ = write!(reach, " via relays {}", relays.join(", "));
    }
    let root_expiry = if s.root_expires_at > 0 {
        let days = s.root_expires_at.saturating_sub(now) / 86400;
        format!(" (expires {}, in {days} days)", time(s.root_expires_at))
    } else {
        String::new()
    };
    let _ = write!(
        h,
        "<section id=\"node\"><h2>This node</h2><dl>\
         <dt>Program version</dt><dd>{running}</dd>\
         <dt>Peer id</dt><dd><code>{}</code></dd>\
         <dt>Reachability</dt><dd id=\"reachability\">{reach}</dd>\
         <dt>Peers</dt><dd id=\"peer-count\">{} connected{}</dd>\
         <dt>Trust root</dt><dd>version {}{root_expiry}</dd>\
         <dt>Disk</dt><dd>{} in the data directory (chunks {}, releases {}, versions {}, backups {})</dd>\
         </dl>",
        esc(&s.peer_id),
        s.peers.len(),
        if s.banned.is_empty() {
            String::new()
        } else {
            format!(", {} banned", s.banned.len())
        },
        s.root_version,
        bytes(s.disk.total),
        bytes(s.disk.chunks),
        bytes(s.disk.releases),
        bytes(s.disk.versions),
        bytes(s.disk.backups),
    );
    if !s.peers.is_empty() {
        h.push_str(
            "<details><summary>Peers</summary><table class=\"peers\">\
             <tr><th>peer</th><th>link</th><th>score</th></tr>",
        );
        for p in &s.peers {
            let link = s
                .peer_links
                .iter()
                .find(|(q, _)| q == p)
                .map_or("-", |(_, l)| l.as_str());
            let score = s
                .peer_scores
                .iter()
                .find(|(q, _)| q == p)
                .and_then(|(_, sc)| *sc)
                .map_or("-".into(), |sc| format!("{sc:.1}"));
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{score}</td></tr>",
                esc(p),
                esc(link)
            );
        }
        for (p, until) in &s.banned {
            let _ = write!(
                h,
                "<tr class=\"bad\"><td><code>{}</code></td><td>banned until {}</td><td></td></tr>",
                esc(p),
                time(*until)
            );
        }
        h.push_str("</table></details>");
    }
    h.push_str("</section>\n");
}

/// A phase's gate as the page shows it: a CSS class (`open`, `soaking`, `waiting`,
/// `paused`, `halted`) and words.
fn gate(ev: &Value, k: usize, now: u64) -> (&'static str, String) {
    let open = ev["open"].as_u64().unwrap_or(0) as usize;
    let halted = &ev["halted"];
    if halted.is_object() {
        let reason = halted["reason"].as_str().unwrap_or("");
        let at = time(halted["at"].as_u64().unwrap_or(0));
        let failing = halted["phase"].as_u64().map(|p| p as usize);
        if reason == "failures" && failing == Some(k) {
            return (
                "halted",
                format!(
                    "halted: {} of {} final reports failed (limit {}) at {at}",
                    num(&halted["failures"]),
                    num(&halted["reports"]),
                    percent_bp(halted["max_failure_bp"].as_u64().unwrap_or(0))
                ),
            );
        }
        if reason != "failures" || k >= open {
            let what = match (reason, failing) {
                ("aborted", _) => "aborted by the control role".to_string(),
                ("yanked", _) => "yanked by the control role".to_string(),
                (_, Some(p)) => format!("never opens: phase {p} failed"),
                _ => "never opens".to_string(),
            };
            return ("halted", format!("halted: {what}"));
        }
    }
    if k < open {
        let at = ev["opened_at"][k].as_u64().unwrap_or(0);
        return ("open", format!("open since {}", time(at)));
    }
    if let Some(since) = ev["paused_since"].as_u64() {
        return ("paused", format!("paused since {}", time(since)));
    }
    let w = &ev["waiting"];
    if w["phase"].as_u64() == Some(k as u64) {
        if let Some(t) = w["opens_at"].as_u64() {
            let what = if k == 0 { "starts" } else { "soaking: opens" };
            return ("soaking", format!("{what} at {}", time(t.max(now))));
        }
        if k > 0 && w["earlier_reports"].as_u64() == Some(0) {
            return ("waiting", "waiting for a first report".into());
        }
        return (
            "waiting",
            format!(
                "waiting for reports: {} of {}",
                num(&w["reports"]),
                num(&w["reports_needed"])
            ),
        );
    }
    (
        "waiting",
        format!("waiting for phase {}", k.saturating_sub(1)),
    )
}

/// The rollout as a whole, in words, with its CSS class.
fn rollout_state(ev: &Value) -> (&'static str, String) {
    let phases = ev["opened_at"].as_array().map_or(0, Vec::len);
    let open = ev["open"].as_u64().unwrap_or(0) as usize;
    let h = &ev["halted"];
    if h.is_object() {
        let at = time(h["at"].as_u64().unwrap_or(0));
        let text = match h["reason"].as_str().unwrap_or("") {
            "failures" => format!(
                "HALTED: phase {} went over its failure limit ({} of {} final reports failed) at {at}",
                num(&h["phase"]),
                num(&h["failures"]),
                num(&h["reports"])
            ),
            "aborted" => format!("HALTED: aborted by the control role at {at}"),
            "yanked" => format!("HALTED: yanked by the control role at {at}"),
            other => format!("HALTED: {} at {at}", esc(other)),
        };
        return ("halted", text);
    }
    if let Some(since) = ev["paused_since"].as_u64() {
        return (
            "paused",
            format!("paused by the control role since {}", time(since)),
        );
    }
    if open == 0 {
        return ("waiting", "not started".into());
    }
    if open >= phases {
        return ("open", "complete: every phase is open".into());
    }
    (
        "soaking",
        format!("rolling out: {open} of {phases} phases open"),
    )
}

fn rollouts_section(h: &mut String, rollouts: &[ExplainView], now: u64) {
    h.push_str("<section id=\"rollouts\"><h2>Rollouts</h2>");
    if rollouts.is_empty() {
        h.push_str("<p>No release followed by this node is known yet.</p>");
    }
    for r in rollouts {
        let ev = &r.rollout.evaluation;
        let (class, state) = rollout_state(ev);
        let _ = write!(
            h,
            "<article class=\"rollout\" id=\"rollout-{}\"><h3>{} {} <code>{}</code></h3>\
             <p class=\"state {class}\" data-state=\"{class}\">{}</p>\
             <p>This node: {} · {} · <i>{}</i></p>",
            short(&r.release, 64),
            esc(&r.name),
            esc(&r.version),
            short(&r.release, 16),
            state,
            esc(&r.rollout.cohort),
            esc(&r.rollout.decision),
            esc(&r.verdict),
        );
        h.push_str(
            "<table class=\"phases\"><tr><th>phase</th><th>gate</th><th>nodes</th>\
             <th>installing</th><th>healthy</th><th>failed</th><th>failure rate</th>\
             <th>reports</th></tr>",
        );
        let stats = ev["stats"].as_array().cloned().unwrap_or_default();
        for (k, st) in stats.iter().enumerate() {
            let (gclass, gtext) = gate(ev, k, now);
            let _ = write!(
                h,
                "<tr class=\"phase\" data-phase=\"{k}\" data-gate=\"{gclass}\"><td>{k}</td>\
                 <td class=\"gate {gclass}\">{gtext}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{} (limit {})</td><td>{} of {}</td></tr>",
                num(&st["known_nodes"]),
                num(&st["installed"]),
                num(&st["healthy"]),
                num(&st["failed"]),
                percent_bp(st["failure_rate_bp"].as_u64().unwrap_or(0)),
                percent_bp(st["max_failure_bp"].as_u64().unwrap_or(0)),
                num(&st["reports"]),
                num(&st["reports_needed"]),
            );
        }
        h.push_str("</table>");
        let c = &r.changelog;
        if !(c.features.is_empty() && c.fixes.is_empty() && c.security.is_empty()) {
            h.push_str("<div class=\"changelog\">");
            for (title, items) in [
                ("Security", &c.security),
                ("Features", &c.features),
                ("Fixes", &c.fixes),
            ] {
                if items.is_empty() {
                    continue;
                }
                let _ = write!(h, "<h4>{title}</h4><ul>");
                for i in items {
                    let _ = write!(h, "<li>{}</li>", esc(i));
                }
                h.push_str("</ul>");
            }
            h.push_str("</div>");
        }
        h.push_str("</article>");
    }
    h.push_str("</section>\n");
}

fn download(d: &DownloadState, p: Option<&ProgressView>) -> String {
    let mut out = match d {
        DownloadState::NotFollowed => "not followed".to_string(),
        DownloadState::Downloading => "downloading".to_string(),
        DownloadState::Complete { at } => format!("complete at {}", time(*at)),
        DownloadState::Failed { reason } => format!("failed: {}", esc(reason)),
        DownloadState::Blocked { reason, since } => {
            format!("blocked since {}: {}", time(*since), esc(reason))
        }
        DownloadState::Removed { at } => format!("removed at {}", time(*at)),
    };
    if let Some(p) = p
        && p.chunks_total > 0
        && !matches!(d, DownloadState::Complete { .. })
    {
        let _ = write!(
            out,
            " <progress max=\"{}\" value=\"{}\"></progress> {} of {} chunks, {} fetched from {} peers",
            p.chunks_total,
            p.chunks_held,
            p.chunks_held,
            p.chunks_total,
            bytes(p.bytes_fetched),
            p.from_peers.len()
        );
        if let Some(b) = &p.blocked {
            let _ = write!(out, " — waiting: {}", esc(b));
        }
    }
    out
}

fn releases_section(h: &mut String, releases: &[ReleaseView]) {
    h.push_str(
        "<section id=\"releases\"><h2>Releases known</h2><table><tr><th>name</th>\
         <th>version</th><th>channel</th><th>type</th><th>first seen</th><th>from</th>\
         <th>download</th></tr>",
    );
    for r in releases {
        let source = match r.source {
            crate::api::Source::Gossip => "gossip",
            crate::api::Source::Dht => "DHT",
            crate::api::Source::Publish => "published here",
        };
        let _ = write!(
            h,
            "<tr data-release=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{source}</td><td>{}</td></tr>",
            short(&r.id, 64),
            esc(&r.name),
            esc(&r.version),
            esc(&r.channel),
            esc(&r.update_type),
            time(r.first_seen),
            download(&r.download, r.progress.as_ref()),
        );
    }
    h.push_str("</table></section>\n");
}

/// Colours of the versions in the coverage chart, the most common first.
const PALETTE: [&str; 6] = [
    "#2b7bb9", "#e07b39", "#3a9d5d", "#c0392b", "#8e44ad", "#7f8c8d",
];

/// The coverage history as an inline SVG step chart (no script).
fn coverage_chart(h: &mut String, f: &FleetView, now: u64) {
    let Some(first) = f.history.first() else {
        return;
    };
    let (w, ht, pad) = (720.0f64, 140.0f64, 4.0f64);
    let start = first.at;
    let end = now
        .max(f.history.last().map_or(start, |s| s.at))
        .max(start + 1);
    let max = f
        .history
        .iter()
        .flat_map(|s| s.versions.iter().map(|v| v.nodes))
        .max()
        .unwrap_or(1)
        .max(1);
    // The versions of the latest sample first, then any older ones; at most the palette.
    let mut versions: Vec<&str> = Vec::new();
    for s in f.history.iter().rev() {
        for v in &s.versions {
            if !versions.contains(&v.version.as_str()) {
                versions.push(&v.version);
            }
        }
    }
    versions.truncate(PALETTE.len());
    let x = |t: u64| pad + (t - start) as f64 / (end - start) as f64 * (w - 2.0 * pad);
    let y = |n: usize| ht - pad - n as f64 / max as f64 * (ht - 2.0 * pad);
    let _ = write!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" \
         role=\"img\" aria-label=\"nodes per version over time\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" fill=\"#fafafa\" stroke=\"#ddd\"/>"
    );
    for (i, v) in versions.iter().enumerate() {
        let count = |s: &crate::api::CoverageSample| {
            s.versions
                .iter()
                .find(|c| c.version == *v)
                .map_or(0, |c| c.nodes)
        };
        let mut points = Vec::new();
        let mut last = None;
        for s in &f.history {
            let n = count(s);
            if let Some(prev) = last {
                points.push(format!("{:.1},{:.1}", x(s.at), y(prev)));
            }
            points.push(format!("{:.1},{:.1}", x(s.at), y(n)));
            last = Some(n);
        }
        if let Some(n) = last {
            points.push(format!("{:.1},{:.1}", x(end), y(n)));
        }
        let _ = write!(
            h,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            PALETTE[i],
            points.join(" ")
        );
    }
    h.push_str("</svg><p class=\"legend\">");
    for (i, v) in versions.iter().enumerate() {
        let _ = write!(
            h,
            "<span class=\"swatch\"><svg width=\"12\" height=\"12\"><rect width=\"12\" \
             height=\"12\" fill=\"{}\"/></svg> {}</span> ",
            PALETTE[i],
            esc(v)
        );
    }
    let _ = write!(
        h,
        "· from {} to now · at most {} nodes</p>",
        time(start),
        max
    );
}

fn fleet_section(h: &mut String, f: &FleetView, now: u64) {
    let coverage: Vec<String> = f
        .coverage
        .iter()
        .map(|c| format!("<b>{}</b> on {}", c.nodes, esc(&c.version)))
        .collect();
    let _ = write!(
        h,
        "<section id=\"fleet\"><h2>Fleet</h2><p id=\"coverage\">{} nodes known (at most {} \
         kept){}: {}</p>",
        f.nodes_known,
        f.cap,
        match &f.rollout {
            Some(r) => format!(
                "; nodes placed in the rollout of {} {}",
                esc(&r.name),
                esc(&r.version)
            ),
            None => String::new(),
        },
        if coverage.is_empty() {
            "no reports yet".into()
        } else {
            coverage.join(", ")
        }
    );
    coverage_chart(h, f, now);
    if !f.history.is_empty() {
        let _ = write!(
            h,
            "<details><summary>Coverage over time ({} samples, at most {})</summary>\
             <table class=\"history\"><tr><th>from</th><th>nodes per version</th></tr>",
            f.history.len(),
            crate::api::COVERAGE_HISTORY_CAP
        );
        for s in f.history.iter().rev().take(20) {
            let v: Vec<String> = s
                .versions
                .iter()
                .map(|c| format!("{} on {}", c.nodes, esc(&c.version)))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                time(s.at),
                v.join(", ")
            );
        }
        h.push_str("</table></details>");
    }
    h.push_str(
        "<table class=\"nodes\"><tr><th>node</th><th>version</th><th>last report</th>\
         <th>reported</th><th>about</th><th>rank</th><th>phase</th><th>position</th></tr>",
    );
    for n in f.nodes.iter().take(MAX_FLEET_ROWS) {
        let about = match (&n.release_name, &n.release_version) {
            (Some(name), Some(v)) => format!("{} {}", esc(name), esc(v)),
            _ => short(&n.release, 16),
        };
        let me = if n.node_id == f.node_id {
            " <i>(this node)</i>"
        } else {
            ""
        };
        let class = match n.state.as_str() {
            "failed" | "rolled_back" => " class=\"bad\"",
            _ => "",
        };
        let _ = write!(
            h,
            "<tr{class} data-node=\"{}\"><td><code>{}</code>{me}</td><td class=\"version\">{}</td>\
             <td class=\"report\">{}</td><td>{}</td><td>{about}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            short(&n.node_id, 64),
            short(&n.node_id, 16),
            esc(&n.version),
            esc(&n.state),
            time(n.at),
            n.rank.map_or("-".into(), |r| format!("{:.2} %", r * 100.0)),
            n.phase.map_or("-".into(), |p| p.to_string()),
            n.position.map_or("-".into(), |p| p.to_string()),
        );
    }
    h.push_str("</table>");
    if f.nodes.len() > MAX_FLEET_ROWS {
        let _ = write!(
            h,
            "<p>… and {} more: <code>upswarm fleet</code> lists them all.</p>",
            f.nodes.len() - MAX_FLEET_ROWS
        );
    }
    h.push_str("</section>\n");
}

fn proposals_section(h: &mut String, activations: &[ActivationView]) {
    h.push_str("<section id=\"proposals\"><h2>Protocol proposals</h2>");
    if activations.is_empty() {
        h.push_str("<p>None known.</p></section>\n");
        return;
    }
    h.push_str(
        "<table><tr><th>protocol</th><th>description</th><th>state</th><th>vote weight</th>\
         <th>voting from</th><th>lock-in deadline</th><th>locked in</th><th>activation</th>\
         <th>this node</th></tr>",
    );
    for a in activations {
        let mine = format!(
            "{}{}{}",
            if a.supported {
                "supports it"
            } else {
                "does NOT support it"
            },
            if a.voted { ", voted READY" } else { "" },
            if a.withheld { ", vote withheld" } else { "" },
        );
        let _ = write!(
            h,
            "<tr data-proposal=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td><meter min=\"0\" max=\"{}\" value=\"{}\"></meter> {} of {} needed ({} in all)</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{mine}</td></tr>",
            short(&a.proposal, 64),
            esc(&a.protocol),
            esc(&a.description),
            esc(&a.state),
            a.weight_total.max(1),
            a.weight_counted,
            a.weight_counted,
            a.weight_needed,
            a.weight_total,
            time(a.start_at),
            time(a.lock_in_deadline),
            a.locked_in_at.map_or("-".into(), time),
            a.activation_at.map_or("-".into(), time),
        );
    }
    h.push_str("</table></section>\n");
}

/// The stylesheet (served at [`STYLE_PATH`]).
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fff;font-size:14px}
header{display:flex;align-items:baseline;gap:1em;border-bottom:2px solid #2b7bb9}
header h1{margin:.3em 0;color:#2b7bb9}
h2{margin:1.2em 0 .4em;font-size:1.25em;border-bottom:1px solid #ddd}
h3{margin:.8em 0 .2em;font-size:1.1em}
table{border-collapse:collapse;margin:.3em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f6f9}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:bold}dd{margin:0}
code{font-size:.95em}
.alarm{background:#c0392b;color:#fff;padding:.4em .8em;font-weight:bold}
.state{font-weight:bold;padding:.2em .5em;display:inline-block}
.open{background:#e6f4ea}.soaking{background:#fff4d6}.waiting{background:#eef1f5}
.paused{background:#fde9d9}.halted{background:#f9d6d2;color:#8b1a10}
tr.bad td{background:#fbeceb}
article.rollout{border:1px solid #ddd;padding:.2em .8em .6em;margin:.6em 0}
.changelog h4{margin:.4em 0 0}.changelog ul{margin:.2em 0}
.legend .swatch{margin-right:.8em}
footer{margin-top:2em;color:#666;font-size:.9em}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        CoverageSample, FleetNode, FleetRollout, ManagedView, RolloutView, VersionCount,
    };

    const EVIL: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;";

    fn evil_view() -> Dashboard {
        let release = ReleaseView {
            id: "ab".repeat(32),
            name: EVIL.into(),
            version: EVIL.into(),
            channel: EVIL.into(),
            update_type: EVIL.into(),
            source: crate::api::Source::Gossip,
            first_seen: 1_800_000_000,
            download: DownloadState::Failed {
                reason: EVIL.into(),
            },
            progress: Some(ProgressView {
                chunks_total: 4,
                chunks_held: 1,
                blocked: Some(EVIL.into()),
                ..Default::default()
            }),
        };
        let status = StatusView {
            node_id: "cd".repeat(32),
            peer_id: EVIL.into(),
            network: EVIL.into(),
            listen: vec![],
            peers: vec![EVIL.into()],
            peer_scores: vec![(EVIL.into(), Some(1.0))],
            banned: vec![(EVIL.into(), 1_800_000_000)],
            reachability: crate::api::ReachabilityView {
                state: EVIL.into(),
                address: Some(EVIL.into()),
                relays: vec![EVIL.into()],
            },
            peer_links: vec![(EVIL.into(), EVIL.into())],
            root_version: 1,
            root_expires_at: 1_900_000_000,
            releases: vec![release],
            managed: Some(ManagedView {
                current: Some(EVIL.into()),
                previous: vec![],
                pinned: Some(EVIL.into()),
                failed: vec![],
                program: Default::default(),
                applying: Some((EVIL.into(), EVIL.into())),
                recovering: false,
                cosmovisor: None,
            }),
            alarms: vec![EVIL.into()],
            counters: Default::default(),
            disk: Default::default(),
        };
        let explain = ExplainView {
            release: EVIL.into(),
            name: EVIL.into(),
            version: EVIL.into(),
            node_id: EVIL.into(),
            rollout: RolloutView {
                rank: 0.5,
                phase: 1,
                phase_until_percent: 100.0,
                rank_phase: 1,
                position: 1,
                cohort_nodes: 2,
                cohort: EVIL.into(),
                install_delay_secs: 1,
                evaluation: serde_json::json!({
                    "now": 1_800_000_100u64,
                    "open": 1,
                    "opened_at": [1_800_000_000u64, null],
                    "halted": {"reason": "failures", "phase": 0, "at": 1_800_000_050u64,
                               "failures": 1, "reports": 1, "max_failure_bp": 2000},
                    "stats": [
                        {"known_nodes": 1, "installed": 0, "healthy": 0, "failed": 1,
                         "failure_rate_bp": 10000, "max_failure_bp": 2000, "reports": 1,
                         "reports_needed": 1},
                        {"known_nodes": 1, "installed": 0, "healthy": 0, "failed": 0,
                         "failure_rate_bp": 0, "max_failure_bp": 2000, "reports": 0,
                         "reports_needed": 1}
                    ],
                    "waiting": null,
                    "paused_since": null
                }),
                decision: EVIL.into(),
                may_install: false,
            },
            hold: None,
            verdict: EVIL.into(),
            download: DownloadState::Downloading,
            known_nodes: 2,
            progress: None,
            changelog: upswarm_proto::Changelog {
                features: vec![EVIL.into()],
                fixes: vec![EVIL.into()],
                security: vec![EVIL.into()],
            },
        };
        let fleet = FleetView {
            node_id: "cd".repeat(32),
            nodes_known: 1,
            cap: crate::api::FLEET_CAP,
            rollout: Some(FleetRollout {
                release: EVIL.into(),
                name: EVIL.into(),
                version: EVIL.into(),
            }),
            coverage: vec![VersionCount {
                version: EVIL.into(),
                nodes: 1,
            }],
            nodes: vec![FleetNode {
                node_id: EVIL.into(),
                version: EVIL.into(),
                state: EVIL.into(),
                release: EVIL.into(),
                release_name: Some(EVIL.into()),
                release_version: Some(EVIL.into()),
                at: 1_800_000_000,
                rank: Some(0.25),
                phase: Some(0),
                position: Some(0),
            }],
            history: vec![CoverageSample {
                at: 1_800_000_000,
                versions: vec![VersionCount {
                    version: EVIL.into(),
                    nodes: 1,
                }],
            }],
        };
        let activations = vec![ActivationView {
            proposal: EVIL.into(),
            protocol: EVIL.into(),
            description: EVIL.into(),
            state: EVIL.into(),
            weight_counted: 1,
            weight_needed: 2,
            weight_total: 3,
            start_at: 1,
            lock_in_deadline: 2,
            locked_in_at: None,
            activation_at: Some(1_800_000_000),
            supported: true,
            voted: false,
            withheld: false,
        }];
        Dashboard {
            status,
            rollouts: vec![explain],
            fleet,
            activations,
            daemon_version: EVIL.into(),
            now: 1_800_000_100,
        }
    }

    /// Every text of the views shows escaped: no element, attribute or entity of its own
    /// reaches the page.
    #[test]
    fn every_view_text_is_escaped() {
        let page = render(&evil_view());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
        assert!(!page.contains("'x'"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img"),
            "{page}"
        );
        // The literal `&amp;` of the text is shown as written, not as `&`.
        assert!(page.contains("&amp;amp;"), "{page}");
        // Every place a text goes: the changelog's three sections, the fleet, the alarms...
        let shown = page.matches("&lt;script&gt;").count();
        assert!(shown >= 30, "{shown} escaped copies:\n{page}");
    }

    /// The gate words and classes of a halted rollout: the failing phase and the one after it
    /// say halted; an open phase says since when.
    #[test]
    fn gates_of_a_halted_rollout() {
        let d = evil_view();
        let ev = &d.rollouts[0].rollout.evaluation;
        let (c0, t0) = gate(ev, 0, d.now);
        assert_eq!(c0, "halted");
        assert!(
            t0.starts_with("halted: 1 of 1 final reports failed (limit 20.00 %)"),
            "{t0}"
        );
        assert_eq!(
            gate(ev, 1, d.now),
            ("halted", "halted: never opens: phase 0 failed".to_string())
        );
        let (c, text) = rollout_state(ev);
        assert_eq!(c, "halted");
        assert!(
            text.starts_with("HALTED: phase 0 went over its failure limit"),
            "{text}"
        );

        let waiting = serde_json::json!({
            "open": 1, "opened_at": [1_800_000_000u64, null], "halted": null,
            "paused_since": null,
            "waiting": {"phase": 1, "opens_at": null, "reports": 0, "reports_needed": 2,
                        "earlier_reports": 1}
        });
        assert_eq!(gate(&waiting, 0, 0).0, "open");
        assert_eq!(
            gate(&waiting, 1, 0),
            ("waiting", "waiting for reports: 0 of 2".to_string())
        );
        let soaking = serde_json::json!({
            "open": 1, "opened_at": [1_800_000_000u64, null], "halted": null,
            "paused_since": null,
            "waiting": {"phase": 1, "opens_at": 1_800_000_060u64, "reports": 2,
                        "reports_needed": 2, "earlier_reports": 2}
        });
        assert_eq!(gate(&soaking, 1, 1_800_000_000).0, "soaking");
        let paused = serde_json::json!({
            "open": 1, "opened_at": [1_800_000_000u64, null], "halted": null,
            "paused_since": 1_800_000_010u64, "waiting": null
        });
        assert_eq!(gate(&paused, 1, 0).0, "paused");
        assert_eq!(rollout_state(&paused).0, "paused");
    }
}
