//! The apply actor: the one owner of the apply lifecycle.
//!
//! It owns the updater state — what is installed, the operator's preferences, the journal,
//! the history — and the supervisor of the managed program. The core and the control API
//! talk to it through an [`ApplyHandle`] (bounded channel, oneshot replies) and read its
//! state from a `watch` snapshot ([`ApplyView`]); it reports what happens as
//! [`ApplyEvent`]s, which the core turns into health reports and webhooks — for manual
//! transitions as for automatic ones.
//!
//! Rules:
//! 1. Recovery of an interrupted transition runs first, before any transition may start
//!    (automatic or manual); until it is over, a transition request gets "update already
//!    in progress".
//! 2. One transition at a time; a second request is answered at once with "update already
//!    in progress".
//! 3. A transition runs on this task, not on the caller's: a client that disconnects (its
//!    HTTP handler dropped) cannot cancel it. Only [`ApplyHandle::shutdown`] does — at a
//!    journaled point, so the next start finishes it.
//! 4. Edits (pin, defer) change only the preferences and are served while a transition
//!    runs; transitions change only the install record. Each is saved whole and
//!    atomically.
//!
//! Shutdown order: the running transition is dropped (its step is journaled), then the
//! managed program is stopped (supervise mode; in external mode it belongs to its service
//! manager), then the actor returns.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument as _, error, info};
use upswarm_proto::Hash32;
use upswarm_store::Db;

use super::cosmovisor::{CosmovisorView, UpgradeRelease, Watcher};
use super::error::ApplyError;
use super::record::{
    ApplyEvent, ApplyStore, ApplyView, Applying, Deferral, HistoryEntry, InstallRecord, Installed,
    Journal, Kind, Origin, Outcome, Preferences, Step, VersionRef,
};
use super::supervisor::{ProgramStatus, Supervisor};
use super::transition::{Finished, Procedure, RETRY_AFTER, next_id, unix_ms};
use super::versions;
use crate::daemon::config::{Managed, ManagedMode};
use crate::layout::Layout;

/// What to install, and from where.
#[derive(Debug, Clone)]
pub struct Target {
    pub to: VersionRef,
    /// Directory with the release's assembled artifacts (or, for a rollback, the
    /// installed version directory).
    pub source: PathBuf,
}

/// A transition to start.
#[derive(Debug, Clone)]
pub struct TransitionRequest {
    pub kind: Kind,
    pub origin: Origin,
    pub target: Target,
    /// A release to mark failed when it ends (a yanked one).
    pub mark_failed: Option<Hash32>,
    /// Why, for the history, when the transition itself does not say (a yank's reason).
    pub note: Option<String>,
}

enum Request {
    Transition {
        req: TransitionRequest,
        reply: Option<oneshot::Sender<Result<Outcome, ApplyError>>>,
    },
    Pin {
        version: Option<semver::Version>,
        reply: oneshot::Sender<Result<Installed, ApplyError>>,
    },
    Defer {
        release: Hash32,
        max: u32,
        period: Duration,
        reply: oneshot::Sender<Result<Deferral, ApplyError>>,
    },
    History(oneshot::Sender<Result<Vec<HistoryEntry>, ApplyError>>),
    /// The releases yanked by the control role (for retention: never a rollback target).
    Yanked(BTreeSet<Hash32>),
    Shutdown(oneshot::Sender<()>),
}

/// How the actor is set up.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    pub managed: Managed,
    /// The daemon's data directory.
    pub data_dir: PathBuf,
    /// `policy.skip_backup`.
    pub skip_backup: bool,
    /// This node's platform (for messages).
    pub platform: String,
    /// `retention.keep_backups`: data backups kept under `backups/`.
    pub keep_backups: usize,
}

/// Handle to the apply actor: cheap to clone.
#[derive(Debug, Clone)]
pub struct ApplyHandle {
    tx: mpsc::Sender<Request>,
    view: watch::Receiver<ApplyView>,
    program: watch::Receiver<ProgramStatus>,
    layout: Layout,
    /// Cosmovisor mode: the upgrade releases handed to the watcher, and what it shows.
    cosmovisor: Option<CosmovisorLink>,
}

