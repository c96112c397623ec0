//! The journaled apply procedure: forward steps, rollback steps, and the recovery that
//! finishes a transition a killed daemon left behind.
//!
//! Rules (the crash tests check each):
//! 1. Every step is written to the journal (flushed) before it is carried out, and every
//!    step can be carried out again: a crash at any point repeats the journaled step.
//! 2. A restart stops whatever program the killed daemon left running. A transition
//!    interrupted at `start`, `health_check` or `commit` (or `rb_start`, `rb_health_check`,
//!    `rb_commit`) therefore starts the program again and checks it again: a healthy release
//!    is never rolled back because its program was stopped by the restart.
//! 3. Recovery finishes the transition the way it was heading: forward to the new version,
//!    or — once it is rolling back — back to the previous one. It never starts a new one.
//! 4. A transition is recorded in the history exactly once (its id is the history key),
//!    whatever number of restarts it went through.
//! 5. Whatever the outcome, the program of the version `current` names runs at the end.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::error::ApplyError;
use super::fault::{When, crash_point};
use super::record::{
    ApplyStore, ApplyView, Applying, HistoryEntry, InstallRecord, Journal, Kind, Outcome, Step,
};
use super::supervisor::{Supervisor, reap_orphans};
use super::{backup, command, health, versions};
use crate::daemon::config::Managed;
use crate::layout::Layout;

/// What the procedure needs: cheap handles, cloned into each transition's future.
#[derive(Debug, Clone)]
pub(super) struct Procedure {
    pub managed: Managed,
    pub layout: Layout,
    pub sup: Supervisor,
    pub store: ApplyStore,
    pub view: watch::Sender<ApplyView>,
    pub skip_backup: bool,
    pub platform: String,
    pub keep_backups: usize,
}

/// How a transition (or a recovery) ended.
#[derive(Debug)]
pub(super) struct Finished {
    /// The install record, handed back to the actor.
    pub record: InstallRecord,
    /// The transition's journal as it ended; `None`: a recovery with nothing to resume.
    pub journal: Option<Journal>,
    pub result: Result<Outcome, ApplyError>,
    /// The journal is still on disk: the transition must be resumed later.
    pub unfinished: bool,
}

/// Milliseconds since the epoch.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn unfinished(step: Step) -> impl FnOnce(String) -> ApplyError {
    move |reason| ApplyError::Unfinished {
        step: step.name(),
        reason,
    }
}

impl Procedure {
    /// Runs a transition from `j.step` on: a new one from `prechecks`, a resumed one from its
    /// resume point.
    pub(super) async fn run(self, mut j: Journal, mut rec: InstallRecord) -> Finished {
        let result = if j.failure.is_some() {
            self.roll_back(&mut j, &mut rec, None).await
        } else {
            self.forward(&mut j, &mut rec).await
        };
        let unfinished = matches!(
            result,
            Err(ApplyError::Unfinished { .. } | ApplyError::Store(_))
        );
        self.view.send_modify(|v| {
            v.applying = None;
            v.installed.set_record(&rec);
        });
        Finished {
            record: rec,
            journal: Some(j),
            result,
            unfinished,
        }
    }

    /// After a (re)start: stops a program a killed daemon left running, then finishes the
    /// transition the journal holds, or (nothing to finish) starts the current version.
    /// `restarted`: the daemon just started (not a retry of a step that failed).
    pub(super) async fn recover(
        self,
        journal: Option<Journal>,
        rec: InstallRecord,
        restarted: bool,
    ) -> Finished {
        let reaped = reap_orphans(&self.managed, &self.layout, self.sup.status().pid).await;
        if reaped > 0 {
            info!(
                processes = reaped,
                "stopped the program a previous daemon left running"
            );
        }
        let Some(mut j) = journal else {
            if (self.managed.mode == crate::daemon::config::ManagedMode::Cosmovisor
                || versions::current_target(&self.layout.current).is_some())
                && let Err(e) = self.sup.start().await
            {
                error!("cannot start the managed program: {e}");
            }
            return Finished {
                record: rec,
                journal: None,
                result: Ok(Outcome::Applied),
                unfinished: false,
            };
        };
        if j.id == 0 {
            // A journal written before transitions had ids.
            j.id = unix_ms().saturating_mul(1000);
            j.started_at_ms = j.started_at.saturating_mul(1000);
        }
        if restarted {
            j.restarts = j.restarts.saturating_add(1);
        }
        let was = j.step;
        j.step = j.step.resume_point();
        warn!(
            kind = ?j.kind,
            to = %j.to.version,
            interrupted_at = was.name(),
            resume_at = j.step.name(),
            rolling_back = j.failure.is_some(),
            "finishing an interrupted update"
        );
        self.run(j, rec).await
    }

