//! The node's core: owns what the node knows about releases and decides what to do with
//! every manifest it hears of (gossip, DHT, local publish).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};
use upswarm_content::{ChunkStore, assemble, load_index};
use upswarm_net::{Event, MessageAcceptance, Record, RecordKey, Topic};
use upswarm_proto::fetch::Bitmap;
use upswarm_proto::{Hash32, Manifest, Message, SignedEnvelope};
use upswarm_trust::{
    RootChain, TimeCheck, VerifiedManifest, unix_now, verify_manifest, verify_manifest_signatures,
};

use super::Ctx;
use super::apply::policy::{self, Candidate, Hold, Installed as PolicyInstalled};
use super::apply::supervisor::ProgramStatus;
use super::apply::updater::{Kind, Outcome, Target, Updater, VersionRef};
use super::fetcher::{self, provider_key, release_dir, wanted_artifacts};
use super::metrics::{Counters, DownloadProgress, Metrics, ProgressView};
use super::rollout::{RolloutBook, RolloutView, verify_control, verify_health};
use super::state::{DownloadState, Source, StoredRelease};
use super::voting::{ALL_PROPOSALS, ActivationView, VotingBook};
use std::collections::BTreeSet;
use upswarm_proto::fetch::{Answer, FetchRequest, SignedKind, Want};
use upswarm_proto::{HealthReport, HealthStatus};
use upswarm_rollout::Decision;

/// Messages to the core, from the API and from tasks the core started.
#[derive(Debug)]
pub enum CoreMsg {
    Status(oneshot::Sender<StatusView>),
    /// Candidates for installation and what holds each back.
    Check(oneshot::Sender<Vec<CheckItem>>),
    /// Resolves `upswarm apply VERSION` (or, with `rollback`, `upswarm rollback [VERSION]`)
    /// into a target, after the compatibility checks.
    Resolve {
        version: Option<semver::Version>,
        force: bool,
        rollback: bool,
        reply: oneshot::Sender<Result<Target, String>>,
    },
    /// A transition finished: report it.
    Applied {
        target: Option<VersionRef>,
        outcome: Result<Outcome, String>,
    },
    /// A transition started (manual ones come through the API): report it.
    Installing {
        target: VersionRef,
    },
    /// Signed messages pulled from a peer.
    Resynced {
        kind: SignedKind,
        envelopes: Vec<Vec<u8>>,
    },
    /// `upswarm explain`.
    Explain {
        version: Option<semver::Version>,
        reply: oneshot::Sender<Result<ExplainView, String>>,
    },
    /// `GET /v1/activations`.
    Activations(oneshot::Sender<Vec<ActivationView>>),
    /// `upswarm vote PROPOSAL [--withhold | --allow]`.
    Vote {
        proposal: Hash32,
        withhold: Option<bool>,
        reply: oneshot::Sender<Result<ActivationView, String>>,
    },
    /// A newer trust root handed over by an operator: verify as a rotation, store, gossip.
    Root {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// A signed protocol proposal handed over by a signer: validate, store, gossip.
    Proposal {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `upswarm control …` through this node: validate, store, gossip.
    Control {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Publish {
        dir: PathBuf,
        reply: oneshot::Sender<Result<ReleaseView, String>>,
    },
    Imported {
        id: Hash32,
        result: Result<(), String>,
        reply: oneshot::Sender<Result<ReleaseView, String>>,
    },
    DownloadDone {
        id: Hash32,
        result: Result<(), String>,
    },
    DhtRecords(Vec<Record>),
}

/// What `GET /v1/status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub node_id: String,
    pub peer_id: String,
    pub network: String,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    pub root_version: u64,
    pub releases: Vec<ReleaseView>,
    pub managed: Option<ManagedView>,
    /// Conditions an operator must act on, e.g. "upgrade required".
    pub alarms: Vec<String>,
    pub counters: Counters,
}

/// One release as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub channel: String,
    pub update_type: String,
    pub source: Source,
    pub first_seen: u64,
    pub download: DownloadState,
    pub progress: Option<ProgressView>,
}

/// One candidate of `upswarm check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckItem {
    pub id: String,
    pub name: String,
    pub version: String,
    pub update_type: String,
    pub security_critical: bool,
    /// `None`: it would be applied now.
    pub hold: Option<Hold>,
    /// Human-readable reason.
    pub why: String,
}

/// What the status shows about the managed program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedView {
    pub current: Option<String>,
    pub previous: Vec<String>,
    pub pinned: Option<String>,
    pub failed: Vec<String>,
    pub program: ProgramStatus,
    /// Apply step in progress and the version being applied.
    pub applying: Option<(String, String)>,
}

/// The verdict on a manifest heard of.
#[derive(Debug)]
enum Verdict {
    Accept(Hash32),
    Duplicate(Hash32),
    Reject(String),
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
    updater: Option<Updater>,
    book: RolloutBook,
    /// Why the last signed message was rejected (for API callers).
    last_rejection: Option<String>,
    voting: VotingBook,
    voter_key: Option<upswarm_trust::SecretKey>,
    withheld: BTreeSet<Hash32>,
    activations: Vec<ActivationView>,
    alarms: Vec<String>,
    /// Releases whose network-wide halt has been announced (webhook sent once).
    halted_seen: std::sync::Mutex<BTreeSet<Hash32>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("releases", &self.releases.len())
            .finish()
    }
}

/// DHT key of the latest release of a channel, optionally of one product.
pub fn latest_key(network: &str, channel: &str, product: Option<&str>) -> RecordKey {
    match product {
        Some(p) => RecordKey::new(&format!("/upswarm/{network}/latest/{channel}/{p}")),
        None => RecordKey::new(&format!("/upswarm/{network}/latest/{channel}")),
    }
}

