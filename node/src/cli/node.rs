//! `upswarm daemon`, `status`, `releases`.
//!
//! Also `check`, `apply`, `rollback`, `history`, `gc`, `pin`, `defer`, `progress`, `explain` and
//! `fleet`. Of the daemon it uses only `daemon::run` and `Config::load`; every other command is a
//! call to the control API, and none reads the daemon's data directory.

use std::path::Path;

use std::time::Duration;

use super::client::{ApiArgs, ApiClient, block_on};
use super::show;
use crate::api::{
    CheckItem, DownloadState, ExplainView, GcReport, GcRequest, HistoryEntry, Kind, Origin,
    Outcome, ReleaseView, StatusView, TransitionResult, VersionRequest,
};
use crate::daemon::{self, Config};

/// `upswarm daemon`: validates the configuration completely, then (unless `check_only`)
/// runs until SIGTERM / SIGINT.
pub(super) fn daemon(path: &Path, check_only: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    if check_only {
        println!("{}: the configuration is valid", path.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    let result = rt.block_on(daemon::run(config));
    // A backup copy still running in the blocking pool does not hold the exit up for long
    // (the journal has the step; the next start repeats it).
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

pub(super) fn status(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let s: StatusView = ApiClient::new(api)?.get("/v1/status").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&s)?);
            return Ok(());
        }
        println!("node      {} (peer {})", s.node_id, s.peer_id);
        println!(
            "network   {}, trust root version {}{}",
            s.network,
            s.root_version,
            if s.root_expires_at > 0 {
                format!(" (expires {})", show::time(s.root_expires_at))
            } else {
                String::new()
            }
        );
        for a in &s.alarms {
            println!("ALARM     {a}");
        }
        let r = &s.reachability;
        match r.state.as_str() {
            "public" => println!(
                "reachable public{}",
                r.address
                    .as_ref()
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default()
            ),
            "private" if r.relays.is_empty() => {
                println!("reachable private (behind NAT), no relay reservation yet")
            }
            "private" => println!("reachable private via relay {}", r.relays.join(", ")),
            _ => println!("reachable unknown (not probed yet)"),
        }
        let relayed = s.peer_links.iter().filter(|(_, l)| l == "relayed").count();
        println!(
            "peers     {} ({} direct, {} relayed only)",
            s.peers.len(),
            s.peer_links.len() - relayed,
            relayed
        );
        for (p, _) in s.peer_links.iter().filter(|(_, l)| l == "relayed") {
            println!("          {p} relayed");
        }
        if let Some(m) = &s.managed {
            let p = &m.program;
            println!(
                "managed   version {} — {}{}",
                m.current.as_deref().unwrap_or("none"),
                if p.running {
                    format!(
                        "running (pid {})",
                        p.pid.map(|p| p.to_string()).unwrap_or_default()
                    )
                } else {
                    "NOT RUNNING".into()
                },
                p.last_exit
                    .as_ref()
                    .map(|e| format!(", last exit: {e}"))
                    .unwrap_or_default()
            );
            if let Some((step, v)) = &m.applying {
                println!("          applying {v}: {step}");
            }
            if m.recovering {
                println!(
                    "          recovering: finishing an update interrupted by a restart; no other may start yet"
                );
            }
            if !m.previous.is_empty() {
                println!(
                    "          earlier versions kept: {} (rollback goes to {})",
                    m.previous.join(", "),
                    m.previous[0]
                );
            }
            if let Some(pin) = &m.pinned {
                println!("          pinned to {pin}");
            }
            if let Some(c) = &m.cosmovisor {
                println!(
                    "cosmovisor {} in {}: current {}",
                    c.name,
                    c.home.display(),
                    c.current.as_deref().unwrap_or("(none)")
                );
                if let Some(p) = &c.pending {
                    println!(
                        "          the chain halted for upgrade {} at height {}",
                        p.name, p.height
                    );
                }
                if !c.staged.is_empty() {
                    println!("          upgrades ready: {}", c.staged.join(", "));
                }
            }
        }
        let d = &s.disk;
        println!(
            "disk      {} (chunks {}, releases {}, versions {}, backups {})",
            show::human(d.total),
            show::human(d.chunks),
            show::human(d.releases),
            show::human(d.versions),
            show::human(d.backups)
        );
        println!("releases  {}", s.releases.len());
        for r in &s.releases {
            print_release(r);
        }
        let c = &s.counters;
        if c.hole_punch_succeeded + c.hole_punch_failed > 0 {
            println!(
                "nat       hole punches: {} succeeded, {} failed",
                c.hole_punch_succeeded, c.hole_punch_failed
            );
        }
        println!(
            "transfer  fetched {} chunks ({} bytes), served {}, reused {}, bad received {}, peers banned {}",
            c.chunks_fetched,
            c.bytes_fetched,
            c.blobs_served,
            c.chunks_reused,
            c.bad_chunks_received,
            c.peers_banned
        );
        if c.download_chunks_mirror + c.mirror_faults > 0 {
            println!(
                "mirrors   {} chunks ({}) read from mirrors, {} mirror faults",
                c.download_chunks_mirror,
                show::human(c.download_bytes_mirror),
                c.mirror_faults
            );
        }
        Ok(())
    })
}

