//! The node's core: owns what the node knows about releases and decides what to do with
//! every manifest it hears of (gossip, DHT, local publish).

mod apply;
mod decide;
mod errors;
mod fleet;
mod gates;
mod gc;
mod judge;
mod publish;
mod status;
mod votes;
mod webhooks;

pub use errors::{
    ExplainError, FleetQueryError, ImportError, PublishError, ResolveError, SignedError, VoteError,
};
pub use judge::Rejected;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};
use upswarm_content::{ChunkStore, PartialFile, load_index, peek_index};
use upswarm_net::{Event, MessageAcceptance, Record, Topic};
use upswarm_proto::fetch::Bitmap;
use upswarm_proto::{Hash32, Manifest, Message, SignedEnvelope};
use upswarm_trust::{RootChain, TimeCheck, VerifiedManifest, unix_now, verify_manifest_signatures};

use super::apply::policy::{self, Hold};
use super::apply::{
    ApplyEvent, ApplyHandle, Kind, Origin, Outcome, Target, TransitionRequest, VersionRef,
};
use super::ctx::Ctx;
use super::fetcher::{self, release_dir, wanted_artifacts};
use super::metrics::{DownloadProgress, Metrics};
use super::rollout::RolloutBook;
use super::state::{DownloadState, Source, StoredRelease};
use super::voting::{ALL_PROPOSALS, ActivationView, VotingBook};
pub use crate::api::{
    CheckItem, ExplainView, ManagedView, ReachabilityView, ReleaseView, StatusView,
};
use crate::layout::{latest_key, provider_key};
use std::collections::BTreeSet;
use upswarm_proto::fetch::{Answer, FetchRequest, SignedKind, Want};
use upswarm_proto::{HealthReport, HealthStatus};

/// How often downloads blocked by this node's disk are tried again.
const BLOCKED_RETRY: Duration = Duration::from_secs(15);

/// Messages to the core, from the API and from tasks the core started.
#[derive(Debug)]
pub enum CoreMsg {
    /// Stop: abort the downloads in flight (what they fetched stays on disk; the next start
    /// resumes them), flush the state, answer, and end the core's task.
    Shutdown(oneshot::Sender<()>),
    Status(oneshot::Sender<StatusView>),
    /// Candidates for installation and what holds each back.
    Check(oneshot::Sender<Vec<CheckItem>>),
    /// Resolves `upswarm apply VERSION` (or, with `rollback`, `upswarm rollback [VERSION]`)
    /// into a target, after the compatibility checks.
    Resolve {
        version: Option<semver::Version>,
        force: bool,
        rollback: bool,
        reply: oneshot::Sender<Result<Target, ResolveError>>,
    },
    /// Signed messages pulled from a peer.
    Resynced {
        kind: SignedKind,
        envelopes: Vec<Vec<u8>>,
    },
    /// `upswarm explain`.
    Explain {
        version: Option<semver::Version>,
        reply: oneshot::Sender<Result<ExplainView, ExplainError>>,
    },
    /// The dashboard: `upswarm explain` of each followed release, newest first (at most
    /// the given number).
    Rollouts {
        most: usize,
        reply: oneshot::Sender<Vec<ExplainView>>,
    },
    /// `GET /v1/activations`.
    Activations(oneshot::Sender<Vec<ActivationView>>),
    /// `upswarm vote PROPOSAL [--withhold | --allow]`.
    Vote {
        proposal: Hash32,
        withhold: Option<bool>,
        reply: oneshot::Sender<Result<ActivationView, VoteError>>,
    },
    /// A newer trust root handed over by an operator: verify as a rotation, store, gossip.
    Root {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<u64, SignedError>>,
    },
    /// A signed protocol proposal handed over by a signer: validate, store, gossip.
    Proposal {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<String, SignedError>>,
    },
    /// `upswarm control …` through this node: validate, store, gossip.
    Control {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), SignedError>>,
    },
    Publish {
        dir: PathBuf,
        reply: oneshot::Sender<Result<ReleaseView, PublishError>>,
    },
    Imported {
        id: Hash32,
        result: Result<(), ImportError>,
        reply: oneshot::Sender<Result<ReleaseView, PublishError>>,
    },
    DownloadDone {
        id: Hash32,
        result: Result<(), fetcher::DownloadFailure>,
    },
    DhtRecords(Vec<Record>),
    /// A stored chunk or chunk index was found damaged (and removed) while serving it.
    Damaged {
        blob: Hash32,
    },
    /// `GET /v1/fleet`: the fleet inventory.
    Fleet {
        query: crate::api::FleetQuery,
        reply: oneshot::Sender<Result<crate::api::FleetView, FleetQueryError>>,
    },
    /// `GET /readyz` (and `/healthz`: that the core answers at all).
    Ready(oneshot::Sender<crate::api::ReadyView>),
    /// `upswarm gc [--dry-run]`.
    Gc {
        dry_run: bool,
        reply: oneshot::Sender<crate::daemon::gc::GcReport>,
    },
}

