//! Cosmovisor mode: a Cosmos SDK chain binary run in cosmovisor's folder layout, switched
//! to the release that names the chain's upgrade when the chain halts for it.
//!
//! ```text
//! <home>/cosmovisor/genesis/bin/<name>           the binary the chain started with
//! <home>/cosmovisor/upgrades/<upgrade>/bin/<name> the binary of each upgrade
//! <home>/cosmovisor/current                      symlink to genesis or upgrades/<upgrade>
//! <home>/data/upgrade-info.json                  written by x/upgrade at the upgrade height
//! ```
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
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::watch;
use tracing::{error, info, warn};
use upswarm_proto::Hash32;

use super::actor::ApplyEvent;
use super::record::{ApplyStore, ApplyView, HistoryEntry, Kind, Origin, Outcome, VersionRef};
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

/// A downloaded release that implements an upgrade, as the core hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRelease {
    pub upgrade: String,
    pub release: Hash32,
    pub version: semver::Version,
    /// The release's assembled artifacts.
    pub source: PathBuf,
    /// This platform's artifacts: name and blake3 hash from the signed manifest.
    pub artifacts: Vec<(String, Hash32)>,
}

/// The paths of cosmovisor's layout.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub name: String,
    pub root: PathBuf,
    pub current: PathBuf,
    pub upgrade_info: PathBuf,
}

