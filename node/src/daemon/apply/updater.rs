//! The apply procedure and its journal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::{error, info, warn};
use upswarm_proto::Hash32;
use upswarm_store::Tree;
use upswarm_trust::unix_now;

use super::supervisor::{Layout, ProgramStatus, Supervisor, reap_orphan, run_hook_code};
use super::{backup, health, versions};
use crate::daemon::Ctx;
use crate::daemon::config::Managed;

/// A version of the managed program and the release it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    pub version: semver::Version,
    pub release: Hash32,
}

/// An operator's deferral of one release.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Deferral {
    pub count: u32,
    pub until: u64,
}

/// What is installed, persisted in the `installed` tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Installed {
    pub current: Option<VersionRef>,
    /// Earlier good versions, newest first.
    pub previous: Vec<VersionRef>,
    /// Releases that failed here; never retried automatically.
    pub failed: BTreeSet<Hash32>,
    pub pinned: Option<semver::Version>,
    #[serde(with = "upswarm_proto::ids::hex_keys")]
    pub deferrals: BTreeMap<Hash32, Deferral>,
    /// The newest data backup: taken when leaving `from`.
    pub last_backup: Option<(semver::Version, PathBuf)>,
}

/// The steps, in order. Journaled before each is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Prechecks,
    Backup,
    PreHook,
    Stop,
    Switch,
    Restore,
    Start,
    HealthCheck,
    Commit,
    RbStop,
    RbSwitch,
    RbRestore,
    RbStart,
    RbHealthCheck,
    RbCommit,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Prechecks => "prechecks",
            Step::Backup => "backup",
            Step::PreHook => "pre_hook",
            Step::Stop => "stop",
            Step::Switch => "switch",
            Step::Restore => "restore",
            Step::Start => "start",
            Step::HealthCheck => "health_check",
            Step::Commit => "commit",
            Step::RbStop => "rb_stop",
            Step::RbSwitch => "rb_switch",
            Step::RbRestore => "rb_restore",
            Step::RbStart => "rb_start",
            Step::RbHealthCheck => "rb_health_check",
            Step::RbCommit => "rb_commit",
        }
    }
}

/// Why a transition is happening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An update (automatic or `upswarm apply`).
    Apply,
    /// `upswarm rollback`: back to an earlier version, restoring its data if a backup of it
    /// exists.
    Rollback,
}

/// The apply journal: one transition in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub kind: Kind,
    pub from: Option<VersionRef>,
    pub to: VersionRef,
    /// The step being carried out (recorded before it starts).
    pub step: Step,
    /// Release artifacts to install from.
    pub source: PathBuf,
    pub backup: Option<PathBuf>,
    pub backup_ms: Option<u64>,
    /// Data to restore after the switch (manual rollback).
    pub restore: Option<PathBuf>,
    pub started_at: u64,
    pub failure: Option<String>,
}

/// One line of `upswarm history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub outcome: Outcome,
    pub kind: Kind,
    pub from: Option<String>,
    pub to: String,
    pub release: String,
    pub reason: Option<String>,
    pub backup_ms: Option<u64>,
    pub duration_ms: u64,
}

/// How a transition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new version runs and is healthy.
    Applied,
    /// The new version failed; the previous one is back.
    RolledBack,
    /// Refused before anything changed (pre-checks, pre-upgrade hook).
    Refused,
    /// Not now (pre-upgrade hook asked to retry later; or interrupted before the switch).
    Postponed,
}

/// Requests the updater takes.
#[derive(Debug, Clone)]
pub struct Target {
    pub to: VersionRef,
    /// Directory with the release's assembled artifacts.
    pub source: PathBuf,
}

/// Returned when another transition holds the lock.
pub const BUSY: &str = "update already in progress";

/// Owns the installed state, the journal and the history; runs one transition at a time.
#[derive(Debug, Clone)]
pub struct Updater {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: Arc<Ctx>,
    managed: Managed,
    layout: Layout,
    sup: Supervisor,
    lock: Arc<Mutex<()>>,
    installed: Tree<Installed>,
    journal: Tree<Journal>,
    history: Tree<HistoryEntry>,
    current_step: std::sync::Mutex<Option<(Step, String)>>,
}