    /// Records `step` durably, then shows it.
    fn enter(&self, j: &mut Journal, step: Step) -> Result<(), ApplyError> {
        j.step = step;
        self.store.save_journal(j)?;
        self.view.send_modify(|v| {
            v.applying = Some(Applying {
                kind: j.kind,
                origin: j.origin,
                step,
                to: j.to.version.clone(),
            });
        });
        info!(step = step.name(), to = %j.to.version, "apply step");
        crash_point(When::Entry, step, j);
        Ok(())
    }

    /// `step` was carried out.
    fn done(&self, j: &Journal, step: Step) {
        crash_point(When::Done, step, j);
    }

    fn save_record(&self, rec: &InstallRecord) -> Result<(), ApplyError> {
        self.store.save_record(rec)?;
        self.view.send_modify(|v| v.installed.set_record(rec));
        Ok(())
    }

    /// Writes the history entry (once per transition id) and clears the journal.
    fn finish(
        &self,
        j: &Journal,
        outcome: Outcome,
        reason: Option<String>,
    ) -> Result<(), ApplyError> {
        let now = unix_ms();
        let entry = HistoryEntry {
            at: now / 1000,
            outcome,
            kind: j.kind,
            origin: j.origin,
            from: j.from.as_ref().map(|v| v.version.to_string()),
            to: j.to.version.to_string(),
            release: j.to.release.to_hex(),
            reason: reason.or_else(|| j.note.clone()),
            backup_ms: j.backup_ms,
            duration_ms: now.saturating_sub(j.started_at_ms),
            hook_output: j.hook_output.clone(),
            restarts: j.restarts,
        };
        self.store.record_history(j.id, &entry)?;
        self.store.clear_journal()?;
        Ok(())
    }

    async fn forward(
        &self,
        j: &mut Journal,
        rec: &mut InstallRecord,
    ) -> Result<Outcome, ApplyError> {
        let to_dir = versions::dir(&self.layout.versions, &j.to.version);
        if j.step <= Step::Prechecks {
            self.enter(j, Step::Prechecks)?;
            if let Err((reason, fail)) = self.prechecks(j).await {
                return self.end_early(j, rec, reason, fail).await;
            }
            self.done(j, Step::Prechecks);
        }
        if j.step <= Step::Backup {
            self.enter(j, Step::Backup)?;
            if let Err(reason) = self.backup(j, rec).await? {
                return self.end_early(j, rec, reason, false).await;
            }
            self.done(j, Step::Backup);
        }
        if j.step <= Step::PreHook {
            self.enter(j, Step::PreHook)?;
            if j.kind == Kind::Apply
                && let Some((reason, fail)) = self.pre_hook(j).await
            {
                return self.end_early(j, rec, reason, fail).await;
            }
            self.done(j, Step::PreHook);
        }
        if j.step <= Step::Stop {
            self.enter(j, Step::Stop)?;
            if let Err(e) = self.sup.stop().await {
                return self
                    .end_early(j, rec, format!("stopping the program failed: {e}"), false)
                    .await;
            }
            self.done(j, Step::Stop);
        }
        if j.step <= Step::Switch {
            self.enter(j, Step::Switch)?;
            if let Err(e) = versions::switch(&self.layout.current, &to_dir) {
                return self
                    .roll_back(j, rec, Some(format!("switch failed: {e}")))
                    .await;
            }
            self.done(j, Step::Switch);
        }
        if j.step <= Step::Restore {
            self.enter(j, Step::Restore)?;
            if let (Some(src), Some(data)) = (j.restore.clone(), self.managed.data_dir.clone())
                && let Err(e) = restore(&src, &data).await
            {
                return self
                    .roll_back(
                        j,
                        rec,
                        Some(format!("restoring the data backup failed: {e}")),
                    )
                    .await;
            }
            self.done(j, Step::Restore);
        }
        if j.step <= Step::Start {
            self.enter(j, Step::Start)?;
            if let Err(e) = self.sup.start().await {
                return self.roll_back(j, rec, Some(e.to_string())).await;
            }
            self.done(j, Step::Start);
        }
        if j.step <= Step::HealthCheck {
            self.enter(j, Step::HealthCheck)?;
            if let Err(e) = health::wait_healthy(&self.managed.health, self.sup.watch()).await {
                return self.roll_back(j, rec, Some(e)).await;
            }
            self.done(j, Step::HealthCheck);
        }
        self.enter(j, Step::Commit)?;
        if let Some(from) = &j.from
            && j.kind == Kind::Apply
            && from.version != j.to.version
        {
            rec.previous.retain(|v| v.version != from.version);
            rec.previous.insert(0, from.clone());
        }
        if j.kind == Kind::Rollback {
            rec.previous.retain(|v| v.version != j.to.version);
        }
        rec.current = Some(j.to.clone());
        if let Some(r) = j.mark_failed {
            rec.failed.insert(r);
        }
        self.save_record(rec)?;
        self.done(j, Step::Commit);
        info!(version = %j.to.version, "update applied; the new version is healthy");
        self.finish(j, Outcome::Applied, None)?;
        Ok(Outcome::Applied)
    }

