//! Cosmovisor mode: a Cosmos SDK chain binary run in cosmovisor's folder layout, switched
//! to the release that names the chain's upgrade when the chain halts for it. The folder
//! layout (`genesis/`, `upgrades/<upgrade>/`, `current`, `upgrade-info.json`) and the file
//! operations on it are `chain_home`'s.
//!
//! A release implements upgrade `<upgrade>` when its signed manifest's `protocols.provides`
//! lists `cosmos-upgrade.<upgrade>` ([`UPGRADE_PREFIX`]). The core hands the downloaded
//! (verified) ones to the [`Watcher`], which:
//! 1. stages each ahead of time: its artifacts for this platform are copied to
//!    `upgrades/<upgrade>/bin/` through a temporary directory, each copy checked against
//!    the manifest's hash, then renamed into place (complete or absent);
//! 2. polls `upgrade-info.json`. An upgrade is pending when the file names another upgrade
//!    than the one `current` points at. Then the supervisor refuses to start the old binary
//!    (it must never run past the upgrade height); the watcher stops it if it still runs,
//!    and, once the upgrade's binary is staged: backs up `<home>/data` (unless
//!    `unsafe_skip_backup`), switches `current` (a symlink renamed over the old one),
//!    starts the new binary and checks its health. A failed health check stops the chain
//!    with an alarm: rolling back to the old binary would run it past the height.
//!
//! Crash safety: every step is idempotent and decided from the files alone — a daemon killed
//! before the switch finds the upgrade still pending and does it all again (the backup is
//! made again); killed after it, `current` already names the upgrade, which is then simply
//! the program to run. The health check of a switch interrupted by a crash is not done
//! again, and its history entry is not written.

use std::fs;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{error, info, warn};
use upswarm_proto::Hash32;

pub use super::chain_home::{Paths, UpgradeRelease};
use super::record::{
    ApplyEvent, ApplyStore, ApplyView, HistoryEntry, Kind, Origin, Outcome, VersionRef,
};
use super::supervisor::Supervisor;
use super::transition::{next_id, unix_ms};
use super::{backup, health, versions};
pub use crate::api::{CosmovisorView, UpgradeInfo};
use crate::daemon::config::{Cosmovisor, Managed};

pub use crate::layout::UPGRADE_PREFIX;

/// The upgrade a release's `provides` names, if any.
pub fn upgrade_of(provides: &[String]) -> Option<&str> {
    provides
        .iter()
        .find_map(|p| p.strip_prefix(UPGRADE_PREFIX))
        .filter(|n| !n.is_empty())
}

/// The task that stages upgrade releases and switches at the upgrade height.
pub(super) struct Watcher {
    pub managed: Managed,
    pub cv: Cosmovisor,
    pub sup: Supervisor,
    pub store: ApplyStore,
    pub releases: watch::Receiver<Vec<UpgradeRelease>>,
    pub view: watch::Sender<CosmovisorView>,
    pub apply: watch::Receiver<ApplyView>,
    pub events: tokio::sync::mpsc::Sender<ApplyEvent>,
}

impl Watcher {
    pub(super) async fn run(mut self) {
        let paths = Paths::new(&self.cv);
        // The apply actor's recovery stops what a killed daemon left running first.
        while !self.apply.borrow().recovered {
            if self.apply.changed().await.is_err() {
                return;
            }
        }
        let mut staging_errors: std::collections::BTreeMap<Hash32, String> = Default::default();
        // The upgrade whose new binary failed: the chain stays stopped.
        let mut failed: Option<(String, String)> = None;
        loop {
            let releases = self.releases.borrow().clone();
            for rel in &releases {
                match paths.stage(rel) {
                    Ok(true) => {
                        info!(upgrade = %rel.upgrade, version = %rel.version, "staged the binary of a chain upgrade");
                        staging_errors.remove(&rel.release);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        if staging_errors.insert(rel.release, e.clone()).as_ref() != Some(&e) {
                            warn!("{e}");
                        }
                    }
                }
            }
            let pending = paths.pending();
            let mut alarm = None;
            match &pending {
                Err(e) => alarm = Some(format!("{e}: the chain is not started")),
                Ok(None) => {
                    // A failed switch keeps its alarm while `current` names that upgrade.
                    if failed
                        .as_ref()
                        .is_some_and(|(n, _)| paths.current_upgrade().as_deref() != Some(n))
                    {
                        failed = None;
                    }
                    alarm = failed.as_ref().map(|(_, why)| why.clone());
                    if alarm.is_none()
                        && fs::symlink_metadata(&paths.current).is_err()
                        && !paths.binary(&paths.genesis()).is_file()
                    {
                        alarm = Some(format!(
                            "cosmovisor mode: no {} and no {}: the chain cannot start",
                            paths.current.display(),
                            paths.binary(&paths.genesis()).display()
                        ));
                    }
                }
                Ok(Some(info)) => {
                    if let Some((name, why)) = &failed
                        && *name == info.name
                    {
                        alarm = Some(why.clone());
                    } else if self.sup.status().running {
                        // x/upgrade wrote the file; the binary stops by itself, or is
                        // stopped here (as cosmovisor does).
                        info!(upgrade = %info.name, height = info.height, "the chain reached an upgrade height; stopping it");
                        if let Err(e) = self.sup.stop().await {
                            error!("stopping the chain for its upgrade: {e}");
                        }
                    } else if paths.staged(&info.name) {
                        if let Err(why) = self.switch(&paths, info).await {
                            failed = Some((info.name.clone(), why.clone()));
                            alarm = Some(why);
                        }
                    } else {
                        alarm = Some(format!(
                            "the chain halted for upgrade {} at height {}: no release naming \
                             it (provides {UPGRADE_PREFIX}{}) is downloaded yet; the chain \
                             stays stopped (the old binary must not run past the height)",
                            info.name, info.height, info.name
                        ));
                    }
                }
            }
            if let Some(a) = &alarm
                && self.view.borrow().alarm.as_ref() != Some(a)
            {
                warn!("{a}");
            }
            let mut staged: Vec<String> = releases
                .iter()
                .filter(|r| paths.staged(&r.upgrade))
                .map(|r| format!("{} (release {})", r.upgrade, r.version))
                .collect();
            staged.dedup();
            let view = CosmovisorView {
                home: paths.home.clone(),
                name: paths.name.clone(),
                current: paths.current_upgrade(),
                pending: pending.ok().flatten(),
                staged,
                alarm,
            };
            self.view.send_replace(view);
            tokio::select! {
                _ = tokio::time::sleep(self.cv.poll_interval()) => {}
                r = self.releases.changed() => if r.is_err() { return },
            }
        }
    }