pub(super) fn releases(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let list: Vec<ReleaseView> = ApiClient::new(api)?.get("/v1/releases").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else if list.is_empty() {
            println!("no releases known yet");
        } else {
            for r in &list {
                print_release(r);
            }
        }
        Ok(())
    })
}

fn print_release(r: &ReleaseView) {
    let state = match &r.download {
        DownloadState::NotFollowed => "not followed".to_string(),
        DownloadState::Downloading => match &r.progress {
            Some(p) if p.blocked.is_some() => format!(
                "BLOCKED at {}/{} chunks: {} (waiting; it goes on by itself once space returns)",
                p.chunks_held,
                p.chunks_total,
                p.blocked.as_deref().unwrap_or_default()
            ),
            Some(p) if p.chunks_total > 0 => format!(
                "downloading {}/{} chunks ({}%): {}",
                p.chunks_held,
                p.chunks_total,
                p.chunks_held * 100 / p.chunks_total,
                sources_text(p)
            ),
            _ => "downloading (looking for peers)".to_string(),
        },
        DownloadState::Complete { .. } => match &r.progress {
            Some(p) if p.chunks_total > 0 => {
                format!("complete, seeding; chunks {}", sources_text(p))
            }
            _ => "complete, seeding".to_string(),
        },
        DownloadState::Failed { reason } => format!("FAILED: {reason}"),
        DownloadState::Blocked { reason, since } => format!(
            "BLOCKED since {}: {reason} (tried again every 15 s; it goes on by itself once space returns)",
            show::time(*since)
        ),
        DownloadState::Removed { at } => format!("removed by gc {}", show::time(*at)),
    };
    println!(
        "  {} {} [{}] {} — {}",
        r.name,
        r.version,
        r.channel,
        &r.id[..16],
        state
    );
    for f in r.progress.iter().flat_map(|p| &p.forms) {
        println!("      fetched {}", form_use(f));
    }
}

/// The warning for a pin to a version no known release has.
fn unknown_pin(v: &str) -> String {
    format!(
        "this node knows no release {v}: nothing is installed until one arrives (or `upswarm unpin`)"
    )
}

pub(super) fn check(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let c = ApiClient::new(api)?;
        let items: Vec<CheckItem> = c.get("/v1/check").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&items)?);
            return Ok(());
        }
        let s: StatusView = c.get("/v1/status").await?;
        if let Some(pin) = s.managed.as_ref().and_then(|m| m.pinned.as_ref())
            && !s.releases.iter().any(|r| &r.version == pin)
        {
            println!("warning: pinned to {pin}, but {}", unknown_pin(pin));
        }
        if items.is_empty() {
            println!("no downloaded release of the managed program");
        } else {
            for i in &items {
                println!(
                    "{} {} ({}{}): {}",
                    i.name,
                    i.version,
                    i.update_type,
                    if i.security_critical {
                        ", security"
                    } else {
                        ""
                    },
                    i.why
                );
            }
        }
        Ok(())
    })
}

pub(super) fn transition(
    api: &ApiArgs,
    path: &str,
    version: Option<semver::Version>,
    force: bool,
) -> anyhow::Result<()> {
    block_on(async {
        let r: TransitionResult = ApiClient::new(api)?
            .post(path, &VersionRequest { version, force })
            .await?;
        match r.outcome {
            Outcome::Applied => println!("{} is now running and healthy", r.version),
            Outcome::RolledBack => {
                println!(
                    "{} failed and was rolled back; see `upswarm history`",
                    r.version
                );
                anyhow::bail!("{} was rolled back", r.version);
            }
            other => println!("{}: {other:?}", r.version),
        }
        Ok(())
    })
}