#[derive(Debug, Clone)]
struct CosmovisorLink {
    releases: std::sync::Arc<watch::Sender<Vec<UpgradeRelease>>>,
    view: watch::Receiver<CosmovisorView>,
}

/// The actor. See the module docs.
pub struct ApplyActor {
    proc: Procedure,
    store: ApplyStore,
    /// `None` while a transition holds it.
    record: Option<InstallRecord>,
    prefs: Preferences,
    view: watch::Sender<ApplyView>,
    inbox: mpsc::Receiver<Request>,
    events: mpsc::Sender<ApplyEvent>,
    last_id: u64,
    /// Releases whose automatic apply was postponed (hook exit 2, disk space): not offered
    /// again before this instant (a manual apply may go at any time).
    postponed: std::collections::HashMap<Hash32, tokio::time::Instant>,
    /// Releases yanked by the control role, as the core last reported them.
    yanked: BTreeSet<Hash32>,
}

/// How long an automatically applied release that was postponed waits before the next try.
const POSTPONE_FOR: Duration = Duration::from_secs(60);

impl std::fmt::Debug for ApplyActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyActor")
            .field("view", &*self.view.borrow())
            .finish()
    }
}

struct Running {
    fut: Pin<Box<dyn Future<Output = Finished> + Send>>,
    reply: Option<oneshot::Sender<Result<Outcome, ApplyError>>>,
}

impl ApplyActor {
    /// Loads the state (an unreadable record is an error: the daemon does not start rather
    /// than forget what is installed) and starts the supervisor. Call [`ApplyActor::run`]
    /// on a task of its own.
    pub fn new(
        settings: ApplySettings,
        db: &Db,
    ) -> Result<(ApplyActor, ApplyHandle, mpsc::Receiver<ApplyEvent>), ApplyError> {
        let store = ApplyStore::open(db)?;
        let (record, prefs, _) = store.load()?;
        let layout = Layout::new(&settings.data_dir);
        let sup = Supervisor::spawn(settings.managed.clone(), layout.clone());
        let mut installed = Installed::default();
        installed.set_record(&record);
        installed.set_preferences(&prefs);
        let (view_tx, view_rx) = watch::channel(ApplyView {
            installed,
            applying: None,
            recovered: false,
        });
        let (tx, inbox) = mpsc::channel(16);
        let (events_tx, events_rx) = mpsc::channel(64);
        let cosmovisor = match &settings.managed.cosmovisor {
            Some(cv) if settings.managed.mode == ManagedMode::Cosmovisor => {
                let (rel_tx, rel_rx) = watch::channel(Vec::new());
                let (cv_tx, cv_rx) = watch::channel(CosmovisorView::default());
                let watcher = Watcher {
                    managed: settings.managed.clone(),
                    cv: cv.clone(),
                    sup: sup.clone(),
                    store: store.clone(),
                    releases: rel_rx,
                    view: cv_tx,
                    apply: view_rx.clone(),
                    events: events_tx.clone(),
                };
                tokio::spawn(watcher.run().instrument(tracing::info_span!("cosmovisor")));
                Some(CosmovisorLink {
                    releases: std::sync::Arc::new(rel_tx),
                    view: cv_rx,
                })
            }
            _ => None,
        };
        let handle = ApplyHandle {
            tx,
            view: view_rx,
            program: sup.watch(),
            layout: layout.clone(),
            cosmovisor,
        };
        let actor = ApplyActor {
            proc: Procedure {
                managed: settings.managed,
                layout,
                sup,
                store: store.clone(),
                view: view_tx.clone(),
                skip_backup: settings.skip_backup,
                platform: settings.platform,
                keep_backups: settings.keep_backups,
            },
            store,
            record: Some(record),
            prefs,
            view: view_tx,
            inbox,
            events: events_tx,
            last_id: 0,
            postponed: std::collections::HashMap::new(),
            yanked: BTreeSet::new(),
        };
        Ok((actor, handle, events_rx))
    }