impl Core {
    pub fn new(
        ctx: Arc<Ctx>,
        chain: RootChain,
        inbox: mpsc::Receiver<CoreMsg>,
        to_self: mpsc::Sender<CoreMsg>,
        events: mpsc::Receiver<Event>,
        updater: Option<Updater>,
    ) -> Self {
        Core {
            updater,
            book: RolloutBook::default(),
            last_rejection: None,
            voting: VotingBook::default(),
            voter_key: None,
            withheld: BTreeSet::new(),
            activations: Vec::new(),
            alarms: Vec::new(),
            halted_seen: std::sync::Mutex::new(BTreeSet::new()),
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

    fn time(&self) -> TimeCheck {
        TimeCheck {
            now: unix_now(),
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
                DownloadState::Downloading => self.start_download(id),
                _ => {}
            }
        }
        info!(releases = self.releases.len(), "state loaded");
    }

    /// Runs until the inbox closes.
    pub async fn run(mut self) {
        if let Some(u) = self.updater.clone() {
            // Finish or undo an apply a killed daemon left behind, or start the program.
            let to_self = self.to_self.clone();
            tokio::spawn(async move {
                u.recover().await;
                let _ = to_self
                    .send(CoreMsg::Applied {
                        target: None,
                        outcome: Ok(Outcome::Postponed),
                    })
                    .await;
            });
        }
        self.load_signed();
        let mut apply_tick = tokio::time::interval(Duration::from_secs(2));
        let mut resync_tick = tokio::time::interval(self.ctx.config.rollout.resync_interval);
        let mut dht = tokio::time::interval(self.ctx.config.network_options.dht_refresh);
        // The first DHT look-up once the node has had a moment to connect.
        dht.reset_after(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(m) => self.on_msg(m).await,
                    None => break,
                },
                Some(ev) = self.events.recv() => self.on_event(ev).await,
                _ = dht.tick() => self.query_dht(),
                _ = apply_tick.tick() => {
                    self.obey_yank();
                    self.maybe_apply();
                    self.voting_tick();
                    self.watch_halts();
                }
                _ = resync_tick.tick() => self.resync(),
            }
        }
        for (_, (_, task)) in self.downloads.drain() {
            task.abort();
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
                        Verdict::Duplicate(_) => MessageAcceptance::Ignore,
                        Verdict::Reject(why) => {
                            info!(peer = %source, "rejected gossiped manifest: {why}");
                            MessageAcceptance::Reject
                        }
                    },
                    Topic::Health => self.on_signed(SignedKind::Health, &data),
                    Topic::Control => self.on_signed(SignedKind::Control, &data),
                    Topic::Votes => self.on_signed(SignedKind::Vote, &data),
                    Topic::Proposals => self.on_signed(SignedKind::Proposal, &data),
                    Topic::Roots => self.on_signed(SignedKind::Root, &data),
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
                let prefix = format!("/upswarm/{}/release/", self.ctx.config.network);
                if record.key.as_ref().starts_with(prefix.as_bytes()) {
                    let _ = self.ctx.client.store_provider(record).await;
                }
            }
            Event::Listening(addr) => {
                let full = format!("{addr}/p2p/{}", self.ctx.client.local_peer_id());
                let path = self.ctx.data_dir.join("listen.addrs");
                let mut text = std::fs::read_to_string(&path).unwrap_or_default();
                text.push_str(&full);
                text.push('\n');
                if let Err(e) = crate::files::write_atomic(&path, text.as_bytes()) {
                    warn!("cannot record listen address: {e:#}");
                }
            }
            Event::PeerConnected(_) | Event::PeerDisconnected(_) => {}
        }
    }

    /// A DHT record is valid when it holds a manifest we accept (or already have) and sits
    /// under the right key for it.
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
        key_ok
            && !matches!(
                self.consider(&record.value, Source::Dht),
                Verdict::Reject(_)
            )
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

    /// Decides on a manifest: verify against the current root, drop duplicates, refuse
    /// anything not newer than what we know for its product and channel.
    fn consider(&mut self, bytes: &[u8], source: Source) -> Verdict {
        let env = match SignedEnvelope::decode::<Manifest>(bytes) {
            Ok(e) => e,
            Err(e) => return Verdict::Reject(e.to_string()),
        };
        let id = env.payload_hash();
        if self.releases.contains_key(&id) {
            return Verdict::Duplicate(id);
        }
        let verified = match verify_manifest(self.chain.current().root(), &env, self.time()) {
            Ok(v) => v,
            Err(e) => return Verdict::Reject(e.to_string()),
        };
        self.admit(verified, source)
    }

    fn admit(&mut self, verified: VerifiedManifest, source: Source) -> Verdict {
        let id = verified.release_id;
        let m = &verified.manifest;
        if let Some((v, known)) = self.latest.get(&(m.name.clone(), m.channel.clone()))
            && *v >= m.version
            && !m.rollback
        {
            return Verdict::Reject(format!(
                "stale: {} {} is not newer than {v} ({}) already known on channel {}",
                m.name, m.version, known, m.channel
            ));
        }
        info!(release = %id, name = %m.name, version = %m.version, channel = %m.channel, ?source, "new release");
        let followed = self.follows(m);
        let stored = StoredRelease {
            envelope: verified.envelope.encode(),
            first_seen: unix_now(),
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
        Verdict::Accept(id)
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
        if m.version > entry.0 {
            *entry = (m.version.clone(), v.release_id);
        }
    }

    fn persist(&self, id: &Hash32, stored: &StoredRelease) {
        if let Err(e) = self.ctx.state.releases.put(id.as_bytes(), stored) {
            warn!(release = %id, "cannot persist release state: {e}");
        }
        let _ = self.ctx.state.db.flush();
    }

    fn start_download(&mut self, id: Hash32) {
        if self.downloads.contains_key(&id) {
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
                    .map_err(|e| e.to_string());
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
        for a in &known.verified.manifest.artifacts {
            if let Ok(index) = load_index(&self.ctx.store, a)
                && index.iter().all(|h| self.ctx.store.contains(&h))
            {
                self.ctx
                    .haves
                    .register(a.chunk_index, Bitmap::full(index.len()));
            }
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
        match msg {
            CoreMsg::Status(reply) => {
                let _ = reply.send(self.status().await);
            }
            CoreMsg::Publish { dir, reply } => self.publish(dir, reply),
            CoreMsg::Imported { id, result, reply } => {
                let outcome = match result {
                    Ok(()) => {
                        self.set_download(id, DownloadState::Complete { at: unix_now() });
                        self.seed(id).await;
                        self.announce(id).await;
                        self.view(&id).ok_or_else(|| "release vanished".to_string())
                    }
                    Err(e) => {
                        self.set_download(id, DownloadState::Failed { reason: e.clone() });
                        Err(e)
                    }
                };
                let _ = reply.send(outcome);
            }
            CoreMsg::DownloadDone { id, result } => match result {
                Ok(()) => {
                    info!(release = %id, "release downloaded and verified; seeding");
                    Metrics::inc(&self.ctx.metrics.releases_completed);
                    self.set_download(id, DownloadState::Complete { at: unix_now() });
                    self.seed(id).await;
                    self.maybe_apply();
                }
                Err(reason) => {
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
            CoreMsg::Applied { target, outcome } => self.on_applied(target, outcome),
            CoreMsg::Installing { target } => {
                self.send_report(
                    target.release,
                    HealthStatus::Installed,
                    &target.version,
                    "installing",
                );
            }
            CoreMsg::Resynced { kind, envelopes } => {
                for e in envelopes {
                    let _ = self.on_signed(kind, &e);
                }
            }
            CoreMsg::Explain { version, reply } => {
                let _ = reply.send(self.explain(version));
            }
            CoreMsg::Root { bytes, reply } => {
                let r = match self.on_signed(SignedKind::Root, &bytes) {
                    MessageAcceptance::Reject => Err(self
                        .last_rejection
                        .take()
                        .unwrap_or_else(|| "invalid".into())),
                    MessageAcceptance::Ignore => Err(format!(
                        "not newer than the current trust root (version {}); nothing to do",
                        self.chain.current().version()
                    )),
                    MessageAcceptance::Accept => {
                        let client = self.ctx.client.clone();
                        tokio::spawn(async move {
                            if let Err(e) = client.publish(Topic::Roots, bytes).await {
                                warn!("gossip publish of the trust root: {e} (peers will pull it)");
                            }
                        });
                        Ok(self.chain.current().version())
                    }
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
                    MessageAcceptance::Reject => Err(self
                        .last_rejection
                        .take()
                        .unwrap_or_else(|| "invalid".into())),
                    _ => Ok(Hash32::of(
                        &SignedEnvelope::decode::<upswarm_proto::Proposal>(&bytes)
                            .map(|e| e.payload)
                            .unwrap_or_default(),
                    )
                    .to_hex()),
                };
                if r.is_ok() {
                    let client = self.ctx.client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.publish(Topic::Proposals, bytes).await {
                            warn!("gossip publish of the proposal: {e} (peers will pull it)");
                        }
                    });
                    self.voting_tick();
                }
                let _ = reply.send(r);
            }
            CoreMsg::Control { bytes, reply } => {
                let r = if self.ctx.config.fault_injection.publish_unverified {
                    Ok(()) // a misbehaving node (tests only): gossip it without looking
                } else {
                    match self.on_signed(SignedKind::Control, &bytes) {
                        MessageAcceptance::Reject => Err(self
                            .last_rejection
                            .take()
                            .unwrap_or_else(|| "invalid".into())),
                        _ => Ok(()),
                    }
                };
                if r.is_ok() {
                    let client = self.ctx.client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.publish(Topic::Control, bytes).await {
                            warn!("gossip publish of the control message: {e}");
                        }
                    });
                }
                let _ = reply.send(r);
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

    fn publish(&mut self, dir: PathBuf, reply: oneshot::Sender<Result<ReleaseView, String>>) {
        let manifest_path = dir.join(crate::cli::release::MANIFEST_FILE);
        let bytes =
            match crate::files::read_limited(&manifest_path, Manifest::WHAT, Manifest::MAX_BYTES) {
                Ok(b) => b,
                Err(e) => {
                    let _ = reply.send(Err(format!("{e:#}")));
                    return;
                }
            };
        if self.ctx.config.fault_injection.publish_unverified {
            // A misbehaving node (tests only): gossip it without looking.
            let client = self.ctx.client.clone();
            tokio::spawn(async move {
                let r = client.publish(Topic::Releases, bytes).await;
                let _ = reply.send(Err(match r {
                    Ok(_) => "gossiped without verification (fault injection)".to_string(),
                    Err(e) => e.to_string(),
                }));
            });
            return;
        }
        let id = match self.consider(&bytes, Source::Publish) {
            Verdict::Accept(id) => id,
            Verdict::Duplicate(id) => id,
            Verdict::Reject(why) => {
                let _ = reply.send(Err(format!("{}: refused: {why}", manifest_path.display())));
                return;
            }
        };
        let Some(known) = self.releases.get(&id) else {
            return;
        };
        let manifest = known.verified.manifest.clone();
        let ctx = self.ctx.clone();
        let to_self = self.to_self.clone();
        let wanted: Vec<String> = wanted_artifacts(&manifest, &ctx.config.platform)
            .iter()
            .map(|a| a.name.clone())
            .collect();
        tokio::spawn(async move {
            let dest = release_dir(&ctx, &id);
            let store = ctx.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                import(&store, &dir, &manifest, &wanted, &dest)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            let _ = to_self.send(CoreMsg::Imported { id, result, reply }).await;
        });
    }

    fn view(&self, id: &Hash32) -> Option<ReleaseView> {
        let k = self.releases.get(id)?;
        let m = &k.verified.manifest;
        Some(ReleaseView {
            id: id.to_hex(),
            name: m.name.clone(),
            version: m.version.to_string(),
            channel: m.channel.clone(),
            update_type: m.update_type.to_string(),
            source: k.stored.source,
            first_seen: k.stored.first_seen,
            download: k.stored.download.clone(),
            progress: self.downloads.get(id).map(|(p, _)| p.view()),
        })
    }

    async fn status(&self) -> StatusView {
        let info = self.ctx.client.info().await.ok();
        let mut releases: Vec<ReleaseView> = self
            .releases
            .keys()
            .filter_map(|id| self.view(id))
            .collect();
        releases.sort_by(|a, b| {
            (&a.name, &a.channel, &b.first_seen).cmp(&(&b.name, &b.channel, &a.first_seen))
        });
        StatusView {
            node_id: self.ctx.node_key.key_id().to_hex(),
            peer_id: self.ctx.client.local_peer_id().to_base58(),
            network: self.ctx.config.network.clone(),
            listen: info
                .as_ref()
                .map(|i| i.listeners.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            peers: info
                .map(|i| i.connected.iter().map(|p| p.to_base58()).collect())
                .unwrap_or_default(),
            root_version: self.chain.current().version(),
            releases,
            managed: self.updater.as_ref().map(|u| {
                let i = u.installed();
                ManagedView {
                    current: i.current.as_ref().map(|v| v.version.to_string()),
                    previous: i.previous.iter().map(|v| v.version.to_string()).collect(),
                    pinned: i.pinned.as_ref().map(ToString::to_string),
                    failed: i.failed.iter().map(Hash32::to_hex).collect(),
                    program: u.program(),
                    applying: u.in_progress().map(|(s, v)| (s.name().to_string(), v)),
                }
            }),
            alarms: self.alarms.clone(),
            counters: self.ctx.metrics.snapshot(),
        }
    }
}

impl Core {
    /// Complete releases of the managed product, newest first.
    fn installable(&self) -> Vec<(&Hash32, &Known)> {
        let mut v: Vec<(&Hash32, &Known)> = self
            .releases
            .iter()
            .filter(|(_, k)| matches!(k.stored.download, DownloadState::Complete { .. }))
            .filter(|(_, k)| self.follows(&k.verified.manifest))
            .collect();
        v.sort_by(|a, b| {
            b.1.verified
                .manifest
                .version
                .cmp(&a.1.verified.manifest.version)
        });
        v
    }

    fn candidate(
        &self,
        id: &Hash32,
        k: &Known,
        installed: &super::apply::updater::Installed,
    ) -> Candidate {
        let m = &k.verified.manifest;
        Candidate {
            version: m.version.clone(),
            update_type: m.update_type,
            security_critical: m.security_critical,
            rollback: m.rollback,
            min_version: m.min_version.clone(),
            first_seen: k.stored.first_seen,
            already_failed: installed.failed.contains(id),
            deferred_until: installed.deferrals.get(id).map(|d| d.until),
        }
    }

    fn policy_installed(installed: &super::apply::updater::Installed) -> PolicyInstalled {
        PolicyInstalled {
            current: installed.current.as_ref().map(|v| v.version.clone()),
            pinned: installed.pinned.clone(),
        }
    }

    fn check(&self) -> Vec<CheckItem> {
        let Some(u) = &self.updater else {
            return Vec::new();
        };
        let installed = u.installed();
        let pi = Self::policy_installed(&installed);
        let now = chrono::Utc::now();
        self.installable()
            .into_iter()
            .map(|(id, k)| {
                let hold = self.hold(id, k, &installed, &pi, now);
                let m = &k.verified.manifest;
                CheckItem {
                    id: id.to_hex(),
                    name: m.name.clone(),
                    version: m.version.to_string(),
                    update_type: m.update_type.to_string(),
                    security_critical: m.security_critical,
                    why: hold
                        .as_ref()
                        .map_or_else(|| "will be applied now".to_string(), ToString::to_string),
                    hold,
                }
            })
            .collect()
    }

    /// Starts the newest release the policy lets this node apply now, if any.
    fn maybe_apply(&mut self) {
        let Some(u) = self.updater.clone() else {
            return;
        };
        if u.in_progress().is_some() {
            return;
        }
        let installed = u.installed();
        let pi = Self::policy_installed(&installed);
        let now = chrono::Utc::now();
        let pick = self.installable().into_iter().find_map(|(id, k)| {
            self.hold(id, k, &installed, &pi, now)
                .is_none()
                .then(|| (*id, k.verified.manifest.version.clone()))
        });
        let Some((id, version)) = pick else { return };
        let Ok(guard) = u.try_begin() else { return };
        let target = Target {
            to: VersionRef {
                version,
                release: id,
            },
            source: release_dir(&self.ctx, &id),
        };
        let to_self = self.to_self.clone();
        self.send_report(
            target.to.release,
            HealthStatus::Installed,
            &target.to.version,
            "installing",
        );
        tokio::spawn(async move {
            let to = target.to.clone();
            let outcome = u.transition(&guard, Kind::Apply, target).await;
            drop(guard);
            let _ = to_self
                .send(CoreMsg::Applied {
                    target: Some(to),
                    outcome,
                })
                .await;
        });
    }

    fn resolve_apply(
        &self,
        version: Option<semver::Version>,
        force: bool,
    ) -> Result<Target, String> {
        let u = self
            .updater
            .as_ref()
            .ok_or("this daemon manages no program (no [managed] section)")?;
        let installed = u.installed();
        let list = self.installable();
        let (id, k) = match &version {
            Some(v) => list
                .into_iter()
                .find(|(_, k)| &k.verified.manifest.version == v)
                .ok_or_else(|| {
                    format!(
                        "no downloaded release {v} of the managed product; see `upswarm releases`"
                    )
                })?,
            None => list
                .into_iter()
                .next()
                .ok_or("no downloaded release to apply")?,
        };
        let c = self.candidate(id, k, &installed);
        policy::compatible(&c, &Self::policy_installed(&installed), force)
            .map_err(|h| format!("{h}; use --force to override"))?;
        if c.already_failed && !force {
            return Err(format!(
                "{} failed on this node before; use --force to try again",
                c.version
            ));
        }
        Ok(Target {
            to: VersionRef {
                version: c.version,
                release: *id,
            },
            source: release_dir(&self.ctx, id),
        })
    }

    fn resolve_rollback(&self, version: Option<semver::Version>) -> Result<Target, String> {
        let u = self
            .updater
            .as_ref()
            .ok_or("this daemon manages no program (no [managed] section)")?;
        let installed = u.installed();
        let to = match version {
            None => installed
                .previous
                .first()
                .cloned()
                .ok_or("no earlier version to roll back to")?,
            Some(v) => installed
                .previous
                .iter()
                .find(|p| p.version == v)
                .cloned()
                .ok_or_else(|| {
                    format!("{v} is not one of the earlier versions kept on this node")
                })?,
        };
        let dir = super::apply::versions::dir(&u.layout().versions, &to.version);
        if !dir.is_dir() {
            return Err(format!(
                "{}: version {} is no longer kept on this node",
                dir.display(),
                to.version
            ));
        }
        Ok(Target { to, source: dir })
    }
}

/// What `upswarm explain` returns for one release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainView {
    pub release: String,
    pub name: String,
    pub version: String,
    pub node_id: String,
    pub rollout: RolloutView,
    /// The local policy's verdict (`None`: it allows the install now).
    pub policy: Option<String>,
    pub download: DownloadState,
    pub known_nodes: usize,
}

impl Core {
    /// The first thing that keeps release `id` from being applied now: the local policy,
    /// else the phased rollout.
    fn hold(
        &self,
        id: &Hash32,
        k: &Known,
        installed: &super::apply::updater::Installed,
        pi: &PolicyInstalled,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Hold> {
        let c = self.candidate(id, k, installed);
        if let Err(h) = policy::may_auto_apply(&self.ctx.config.policy, &c, pi, now) {
            return Some(h);
        }
        let (_, d) = self.book.decide(
            id,
            &k.verified.manifest,
            &self.ctx.node_key.key_id(),
            self.ctx.config.rollout.spread,
            unix_now(),
            self.ctx.config.clock_skew.as_secs(),
        );
        (d != Decision::Install).then(|| Hold::Rollout {
            decision: d.to_string(),
        })
    }

    /// Validates a signed health report or control message (from gossip, a peer's resync
    /// answer or the API), stores it and adds it to the rollout book.
    fn on_signed(&mut self, kind: SignedKind, bytes: &[u8]) -> MessageAcceptance {
        let skew = self.ctx.config.clock_skew.as_secs();
        let verdict = match kind {
            SignedKind::Health => match verify_health(bytes, unix_now(), skew) {
                Err(e) => Err(e),
                Ok((_, r)) if !self.releases.contains_key(&r.release) => {
                    // About a release we do not know (yet): cannot judge it, do not spread it.
                    let _ = r;
                    Ok(None)
                }
                Ok((_, r)) => {
                    self.book.add_health(&r);
                    Ok(Some(r.release))
                }
            },
            SignedKind::Control => match verify_control(self.chain.current().root(), bytes) {
                Err(e) => Err(e),
                Ok((_, m)) => {
                    info!(release = %m.release, action = m.action.name(), "control message accepted");
                    self.book.add_control(&m);
                    Ok(Some(m.release))
                }
            },
            SignedKind::Root => match SignedEnvelope::decode::<upswarm_proto::TrustRoot>(bytes) {
                Err(e) => Err(e.to_string()),
                Ok(env) => match env.open::<upswarm_proto::TrustRoot>() {
                    Err(e) => Err(e.to_string()),
                    Ok(r) if r.version <= self.chain.current().version() => Ok(None),
                    Ok(_) => match self.chain.advance(&env) {
                        Ok(v) => {
                            info!(version = v.version(), "trust root rotated");
                            Ok(Some(ALL_PROPOSALS))
                        }
                        Err(e) => Err(e.to_string()),
                    },
                },
            },
            SignedKind::Proposal => {
                let root = self.chain.current().root().clone();
                match SignedEnvelope::decode::<upswarm_proto::Proposal>(bytes) {
                    Err(e) => Err(e.to_string()),
                    Ok(env) => self
                        .voting
                        .add_proposal(&root, &env)
                        .map(|_| Some(ALL_PROPOSALS)),
                }
            }
            SignedKind::Vote => {
                let root = self.chain.current().root().clone();
                match SignedEnvelope::decode::<upswarm_proto::Vote>(bytes) {
                    Err(e) => Err(e.to_string()),
                    Ok(env) => match self.voting.add_vote(&root, &env) {
                        Err(e) => Err(e),
                        Ok((proposal, true)) => Ok(Some(proposal)),
                        Ok((proposal, false)) => {
                            // Keep it for when the proposal arrives, but do not spread it yet.
                            self.ctx.signed.insert(SignedKind::Vote, proposal, bytes);
                            Ok(None)
                        }
                    },
                }
            }
        };
        match verdict {
            Ok(Some(about)) => {
                if self.ctx.signed.insert(kind, about, bytes) {
                    MessageAcceptance::Accept
                } else {
                    MessageAcceptance::Ignore
                }
            }
            Ok(None) => MessageAcceptance::Ignore,
            Err(e) => {
                debug!(?kind, "rejected a signed message: {e}");
                self.last_rejection = Some(e);
                MessageAcceptance::Reject
            }
        }
    }

    /// Signs, stores and gossips this node's health report about `release`.
    fn send_report(
        &mut self,
        release: Hash32,
        status: HealthStatus,
        running: &semver::Version,
        detail: &str,
    ) {
        let report = HealthReport {
            v: upswarm_proto::health::HEALTH_VERSION,
            node: self.ctx.node_key.public(),
            release,
            status,
            running: running.clone(),
            at: unix_now(),
            detail: detail.chars().take(200).collect(),
        };
        let mut env = SignedEnvelope::wrap(&report);
        self.ctx
            .node_key
            .sign_envelope(upswarm_proto::Context::Health, &mut env);
        let bytes = env.encode();
        self.book.add_health(&report);
        self.ctx.signed.insert(SignedKind::Health, release, &bytes);
        info!(release = %release, status = status.as_str(), "health report");
        let client = self.ctx.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(Topic::Health, bytes).await {
                debug!("gossip publish of a health report: {e} (peers will pull it)");
            }
        });
    }

    fn on_applied(&mut self, target: Option<VersionRef>, outcome: Result<Outcome, String>) {
        let Some(t) = target else { return };
        let details =
            serde_json::json!({ "release": t.release.to_hex(), "version": t.version.to_string() });
        match &outcome {
            Ok(Outcome::Applied) => self.webhook("applied", details),
            Ok(Outcome::RolledBack) => self.webhook("rolled_back", details),
            Ok(Outcome::Refused) => self.webhook("failed", details),
            _ => {}
        }
        match outcome {
            Ok(Outcome::Applied) => {
                self.send_report(t.release, HealthStatus::Healthy, &t.version, "healthy")
            }
            Ok(Outcome::RolledBack) => {
                let running = self
                    .updater
                    .as_ref()
                    .and_then(|u| u.installed().current.map(|c| c.version))
                    .unwrap_or_else(|| t.version.clone());
                self.send_report(
                    t.release,
                    HealthStatus::RolledBack,
                    &running,
                    "failed and rolled back",
                );
            }
            Ok(other) => debug!(version = %t.version, ?other, "apply ended without a change"),
            Err(e) => info!(version = %t.version, "apply ended without a change: {e}"),
        }
    }

    /// Pulls health reports and control messages of recent releases from a few peers.
    fn resync(&self) {
        let mut recent: Vec<(&Hash32, &Known)> = self.releases.iter().collect();
        recent.sort_by_key(|(_, k)| std::cmp::Reverse(k.stored.first_seen));
        let mut subjects: Vec<(SignedKind, Hash32)> = Vec::new();
        for (id, _) in recent.into_iter().take(8) {
            subjects.push((SignedKind::Health, *id));
            subjects.push((SignedKind::Control, *id));
        }
        subjects.push((SignedKind::Proposal, ALL_PROPOSALS));
        subjects.push((SignedKind::Root, ALL_PROPOSALS));
        for p in self.voting.proposal_ids() {
            subjects.push((SignedKind::Vote, p));
        }
        let client = self.ctx.client.clone();
        let to_self = self.to_self.clone();
        tokio::spawn(async move {
            let Ok(info) = client.info().await else {
                return;
            };
            let mut peers = info.connected;
            peers.sort_by_key(|_| rand::random::<u32>());
            for peer in peers.into_iter().take(3) {
                for (kind, about) in &subjects {
                    let req = FetchRequest::new(Want::Signed {
                        kind: *kind,
                        about: *about,
                    });
                    if let Ok(resp) = client.request(peer, req).await
                        && let Answer::Signed { envelopes } = resp.answer
                    {
                        let envelopes = envelopes
                            .into_iter()
                            .map(serde_bytes::ByteBuf::into_vec)
                            .collect();
                        let _ = to_self
                            .send(CoreMsg::Resynced {
                                kind: *kind,
                                envelopes,
                            })
                            .await;
                    }
                }
            }
        });
    }

    /// Rebuilds the rollout book from stored signed messages (after a restart).
    fn load_signed(&mut self) {
        for (kind, _, bytes) in self.ctx.signed.all() {
            let _ = self.on_signed(kind, &bytes);
        }
        self.book.know(self.ctx.node_key.key_id());
    }

    /// A yanked release that this node runs is rolled back to the previous version.
    fn obey_yank(&mut self) {
        let Some(u) = self.updater.clone() else {
            return;
        };
        let installed = u.installed();
        let Some(current) = installed.current.clone() else {
            return;
        };
        if !self.book.yanked(&current.release) || u.in_progress().is_some() {
            return;
        }
        let Ok(target) = self.resolve_rollback(None) else {
            warn!(version = %current.version, "this version was yanked, but there is no earlier version to roll back to");
            return;
        };
        let Ok(guard) = u.try_begin() else { return };
        warn!(version = %current.version, to = %target.to.version, "release yanked by the control role; rolling back");
        let to_self = self.to_self.clone();
        let yanked = current.clone();
        tokio::spawn(async move {
            let _ = u
                .edit_locked(&guard, |i| {
                    i.failed.insert(yanked.release);
                })
                .await;
            let outcome = u.transition(&guard, Kind::Rollback, target).await;
            drop(guard);
            let outcome = outcome.map(|o| {
                if o == Outcome::Applied {
                    Outcome::RolledBack
                } else {
                    o
                }
            });
            let _ = to_self
                .send(CoreMsg::Applied {
                    target: Some(yanked),
                    outcome,
                })
                .await;
        });
    }

    fn explain(&self, version: Option<semver::Version>) -> Result<ExplainView, String> {
        let mut list: Vec<(&Hash32, &Known)> = self
            .releases
            .iter()
            .filter(|(_, k)| self.follows(&k.verified.manifest))
            .collect();
        list.sort_by(|a, b| {
            b.1.verified
                .manifest
                .version
                .cmp(&a.1.verified.manifest.version)
        });
        let (id, k) = match &version {
            Some(v) => list
                .into_iter()
                .find(|(_, k)| &k.verified.manifest.version == v)
                .ok_or_else(|| format!("no known release {v} followed by this node"))?,
            None => list.into_iter().next().ok_or("no release known yet")?,
        };
        let m = &k.verified.manifest;
        let me = self.ctx.node_key.key_id();
        let policy = self.updater.as_ref().and_then(|u| {
            let installed = u.installed();
            let c = self.candidate(id, k, &installed);
            policy::may_auto_apply(
                &self.ctx.config.policy,
                &c,
                &Self::policy_installed(&installed),
                chrono::Utc::now(),
            )
            .err()
            .map(|h| h.to_string())
        });
        Ok(ExplainView {
            release: id.to_hex(),
            name: m.name.clone(),
            version: m.version.to_string(),
            node_id: me.to_hex(),
            rollout: self.book.view(
                id,
                m,
                &me,
                self.ctx.config.rollout.spread,
                unix_now(),
                self.ctx.config.clock_skew.as_secs(),
            ),
            policy,
            download: k.stored.download.clone(),
            known_nodes: self.book.known_nodes(),
        })
    }
}

impl Core {
    /// Loads the voter key and the operator's withheld votes. Called once at start.
    pub fn load_voting(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.ctx.config.voting.voter_key {
            let key = upswarm_trust::read_secret_key(path)?;
            let root = self.chain.current().root();
            if root.roles.electorate.weight_of(&key.key_id()).is_none() {
                warn!(voter = %key.key_id(), "the voter key is not in the trust root's electorate; its votes will not count");
            }
            self.voter_key = Some(key);
        }
        self.withheld = self
            .ctx
            .state
            .withheld
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| v.then(|| Hash32::from_slice(&k).ok()).flatten())
            .collect();
        Ok(())
    }

    /// The protocols the software this node runs declares (its current release's manifest).
    fn running_provides(&self) -> Vec<String> {
        let Some(u) = &self.updater else {
            return Vec::new();
        };
        let Some(current) = u.installed().current else {
            return Vec::new();
        };
        self.releases
            .get(&current.release)
            .map(|k| k.verified.manifest.protocols.provides.clone())
            .unwrap_or_default()
    }

    /// Whether this node may attest readiness for `protocol` now: it runs, healthy, software
    /// that declares support for it, and no update is in progress.
    fn ready_for(&self, protocol: &str) -> bool {
        let Some(u) = &self.updater else { return false };
        u.in_progress().is_none()
            && u.program().running
            && self.running_provides().iter().any(|p| p == protocol)
    }

    /// Re-evaluates every proposal: votes where ready, updates `activations.json`, runs the
    /// activation hook, raises or clears the upgrade-required alarm.
    fn voting_tick(&mut self) {
        let now = unix_now();
        let root = self.chain.current().root().clone();
        // Vote where this node is ready.
        if let Some(key) = self
            .voter_key
            .as_ref()
            .map(|k| upswarm_trust::SecretKey::from_seed(&k.seed()))
        {
            let me = key.key_id();
            let mut to_sign = Vec::new();
            for (id, s) in self.voting.statuses(&root, now) {
                let Some(p) = self.voting.proposal(&id) else {
                    continue;
                };
                let protocol = p.proposal.protocol.clone();
                let open = matches!(s.state, upswarm_activation::ActivationState::Started)
                    || (matches!(s.state, upswarm_activation::ActivationState::LockedIn)
                        && now <= p.proposal.lock_in_deadline);
                if open
                    && !self.voting.has_voted(&id, &me)
                    && !self.withheld.contains(&id)
                    && !self.ctx.config.voting.withhold.contains(&protocol)
                    && self.ready_for(&protocol)
                {
                    to_sign.push(id);
                }
            }
            for id in to_sign {
                let env = upswarm_activation::sign_vote(&key, id, now);
                let bytes = env.encode();
                if self.on_signed(SignedKind::Vote, &bytes) != MessageAcceptance::Reject {
                    info!(proposal = %id, "voted READY");
                    let client = self.ctx.client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = client.publish(Topic::Votes, bytes).await {
                            debug!("gossip publish of a vote: {e} (peers will pull it)");
                        }
                    });
                }
            }
        }
        let statuses = self.voting.statuses(&root, now);
        let me = self.voter_key.as_ref().map(|k| k.key_id());
        let views = super::voting::views(
            &self.voting,
            &statuses,
            &self.running_provides(),
            me.as_ref(),
            &self.withheld,
        );
        if views != self.activations {
            let path = self.ctx.data_dir.join("activations.json");
            match serde_json::to_vec_pretty(&views) {
                Ok(json) => {
                    if let Err(e) = crate::files::write_atomic(&path, &json) {
                        warn!("cannot write {}: {e:#}", path.display());
                    }
                }
                Err(e) => warn!("activations: {e}"),
            }
            self.activations = views.clone();
        }
        for id in self.voting.newly_active(&statuses) {
            if let Some(v) = views.iter().find(|v| v.proposal == id.to_hex()) {
                info!(protocol = %v.protocol, activation_at = ?v.activation_at, "protocol ACTIVE");
                super::voting::run_hook(&self.ctx.config.voting.activation_hook, v);
            }
        }
        let missing = super::voting::upgrade_required(&views);
        let alarms: Vec<String> = missing
            .iter()
            .map(|p| format!("upgrade required: protocol {p} is ACTIVE and the software this node runs does not support it"))
            .collect();
        if alarms != self.alarms {
            for a in &alarms {
                warn!("{a}");
                self.webhook("upgrade_required", serde_json::json!({ "alarm": a }));
            }
            self.ctx.metrics.upgrade_required.store(
                u64::from(!alarms.is_empty()),
                std::sync::atomic::Ordering::Relaxed,
            );
            self.alarms = alarms;
        }
    }

    fn set_vote(
        &mut self,
        proposal: Hash32,
        withhold: Option<bool>,
    ) -> Result<ActivationView, String> {
        if self.voting.proposal(&proposal).is_none() {
            return Err(format!(
                "unknown proposal {proposal}; see `upswarm activations`"
            ));
        }
        if let Some(w) = withhold {
            if w {
                self.withheld.insert(proposal);
            } else {
                self.withheld.remove(&proposal);
            }
            self.ctx
                .state
                .withheld
                .put(proposal.as_bytes(), &w)
                .map_err(|e| e.to_string())?;
        }
        if self.voter_key.is_none() && withhold != Some(true) {
            return Err("this node has no voter key (voting.voter_key)".into());
        }
        self.voting_tick();
        self.activations
            .iter()
            .find(|v| v.proposal == proposal.to_hex())
            .cloned()
            .ok_or_else(|| "proposal vanished".to_string())
    }
}