pub(super) fn gc(api: &ApiArgs, dry_run: bool, json: bool) -> anyhow::Result<()> {
    use super::show::human;
    block_on(async {
        let r: GcReport = ApiClient::new(api)?
            .post("/v1/gc", &GcRequest { dry_run })
            .await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        if let Some(why) = &r.skipped {
            println!("nothing collected: {why}");
            return Ok(());
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        if r.bytes == 0 && r.signed == 0 && r.releases.is_empty() && r.backups.is_empty() {
            println!("nothing to remove: everything on disk is kept by the retention settings");
            return Ok(());
        }
        println!(
            "{verb} {} release(s), {} chunk file(s), {} backup(s), {} health report(s): {} in all",
            r.releases.len(),
            r.chunks,
            r.backups.len(),
            r.signed,
            human(r.bytes)
        );
        for rel in &r.releases {
            println!(
                "  release {} {} [{}] {} — {} of artifacts",
                show::text(&rel.name),
                rel.version,
                show::text(&rel.channel),
                &rel.id[..16],
                human(rel.bytes)
            );
        }
        if r.chunks > 0 {
            println!(
                "  chunks  {} file(s) no kept release uses — {}",
                r.chunks,
                human(r.chunk_bytes)
            );
        }
        for b in &r.backups {
            println!("  backup  {}", show::text(b));
        }
        if !r.backups.is_empty() {
            println!("  backups {} in all", human(r.backup_bytes));
        }
        Ok(())
    })
}

pub(super) fn history(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let h: Vec<HistoryEntry> = ApiClient::new(api)?.get("/v1/history").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&h)?);
        } else if h.is_empty() {
            println!("nothing applied yet");
        } else {
            for e in &h {
                println!("{}", history_line(e));
                if let Some(out) = &e.hook_output {
                    println!("    pre-upgrade hook output:");
                    for line in out.lines() {
                        println!("    | {line}");
                    }
                }
            }
        }
        Ok(())
    })
}

pub(super) fn pin(api: &ApiArgs, version: Option<semver::Version>) -> anyhow::Result<()> {
    block_on(async {
        let c = ApiClient::new(api)?;
        match version {
            Some(v) => {
                let r: serde_json::Value = c
                    .post(
                        "/v1/pin",
                        &VersionRequest {
                            version: Some(v.clone()),
                            force: false,
                        },
                    )
                    .await?;
                println!(
                    "pinned to {v}: this node installs no other version until `upswarm unpin`"
                );
                if r["known"] == false {
                    eprintln!("warning: {}", unknown_pin(&v.to_string()));
                }
            }
            None => {
                let _: serde_json::Value = c.post("/v1/unpin", &serde_json::json!({})).await?;
                println!("unpinned: updates follow the policy again");
            }
        }
        Ok(())
    })
}

pub(super) fn defer(api: &ApiArgs, version: Option<semver::Version>) -> anyhow::Result<()> {
    block_on(async {
        let v: serde_json::Value = ApiClient::new(api)?
            .post(
                "/v1/defer",
                &VersionRequest {
                    version,
                    force: false,
                },
            )
            .await?;
        println!(
            "{} deferred until {} ({} of {} deferrals)",
            v["version"].as_str().unwrap_or("?"),
            v["deferred_until"]
                .as_u64()
                .map(show::time)
                .unwrap_or_default(),
            v["count"],
            v["max"]
        );
        Ok(())
    })
}