    /// Runs until shut down (or until every handle is dropped).
    pub async fn run(mut self) {
        let mut running = Some(self.recovery(true));
        let mut retry: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                fin = poll(&mut running) => {
                    let reply = running.take().and_then(|r| r.reply);
                    retry = self.on_finished(fin, reply).await;
                }
                _ = sleep_until(retry) => {
                    retry = None;
                    running = Some(self.recovery(false));
                }
                req = self.inbox.recv() => match req {
                    None => break,
                    Some(Request::Shutdown(reply)) => {
                        if let Some(r) = running.take() {
                            info!("shutting down during an update: it resumes at the next start");
                            drop(r.fut);
                            if let Some(reply) = r.reply {
                                let _ = reply.send(Err(ApplyError::ShuttingDown));
                            }
                        }
                        // In external mode the program belongs to its service manager.
                        if self.proc.managed.mode != ManagedMode::External
                            && let Err(e) = self.proc.sup.stop().await
                        {
                            error!("stopping the managed program: {e}");
                        }
                        let _ = reply.send(());
                        break;
                    }
                    Some(Request::Transition { reply, .. })
                        if self.proc.managed.mode == ManagedMode::Cosmovisor =>
                    {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(ApplyError::Invalid(
                                "in cosmovisor mode a release is switched to when the chain \
                                 halts for the upgrade it names, never applied or rolled back \
                                 otherwise"
                                    .into(),
                            )));
                        }
                    }
                    Some(Request::Transition { req, reply }) => {
                        let now = tokio::time::Instant::now();
                        self.postponed.retain(|_, until| *until > now);
                        if req.origin == Origin::Auto
                            && self.postponed.contains_key(&req.target.to.release)
                        {
                            // Tried a moment ago and postponed: not yet.
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(ApplyError::Postponed(
                                    "postponed a moment ago; tried again later".into(),
                                )));
                            }
                        } else if running.is_some() || retry.is_some() {
                            if let Some(reply) = reply {
                                let what = if running.is_none() {
                                    "an update that could not finish is tried again shortly".into()
                                } else {
                                    self.busy_with()
                                };
                                let _ = reply.send(Err(ApplyError::Busy(what)));
                            }
                        } else {
                            running = Some(self.begin(req, reply).await);
                        }
                    }
                    Some(Request::Pin { version, reply }) => {
                        let _ = reply.send(self.pin(version));
                    }
                    Some(Request::Defer { release, max, period, reply }) => {
                        let _ = reply.send(self.defer(release, max, period));
                    }
                    Some(Request::History(reply)) => {
                        let _ = reply.send(self.store.history().map_err(ApplyError::from));
                    }
                    Some(Request::Yanked(set)) => {
                        if set != self.yanked {
                            self.yanked = set;
                            // While a transition runs, retention follows its end.
                            if running.is_none() && retry.is_none() {
                                self.retain();
                            }
                        }
                    }
                }
            }
        }
    }

    /// What the running transition is, for the busy answer.
    fn busy_with(&self) -> String {
        let v = self.view.borrow();
        match (&v.applying, v.recovered) {
            (Some(a), true) => format!("{} is being applied (step {})", a.to, a.step.name()),
            (Some(a), false) => format!(
                "finishing an update to {} interrupted by a restart (step {})",
                a.to,
                a.step.name()
            ),
            (None, false) => "recovering after a restart".into(),
            (None, true) => "a transition is ending".into(),
        }
    }

    fn recovery(&mut self, restarted: bool) -> Running {
        let record = self.record.take().unwrap_or_default();
        let journal = match self.store.journal() {
            Ok(j) => j,
            Err(e) => {
                error!("cannot read the apply journal: {e}");
                None
            }
        };
        if let Some(j) = &journal {
            self.last_id = self.last_id.max(j.id);
        }
        self.view.send_modify(|v| v.recovered = false);
        Running {
            fut: Box::pin(self.proc.clone().recover(journal, record, restarted)),
            reply: None,
        }
    }

    async fn begin(
        &mut self,
        req: TransitionRequest,
        reply: Option<oneshot::Sender<Result<Outcome, ApplyError>>>,
    ) -> Running {
        let rec = self.record.take().unwrap_or_default();
        let restore = match (req.kind, &rec.last_backup) {
            (Kind::Rollback, Some((v, path))) if *v == req.target.to.version => Some(path.clone()),
            _ => None,
        };
        self.last_id = next_id(self.last_id);
        let now = unix_ms();
        let j = Journal {
            id: self.last_id,
            kind: req.kind,
            origin: req.origin,
            from: rec.current.clone(),
            to: req.target.to.clone(),
            step: Step::Prechecks,
            source: req.target.source,
            backup: None,
            backup_ms: None,
            restore,
            started_at: now / 1000,
            started_at_ms: now,
            failure: None,
            mark_failed: req.mark_failed,
            note: req.note,
            hook_output: None,
            restarts: 0,
        };
        info!(kind = ?j.kind, origin = ?j.origin, to = %j.to.version, "update starting");
        self.view.send_modify(|v| {
            v.applying = Some(Applying {
                kind: j.kind,
                origin: j.origin,
                step: Step::Prechecks,
                to: j.to.version.clone(),
            });
        });
        let _ = self
            .events
            .send(ApplyEvent::Started {
                kind: j.kind,
                origin: j.origin,
                from: j.from.clone(),
                to: j.to.clone(),
            })
            .await;
        Running {
            fut: Box::pin(self.proc.clone().run(j, rec)),
            reply,
        }
    }

    /// Takes the record back, reports, and says when to retry an unfinished transition.
    async fn on_finished(
        &mut self,
        fin: Finished,
        reply: Option<oneshot::Sender<Result<Outcome, ApplyError>>>,
    ) -> Option<tokio::time::Instant> {
        let Finished {
            record,
            journal,
            result,
            unfinished,
        } = fin;
        let current = record.current.clone();
        self.record = Some(record);
        let retry = unfinished.then(|| tokio::time::Instant::now() + RETRY_AFTER);
        if let Some(j) = journal {
            let ended = match &result {
                Ok(o) => Some((*o, None)),
                Err(ApplyError::Refused(r)) => Some((Outcome::Refused, Some(r.clone()))),
                Err(ApplyError::Postponed(r)) => Some((Outcome::Postponed, Some(r.clone()))),
                Err(e) => {
                    error!(to = %j.to.version, "the update could not finish: {e}; retrying in {RETRY_AFTER:?}");
                    None
                }
            };
            if let Some((outcome, reason)) = ended {
                if outcome == Outcome::Postponed && j.origin == Origin::Auto {
                    self.postponed
                        .insert(j.to.release, tokio::time::Instant::now() + POSTPONE_FOR);
                }
                let _ = self
                    .events
                    .send(ApplyEvent::Finished {
                        kind: j.kind,
                        origin: j.origin,
                        from: j.from.clone(),
                        to: j.to.clone(),
                        outcome,
                        reason,
                        current,
                    })
                    .await;
            }
        }
        if retry.is_none() {
            self.retain();
        }
        self.view.send_modify(|v| {
            v.applying = None;
            v.recovered = retry.is_none();
        });
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
        retry
    }

    /// Applies the retention rule of `versions/` ([`versions::retention`]) between
    /// transitions: deletes what it removes and records the rollback targets that remain.
    fn retain(&mut self) {
        let Some(rec) = self.record.as_mut() else {
            return;
        };
        let dir = &self.proc.layout.versions;
        let bad: BTreeSet<Hash32> = rec.failed.union(&self.yanked).copied().collect();
        let on_disk = crate::daemon::state::outside_workers(|| versions::on_disk(dir));
        let plan = versions::retention(
            &on_disk,
            rec.current.as_ref().map(|c| &c.version),
            &rec.previous,
            &bad,
            self.proc.managed.keep_versions,
        );
        let removed = crate::daemon::state::outside_workers(|| versions::remove(dir, &plan.remove));
        if !removed.is_empty() {
            let removed: Vec<String> = removed.iter().map(ToString::to_string).collect();
            info!(removed = %removed.join(", "), "pruned old versions");
        }
        if plan.previous != rec.previous {
            rec.previous = plan.previous;
            if let Err(e) = self.store.save_record(rec) {
                error!("cannot record the versions kept: {e}");
            }
            let rec = rec.clone();
            self.view.send_modify(|v| v.installed.set_record(&rec));
        }
    }

    fn set_prefs(&mut self, p: Preferences) -> Result<Installed, ApplyError> {
        self.store.save_prefs(&p)?;
        self.view.send_modify(|v| v.installed.set_preferences(&p));
        self.prefs = p;
        Ok(self.view.borrow().installed.clone())
    }

    fn pin(&mut self, version: Option<semver::Version>) -> Result<Installed, ApplyError> {
        let mut p = self.prefs.clone();
        p.pinned = version;
        self.set_prefs(p)
    }

    fn defer(
        &mut self,
        release: Hash32,
        max: u32,
        period: Duration,
    ) -> Result<Deferral, ApplyError> {
        let mut p = self.prefs.clone();
        let d = p.deferrals.entry(release).or_default();
        if d.count >= max {
            return Err(ApplyError::Invalid(format!(
                "it was deferred {} times already; the limit is {max}",
                d.count
            )));
        }
        d.count += 1;
        d.until = upswarm_trust::unix_now().saturating_add(period.as_secs());
        let d = *d;
        self.set_prefs(p)?;
        Ok(d)
    }
}