/// The verdict on a manifest heard of, once the actor has acted on it.
#[derive(Debug)]
enum Verdict {
    Accept(Hash32),
    Duplicate(Hash32),
    /// Valid, but not news: another release of the same version is known. Dropped without
    /// penalty (see `admission`, rule 3).
    Superseded(String),
    Reject(Rejected),
}

struct Known {
    verified: VerifiedManifest,
    stored: StoredRelease,
}

/// The core actor. See the module docs.
pub struct Core {
    ctx: Arc<Ctx>,
    chain: RootChain,
    releases: HashMap<Hash32, Known>,
    /// Newest release per (product, channel).
    latest: HashMap<(String, String), (semver::Version, Hash32)>,
    downloads: HashMap<Hash32, (Arc<DownloadProgress>, JoinHandle<()>)>,
    inbox: mpsc::Receiver<CoreMsg>,
    to_self: mpsc::Sender<CoreMsg>,
    events: mpsc::Receiver<Event>,
    /// The apply actor (with a `[managed]` section), and what it reports.
    apply: Option<ApplyHandle>,
    apply_events: Option<mpsc::Receiver<ApplyEvent>>,
    book: RolloutBook,
    voting: VotingBook,
    voter_key: Option<upswarm_trust::SecretKey>,
    withheld: BTreeSet<Hash32>,
    activations: Vec<ActivationView>,
    alarms: Vec<String>,
    /// The trust-root expiry alarm, when due (see `watch_root`).
    root_alarm: Option<String>,
    /// The root version and kind (expired or not) of the last root alarm announced.
    root_alarm_announced: Option<(u64, bool)>,
    /// Releases whose network-wide halt has been announced (webhook sent once).
    halted_seen: BTreeSet<Hash32>,
    /// The yanked releases last reported to the apply actor.
    yanks_reported: BTreeSet<Hash32>,
    /// Running downloads announced as blocked (`download_blocked` webhook sent).
    blocked_announced: BTreeSet<Hash32>,
    /// Yanked releases this node runs with nothing to roll back to (said once each).
    yank_stuck_said: BTreeSet<Hash32>,
    /// The fleet's coverage over time (see `crate::api::CoverageSample`).
    coverage_history: std::collections::VecDeque<crate::api::CoverageSample>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("releases", &self.releases.len())
            .finish()
    }
}

impl Core {
    pub fn new(
        ctx: Arc<Ctx>,
        chain: RootChain,
        inbox: mpsc::Receiver<CoreMsg>,
        to_self: mpsc::Sender<CoreMsg>,
        events: mpsc::Receiver<Event>,
        apply: Option<ApplyHandle>,
        apply_events: Option<mpsc::Receiver<ApplyEvent>>,
    ) -> Self {
        Core {
            apply,
            apply_events,
            book: RolloutBook::default(),
            voting: VotingBook::default(),
            voter_key: None,
            withheld: BTreeSet::new(),
            activations: Vec::new(),
            alarms: Vec::new(),
            root_alarm: None,
            root_alarm_announced: None,
            halted_seen: BTreeSet::new(),
            yanks_reported: BTreeSet::new(),
            blocked_announced: BTreeSet::new(),
            yank_stuck_said: BTreeSet::new(),
            coverage_history: Default::default(),
            ctx,
            chain,
            releases: HashMap::new(),
            latest: HashMap::new(),
            downloads: HashMap::new(),
            inbox,
            to_self,
            events,
        }
    }