pub(super) fn progress(api: &ApiArgs) -> anyhow::Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    block_on(async {
        let c = ApiClient::new(api)?;
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:24} [{bar:40}] {pos}/{len} chunks {msg}")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .progress_chars("=> ");
        let mut bars: std::collections::HashMap<String, ProgressBar> =
            std::collections::HashMap::new();
        let mut first = true;
        loop {
            let list: Vec<ReleaseView> = c.get("/v1/releases").await?;
            if first
                && !list.iter().any(|r| {
                    matches!(
                        r.download,
                        DownloadState::Downloading | DownloadState::Blocked { .. }
                    )
                })
            {
                println!("nothing is downloading");
                return Ok(());
            }
            first = false;
            let mut active = 0;
            for r in &list {
                let Some(p) = &r.progress else { continue };
                let bar = bars.entry(r.id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(p.chunks_total));
                    b.set_style(style.clone());
                    b.set_prefix(format!("{} {}", r.name, r.version));
                    b
                });
                bar.set_length(p.chunks_total.max(1));
                bar.set_position(p.chunks_held);
                bar.set_message(format!("from {} peer(s)", p.from_peers.len()));
                match &r.download {
                    DownloadState::Downloading => active += 1,
                    DownloadState::Complete { .. } => bar.finish_with_message("complete"),
                    DownloadState::Failed { reason } => {
                        bar.abandon_with_message(format!("FAILED: {reason}"))
                    }
                    DownloadState::Blocked { reason, .. } => {
                        active += 1;
                        bar.set_message(format!("BLOCKED: {reason}"));
                    }
                    DownloadState::NotFollowed | DownloadState::Removed { .. } => {}
                }
            }
            if active == 0 {
                multi.clear().ok();
                for r in list.iter().filter(|r| bars.contains_key(&r.id)) {
                    let state = match &r.download {
                        DownloadState::Complete { .. } => "complete".to_string(),
                        DownloadState::Failed { reason } => format!("FAILED: {reason}"),
                        _ => "stopped".to_string(),
                    };
                    println!("{} {}: {state}", r.name, r.version);
                }
                println!("nothing is downloading any more");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

pub(super) fn fleet(
    api: &ApiArgs,
    q: &crate::api::FleetQuery,
    json: bool,
    history: bool,
) -> anyhow::Result<()> {
    if let Some(r) = &q.release
        && (r.is_empty()
            || r.len() > crate::api::MAX_VERSION_LEN
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b)))
    {
        anyhow::bail!(
            "--release: {:?} is neither a release id (8 to 64 hex digits) nor a version",
            show::text(r)
        );
    }
    let mut params = Vec::new();
    if let Some(v) = &q.version {
        params.push(format!("version={}", v.to_string().replace('+', "%2B")));
    }
    if let Some(s) = &q.state {
        params.push(format!("state={s}"));
    }
    if let Some(r) = &q.release {
        params.push(format!("release={}", r.replace('+', "%2B")));
    }
    let path = if params.is_empty() {
        "/v1/fleet".to_string()
    } else {
        format!("/v1/fleet?{}", params.join("&"))
    };
    block_on(async {
        let f: crate::api::FleetView = ApiClient::new(api)?.get(&path).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&f)?);
        } else if history {
            print!("{}", history_text(&f));
        } else {
            print!("{}", fleet_text(&f));
        }
        Ok(())
    })
}

/// `upswarm fleet --history`: one line per change of the coverage, oldest first.
fn history_text(f: &crate::api::FleetView) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "coverage over time: {} samples (at most {} kept; a sample when the count of nodes \
         per version changed, checked every {} s)\n",
        f.history.len(),
        crate::api::COVERAGE_HISTORY_CAP,
        crate::api::COVERAGE_SAMPLE_SECS
    );
    for s in &f.history {
        let v: Vec<String> = s
            .versions
            .iter()
            .map(|c| format!("{} on {}", c.nodes, c.version))
            .collect();
        let _ = writeln!(out, "{:<20}  {}", show::time(s.at), v.join(", "));
    }
    out
}

/// The table of `upswarm fleet`.
fn fleet_text(f: &crate::api::FleetView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet     {} nodes known (at most {} kept){}",
        f.nodes_known,
        f.cap,
        match &f.rollout {
            Some(r) => format!(
                "; current rollout: {} {} ({})",
                show::text(&r.name),
                r.version,
                &r.release[..16]
            ),
            None => String::new(),
        }
    );
    let coverage: Vec<String> = f
        .coverage
        .iter()
        .map(|c| format!("{} on {}", c.nodes, c.version))
        .collect();
    let _ = writeln!(
        out,
        "coverage  {}",
        if coverage.is_empty() {
            "no reports yet".to_string()
        } else {
            coverage.join(", ")
        }
    );
    if f.nodes.is_empty() {
        let _ = writeln!(out, "no node matches");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<12}  {:<11}  {:<20}  {:<20}  {:>7}  {:>5}  {:>8}",
        "NODE", "VERSION", "STATE", "REPORTED", "ABOUT", "RANK", "PHASE", "POSITION"
    );
    for n in &f.nodes {
        let about = match (&n.release_name, &n.release_version) {
            (Some(name), Some(v)) => format!("{} {v}", show::text(name)),
            _ => n.release[..16].to_string(),
        };
        let me = if n.node_id == f.node_id {
            " (this node)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<12}  {:<11}  {:<20}  {:<20}  {:>7}  {:>5}  {:>8}{me}",
            &n.node_id[..16],
            n.version,
            n.state,
            show::time(n.at),
            about,
            n.rank.map_or("-".into(), |r| format!("{:.2}%", r * 100.0)),
            n.phase.map_or("-".into(), |p| p.to_string()),
            n.position.map_or("-".into(), |p| p.to_string()),
        );
    }
    out
}