async fn poll(running: &mut Option<Running>) -> Finished {
    match running {
        Some(r) => r.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl ApplyHandle {
    /// The actor's state now.
    pub fn view(&self) -> ApplyView {
        self.view.borrow().clone()
    }

    pub fn installed(&self) -> Installed {
        self.view.borrow().installed.clone()
    }

    pub fn program(&self) -> ProgramStatus {
        self.program.borrow().clone()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Cosmovisor mode: whether the core should hand over upgrade releases.
    pub fn cosmovisor_mode(&self) -> bool {
        self.cosmovisor.is_some()
    }

    /// Cosmovisor mode: what the watcher shows.
    pub fn cosmovisor(&self) -> Option<CosmovisorView> {
        self.cosmovisor.as_ref().map(|c| c.view.borrow().clone())
    }

    /// Cosmovisor mode: the downloaded releases that name an upgrade (staged ahead of time,
    /// switched to at the upgrade height).
    pub fn set_upgrades(&self, releases: Vec<UpgradeRelease>) {
        if let Some(c) = &self.cosmovisor {
            c.releases.send_if_modified(|r| {
                if *r == releases {
                    false
                } else {
                    *r = releases;
                    true
                }
            });
        }
    }

    /// Offers a transition without waiting (the core's automatic applies and yanks): false
    /// if the actor's inbox is full or closed. A busy actor drops it.
    pub fn offer(&self, req: TransitionRequest) -> bool {
        self.tx
            .try_send(Request::Transition { req, reply: None })
            .is_ok()
    }

    /// Runs a transition and waits for its end. Dropping this future does not cancel the
    /// transition.
    pub async fn transition(&self, req: TransitionRequest) -> Result<Outcome, ApplyError> {
        self.ask(|reply| Request::Transition {
            req,
            reply: Some(reply),
        })
        .await?
    }

    /// Pins the node to `version` (`None`: unpins).
    pub async fn pin(&self, version: Option<semver::Version>) -> Result<Installed, ApplyError> {
        self.ask(|reply| Request::Pin { version, reply }).await?
    }

    /// Defers `release` by `period`, at most `max` times.
    pub async fn defer(
        &self,
        release: Hash32,
        max: u32,
        period: Duration,
    ) -> Result<Deferral, ApplyError> {
        self.ask(|reply| Request::Defer {
            release,
            max,
            period,
            reply,
        })
        .await?
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, ApplyError> {
        self.ask(Request::History).await?
    }

    /// Reports the releases yanked by the control role (without waiting; a full inbox
    /// drops it and the next report carries it).
    pub fn set_yanked(&self, yanked: BTreeSet<Hash32>) -> bool {
        self.tx.try_send(Request::Yanked(yanked)).is_ok()
    }

    /// Stops the running transition at its journaled step, stops the managed program, and
    /// ends the actor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ApplyError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ApplyError::ShuttingDown)?;
        rx.await.map_err(|_| ApplyError::ShuttingDown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path) -> ApplySettings {
        let managed: Managed = toml::from_str(
            "command = \"/bin/sh\"\nargs = [\"-c\", \"sleep 600\"]\nshutdown_grace = \"2s\"\n\
             [health]\ninterval = \"10ms\"\nsuccesses = 2\n\
             [hooks]\npre_upgrade = [\"sh\", \"-c\", \"echo migrating; sleep 1\"]\n",
        )
        .unwrap();
        ApplySettings {
            managed,
            data_dir: dir.to_path_buf(),
            skip_backup: false,
            platform: "any".into(),
            keep_backups: 3,
        }
    }

    fn request(dir: &std::path::Path, v: &str) -> TransitionRequest {
        let source = dir.join(format!("release-{v}"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("payload"), v).unwrap();
        TransitionRequest {
            kind: Kind::Apply,
            origin: Origin::Manual,
            target: Target {
                to: VersionRef {
                    version: v.parse().unwrap(),
                    release: Hash32([v.len() as u8; 32]),
                },
                source,
            },
            mark_failed: None,
            note: None,
        }
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..3000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn one_transition_at_a_time_and_a_caller_that_goes_away_does_not_cancel_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("state.db")).unwrap();
        let (actor, handle, mut events) = ApplyActor::new(settings(dir.path()), &db).unwrap();
        tokio::spawn(actor.run());
        until(|| handle.view().recovered).await;

        // The first caller starts an apply, then goes away while the hook runs.
        let h = handle.clone();
        let req = request(dir.path(), "1.0.0");
        let caller = tokio::spawn(async move { h.transition(req).await });
        until(|| handle.view().applying.is_some()).await;
        let second = handle.transition(request(dir.path(), "1.0.0")).await;
        assert!(
            matches!(&second, Err(ApplyError::Busy(m)) if m.contains("1.0.0")),
            "{second:?}"
        );
        assert!(
            second
                .unwrap_err()
                .to_string()
                .contains("update already in progress")
        );
        caller.abort();
        // An edit is served meanwhile.
        let pinned = handle.pin(Some("1.0.0".parse().unwrap())).await.unwrap();
        assert_eq!(pinned.pinned, Some("1.0.0".parse().unwrap()));

        loop {
            match events.recv().await.unwrap() {
                ApplyEvent::Finished { outcome, .. } => {
                    assert_eq!(outcome, Outcome::Applied);
                    break;
                }
                ApplyEvent::Started { origin, .. } => assert_eq!(origin, Origin::Manual),
            }
        }
        let v = handle.view();
        assert!(v.idle());
        assert_eq!(v.installed.current.unwrap().version.to_string(), "1.0.0");
        assert_eq!(v.installed.pinned, Some("1.0.0".parse().unwrap()));
        assert!(handle.program().running);
        let h = handle.history().await.unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].outcome, Outcome::Applied);
        assert!(h[0].hook_output.as_deref().unwrap().contains("migrating"));

        // Shutdown stops the program.
        let pid = handle.program().pid.unwrap() as i32;
        handle.shutdown().await;
        assert!(!crate::procs::alive(pid));
    }
}