    /// Compatibility checks and installing the version directory. `Err((reason, fail))`:
    /// `fail` marks the release failed (it can never work here).
    async fn prechecks(&self, j: &Journal) -> Result<(), (String, bool)> {
        let command = &self.managed.command;
        if !Path::new(command).is_absolute() && !j.source.join(command).is_file() {
            return Err((
                format!(
                    "release {} has no artifact {command:?} for this node's platform ({})",
                    j.to.version, self.platform
                ),
                true,
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
        if let Ok(st) = nix::sys::statvfs::statvfs(&self.layout.root) {
            let available = st.blocks_available().saturating_mul(st.fragment_size());
            if available < needed {
                return Err((
                    format!("not enough disk space: {needed} bytes needed, {available} available"),
                    false,
                ));
            }
        }
        let (versions, version, source) = (
            self.layout.versions.clone(),
            j.to.version.clone(),
            j.source.clone(),
        );
        tokio::task::spawn_blocking(move || versions::install(&versions, &version, &source))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| (format!("installing version {}: {e}", j.to.version), false))?;
        Ok(())
    }

    /// Backs up the managed data directory (`Ok(Err(reason))`: the backup failed).
    async fn backup(
        &self,
        j: &mut Journal,
        rec: &mut InstallRecord,
    ) -> Result<Result<(), String>, ApplyError> {
        let skip = self.skip_backup || (j.kind == Kind::Rollback && j.restore.is_some());
        let (Some(data), Some(from), false) = (&self.managed.data_dir, &j.from, skip) else {
            return Ok(Ok(()));
        };
        let dest = self.layout.backups.join(from.version.to_string());
        let (src, d2) = (data.clone(), dest.clone());
        let took = tokio::task::spawn_blocking(move || backup::backup(&src, &d2))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let took = match took {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("data backup failed: {e}"))),
        };
        info!(took = ?took, "data backup done");
        j.backup = Some(dest.clone());
        j.backup_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        self.store.save_journal(j)?;
        rec.last_backup = Some((from.version.clone(), dest.clone()));
        self.save_record(rec)?;
        // `retention.keep_backups`: the newest are kept, the one just made always.
        for gone in crate::daemon::gc::backups_beyond(
            &self.layout.backups,
            self.keep_backups,
            &[dest.as_path()],
        ) {
            info!(backup = %gone.display(), "removing an old data backup");
            let _ = std::fs::remove_dir_all(gone);
        }
        Ok(Ok(()))
    }

    /// Runs the pre-upgrade hook; `Some((reason, fail))` stops the transition.
    async fn pre_hook(&self, j: &mut Journal) -> Option<(String, bool)> {
        let hooks = &self.managed.hooks;
        if hooks.pre_upgrade.is_empty() {
            return None;
        }
        let to_dir = versions::dir(&self.layout.versions, &j.to.version);
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
        let timeout = hooks.pre_upgrade_timeout();
        let run = match command::run(&hooks.pre_upgrade, "pre-upgrade hook", &env, timeout).await {
            Ok(r) => r,
            Err(e) => return Some((e.to_string(), false)),
        };
        let output = run.output.trim_end().to_string();
        if run.success() {
            info!(took = ?run.took, "pre-upgrade hook: {}; output:\n{output}", run.how);
        } else {
            warn!(took = ?run.took, "pre-upgrade hook: {}; output:\n{output}", run.how);
        }
        j.hook_output = (!output.is_empty()).then_some(output);
        if run.timed_out {
            return Some((
                format!("pre-upgrade hook timed out after {timeout:?} and was killed"),
                true,
            ));
        }
        match run.code {
            Some(0) => None,
            Some(2) => Some((
                "pre-upgrade hook asked to retry later (exit 2)".into(),
                false,
            )),
            _ => Some((
                format!("pre-upgrade hook refused the update ({})", run.how),
                true,
            )),
        }
    }