pub(super) fn explain(
    api: &ApiArgs,
    version: Option<semver::Version>,
    json: bool,
) -> anyhow::Result<()> {
    block_on(async {
        let path = match &version {
            Some(v) => format!("/v1/explain?version={v}"),
            None => "/v1/explain".to_string(),
        };
        let e: ExplainView = ApiClient::new(api)?.get(&path).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&e)?);
            return Ok(());
        }
        print!("{}", explain_text(&e));
        Ok(())
    })
}

/// Where a download's chunks came from: "from peers N (D direct, R relayed), from mirrors M
/// (B), reused K".
fn sources_text(p: &crate::api::ProgressView) -> String {
    let peers = p.chunks_from_peers_direct + p.chunks_from_peers_relayed;
    let mut s = format!(
        "from peers {peers} ({} direct, {} relayed), from mirrors {} ({})",
        p.chunks_from_peers_direct,
        p.chunks_from_peers_relayed,
        p.chunks_from_mirrors,
        show::human(p.bytes_from_mirrors)
    );
    if p.chunks_reused > 0 {
        s.push_str(&format!(", already on disk {}", p.chunks_reused));
    }
    if p.mirror_faults > 0 {
        s.push_str(&format!(", mirror faults {}", p.mirror_faults));
    }
    if p.bad_chunks > 0 {
        s.push_str(&format!(", bad chunks from peers {}", p.bad_chunks));
    }
    s
}

/// The text of `upswarm explain`: times in RFC 3339, the rollout as this node sees it, and
/// one verdict.
fn explain_text(e: &ExplainView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let r = &e.rollout;
    let ev = &r.evaluation;
    let _ = writeln!(
        out,
        "release   {} {} ({})",
        e.name,
        e.version,
        &e.release[..16]
    );
    let _ = writeln!(out, "node      {} — {}", &e.node_id[..16], r.cohort);
    let opened: Vec<Option<u64>> = ev["opened_at"]
        .as_array()
        .map(|a| a.iter().map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    let phases: Vec<String> = opened
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => format!("phase {i} opened at {}", show::time(*t)),
            None => format!("phase {i} not open"),
        })
        .collect();
    let _ = writeln!(
        out,
        "phases    {} of {} open — {}",
        ev["open"].as_u64().unwrap_or(0),
        opened.len(),
        phases.join(", ")
    );
    if let Ok(h) = serde_json::from_value::<upswarm_rollout::Halt>(ev["halted"].clone()) {
        let _ = writeln!(out, "halted    {h}");
    }
    if let Some(since) = ev["paused_since"].as_u64() {
        let _ = writeln!(
            out,
            "paused    by the control role since {}",
            show::time(since)
        );
    }
    if !ev["waiting"].is_null() {
        let w = &ev["waiting"];
        let first = if w["phase"].as_u64() > Some(0) && w["earlier_reports"].as_u64() == Some(0) {
            ", and a first report from an earlier phase"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "gate      phase {} waits: soak until {}, reports {}/{}{first}",
            w["phase"],
            w["soak_until"].as_u64().map(show::time).unwrap_or_default(),
            w["reports"],
            w["reports_needed"]
        );
    }
    if let Some(stats) = ev["stats"].as_array() {
        for (i, s) in stats.iter().enumerate() {
            let _ = writeln!(
                out,
                "  phase {i}: {} known node(s), {} healthy, {} failed, {} installing",
                s["known_nodes"], s["healthy"], s["failed"], s["installed"]
            );
        }
    }
    let late: Vec<&str> = ev["out_of_cohort"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    if !late.is_empty() {
        let _ = writeln!(
            out,
            "out of cohort (reported before their phase opened): {}",
            late.join(", ")
        );
    }
    let rollout = if r.may_install {
        format!("phase {} is open to this node", r.phase)
    } else {
        r.decision.clone()
    };
    let _ = writeln!(out, "rollout   {rollout}");
    if let Some(p) = &e.progress {
        let _ = writeln!(out, "chunks    {}", sources_text(p));
        for f in &p.forms {
            let _ = writeln!(out, "fetched   {}", form_use(f));
        }
    }
    let _ = writeln!(out, "verdict   {}", e.verdict);
    out
}