impl Core {
    /// Announces (once each) releases whose rollout halted network-wide.
    fn watch_halts(&self) {
        let now = unix_now();
        let skew = self.ctx.config.clock_skew.as_secs();
        for (id, k) in &self.releases {
            if !self.follows(&k.verified.manifest) {
                continue;
            }
            let e = self.book.evaluate(id, &k.verified.manifest, now, skew);
            if let Some(h) = &e.halted
                && self.halted_seen.lock().is_ok_and(|mut s| s.insert(*id))
            {
                warn!(release = %id, version = %k.verified.manifest.version, "rollout {h}");
                let details = serde_json::json!({ "release": id.to_hex(), "version": k.verified.manifest.version.to_string(), "reason": h.to_string() });
                self.webhook("halted", details);
            }
        }
    }

    /// Sends an event to the operator's webhooks (fire and forget, 5 s timeout, logged).
    fn webhook(&self, event: &str, details: serde_json::Value) {
        let hooks = &self.ctx.config.webhooks;
        if hooks.urls.is_empty()
            || !(hooks.events.is_empty() || hooks.events.iter().any(|e| e == event))
        {
            return;
        }
        let mut body = serde_json::json!({ "event": event, "at": unix_now(), "node_id": self.ctx.node_key.key_id().to_hex() });
        if let (Some(b), serde_json::Value::Object(d)) = (body.as_object_mut(), details) {
            b.extend(d);
        }
        for url in hooks.urls.clone() {
            let body = body.clone();
            tokio::spawn(async move {
                let client = match reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                {
                    Ok(c) => c,
                    Err(e) => return warn!("webhook client: {e}"),
                };
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => warn!(%url, "webhook answered HTTP {}", r.status()),
                    Err(e) => warn!(%url, "webhook failed: {e}"),
                }
            });
        }
    }
}

