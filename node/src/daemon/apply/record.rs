//! What the apply actor keeps: the installed versions, the operator's preferences, the
//! journal of the transition in progress and the history of finished ones — the types, and
//! the store that persists them.
//!
//! Two records, two writers, no lost update: the [`InstallRecord`] is written only by
//! transitions (apply, rollback, recovery), the [`Preferences`] only by the operator's edits
//! (pin, defer), so an edit can be served while a transition runs. Each is replaced whole,
//! atomically (one sled key, flushed), and only by a value that passed the API's bounds.
//!
//! Owns these types and the sled trees `installed`, `journal` and `history` (`ApplyStore`). It
//! decides nothing and runs nothing (`transition` and `actor` do), and nothing outside `apply`
//! writes these trees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use crate::api::{HistoryEntry, Kind, Origin, Outcome};
use serde::{Deserialize, Serialize};
use upswarm_proto::Hash32;
use upswarm_store::{Db, StoreError, Tree};

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

/// What is installed. Written only by transitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstallRecord {
    #[serde(default)]
    pub current: Option<VersionRef>,
    /// Earlier good versions, newest first.
    #[serde(default)]
    pub previous: Vec<VersionRef>,
    /// Releases that failed here; never retried automatically.
    #[serde(default)]
    pub failed: BTreeSet<Hash32>,
    /// The newest data backup: taken when leaving this version.
    #[serde(default)]
    pub last_backup: Option<(semver::Version, PathBuf)>,
}

/// The operator's choices. Written only by edits (pin, defer).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Preferences {
    #[serde(default)]
    pub pinned: Option<semver::Version>,
    #[serde(default, with = "upswarm_proto::ids::hex_keys")]
    pub deferrals: BTreeMap<Hash32, Deferral>,
}

/// Both records together, as the core and the API read them.
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
    /// The newest data backup: taken when leaving this version.
    pub last_backup: Option<(semver::Version, PathBuf)>,
}

impl Installed {
    pub fn set_record(&mut self, r: &InstallRecord) {
        self.current = r.current.clone();
        self.previous = r.previous.clone();
        self.failed = r.failed.clone();
        self.last_backup = r.last_backup.clone();
    }

    pub fn set_preferences(&mut self, p: &Preferences) {
        self.pinned = p.pinned.clone();
        self.deferrals = p.deferrals.clone();
    }
}

/// The steps, in order. Each is journaled before it is carried out.
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
    pub const ALL: [Step; 15] = [
        Step::Prechecks,
        Step::Backup,
        Step::PreHook,
        Step::Stop,
        Step::Switch,
        Step::Restore,
        Step::Start,
        Step::HealthCheck,
        Step::Commit,
        Step::RbStop,
        Step::RbSwitch,
        Step::RbRestore,
        Step::RbStart,
        Step::RbHealthCheck,
        Step::RbCommit,
    ];

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

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Where a transition interrupted at this step resumes after a restart.
    ///
    /// Every step is carried out again (each is idempotent), except that a killed daemon's
    /// program was stopped by the restart: a transition interrupted while the new (or, in a
    /// rollback, the previous) version ran — its health check or its commit — starts it again
    /// and checks it again, rather than judging a program that is no longer there.
    pub fn resume_point(self) -> Step {
        match self {
            Step::Start | Step::HealthCheck | Step::Commit => Step::Start,
            Step::RbStart | Step::RbHealthCheck | Step::RbCommit => Step::RbStart,
            other => other,
        }
    }
}

/// The apply journal: one transition in progress. Enough to finish it after a crash at any
/// point: the step to redo, where it comes from and goes to, the backup to restore, and why
/// it is rolling back (`failure`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Unique id of the transition (unix nanoseconds at its start); also its history key,
    /// so a transition finished twice (crash after the history write) is recorded once.
    #[serde(default)]
    pub id: u64,
    pub kind: Kind,
    #[serde(default)]
    pub origin: Origin,
    pub from: Option<VersionRef>,
    pub to: VersionRef,
    /// The step being carried out (recorded before it starts).
    pub step: Step,
    /// Release artifacts to install from.
    pub source: PathBuf,
    pub backup: Option<PathBuf>,
    pub backup_ms: Option<u64>,
    /// Data to restore after the switch (a rollback to a version whose backup exists).
    pub restore: Option<PathBuf>,
    pub started_at: u64,
    #[serde(default)]
    pub started_at_ms: u64,
    /// Set once the transition is rolling back: why.
    pub failure: Option<String>,
    /// A release to mark failed when the transition ends (the yanked one).
    #[serde(default)]
    pub mark_failed: Option<Hash32>,
    /// Why, for the history, when the outcome does not say (a yank's reason).
    #[serde(default)]
    pub note: Option<String>,
    /// Output of the pre-upgrade hook, bounded.
    #[serde(default)]
    pub hook_output: Option<String>,
    /// Daemon restarts this transition went through.
    #[serde(default)]
    pub restarts: u32,
}