    /// Ends a transition before anything was switched: `fail` marks the release failed
    /// (refused), else it stays eligible (postponed). The current version runs again.
    async fn end_early(
        &self,
        j: &mut Journal,
        rec: &mut InstallRecord,
        reason: String,
        fail: bool,
    ) -> Result<Outcome, ApplyError> {
        warn!(to = %j.to.version, "update not applied: {reason}");
        if fail {
            rec.failed.insert(j.to.release);
        }
        if let Some(r) = j.mark_failed {
            rec.failed.insert(r);
        }
        self.save_record(rec)?;
        // A restart during this transition stopped the program: run it again.
        if versions::current_target(&self.layout.current).is_some()
            && let Err(e) = self.sup.start().await
        {
            error!("cannot start the managed program again: {e}");
        }
        let outcome = if fail {
            Outcome::Refused
        } else {
            Outcome::Postponed
        };
        self.finish(j, outcome, Some(reason.clone()))?;
        Err(if fail {
            ApplyError::Refused(reason)
        } else {
            ApplyError::Postponed(reason)
        })
    }

    /// Stops the new version, switches back, restores the data, starts the previous
    /// version and checks it. `reason` is `Some` when a forward step just failed, `None`
    /// when an interrupted rollback resumes.
    async fn roll_back(
        &self,
        j: &mut Journal,
        rec: &mut InstallRecord,
        reason: Option<String>,
    ) -> Result<Outcome, ApplyError> {
        if let Some(r) = reason {
            warn!(to = %j.to.version, "rolling back: {r}");
            j.failure = Some(r);
        }
        let reason = j.failure.clone().unwrap_or_default();
        if j.step <= Step::RbStop {
            self.enter(j, Step::RbStop)?;
            self.sup
                .stop()
                .await
                .map_err(|e| e.to_string())
                .map_err(unfinished(Step::RbStop))?;
            self.done(j, Step::RbStop);
        }
        if j.step <= Step::RbSwitch {
            self.enter(j, Step::RbSwitch)?;
            match &j.from {
                Some(from) => versions::switch(
                    &self.layout.current,
                    &versions::dir(&self.layout.versions, &from.version),
                ),
                None => versions::clear(&self.layout.current),
            }
            .map_err(|e| e.to_string())
            .map_err(unfinished(Step::RbSwitch))?;
            self.done(j, Step::RbSwitch);
        }
        if j.step <= Step::RbRestore {
            self.enter(j, Step::RbRestore)?;
            if let (Some(b), Some(data)) = (j.backup.clone(), self.managed.data_dir.clone()) {
                restore(&b, &data)
                    .await
                    .map_err(|e| format!("restoring the data backup: {e}"))
                    .map_err(unfinished(Step::RbRestore))?;
            }
            self.done(j, Step::RbRestore);
        }
        let mut note = None;
        if j.step <= Step::RbStart {
            self.enter(j, Step::RbStart)?;
            if j.from.is_some()
                && let Err(e) = self.sup.start().await
            {
                error!("the previous version does not start either: {e}");
                note = Some(format!("the previous version did not start again: {e}"));
            }
            self.done(j, Step::RbStart);
        }
        if j.step <= Step::RbHealthCheck {
            self.enter(j, Step::RbHealthCheck)?;
            if j.from.is_some()
                && note.is_none()
                && let Err(e) = health::wait_healthy(&self.managed.health, self.sup.watch()).await
            {
                error!("the previous version is not healthy after the rollback either: {e}");
                note = Some(format!(
                    "the previous version is not healthy after the rollback either: {e}"
                ));
            }
            self.done(j, Step::RbHealthCheck);
        }
        self.enter(j, Step::RbCommit)?;
        if j.kind == Kind::Apply {
            rec.failed.insert(j.to.release);
        }
        if let Some(r) = j.mark_failed {
            rec.failed.insert(r);
        }
        self.save_record(rec)?;
        self.done(j, Step::RbCommit);
        let reason = match note {
            Some(n) => format!("{reason}; {n}"),
            None => reason,
        };
        self.finish(j, Outcome::RolledBack, Some(reason))?;
        Ok(Outcome::RolledBack)
    }
}

async fn restore(backup: &Path, live: &Path) -> Result<(), String> {
    let (b, l) = (backup.to_path_buf(), live.to_path_buf());
    tokio::task::spawn_blocking(move || backup::restore(&b, &l))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// A transition id: unix nanoseconds, strictly after `last`.
pub(super) fn next_id(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    now.max(last.saturating_add(1))
}

/// How long the actor waits before it resumes a transition whose step did not complete.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(10);