const KEY: &[u8] = b"state";

impl Updater {
    pub fn new(ctx: Arc<Ctx>, managed: Managed) -> anyhow::Result<Self> {
        let layout = Layout::new(&ctx.data_dir);
        let sup = Supervisor::spawn(managed.clone(), layout.clone());
        let db = &ctx.state.db;
        Ok(Updater {
            inner: Arc::new(Inner {
                installed: db.tree("installed")?,
                journal: db.tree("journal")?,
                history: db.tree("history")?,
                ctx,
                managed,
                layout,
                sup,
                lock: Arc::new(Mutex::new(())),
                current_step: std::sync::Mutex::new(None),
            }),
        })
    }

    pub fn installed(&self) -> Installed {
        self.inner
            .installed
            .get(KEY)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn save_installed(&self, i: &Installed) -> Result<(), String> {
        self.inner
            .installed
            .put(KEY, i)
            .map_err(|e| e.to_string())?;
        self.inner.ctx.state.db.flush().map_err(|e| e.to_string())
    }

    /// Changes the installed state under the update lock.
    pub async fn edit(
        &self,
        f: impl FnOnce(&mut Installed) -> Result<(), String>,
    ) -> Result<Installed, String> {
        let _g = self.try_begin()?;
        let mut i = self.installed();
        f(&mut i)?;
        self.save_installed(&i)?;
        Ok(i)
    }

    /// Changes the installed state while the caller already holds the update lock.
    pub async fn edit_locked(
        &self,
        _guard: &OwnedMutexGuard<()>,
        f: impl FnOnce(&mut Installed),
    ) -> Result<(), String> {
        let mut i = self.installed();
        f(&mut i);
        self.save_installed(&i)
    }

    pub fn program(&self) -> ProgramStatus {
        self.inner.sup.status()
    }

    /// The step in progress, if any, with the version being installed.
    pub fn in_progress(&self) -> Option<(Step, String)> {
        self.inner.current_step.lock().ok().and_then(|g| g.clone())
    }

    pub fn history(&self) -> Vec<HistoryEntry> {
        self.inner
            .history
            .iter()
            .filter_map(Result::ok)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Takes the update lock, or fails at once with [`BUSY`].
    pub fn try_begin(&self) -> Result<OwnedMutexGuard<()>, String> {
        self.inner
            .lock
            .clone()
            .try_lock_owned()
            .map_err(|_| BUSY.to_string())
    }

    fn record(&self, j: &Journal, outcome: Outcome, reason: Option<String>, started: Instant) {
        let entry = HistoryEntry {
            at: unix_now(),
            outcome,
            kind: j.kind,
            from: j.from.as_ref().map(|v| v.version.to_string()),
            to: j.to.version.to_string(),
            release: j.to.release.to_hex(),
            reason,
            backup_ms: j.backup_ms,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let key = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
            .to_be_bytes();
        if let Err(e) = self.inner.history.put(key, &entry) {
            warn!("cannot record history: {e}");
        }
    }

    /// Records `step` durably, then (for tests) pauses if told to.
    async fn enter(&self, j: &mut Journal, step: Step) -> Result<(), String> {
        j.step = step;
        self.inner.journal.put(KEY, j).map_err(|e| e.to_string())?;
        self.inner.ctx.state.db.flush().map_err(|e| e.to_string())?;
        if let Ok(mut g) = self.inner.current_step.lock() {
            *g = Some((step, j.to.version.to_string()));
        }
        info!(step = step.name(), to = %j.to.version, "apply step");
        if let Some(spec) = &self.inner.ctx.config.fault_injection.apply_pause_at {
            let (at, version) = spec
                .split_once('@')
                .map_or((spec.as_str(), None), |(a, v)| (a, Some(v)));
            let marker = self
                .inner
                .ctx
                .data_dir
                .join(format!("fault-paused-{}", step.name()));
            if at == step.name()
                && version.is_none_or(|v| v == j.to.version.to_string())
                && !marker.exists()
            {
                let _ = std::fs::write(&marker, b"");
                warn!(
                    step = step.name(),
                    "pausing here for 60 s (fault injection)"
                );
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        Ok(())
    }

    fn finish(&self) {
        let _ = self.inner.journal.remove(KEY);
        let _ = self.inner.ctx.state.db.flush();
        if let Ok(mut g) = self.inner.current_step.lock() {
            *g = None;
        }
    }

    /// After a (re)start: stop a program orphaned by a killed daemon, then finish or undo
    /// whatever transition the journal says was in progress, or simply start the current
    /// version.
    pub async fn recover(&self) {
        reap_orphan(&self.inner.layout, self.inner.managed.shutdown_grace).await;
        let Some(j) = self.inner.journal.get(KEY).ok().flatten() else {
            if versions::current_target(&self.inner.layout.current).is_some()
                && let Err(e) = self.inner.sup.start().await
            {
                error!("cannot start the managed program: {e}");
            }
            return;
        };
        let Ok(guard) = self.try_begin() else { return };
        warn!(step = j.step.name(), to = %j.to.version, "resuming an interrupted apply");
        let started = Instant::now();
        match j.step {
            Step::Prechecks | Step::Backup | Step::PreHook | Step::Stop => {
                // Nothing was switched: the previous version is still current. Start it
                // again and leave the release eligible.
                if versions::current_target(&self.inner.layout.current).is_some() {
                    let _ = self.inner.sup.start().await;
                }
                self.record(
                    &j,
                    Outcome::Postponed,
                    Some(format!("daemon restarted during {}", j.step.name())),
                    started,
                );
                self.finish();
            }
            Step::Switch | Step::Restore | Step::Start | Step::HealthCheck | Step::Commit => {
                let _ = self.run(j, started).await;
            }
            _ => {
                let reason = j
                    .failure
                    .clone()
                    .unwrap_or_else(|| "interrupted rollback".into());
                self.roll_back(j, reason, started).await;
            }
        }
        drop(guard);
    }

    /// Applies `target` (an update or, with `kind = Rollback`, a return to an earlier
    /// version). The caller holds the lock from [`Updater::try_begin`].
    pub async fn transition(
        &self,
        _guard: &OwnedMutexGuard<()>,
        kind: Kind,
        target: Target,
    ) -> Result<Outcome, String> {
        let installed = self.installed();
        let restore = match (kind, &installed.last_backup) {
            (Kind::Rollback, Some((v, path))) if *v == target.to.version => Some(path.clone()),
            _ => None,
        };
        let j = Journal {
            kind,
            from: installed.current.clone(),
            to: target.to,
            step: Step::Prechecks,
            source: target.source,
            backup: None,
            backup_ms: None,
            restore,
            started_at: unix_now(),
            failure: None,
        };
        self.run(j, Instant::now()).await
    }

    /// Runs the forward steps from `j.step` on.
    async fn run(&self, mut j: Journal, started: Instant) -> Result<Outcome, String> {
        let layout = self.inner.layout.clone();
        let managed = self.inner.managed.clone();
        let to_dir = versions::dir(&layout.versions, &j.to.version);
        if j.step <= Step::Prechecks {
            self.enter(&mut j, Step::Prechecks).await?;
            if let Err(e) = self.prechecks(&j) {
                self.record(&j, Outcome::Refused, Some(e.clone()), started);
                self.mark_failed(&j.to.release);
                self.finish();
                return Err(e);
            }
        }
        if j.step <= Step::Backup {
            self.enter(&mut j, Step::Backup).await?;
            let skip = self.inner.ctx.config.policy.skip_backup
                || j.kind == Kind::Rollback && j.restore.is_some();
            if let (Some(data), Some(from), false) = (&managed.data_dir, &j.from, skip) {
                let dest = self
                    .inner
                    .ctx
                    .data_dir
                    .join("backups")
                    .join(from.version.to_string());
                let data = data.clone();
                let d2 = dest.clone();
                let took = tokio::task::spawn_blocking(move || backup::backup(&data, &d2)).await;
                match took {
                    Ok(Ok(t)) => {
                        info!(took = ?t, "data backup done");
                        j.backup = Some(dest.clone());
                        j.backup_ms = Some(u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                        let mut i = self.installed();
                        if let Some((_, old)) =
                            i.last_backup.replace((from.version.clone(), dest.clone()))
                            && old != dest
                        {
                            let _ = std::fs::remove_dir_all(old);
                        }
                        self.save_installed(&i)?;
                    }
                    Ok(Err(e)) => {
                        return self.refuse(j, format!("data backup failed: {e}"), false, started);
                    }
                    Err(e) => {
                        return self.refuse(j, format!("data backup failed: {e}"), false, started);
                    }
                }
            }
        }
        if j.step <= Step::PreHook {
            self.enter(&mut j, Step::PreHook).await?;
            if j.kind == Kind::Apply && !managed.hooks.pre_upgrade.is_empty() {
                let env = [
                    (
                        "UPSWARM_FROM",
                        j.from
                            .as_ref()
                            .map(|v| v.version.to_string())
                            .unwrap_or_default(),
                    ),
                    ("UPSWARM_TO", j.to.version.to_string()),
                    ("UPSWARM_TO_DIR", to_dir.to_string_lossy().into_owned()),
                ];
                match run_hook_code(&managed.hooks.pre_upgrade, "pre-upgrade", &env).await {
                    Ok(0) => {}
                    Ok(2) => {
                        return self.refuse(
                            j,
                            "pre-upgrade hook asked to retry later (exit 2)".into(),
                            false,
                            started,
                        );
                    }
                    Ok(code) => {
                        return self.refuse(
                            j,
                            format!("pre-upgrade hook refused the update (exit {code})"),
                            true,
                            started,
                        );
                    }
                    Err(e) => return self.refuse(j, e, false, started),
                }
            }
        }
        if j.step <= Step::Stop {
            self.enter(&mut j, Step::Stop).await?;
            self.inner.sup.stop().await?;
        }
        if j.step <= Step::Switch {
            self.enter(&mut j, Step::Switch).await?;
            if let Err(e) = versions::switch(&layout.current, &to_dir) {
                return Ok(self
                    .roll_back(j, format!("switch failed: {e}"), started)
                    .await);
            }
        }
        if j.step <= Step::Restore {
            self.enter(&mut j, Step::Restore).await?;
            if let (Some(src), Some(data)) = (j.restore.clone(), managed.data_dir.clone()) {
                let r = tokio::task::spawn_blocking(move || backup::restore(&src, &data)).await;
                if !matches!(r, Ok(Ok(()))) {
                    return Ok(self
                        .roll_back(j, format!("restoring data failed: {r:?}"), started)
                        .await);
                }
            }
        }
        if j.step <= Step::Start {
            self.enter(&mut j, Step::Start).await?;
            if let Err(e) = self.inner.sup.start().await {
                return Ok(self.roll_back(j, e, started).await);
            }
        }
        if j.step <= Step::HealthCheck {
            self.enter(&mut j, Step::HealthCheck).await?;
            if let Err(e) = health::wait_healthy(&managed.health, self.inner.sup.watch()).await {
                return Ok(self.roll_back(j, e, started).await);
            }
        }
        self.enter(&mut j, Step::Commit).await?;
        let mut i = self.installed();
        if let Some(from) = &j.from
            && j.kind == Kind::Apply
            && from.version != j.to.version
        {
            i.previous.retain(|v| v.version != from.version);
            i.previous.insert(0, from.clone());
        }
        if j.kind == Kind::Rollback {
            i.previous.retain(|v| v.version != j.to.version);
        }
        i.current = Some(j.to.clone());
        self.save_installed(&i)?;
        let mut protect: Vec<semver::Version> = i
            .previous
            .iter()
            .take(1)
            .map(|v| v.version.clone())
            .collect();
        protect.push(j.to.version.clone());
        let removed = versions::prune(&layout.versions, managed.keep_versions, &protect);
        if !removed.is_empty() {
            info!(?removed, "pruned old versions");
        }
        info!(version = %j.to.version, "update applied; the new version is healthy");
        self.record(&j, Outcome::Applied, None, started);
        self.finish();
        Ok(Outcome::Applied)
    }

    /// Compatibility checks and installing the version directory.
    fn prechecks(&self, j: &Journal) -> Result<(), String> {
        let command = &self.inner.managed.command;
        if !std::path::Path::new(command).is_absolute() && !j.source.join(command).is_file() {
            return Err(format!(
                "release {} has no artifact {command:?} for this node's platform ({})",
                j.to.version, self.inner.ctx.config.platform
            ));
        }
        let needed: u64 = std::fs::read_dir(&j.source)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if let Ok(st) = nix::sys::statvfs::statvfs(&self.inner.ctx.data_dir) {
            let available = st.blocks_available().saturating_mul(st.fragment_size());
            if available < needed {
                return Err(format!(
                    "not enough disk space: {needed} bytes needed, {available} available"
                ));
            }
        }
        versions::install(&self.inner.layout.versions, &j.to.version, &j.source)
            .map_err(|e| format!("installing version {}: {e}", j.to.version))?;
        Ok(())
    }

    fn mark_failed(&self, release: &Hash32) {
        let mut i = self.installed();
        i.failed.insert(*release);
        let _ = self.save_installed(&i);
    }

    /// Ends a transition before anything was switched.
    fn refuse(
        &self,
        j: Journal,
        reason: String,
        fail: bool,
        started: Instant,
    ) -> Result<Outcome, String> {
        warn!(to = %j.to.version, "update not applied: {reason}");
        if fail {
            self.mark_failed(&j.to.release);
        }
        let outcome = if fail {
            Outcome::Refused
        } else {
            Outcome::Postponed
        };
        self.record(&j, outcome, Some(reason.clone()), started);
        self.finish();
        Err(reason)
    }

    /// Stops the new version, switches back, restores the data, starts the previous
    /// version and checks it. Each step is journaled and can be repeated.
    async fn roll_back(&self, mut j: Journal, reason: String, started: Instant) -> Outcome {
        warn!(to = %j.to.version, "rolling back: {reason}");
        j.failure = Some(reason.clone());
        let layout = self.inner.layout.clone();
        let managed = self.inner.managed.clone();
        let mut steps = async || -> Result<(), String> {
            if j.step <= Step::RbStop {
                self.enter(&mut j, Step::RbStop).await?;
                self.inner.sup.stop().await?;
            }
            if j.step <= Step::RbSwitch {
                self.enter(&mut j, Step::RbSwitch).await?;
                match &j.from {
                    Some(from) => versions::switch(
                        &layout.current,
                        &versions::dir(&layout.versions, &from.version),
                    )
                    .map_err(|e| e.to_string())?,
                    None => versions::clear(&layout.current).map_err(|e| e.to_string())?,
                }
            }
            if j.step <= Step::RbRestore {
                self.enter(&mut j, Step::RbRestore).await?;
                if let (Some(b), Some(data)) = (j.backup.clone(), managed.data_dir.clone()) {
                    tokio::task::spawn_blocking(move || backup::restore(&b, &data))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("restoring the data backup: {e}"))?;
                }
            }
            if j.step <= Step::RbStart {
                self.enter(&mut j, Step::RbStart).await?;
                if j.from.is_some() {
                    self.inner.sup.start().await?;
                }
            }
            if j.step <= Step::RbHealthCheck {
                self.enter(&mut j, Step::RbHealthCheck).await?;
                if j.from.is_some()
                    && let Err(e) =
                        health::wait_healthy(&managed.health, self.inner.sup.watch()).await
                {
                    error!("the previous version is not healthy after the rollback either: {e}");
                }
            }
            self.enter(&mut j, Step::RbCommit).await?;
            Ok(())
        };
        if let Err(e) = steps().await {
            error!("rollback step failed: {e}; the journal keeps it for the next start");
            return Outcome::RolledBack;
        }
        if j.kind == Kind::Apply {
            self.mark_failed(&j.to.release);
        }
        self.record(&j, Outcome::RolledBack, Some(reason), started);
        self.finish();
        Outcome::RolledBack
    }
}