/// The transition in progress, as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applying {
    pub kind: Kind,
    pub origin: Origin,
    pub step: Step,
    pub to: semver::Version,
}

/// A snapshot of the actor's state, updated on every change.
#[derive(Debug, Clone, Default)]
pub struct ApplyView {
    pub installed: Installed,
    pub applying: Option<Applying>,
    /// Recovery after the start is over: transitions may start.
    pub recovered: bool,
}

impl ApplyView {
    /// No transition runs and none may be waiting to be finished.
    pub fn idle(&self) -> bool {
        self.recovered && self.applying.is_none()
    }
}

/// Persistence of the apply actor's state in the daemon's sled database.
#[derive(Debug, Clone)]
pub struct ApplyStore {
    db: Db,
    record: Tree<InstallRecord>,
    prefs: Tree<Preferences>,
    legacy: Tree<LegacyInstalled>,
    journal: Tree<Journal>,
    history: Tree<HistoryEntry>,
}

/// The single record of versions up to this one (current … deferrals under one key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LegacyInstalled {
    #[serde(default)]
    current: Option<VersionRef>,
    #[serde(default)]
    previous: Vec<VersionRef>,
    #[serde(default)]
    failed: BTreeSet<Hash32>,
    #[serde(default)]
    pinned: Option<semver::Version>,
    #[serde(default, with = "upswarm_proto::ids::hex_keys")]
    deferrals: BTreeMap<Hash32, Deferral>,
    #[serde(default)]
    last_backup: Option<(semver::Version, PathBuf)>,
}

const LEGACY_KEY: &[u8] = b"state";
const RECORD_KEY: &[u8] = b"record";
const PREFS_KEY: &[u8] = b"preferences";
const JOURNAL_KEY: &[u8] = b"state";

impl ApplyStore {
    pub fn open(db: &Db) -> Result<Self, StoreError> {
        Ok(ApplyStore {
            db: db.clone(),
            record: db.tree("installed")?,
            prefs: db.tree("installed")?,
            legacy: db.tree("installed")?,
            journal: db.tree("journal")?,
            history: db.tree("history")?,
        })
    }

    /// Loads both records and the journal. A value that cannot be read is an error (the
    /// daemon refuses to start rather than forget what is installed).
    pub fn load(&self) -> Result<(InstallRecord, Preferences, Option<Journal>), StoreError> {
        let journal = self.journal.get(JOURNAL_KEY)?;
        if let Some(r) = self.record.get(RECORD_KEY)? {
            let p = self.prefs.get(PREFS_KEY)?.unwrap_or_default();
            return Ok((r, p, journal));
        }
        // First start after an upgrade from the single-record layout: split it.
        let old = self.legacy.get(LEGACY_KEY)?.unwrap_or_default();
        let r = InstallRecord {
            current: old.current,
            previous: old.previous,
            failed: old.failed,
            last_backup: old.last_backup,
        };
        let p = Preferences {
            pinned: old.pinned,
            deferrals: old.deferrals,
        };
        self.save_prefs(&p)?;
        self.save_record(&r)?;
        self.legacy.remove(LEGACY_KEY)?;
        crate::daemon::state::outside_workers(|| self.db.flush())?;
        Ok((r, p, journal))
    }

    /// The journal of the transition in progress, if any.
    pub fn journal(&self) -> Result<Option<Journal>, StoreError> {
        self.journal.get(JOURNAL_KEY)
    }

    pub fn save_record(&self, r: &InstallRecord) -> Result<(), StoreError> {
        self.record.put(RECORD_KEY, r)?;
        crate::daemon::state::outside_workers(|| self.db.flush())
    }