    /// The core's one clock (unix seconds): every decision is handed the time from here,
    /// none reads a clock of its own (see `decide` and `judge`).
    fn now(&self) -> u64 {
        unix_now()
    }

    fn time(&self) -> TimeCheck {
        TimeCheck {
            now: self.now(),
            skew: self.ctx.config.clock_skew.as_secs(),
        }
    }

    /// Reloads releases known before a restart; resumes unfinished downloads.
    pub async fn load(&mut self) {
        let stored: Vec<(Vec<u8>, StoredRelease)> = self
            .ctx
            .state
            .releases
            .iter()
            .filter_map(Result::ok)
            .collect();
        for (key, s) in stored {
            let Ok(id) = Hash32::from_slice(&key) else {
                continue;
            };
            let verified = SignedEnvelope::decode::<Manifest>(&s.envelope)
                .map_err(|e| e.to_string())
                .and_then(|env| {
                    verify_manifest_signatures(self.chain.current().root(), &env)
                        .map_err(|e| e.to_string())
                });
            match verified {
                Ok(v) => {
                    self.note_latest(&v);
                    self.releases.insert(
                        id,
                        Known {
                            verified: v,
                            stored: s,
                        },
                    );
                }
                Err(e) => {
                    warn!(release = %id, "stored release no longer verifies, dropping it: {e}")
                }
            }
        }
        let ids: Vec<Hash32> = self.releases.keys().copied().collect();
        for id in ids {
            match self.releases[&id].stored.download.clone() {
                DownloadState::Complete { .. } => self.seed(id).await,
                DownloadState::Downloading | DownloadState::Blocked { .. } => {
                    self.start_download(id)
                }
                _ => {}
            }
        }
        info!(releases = self.releases.len(), "state loaded");
    }

