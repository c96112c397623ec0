//! `upswarm daemon`, `status`, `releases`.

use std::path::Path;

use std::time::Duration;

use super::client::{ApiArgs, ApiClient, block_on};
use super::show;
use crate::daemon::api::{TransitionResult, VersionRequest};
use crate::daemon::apply::{HistoryEntry, Outcome};
use crate::daemon::core::{CheckItem, ExplainView, ReleaseView, StatusView};
use crate::daemon::state::DownloadState;
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
        println!("node      {} (peer {})", &s.node_id[..16], s.peer_id);
        println!(
            "network   {}, trust root version {}",
            s.network, s.root_version
        );
        println!("peers     {}", s.peers.len());
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
        }
        let d = &s.disk;
        println!(
            "disk      {} (chunks {}, releases {}, versions {}, backups {})",
            crate::daemon::gc::human(d.total),
            crate::daemon::gc::human(d.chunks),
            crate::daemon::gc::human(d.releases),
            crate::daemon::gc::human(d.versions),
            crate::daemon::gc::human(d.backups)
        );
        println!("releases  {}", s.releases.len());
        for r in &s.releases {
            print_release(r);
        }
        let c = &s.counters;
        println!(
            "transfer  fetched {} chunks ({} bytes), served {}, reused {}, bad received {}, peers banned {}",
            c.chunks_fetched,
            c.bytes_fetched,
            c.blobs_served,
            c.chunks_reused,
            c.bad_chunks_received,
            c.peers_banned
        );
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
            Some(p) if p.chunks_total > 0 => format!(
                "downloading {}/{} chunks ({}%)",
                p.chunks_held,
                p.chunks_total,
                p.chunks_held * 100 / p.chunks_total
            ),
            _ => "downloading (looking for peers)".to_string(),
        },
        DownloadState::Complete { .. } => "complete, seeding".to_string(),
        DownloadState::Failed { reason } => format!("FAILED: {reason}"),
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
}

pub(super) fn check(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let items: Vec<CheckItem> = ApiClient::new(api)?.get("/v1/check").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&items)?);
        } else if items.is_empty() {
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
    use crate::daemon::gc::{GcReport, human};
    block_on(async {
        let r: GcReport = ApiClient::new(api)?
            .post("/v1/gc", &crate::daemon::api::GcRequest { dry_run })
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
                println!(
                    "{}  {:?} {} -> {}: {:?}{}{}{}",
                    show::time(e.at),
                    e.kind,
                    e.from.as_deref().unwrap_or("(none)"),
                    e.to,
                    e.outcome,
                    e.reason
                        .as_ref()
                        .map(|r| format!(" — {r}"))
                        .unwrap_or_default(),
                    e.backup_ms
                        .map(|b| format!(" (backup {b} ms)"))
                        .unwrap_or_default(),
                    if e.restarts > 0 {
                        format!(" (finished after {} daemon restart(s))", e.restarts)
                    } else {
                        String::new()
                    }
                );
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
        let v: serde_json::Value = match version {
            Some(v) => {
                c.post(
                    "/v1/pin",
                    &VersionRequest {
                        version: Some(v),
                        force: false,
                    },
                )
                .await?
            }
            None => c.post("/v1/unpin", &serde_json::json!({})).await?,
        };
        println!("pinned: {}", v["pinned"]);
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
        loop {
            let list: Vec<ReleaseView> = c.get("/v1/releases").await?;
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
                    DownloadState::NotFollowed | DownloadState::Removed { .. } => {}
                }
            }
            if active == 0 {
                if bars.is_empty() {
                    println!("no downloads");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
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
        let r = &e.rollout;
        println!("release   {} {} ({})", e.name, e.version, &e.release[..16]);
        println!("node      {} — {}", &e.node_id[..16], r.cohort);
        let ev = &r.evaluation;
        println!(
            "phases    open: {} — opened at {}",
            ev["open"], ev["opened_at"]
        );
        if !ev["halted"].is_null() {
            println!("halted    {}", ev["halted"]);
        }
        if !ev["waiting"].is_null() {
            let w = &ev["waiting"];
            let first = if w["phase"].as_u64() > Some(0) && w["earlier_reports"].as_u64() == Some(0)
            {
                ", and a first report from an earlier phase"
            } else {
                ""
            };
            println!(
                "gate      phase {} waits: soak until {}, reports {}/{}{first}",
                w["phase"],
                w["soak_until"].as_u64().map(show::time).unwrap_or_default(),
                w["reports"],
                w["reports_needed"]
            );
        }
        if let Some(stats) = ev["stats"].as_array() {
            for (i, s) in stats.iter().enumerate() {
                println!(
                    "  phase {i}: {} known node(s), {} healthy, {} failed, {} installing",
                    s["known_nodes"], s["healthy"], s["failed"], s["installed"]
                );
            }
        }
        if ev["out_of_cohort"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            println!(
                "out of cohort (reported before their phase opened): {}",
                ev["out_of_cohort"]
            );
        }
        println!("rollout   {}", r.decision);
        println!(
            "policy    {}",
            e.policy.as_deref().unwrap_or("allows it now")
        );
        Ok(())
    })
}