    pub fn save_prefs(&self, p: &Preferences) -> Result<(), StoreError> {
        self.prefs.put(PREFS_KEY, p)?;
        crate::daemon::state::outside_workers(|| self.db.flush())
    }

    pub fn save_journal(&self, j: &Journal) -> Result<(), StoreError> {
        self.journal.put(JOURNAL_KEY, j)?;
        crate::daemon::state::outside_workers(|| self.db.flush())
    }

    pub fn clear_journal(&self) -> Result<(), StoreError> {
        self.journal.remove(JOURNAL_KEY)?;
        crate::daemon::state::outside_workers(|| self.db.flush())
    }

    /// Records the end of transition `id` (idempotent: the same id overwrites).
    pub fn record_history(&self, id: u64, e: &HistoryEntry) -> Result<(), StoreError> {
        self.history.put(id.to_be_bytes(), e)?;
        crate::daemon::state::outside_workers(|| self.db.flush())
    }

    /// Every history entry, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history
            .iter()
            .map(|r| r.map(|(_, v)| v))
            .collect::<Result<Vec<_>, _>>()
    }
}

/// What the actor reports to the core.
#[derive(Debug, Clone)]
pub enum ApplyEvent {
    /// A transition started (not sent when a recovery resumes one).
    Started {
        kind: Kind,
        origin: Origin,
        from: Option<VersionRef>,
        to: VersionRef,
    },
    /// A transition ended (also one finished by recovery), as recorded in the history.
    Finished {
        kind: Kind,
        origin: Origin,
        from: Option<VersionRef>,
        to: VersionRef,
        outcome: Outcome,
        reason: Option<String>,
        /// The version running now.
        current: Option<VersionRef>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_steps_resume_by_redoing_them_and_restart_the_program_before_judging_it() {
        for s in Step::ALL {
            let r = s.resume_point();
            match s {
                Step::Start | Step::HealthCheck | Step::Commit => assert_eq!(r, Step::Start),
                Step::RbStart | Step::RbHealthCheck | Step::RbCommit => {
                    assert_eq!(r, Step::RbStart)
                }
                other => assert_eq!(r, other, "{other:?} is redone"),
            }
            assert_eq!(Step::from_name(s.name()), Some(s));
        }
    }

    fn v(version: &str, n: u8) -> VersionRef {
        VersionRef {
            version: version.parse().unwrap(),
            release: Hash32([n; 32]),
        }
    }

    #[test]
    fn the_single_record_of_earlier_versions_is_split_and_history_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let legacy: Tree<LegacyInstalled> = db.tree("installed").unwrap();
        legacy
            .put(
                LEGACY_KEY,
                &LegacyInstalled {
                    current: Some(v("1.1.0", 2)),
                    previous: vec![v("1.0.0", 1)],
                    pinned: Some("1.1.0".parse().unwrap()),
                    ..LegacyInstalled::default()
                },
            )
            .unwrap();
        let store = ApplyStore::open(&db).unwrap();
        let (r, p, j) = store.load().unwrap();
        assert_eq!(r.current, Some(v("1.1.0", 2)));
        assert_eq!(r.previous, vec![v("1.0.0", 1)]);
        assert_eq!(p.pinned, Some("1.1.0".parse().unwrap()));
        assert!(j.is_none());
        assert!(legacy.get(LEGACY_KEY).unwrap().is_none());
        // Loaded again: the same, from the new keys.
        let (r2, p2, _) = store.load().unwrap();
        assert_eq!(r2.current, r.current);
        assert_eq!(p2.pinned, p.pinned);
        // The same transition finished twice is one entry.
        let e = HistoryEntry {
            at: 1,
            outcome: Outcome::Applied,
            kind: Kind::Apply,
            origin: Origin::Auto,
            from: None,
            to: "1.2.0".into(),
            release: "ab".into(),
            reason: None,
            backup_ms: None,
            duration_ms: 5,
            hook_output: None,
            restarts: 1,
        };
        store.record_history(7, &e).unwrap();
        store.record_history(7, &e).unwrap();
        store.record_history(8, &e).unwrap();
        assert_eq!(store.history().unwrap().len(), 2);
    }

    #[test]
    fn an_unreadable_record_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let raw: Tree<String> = db.tree("installed").unwrap();
        raw.put(RECORD_KEY, &"not a record".to_string()).unwrap();
        let store = ApplyStore::open(&db).unwrap();
        assert!(store.load().is_err());
    }
}