/// Copies a release directory's chunks into the node's store (verifying each), and
/// assembles the artifacts this node uses.
fn import(
    store: &ChunkStore,
    dir: &std::path::Path,
    manifest: &Manifest,
    wanted: &[String],
    dest: &std::path::Path,
) -> Result<(), String> {
    let src_dir = dir.join(crate::cli::release::CHUNKS_DIR);
    let src = ChunkStore::open(&src_dir).map_err(|e| e.to_string())?;
    for a in &manifest.artifacts {
        let index = load_index(&src, a).map_err(|e| format!("{}: {e}", src_dir.display()))?;
        let limit = upswarm_proto::ChunkIndex::max_encoded_len(a.size, a.chunk_size);
        let index_bytes = src.get(&a.chunk_index, limit).map_err(|e| e.to_string())?;
        store
            .put_verified(&a.chunk_index, &index_bytes)
            .map_err(|e| e.to_string())?;
        for (i, h) in index.iter().enumerate() {
            let chunk = src
                .get(&h, u64::from(index.chunk_len(i)))
                .map_err(|e| format!("{}: {e}", src_dir.display()))?;
            store.put_verified(&h, &chunk).map_err(|e| e.to_string())?;
        }
        if wanted.contains(&a.name) {
            assemble(store, a, &index, &dest.join(&a.name)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