/// How one artifact was fetched, in words: `app as zstd-patch from 1a2b…: 1.2 KiB fetched,
/// 3.4 MiB saved`.
fn form_use(f: &crate::api::FormUse) -> String {
    let mut s = format!("{} as {}", f.artifact, f.form);
    if let Some(b) = &f.base {
        s.push_str(&format!(" from base {}", &b[..b.len().min(16)]));
    }
    if f.form != "plain" {
        s.push_str(&format!(
            ": {} fetched, {} saved",
            show::human(f.bytes_fetched),
            show::human(f.bytes_saved)
        ));
    }
    if !f.notes.is_empty() {
        s.push_str(&format!(" ({})", f.notes.join("; ")));
    }
    s
}

/// A duration for people: `850 ms`, `4.2 s`, `2 min 05 s`.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    } else {
        format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60)
    }
}

/// One line of text `upswarm history`: when, what, who asked, how it ended, how long it
/// took, and why (a failure, a yank's reason).
fn history_line(e: &HistoryEntry) -> String {
    let kind = match e.kind {
        Kind::Apply => "apply",
        Kind::Rollback => "rollback",
    };
    let origin = match e.origin {
        Origin::Auto => "automatic",
        Origin::Manual => "by hand",
        Origin::Yank => "after a yank",
    };
    let outcome = match e.outcome {
        Outcome::Applied => "applied",
        Outcome::RolledBack => "FAILED, rolled back",
        Outcome::Refused => "REFUSED",
        Outcome::Postponed => "postponed",
        Outcome::Halted => "FAILED, stopped (no rollback past an upgrade height)",
    };
    let mut line = format!(
        "{}  {kind} {} -> {} ({origin}): {outcome} in {}",
        show::time(e.at),
        e.from.as_deref().unwrap_or("(none)"),
        e.to,
        duration(e.duration_ms)
    );
    if let Some(b) = e.backup_ms {
        line.push_str(&format!(" (backup {})", duration(b)));
    }
    if e.restarts > 0 {
        line.push_str(&format!(
            " (finished after {} daemon restart(s))",
            e.restarts
        ));
    }
    if let Some(r) = &e.reason {
        line.push_str(&format!(" — {}", show::text(r)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fleet table: one aligned row per node, the signer-written release name made
    /// safe for a terminal, this node marked, and "-" where there is no current rollout.
    #[test]
    fn fleet_table_rows_line_up_and_escape_names() {
        let node =
            |id: &str, version: &str, state: &str, rank: Option<f64>| crate::api::FleetNode {
                node_id: id.repeat(32),
                version: version.into(),
                state: state.into(),
                release: "ef".repeat(32),
                release_name: Some("demo\u{1b}[2J".into()),
                release_version: Some("1.1.0".into()),
                at: 1_800_000_000,
                rank,
                phase: rank.map(|_| 0),
                position: rank.map(|_| 1),
            };
        let view = crate::api::FleetView {
            node_id: "ab".repeat(32),
            nodes_known: 2,
            cap: crate::api::FLEET_CAP,
            rollout: None,
            coverage: vec![crate::api::VersionCount {
                version: "1.0.0".into(),
                nodes: 2,
            }],
            nodes: vec![
                node("ab", "1.0.0", "rolled_back", Some(0.4180)),
                node("cd", "1.0.0", "healthy", None),
            ],
            history: vec![
                crate::api::CoverageSample {
                    at: 1_800_000_000,
                    versions: vec![crate::api::VersionCount {
                        version: "1.0.0".into(),
                        nodes: 1,
                    }],
                },
                crate::api::CoverageSample {
                    at: 1_800_000_010,
                    versions: vec![crate::api::VersionCount {
                        version: "1.0.0".into(),
                        nodes: 2,
                    }],
                },
            ],
        };
        let text = fleet_text(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "fleet     2 nodes known (at most 10000 kept)");
        assert_eq!(lines[1], "coverage  2 on 1.0.0");
        assert!(!text.contains('\u{1b}'), "{text}");
        let rank_col = lines[2].find("RANK").unwrap() + 4;
        assert_eq!(&lines[3][rank_col - 6..rank_col], "41.80%", "{text}");
        assert!(lines[3].starts_with("abababababababab  1.0.0"), "{text}");
        assert!(lines[3].ends_with("1 (this node)"), "{text}");
        assert!(lines[4].ends_with("-"), "{text}");
        let history = history_text(&view);
        let lines: Vec<&str> = history.lines().collect();
        assert!(
            lines[0].starts_with("coverage over time: 2 samples"),
            "{history}"
        );
        assert!(lines[1].ends_with("  1 on 1.0.0"), "{history}");
        assert!(lines[2].ends_with("  2 on 1.0.0"), "{history}");
    }

    #[test]
    fn explain_text_has_no_raw_times_or_json() {
        let view = ExplainView {
            release: "ab".repeat(32),
            name: "demo".into(),
            version: "1.1.0".into(),
            node_id: "cd".repeat(32),
            rollout: crate::api::RolloutView {
                rank: 0.5,
                phase: 1,
                phase_until_percent: 100.0,
                rank_phase: 1,
                position: 1,
                cohort_nodes: 2,
                cohort: "rank 50.0000 % → phase 1 (10 %–100 % of nodes), install delay 3 s".into(),
                install_delay_secs: 3,
                evaluation: serde_json::json!({
                    "open": 1,
                    "opened_at": [1_795_000_000u64, null],
                    "halted": {"reason": "yanked", "at": 1_795_000_100u64},
                    "paused_since": 1_795_000_050u64,
                    "waiting": null,
                    "stats": [],
                    "out_of_cohort": ["ef".repeat(32)],
                }),
                decision: "never: yanked".into(),
                may_install: false,
            },
            hold: None,
            verdict: "yanked by the control role at 2026-11-18T11:08:20Z".into(),
            download: DownloadState::Complete { at: 1_795_000_000 },
            known_nodes: 2,
            progress: Some(crate::api::ProgressView {
                chunks_total: 10,
                chunks_held: 10,
                chunks_fetched: 10,
                chunks_from_peers_direct: 6,
                chunks_from_peers_relayed: 1,
                chunks_from_mirrors: 3,
                bytes_from_mirrors: 3 << 20,
                mirror_faults: 1,
                ..Default::default()
            }),
            changelog: Default::default(),
        };
        let text = explain_text(&view);
        for needle in [
            "phases    1 of 2 open — phase 0 opened at 2026-11-18T11:06:40Z, phase 1 not open",
            "halted    yanked by the control role (at 2026-11-18T11:08:20Z)",
            "paused    by the control role since 2026-11-18T11:07:30Z",
            "chunks    from peers 7 (6 direct, 1 relayed), from mirrors 3 (3.0 MiB), mirror faults 1",
            &format!(
                "out of cohort (reported before their phase opened): {}",
                "ef".repeat(32)
            ),
            "rollout   never: yanked",
            "verdict   yanked by the control role at 2026-11-18T11:08:20Z",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        assert!(!text.contains("1795"), "{text}");
        assert!(!text.contains('{') && !text.contains('['), "{text}");
    }

    #[test]
    fn history_lines_say_who_what_how_long_and_why() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_250), "4.2 s");
        assert_eq!(duration(125_000), "2 min 05 s");
        let e = HistoryEntry {
            at: 1_795_000_000,
            outcome: Outcome::Applied,
            kind: Kind::Rollback,
            origin: Origin::Yank,
            from: Some("1.1.0".into()),
            to: "1.0.0".into(),
            release: "ab".into(),
            reason: Some("yanked by the control role: bad\u{1b}[2J build".into()),
            backup_ms: Some(12),
            duration_ms: 2_300,
            hook_output: None,
            restarts: 1,
        };
        assert_eq!(
            history_line(&e),
            "2026-11-18T11:06:40Z  rollback 1.1.0 -> 1.0.0 (after a yank): applied in 2.3 s \
             (backup 12 ms) (finished after 1 daemon restart(s)) — yanked by the control role: \
             bad\\u{1b}[2J build"
        );
    }
}