impl Paths {
    pub fn new(cv: &Cosmovisor) -> Paths {
        let home = cv.home();
        let root = home.join("cosmovisor");
        Paths {
            current: root.join("current"),
            upgrade_info: home.join("data").join("upgrade-info.json"),
            name: cv.name(),
            root,
            home,
        }
    }

    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis")
    }

    pub fn upgrade(&self, upgrade: &str) -> PathBuf {
        self.root.join("upgrades").join(upgrade)
    }

    /// The binary of the directory `dir` (genesis or an upgrade's).
    pub fn binary(&self, dir: &Path) -> PathBuf {
        dir.join("bin").join(&self.name)
    }

    /// Creates `current` → `genesis` when there is no `current` yet (as cosmovisor does
    /// on its first run).
    pub fn ensure_current(&self) -> io::Result<()> {
        if fs::symlink_metadata(&self.current).is_ok() {
            return Ok(());
        }
        let genesis = self.genesis();
        if !self.binary(&genesis).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: no chain binary (and no {})",
                    self.binary(&genesis).display(),
                    self.current.display()
                ),
            ));
        }
        versions::switch(&self.current, &genesis)
    }

    /// `genesis` or the upgrade `current` points at.
    pub fn current_upgrade(&self) -> Option<String> {
        let target = fs::read_link(&self.current).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        let parent = target
            .parent()
            .and_then(Path::file_name)
            .map(|p| p.to_string_lossy().into_owned());
        match parent.as_deref() {
            Some("upgrades") => Some(name),
            _ if name == "genesis" => Some(name),
            _ => None,
        }
    }

    /// The upgrade the chain halted for and that `current` does not run yet. An
    /// `upgrade-info.json` that cannot be read is an error (whether the height has passed
    /// cannot be told).
    pub fn pending(&self) -> Result<Option<UpgradeInfo>, String> {
        let bytes = match fs::read(&self.upgrade_info) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.upgrade_info.display())),
        };
        let info: UpgradeInfo = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: not valid upgrade info: {e}",
                self.upgrade_info.display()
            )
        })?;
        if info.name.is_empty() {
            return Err(format!(
                "{}: the upgrade has no name",
                self.upgrade_info.display()
            ));
        }
        if self.current_upgrade().as_deref() == Some(info.name.as_str()) {
            return Ok(None);
        }
        Ok(Some(info))
    }

    /// Whether the binary of `upgrade` is in place.
    pub fn staged(&self, upgrade: &str) -> bool {
        self.binary(&self.upgrade(upgrade)).is_file()
    }

    /// Installs `rel` as `upgrades/<upgrade>/bin/` (checked copies, renamed into place).
    /// Returns false if the upgrade's binary is there already (staged earlier, or put there
    /// by the operator).
    pub fn stage(&self, rel: &UpgradeRelease) -> Result<bool, String> {
        if self.staged(&rel.upgrade) {
            return Ok(false);
        }
        if !rel.artifacts.iter().any(|(n, _)| *n == self.name) {
            return Err(format!(
                "release {} names upgrade {} but has no artifact {} for this platform",
                rel.version, rel.upgrade, self.name
            ));
        }
        if upswarm_proto::manifest::check_artifact_name(&rel.upgrade).is_err() {
            return Err(format!(
                "release {}: upgrade name {:?} is not a plain directory name",
                rel.version, rel.upgrade
            ));
        }
        let dest = self.upgrade(&rel.upgrade);
        let upgrades = self.root.join("upgrades");
        let tmp = upgrades.join(format!(".{}.staging", rel.upgrade));
        let io = |what: &Path, e: io::Error| format!("{}: {e}", what.display());
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("bin")).map_err(|e| io(&tmp, e))?;
        for (name, hash) in &rel.artifacts {
            let from = rel.source.join(name);
            let to = tmp.join("bin").join(name);
            fs::copy(&from, &to).map_err(|e| io(&from, e))?;
            let got = blake3::hash(&fs::read(&to).map_err(|e| io(&to, e))?);
            if got.as_bytes() != &hash.0 {
                let _ = fs::remove_dir_all(&tmp);
                return Err(format!(
                    "{}: the copy does not match the signed manifest's hash; not staged",
                    from.display()
                ));
            }
        }
        let mark = serde_json::json!({
            "release": rel.release.to_hex(),
            "version": rel.version.to_string(),
        });
        fs::write(tmp.join("upswarm-release.json"), mark.to_string()).map_err(|e| io(&tmp, e))?;
        if dest.exists() {
            // A directory without the binary (made by hand): fill in its bin/.
            let bin = dest.join("bin");
            if bin.exists() {
                let _ = fs::remove_dir_all(&tmp);
                return Err(format!(
                    "{} exists without {}: left alone",
                    bin.display(),
                    self.name
                ));
            }
            fs::rename(tmp.join("bin"), &bin).map_err(|e| io(&bin, e))?;
            let _ = fs::remove_dir_all(&tmp);
        } else {
            fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        }
        Ok(true)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(home: &Path) -> Paths {
        Paths::new(&Cosmovisor {
            home: Some(home.to_path_buf()),
            name: Some("chaind".into()),
            ..Cosmovisor::default()
        })
    }

    #[test]
    fn staged_copies_are_checked_and_pending_follows_current() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(t.path());
        fs::create_dir_all(p.genesis().join("bin")).unwrap();
        fs::write(p.binary(&p.genesis()), b"old").unwrap();
        p.ensure_current().unwrap();
        assert_eq!(p.current_upgrade().as_deref(), Some("genesis"));
        assert_eq!(p.pending(), Ok(None));

        let src = t.path().join("release");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("chaind"), b"new").unwrap();
        let mut rel = UpgradeRelease {
            upgrade: "v2".into(),
            release: Hash32([7; 32]),
            version: "2.0.0".parse().unwrap(),
            source: src,
            artifacts: vec![("chaind".into(), Hash32([0; 32]))],
        };
        // A copy that does not match the signed hash is not staged.
        let err = p.stage(&rel).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(!p.staged("v2"));
        rel.artifacts[0].1 = Hash32(*blake3::hash(b"new").as_bytes());
        assert_eq!(p.stage(&rel), Ok(true));
        assert_eq!(p.stage(&rel), Ok(false));
        assert_eq!(fs::read(p.binary(&p.upgrade("v2"))).unwrap(), b"new");
        // No artifact of the binary's name: refused.
        let other = UpgradeRelease {
            upgrade: "v3".into(),
            artifacts: vec![("readme".into(), Hash32([0; 32]))],
            ..rel.clone()
        };
        assert!(p.stage(&other).unwrap_err().contains("no artifact chaind"));

        fs::create_dir_all(t.path().join("data")).unwrap();
        fs::write(&p.upgrade_info, br#"{"name":"v2","height":100}"#).unwrap();
        assert_eq!(p.pending().unwrap().unwrap().height, 100);
        versions::switch(&p.current, &p.upgrade("v2")).unwrap();
        assert_eq!(p.current_upgrade().as_deref(), Some("v2"));
        assert_eq!(p.pending(), Ok(None));
        fs::write(&p.upgrade_info, b"{not json").unwrap();
        assert!(p.pending().unwrap_err().contains("not valid upgrade info"));
    }
}