    /// Backs up, switches, starts and checks the new binary. `Err`: why it failed (the
    /// chain is stopped).
    async fn switch(&self, paths: &Paths, info: &UpgradeInfo) -> Result<(), String> {
        let started = Instant::now();
        let id = next_id(0);
        let from = paths.current_upgrade();
        let release = self
            .releases
            .borrow()
            .iter()
            .find(|r| r.upgrade == info.name)
            .map(|r| (r.version.to_string(), r.release.to_hex()));
        let to = self
            .releases
            .borrow()
            .iter()
            .find(|r| r.upgrade == info.name)
            .map(|r| VersionRef {
                version: r.version.clone(),
                release: r.release,
            });
        info!(upgrade = %info.name, height = info.height, "switching the chain to its upgrade");
        let mut backup_ms = None;
        let result = async {
            if self.cv.backup() {
                let dest = self.cv.backup_dir(&info.name);
                let data = paths.home.join("data");
                let took = crate::daemon::state::outside_workers(|| backup::backup(&data, &dest))
                    .map_err(|e| format!("backing up {}: {e}", dest.display()))?;
                backup_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            }
            let dir = paths.upgrade(&info.name);
            // As cosmovisor: the upgrade's directory keeps the info it was switched for.
            let _ = fs::copy(&paths.upgrade_info, dir.join("upgrade-info.json"));
            versions::switch(&paths.current, &dir)
                .map_err(|e| format!("switching {}: {e}", paths.current.display()))?;
            self.sup
                .start()
                .await
                .map_err(|e| format!("starting the new binary: {e}"))?;
            health::wait_healthy(&self.managed.health, self.sup.watch())
                .await
                .map_err(|e| format!("the new binary is not healthy: {e}"))
        }
        .await;
        let (outcome, reason) = match &result {
            Ok(()) => {
                info!(upgrade = %info.name, "the chain runs its upgrade");
                (
                    Outcome::Applied,
                    format!("cosmovisor upgrade {} at height {}", info.name, info.height),
                )
            }
            Err(e) => {
                let _ = self.sup.stop().await;
                (
                    Outcome::Halted,
                    format!(
                        "cosmovisor upgrade {} at height {}: {e}; the chain is stopped: \
                         no rollback, the old binary must not run past the upgrade height \
                         (fix the new binary, then restart the daemon)",
                        info.name, info.height
                    ),
                )
            }
        };
        let entry = HistoryEntry {
            at: unix_ms() / 1000,
            outcome,
            kind: Kind::Apply,
            origin: Origin::Auto,
            from,
            to: release
                .as_ref()
                .map_or_else(|| info.name.clone(), |(v, _)| v.clone()),
            release: release.map(|(_, r)| r).unwrap_or_default(),
            reason: Some(reason.clone()),
            backup_ms,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            hook_output: None,
            restarts: 0,
        };
        if let Err(e) = self.store.record_history(id, &entry) {
            error!("cannot record the upgrade in the history: {e}");
        }
        if let Some(to) = to {
            let _ = self
                .events
                .send(ApplyEvent::Finished {
                    kind: Kind::Apply,
                    origin: Origin::Auto,
                    from: None,
                    current: (outcome == Outcome::Applied).then(|| to.clone()),
                    to,
                    outcome,
                    reason: Some(reason.clone()),
                })
                .await;
        }
        result.map_err(|_| reason)
    }
}