    /// Runs until the inbox closes.
    pub async fn run(mut self) {
        self.load_signed();
        self.watch_root();
        // Periods are validated at load; the floor keeps `interval` from ever panicking.
        let period = |d: Duration| d.max(Duration::from_millis(100));
        let mut apply_tick = tokio::time::interval(Duration::from_secs(2));
        let mut blocked_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BLOCKED_RETRY, BLOCKED_RETRY);
        let mut resync_tick =
            tokio::time::interval(period(self.ctx.config.rollout.resync_interval));
        let mut dht = tokio::time::interval(period(self.ctx.config.network_options.dht_refresh));
        let gc_every = period(self.ctx.config.retention.interval);
        let mut gc_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + gc_every, gc_every);
        let mut coverage_tick =
            tokio::time::interval(Duration::from_secs(crate::api::COVERAGE_SAMPLE_SECS));
        // The first DHT look-up once the node has had a moment to connect.
        dht.reset_after(Duration::from_secs(1));
        let mut stopped = None;
        loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(CoreMsg::Shutdown(reply)) => {
                        stopped = Some(reply);
                        break;
                    }
                    Some(m) => self.on_msg(m).await,
                    None => break,
                },
                Some(ev) = self.events.recv() => self.on_event(ev).await,
                Some(ev) = next_apply_event(&mut self.apply_events) => self.on_apply_event(ev),
                _ = dht.tick() => self.query_dht(),
                _ = apply_tick.tick() => {
                    self.lift_bans();
                    self.obey_yank();
                    self.report_yanks();
                    self.maybe_apply();
                    self.voting_tick();
                    self.watch_halts();
                    self.watch_root();
                }
                _ = resync_tick.tick() => self.resync(),
                _ = blocked_tick.tick() => self.retry_blocked(),
                _ = coverage_tick.tick() => self.sample_coverage(),
                _ = gc_tick.tick() => {
                    let r = self.gc(false).await;
                    if let Some(why) = r.skipped {
                        debug!("garbage collection skipped: {why}");
                    }
                }
            }
        }
        for (id, (progress, task)) in self.downloads.drain() {
            task.abort();
            let held = progress.view().chunks_held;
            info!(release = %id, chunks_held = held, "download stopped by shutdown; it resumes at the next start");
        }
        if let Err(e) = self.ctx.state.flush_durably() {
            warn!("flushing the state at shutdown: {e}");
        }
        info!("core stopped");
        if let Some(reply) = stopped {
            let _ = reply.send(());
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Gossip {
                topic,
                message_id,
                source,
                data,
            } => {
                let acceptance = match topic {
                    Topic::Releases => match self.consider(&data, Source::Gossip) {
                        Verdict::Accept(_) => MessageAcceptance::Accept,
                        Verdict::Duplicate(_) | Verdict::Superseded(_) => MessageAcceptance::Ignore,
                        Verdict::Reject(why) => {
                            info!(peer = %source, "rejected gossiped manifest: {why}");
                            MessageAcceptance::Reject
                        }
                    },
                    Topic::Health => self.acceptance(SignedKind::Health, &data),
                    Topic::Control => self.acceptance(SignedKind::Control, &data),
                    Topic::Votes => self.acceptance(SignedKind::Vote, &data),
                    Topic::Proposals => self.acceptance(SignedKind::Proposal, &data),
                    Topic::Roots => self.acceptance(SignedKind::Root, &data),
                };
                if acceptance == MessageAcceptance::Reject {
                    info!(peer = %source, ?topic, "rejected a gossiped message");
                }
                let m = &self.ctx.metrics;
                Metrics::inc(match acceptance {
                    MessageAcceptance::Accept => &m.gossip_accepted,
                    MessageAcceptance::Reject => &m.gossip_rejected,
                    MessageAcceptance::Ignore => &m.gossip_ignored,
                });
                let _ = self
                    .ctx
                    .client
                    .report_validation(message_id, source, acceptance)
                    .await;
            }
            Event::InboundPutRecord { source, record } => {
                if self.valid_record(&record) {
                    Metrics::inc(&self.ctx.metrics.dht_records_accepted);
                    let _ = self.ctx.client.store_record(record).await;
                } else {
                    info!(peer = %source, "refused a DHT record");
                    Metrics::inc(&self.ctx.metrics.dht_records_rejected);
                }
            }
            Event::InboundAddProvider { record } => {
                let prefix = crate::layout::provider_prefix(&self.ctx.config.network);
                if record.key.as_ref().starts_with(prefix.as_bytes()) {
                    let _ = self.ctx.client.store_provider(record).await;
                }
            }
            Event::Listening(addr) => {
                let full = format!("{addr}/p2p/{}", self.ctx.client.local_peer_id());
                let path = &self.ctx.layout.listen_addrs;
                let written = super::state::outside_workers(|| {
                    let mut text = std::fs::read_to_string(path).unwrap_or_default();
                    text.push_str(&full);
                    text.push('\n');
                    crate::files::write_atomic(path, text.as_bytes())
                });
                if let Err(e) = written {
                    warn!("cannot record listen address: {e:#}");
                }
            }
            Event::HolePunch { direct, .. } => {
                let m = &self.ctx.metrics;
                Metrics::inc(if direct {
                    &m.hole_punch_succeeded
                } else {
                    &m.hole_punch_failed
                });
            }
            Event::PeerConnected(_) | Event::PeerDisconnected(_) => {}
        }
    }

    /// A DHT record is valid when it sits under the right key for the manifest it holds,
    /// and the manifest is one we accept now, or the one we already know as the latest of
    /// its product and channel. A replay of an older signed manifest is refused, so that a
    /// record never replaces a newer one (wire-format.md §10).
    fn valid_record(&mut self, record: &Record) -> bool {
        let Ok(env) = SignedEnvelope::decode::<Manifest>(&record.value) else {
            return false;
        };
        let Ok(m) = env.open::<Manifest>() else {
            return false;
        };
        let net = &self.ctx.config.network;
        let key_ok = record.key == latest_key(net, &m.channel, None)
            || record.key == latest_key(net, &m.channel, Some(&m.name));
        if !key_ok {
            return false;
        }
        let slot = (m.name.clone(), m.channel.clone());
        match self.consider(&record.value, Source::Dht) {
            Verdict::Accept(_) => true,
            Verdict::Duplicate(id) => self.latest.get(&slot).is_some_and(|(_, l)| *l == id),
            Verdict::Reject(_) | Verdict::Superseded(_) => false,
        }
    }

    fn query_dht(&self) {
        let net = self.ctx.config.network.clone();
        let mut keys = Vec::new();
        for ch in &self.ctx.config.channels {
            if self.ctx.config.products.is_empty() {
                keys.push(latest_key(&net, ch, None));
            }
            for p in &self.ctx.config.products {
                keys.push(latest_key(&net, ch, Some(p)));
            }
        }
        let client = self.ctx.client.clone();
        let to_self = self.to_self.clone();
        tokio::spawn(async move {
            let mut all = Vec::new();
            for k in keys {
                if let Ok(Ok(records)) =
                    tokio::time::timeout(Duration::from_secs(20), client.get_records(k)).await
                {
                    all.extend(records);
                }
            }
            if !all.is_empty() {
                let _ = to_self.send(CoreMsg::DhtRecords(all)).await;
            }
        });
    }

    /// Decides on a manifest (see [`judge::judge_manifest`]) and admits it when new.
    fn consider(&mut self, bytes: &[u8], source: Source) -> Verdict {
        let time = self.time();
        let releases = &self.releases;
        match judge::judge_manifest(
            &self.chain,
            |id| releases.contains_key(id),
            releases.values().map(|k| &k.verified.manifest),
            bytes,
            time,
        ) {
            judge::ManifestVerdict::Accept(v) => Verdict::Accept(self.admit(*v, source)),
            judge::ManifestVerdict::Duplicate(id) => Verdict::Duplicate(id),
            judge::ManifestVerdict::Superseded(why) => Verdict::Superseded(why),
            judge::ManifestVerdict::Reject(e) => Verdict::Reject(e),
        }
    }

    /// Stores a release judged new, starts its download when followed.
    fn admit(&mut self, verified: VerifiedManifest, source: Source) -> Hash32 {
        let id = verified.release_id;
        let m = &verified.manifest;
        info!(release = %id, name = %m.name, version = %m.version, channel = %m.channel, ?source, "new release");
        let followed = self.follows(m);
        let stored = StoredRelease {
            envelope: verified.envelope.encode(),
            first_seen: self.now(),
            source,
            download: if followed {
                DownloadState::Downloading
            } else {
                DownloadState::NotFollowed
            },
        };
        self.persist(&id, &stored);
        self.note_latest(&verified);
        self.releases.insert(id, Known { verified, stored });
        if followed && source != Source::Publish {
            self.start_download(id);
        }
        if followed {
            let m = &self.releases[&id].verified.manifest;
            let details = serde_json::json!({ "release": id.to_hex(), "name": m.name, "version": m.version.to_string(), "update_type": m.update_type.to_string() });
            self.webhook("update_available", details);
        }
        id
    }

    /// Gossips `bytes` on `topic` in the background; a failure is only logged (`what` names
    /// the message), since peers also pull what gossip missed.
    fn gossip(&self, topic: Topic, bytes: Vec<u8>, what: &'static str) {
        let client = self.ctx.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(topic, bytes).await {
                debug!("gossip publish of {what}: {e} (peers will pull it)");
            }
        });
    }

    /// Releases of the followed products and channels, newest first.
    fn followed_newest_first(&self) -> Vec<(&Hash32, &Known)> {
        let mut v: Vec<(&Hash32, &Known)> = self
            .releases
            .iter()
            .filter(|(_, k)| self.follows(&k.verified.manifest))
            .collect();
        v.sort_by(|a, b| {
            b.1.verified
                .manifest
                .version
                .cmp_precedence(&a.1.verified.manifest.version)
        });
        v
    }

    fn follows(&self, m: &Manifest) -> bool {
        let c = &self.ctx.config;
        c.channels.contains(&m.channel)
            && (c.products.is_empty() || c.products.contains(&m.name))
            && !wanted_artifacts(m, &c.platform).is_empty()
    }

    fn note_latest(&mut self, v: &VerifiedManifest) {
        let m = &v.manifest;
        let entry = self
            .latest
            .entry((m.name.clone(), m.channel.clone()))
            .or_insert((m.version.clone(), v.release_id));
        if m.version.cmp_precedence(&entry.0).is_gt() {
            *entry = (m.version.clone(), v.release_id);
        }
    }

    fn persist(&self, id: &Hash32, stored: &StoredRelease) {
        if let Err(e) = self.ctx.state.releases.put(id.as_bytes(), stored) {
            warn!(release = %id, "cannot persist release state: {e}");
        }
        let _ = self.ctx.state.flush_durably();
    }

    fn start_download(&mut self, id: Hash32) {
        // One task per release at a time; a finished one (its progress still shown) is
        // replaced.
        if self
            .downloads
            .get(&id)
            .is_some_and(|(_, task)| !task.is_finished())
        {
            return;
        }
        let Some(known) = self.releases.get(&id) else {
            return;
        };
        let progress = Arc::new(DownloadProgress::default());
        let ctx = self.ctx.clone();
        let manifest = known.verified.manifest.clone();
        let to_self = self.to_self.clone();
        let p = progress.clone();
        let span = tracing::info_span!("download", release = %id);
        let task = tokio::spawn(
            async move {
                let result = fetcher::download(ctx, manifest, id, p)
                    .await
                    .map_err(fetcher::DownloadFailure::from);
                let _ = to_self.send(CoreMsg::DownloadDone { id, result }).await;
            }
            .instrument(span),
        );
        self.downloads.insert(id, (progress, task));
    }

    /// Marks a release complete and announces this node as one of its providers.
    async fn seed(&mut self, id: Hash32) {
        let Some(known) = self.releases.get(&id) else {
            return;
        };
        // Its artifacts' chunks are served from their files (after a restart: registered
        // again; chunk files left by an earlier version of upswarm holding the same bytes
        // are removed once the file's copy verifies).
        let dir = self.ctx.layout.release(&id);
        let (store, manifest) = (self.ctx.store.clone(), known.verified.manifest.clone());
        let held = tokio::task::spawn_blocking(move || {
            for a in &manifest.artifacts {
                let file = dir.join(&a.name);
                if file.is_file()
                    && let Ok(index) = load_index(&store, a)
                {
                    store.adopt(&file, &index);
                }
            }
            // The artifact and each encoded form of it held whole (a publisher holds all;
            // a node that fetched a form holds that one).
            let mut held = Vec::new();
            for a in &manifest.artifacts {
                let files = std::iter::once(a.clone()).chain(
                    a.forms()
                        .iter()
                        .map(|f| upswarm_content::forms::form_file(a, f)),
                );
                for file in files {
                    if let Ok(index) = load_index(&store, &file)
                        && index.iter().all(|h| store.contains(&h))
                    {
                        held.push((file.chunk_index, index.len()));
                    }
                }
            }
            held
        })
        .await
        .unwrap_or_default();
        for (chunk_index, chunks) in held {
            self.ctx.haves.register(chunk_index, Bitmap::full(chunks));
        }
        let key = provider_key(&self.ctx.config.network, &id);
        let client = self.ctx.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.start_providing(key).await {
                debug!("cannot announce as provider: {e}");
            }
        });
    }

    async fn on_msg(&mut self, msg: CoreMsg) {
        // What changes the data directory's size measures it again at the next status call
        // or scrape (see `gc::DiskCache`; garbage collection does the same).
        if matches!(msg, CoreMsg::DownloadDone { .. } | CoreMsg::Imported { .. }) {
            self.ctx.disk.invalidate();
        }
        match msg {
            // Handled by `run`, which ends the loop.
            CoreMsg::Shutdown(reply) => {
                let _ = reply.send(());
            }
            CoreMsg::Status(reply) => {
                let _ = reply.send(self.status().await);
            }
            CoreMsg::Publish { dir, reply } => self.publish(dir, reply),
            CoreMsg::Imported { id, result, reply } => {
                let outcome = match result {
                    Ok(()) => {
                        self.set_download(id, DownloadState::Complete { at: self.now() });
                        self.seed(id).await;
                        self.announce(id).await;
                        self.view(&id).ok_or(PublishError::Vanished)
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        self.set_download(id, DownloadState::Failed { reason });
                        Err(PublishError::Import(e))
                    }
                };
                let _ = reply.send(outcome);
            }
            CoreMsg::DownloadDone { id, result } => match result {
                Ok(()) => {
                    info!(release = %id, "release downloaded and verified; seeding");
                    Metrics::inc(&self.ctx.metrics.releases_completed);
                    self.set_download(id, DownloadState::Complete { at: self.now() });
                    self.seed(id).await;
                    self.maybe_apply();
                }
                Err(fetcher::DownloadFailure {
                    reason,
                    local: true,
                }) => {
                    let since = match self.releases.get(&id).map(|k| &k.stored.download) {
                        Some(DownloadState::Blocked { since, .. }) => *since,
                        _ => {
                            warn!(release = %id, "download blocked by this node's disk: {reason}; retried every {}s", BLOCKED_RETRY.as_secs());
                            Metrics::inc(&self.ctx.metrics.downloads_blocked);
                            self.webhook_blocked(id, &reason);
                            self.now()
                        }
                    };
                    self.set_download(id, DownloadState::Blocked { reason, since });
                }
                Err(fetcher::DownloadFailure {
                    reason,
                    local: false,
                }) => {
                    warn!(release = %id, "download failed: {reason}");
                    self.set_download(id, DownloadState::Failed { reason });
                }
            },
            CoreMsg::Check(reply) => {
                let _ = reply.send(self.check());
            }
            CoreMsg::Resolve {
                version,
                force,
                rollback,
                reply,
            } => {
                let _ = reply.send(if rollback {
                    self.resolve_rollback(version)
                } else {
                    self.resolve_apply(version, force)
                });
            }
            CoreMsg::Resynced { kind, envelopes } => {
                for e in envelopes {
                    let _ = self.acceptance(kind, &e);
                }
            }
            CoreMsg::Explain { version, reply } => {
                let _ = reply.send(self.explain(version));
            }
            CoreMsg::Rollouts { most, reply } => {
                let _ = reply.send(self.rollouts(most));
            }
            CoreMsg::Root { bytes, reply } => {
                let r = match self.on_signed(SignedKind::Root, &bytes) {
                    Err(e) => Err(e.into()),
                    Ok(MessageAcceptance::Accept) => {
                        self.gossip(Topic::Roots, bytes, "the trust root");
                        Ok(self.chain.current().version())
                    }
                    Ok(_) => Err(SignedError::NotNewer {
                        current: self.chain.current().version(),
                    }),
                };
                let _ = reply.send(r);
            }
            CoreMsg::Activations(reply) => {
                self.voting_tick();
                let _ = reply.send(self.activations.clone());
            }
            CoreMsg::Vote {
                proposal,
                withhold,
                reply,
            } => {
                let _ = reply.send(self.set_vote(proposal, withhold));
            }
            CoreMsg::Proposal { bytes, reply } => {
                let r = match self.on_signed(SignedKind::Proposal, &bytes) {
                    Err(e) => Err(SignedError::from(e)),
                    Ok(_) => Ok(Hash32::of(
                        &SignedEnvelope::decode::<upswarm_proto::Proposal>(&bytes)
                            .map(|e| e.payload)
                            .unwrap_or_default(),
                    )
                    .to_hex()),
                };
                if r.is_ok() {
                    self.gossip(Topic::Proposals, bytes, "the proposal");
                    self.voting_tick();
                }
                let _ = reply.send(r);
            }
            CoreMsg::Control { bytes, reply } => {
                let r = self
                    .on_signed(SignedKind::Control, &bytes)
                    .map(|_| ())
                    .map_err(SignedError::from);
                if r.is_ok() {
                    self.gossip(Topic::Control, bytes, "the control message");
                }
                let _ = reply.send(r);
            }
            CoreMsg::Damaged { blob } => self.repair(blob),
            CoreMsg::Fleet { query, reply } => {
                let _ = reply.send(self.fleet(&query));
            }
            CoreMsg::Ready(reply) => {
                let _ = reply.send(self.ready().await);
            }
            CoreMsg::Gc { dry_run, reply } => {
                let _ = reply.send(self.gc(dry_run).await);
            }
            CoreMsg::DhtRecords(records) => {
                for r in records {
                    if let Verdict::Reject(why) = self.consider(&r.value, Source::Dht) {
                        debug!("ignoring DHT record: {why}");
                    }
                }
            }
        }
    }

    /// Unblocks peers whose ban is over.
    fn lift_bans(&self) {
        let ended = self.ctx.peers.expire(self.now());
        if ended.is_empty() {
            return;
        }
        let client = self.ctx.client.clone();
        tokio::spawn(async move {
            for peer in ended {
                info!(%peer, "ban ended");
                let _ = client.unblock(peer).await;
            }
        });
    }

    /// Gets a damaged blob back: every complete release that uses it stops announcing it
    /// and downloads again, which copies what still verifies in the artifact's file into a
    /// new partial file and takes the rest from peers.
    fn repair(&mut self, blob: Hash32) {
        let platform = self.ctx.config.platform.clone();
        // Reading chunk indexes is file work: outside the runtime's workers.
        let mut affected = super::state::outside_workers(|| {
            let mut affected = Vec::new();
            for (id, k) in &self.releases {
                if !matches!(k.stored.download, DownloadState::Complete { .. }) {
                    continue;
                }
                for a in wanted_artifacts(&k.verified.manifest, &platform) {
                    if a.chunk_index == blob {
                        self.ctx.haves.forget(&a.chunk_index);
                        affected.push(*id);
                    } else if let Ok(index) = load_index(&self.ctx.store, a) {
                        let mut hit = false;
                        for (i, h) in index.iter().enumerate() {
                            if h == blob {
                                self.ctx.haves.clear(&a.chunk_index, i);
                                hit = true;
                            }
                        }
                        if hit {
                            affected.push(*id);
                        }
                    }
                }
            }
            affected
        });
        affected.dedup();
        for id in affected {
            info!(release = %id, %blob, "repairing a damaged blob of a complete release");
            self.set_download(id, DownloadState::Downloading);
            self.start_download(id);
        }
    }

    /// Starts again the downloads blocked by this node's disk (they stop at once if space
    /// is still short), and announces (once per episode) a running download that cannot
    /// store its chunks.
    fn retry_blocked(&mut self) {
        let blocked: Vec<Hash32> = self
            .releases
            .iter()
            .filter(|(_, k)| matches!(k.stored.download, DownloadState::Blocked { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in blocked {
            debug!(release = %id, "trying a blocked download again");
            self.start_download(id);
        }
        let stuck: Vec<(Hash32, String)> = self
            .downloads
            .iter()
            .filter(|(_, (_, task))| !task.is_finished())
            .filter_map(|(id, (p, _))| p.view().blocked.map(|why| (*id, why)))
            .collect();
        let now_stuck: BTreeSet<Hash32> = stuck.iter().map(|(id, _)| *id).collect();
        for (id, why) in stuck {
            if !self.blocked_announced.contains(&id) {
                self.webhook_blocked(id, &why);
            }
        }
        self.blocked_announced = now_stuck;
    }

    fn webhook_blocked(&self, id: Hash32, reason: &str) {
        if let Some(k) = self.releases.get(&id) {
            let m = &k.verified.manifest;
            let details = serde_json::json!({ "release": id.to_hex(), "name": m.name, "version": m.version.to_string(), "reason": reason });
            self.webhook("download_blocked", details);
        }
    }

    fn set_download(&mut self, id: Hash32, state: DownloadState) {
        if let Some(k) = self.releases.get_mut(&id) {
            k.stored.download = state;
            let stored = k.stored.clone();
            self.persist(&id, &stored);
        }
    }

    /// Gossips a release we hold, stores it as the channel's latest DHT record, provides it.
    async fn announce(&self, id: Hash32) {
        let Some(known) = self.releases.get(&id) else {
            return;
        };
        let bytes = known.stored.envelope.clone();
        let m = &known.verified.manifest;
        let net = &self.ctx.config.network;
        let client = self.ctx.client.clone();
        let keys = [
            latest_key(net, &m.channel, None),
            latest_key(net, &m.channel, Some(&m.name)),
        ];
        tokio::spawn(async move {
            if let Err(e) = client.publish(Topic::Releases, bytes.clone()).await {
                warn!("gossip publish: {e} (the DHT record still announces the release)");
            }
            for key in keys {
                if let Err(e) = client.put_record(Record::new(key, bytes.clone())).await {
                    warn!("DHT put: {e}");
                }
            }
        });
    }
}

/// The next event of the apply actor (never, without one).
async fn next_apply_event(rx: &mut Option<mpsc::Receiver<ApplyEvent>>) -> Option<ApplyEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
