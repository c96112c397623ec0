//! Downloading a release: the chunk index first, then chunks from many peers at once.
//!
//! Per artifact: fetch the chunk index from any peer and verify it against the manifest;
//! open the artifact's partial file ([`PartialFile`]: a restart resumes there) and fill it
//! with what this node already holds (the same chunks in other artifacts' files or in the
//! store); then keep up to `max_in_flight` requests going, at most
//! `max_in_flight_per_peer` to one peer, always asking for the rarest missing chunk among
//! the peers' announced bitmaps. Every chunk is verified, then written into the partial
//! file at its offset and served from there at once. A bad chunk penalises its sender
//! (banned after repeated faults) and is fetched elsewhere; a stalled request times out and
//! the chunk is fetched elsewhere; near the end, the last chunks are asked of a second peer
//! (end game). Finally the whole-file hash is checked and the file renamed into place: the
//! artifact is on disk once, and its chunks are served from it. Chunks no peer holds for a
//! while are read from HTTP(S) mirrors, verified the same way ([`mirror`]).
//!
//! Owns one release's download: its peers, its requests in flight and its partial files. It does
//! not decide what to download (the core does) nor install anything (the apply actor does), and it
//! must not block the async threads: file work belongs in `spawn_blocking`.

mod mirror;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt};
use tracing::{debug, info, warn};
use upswarm_content::{ContentError, PartialFile};
use upswarm_net::{NetError, PeerId, PeerLink, RecordKey};
use upswarm_proto::fetch::{Answer, Bitmap, FetchRequest, MAX_HAVE_WAIT_MS, Want};
use upswarm_proto::{Artifact, ChunkIndex, Hash32, Manifest};

use upswarm_trust::unix_now;

use super::ctx::Ctx;
use super::metrics::{DownloadProgress, Metrics};
use super::state::FaultOutcome;

mod forms;

/// Why a download stopped for good.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    #[error("no artifact of this release is for platform {0}")]
    NoArtifact(String),
    #[error("not enough disk space in {dir}: {needed} bytes needed, {available} available")]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("{0}")]
    Content(#[from] ContentError),
    #[error("storage task failed: {0}")]
    Join(String),
    /// Only with [`Swarm::patience`] set (fetching an encoded form, which may have no
    /// holder): nothing arrived for that long.
    #[error("no peer sent anything for {0:?}")]
    NoProgress(Duration),
}

/// How a download task ended without completing, as the core sees it.
#[derive(Debug)]
pub struct DownloadFailure {
    pub reason: String,
    /// See [`DownloadError::is_local`].
    pub local: bool,
}

impl From<DownloadError> for DownloadFailure {
    fn from(e: DownloadError) -> Self {
        DownloadFailure {
            local: e.is_local(),
            reason: e.to_string(),
        }
    }
}

impl DownloadError {
    /// A condition of this node's own disk (no space, a write that failed): the download
    /// waits and is tried again, and no peer is blamed.
    pub(crate) fn is_local(&self) -> bool {
        matches!(
            self,
            DownloadError::NoSpace { .. }
                | DownloadError::Join(_)
                | DownloadError::Content(ContentError::Io { .. })
        )
    }
}

/// How often a peer's bitmap is asked for again when it cannot push changes (it did not
/// answer `HaveChanged`), or when its last pushed answer brought nothing new.
const HAVE_REFRESH: Duration = Duration::from_millis(800);
/// How often the candidate peer set is refreshed from the DHT.
const PROVIDER_REFRESH: Duration = Duration::from_secs(4);
/// How long a peer that timed out is left alone.
const STALL_BACKOFF: Duration = Duration::from_secs(5);
/// How long a busy peer is left alone.
const BUSY_BACKOFF: Duration = Duration::from_millis(300);

/// The artifacts of `manifest` this node needs.
pub(crate) fn wanted_artifacts<'a>(manifest: &'a Manifest, platform: &str) -> Vec<&'a Artifact> {
    manifest
        .artifacts
        .iter()
        .filter(|a| a.platform == platform || a.platform == "any")
        .collect()
}

/// Where the assembled artifacts of a release live.
pub(crate) fn release_dir(ctx: &Ctx, release: &Hash32) -> PathBuf {
    ctx.layout.release(release)
}

/// Downloads every artifact of `manifest` this node needs, then assembles them.
pub(crate) async fn download(
    ctx: Arc<Ctx>,
    manifest: Manifest,
    release: Hash32,
    progress: Arc<DownloadProgress>,
) -> Result<(), DownloadError> {
    let artifacts: Vec<Artifact> = wanted_artifacts(&manifest, &ctx.config.platform)
        .into_iter()
        .cloned()
        .collect();
    if artifacts.is_empty() {
        return Err(DownloadError::NoArtifact(ctx.config.platform.clone()));
    }
    check_space(&ctx, &artifacts)?;
    let key = crate::layout::provider_key(&ctx.config.network, &release);
    // Announce early (without waiting for the DHT query): other downloaders find us and
    // take the chunks we already have.
    let (client, k) = (ctx.client.clone(), key.clone());
    tokio::spawn(async move {
        if let Err(e) = client.start_providing(k).await {
            debug!("cannot announce as provider yet: {e}");
        }
    });
    let mut swarm = Swarm::new(ctx.clone(), key, &manifest);
    for artifact in &artifacts {
        let index = swarm.fetch_index(artifact).await?;
        let dest = release_dir(&ctx, &release).join(&artifact.name);
        let store = ctx.store.clone();
        let (a, i, d) = (artifact.clone(), index.clone(), dest.clone());
        let intact = blocking(move || Ok(intact(&store, &a, &i, &d))).await?;
        if intact {
            // Held whole (a restart after this artifact finished): every chunk counts as
            // reused, and it is announced while the rest of the release downloads.
            let n = index.len();
            count_reused(&ctx, &progress, n, n as u64);
            ctx.haves.register(artifact.chunk_index, Bitmap::full(n));
            info!(release = %release, artifact = %artifact.name, "artifact already here, verified");
            continue;
        }
        let store = ctx.store.clone();
        let (i, d) = (index.clone(), dest.clone());
        let part = Arc::new(blocking(move || Ok(PartialFile::open(&store, &d, &i)?)).await?);
        // A smaller encoded form (a delta from a version this node holds, or compressed)
        // first; on success every slot of the partial file is written.
        forms::fetch_by_form(&mut swarm, artifact, &index, &progress, &dest, &part).await;
        swarm
            .fetch_chunks(artifact, &index, &progress, Some((&part, &dest)))
            .await?;
        let store = ctx.store.clone();
        let a = artifact.clone();
        blocking(move || Ok(part.finish(&store, &a, &dest)?)).await?;
        info!(release = %release, artifact = %artifact.name, "artifact complete and verified");
    }
    Ok(())
}

/// Counts an artifact of `n` chunks into the download's progress, `reused` of them already
/// on this node.
fn count_reused(ctx: &Ctx, progress: &DownloadProgress, n: usize, reused: u64) {
    progress.chunks_total.fetch_add(n as u64, Ordering::Relaxed);
    progress.chunks_held.fetch_add(reused, Ordering::Relaxed);
    progress.chunks_reused.fetch_add(reused, Ordering::Relaxed);
    Metrics::add(&ctx.metrics.chunks_reused, reused);
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DownloadError> + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DownloadError::Join(e.to_string()))?
}

/// Whether the artifact is already at `dest`, whole and right (a restart after the
/// download finished, or a release fetched again): then the store serves its chunks from
/// there. Read once, against the whole-file hash.
fn intact(
    store: &upswarm_content::ChunkStore,
    artifact: &Artifact,
    index: &ChunkIndex,
    dest: &std::path::Path,
) -> bool {
    if upswarm_content::verify_file(dest, artifact).is_err() {
        return false;
    }
    store.adopt(dest, index);
    true
}

fn check_space(ctx: &Ctx, artifacts: &[Artifact]) -> Result<(), DownloadError> {
    // Chunks are written straight into the artifact's file: its size, once.
    let needed: u64 = artifacts.iter().map(|a| a.size).sum();
    let dir = ctx.layout.root.clone();
    if let Ok(st) = nix::sys::statvfs::statvfs(&dir) {
        let available = st.blocks_available().saturating_mul(st.fragment_size());
        if available < needed {
            return Err(DownloadError::NoSpace {
                dir,
                needed,
                available,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct PeerState {
    bitmap: Option<Bitmap>,
    have_pending: bool,
    last_have: Option<Instant>,
    /// The peer did not answer a `HaveChanged` request: its bitmap is polled with `Have`.
    polled: bool,
    /// Its last `HaveChanged` answer brought no change (it waited out its time, or was
    /// answered at once by a peer over its watcher limit): the next waits [`HAVE_REFRESH`].
    quiet: bool,
    in_flight: usize,
    backoff_until: Option<Instant>,
}

enum Outcome {
    Stored,
    AlreadyHad,
    Bad(String),
    DontHave,
    Busy,
    Failed(NetError),
    /// The chunk arrived but this node could not store it: a local condition (a full disk),
    /// never counted against the peer.
    Local(String),
}

enum Done {
    Chunk {
        peer: PeerId,
        chunk: usize,
        outcome: Outcome,
    },
    Have {
        peer: PeerId,
        answer: Result<Answer, NetError>,
        /// The count sent with a `HaveChanged` request; `None`: a plain `Have`.
        asked: Option<u32>,
    },
    /// Candidate peers, and those of them reached only through a relay.
    Candidates(HashSet<PeerId>, HashSet<PeerId>),
    Mirror(mirror::MirrorDone),
}

/// The peers reached only through a relay.
fn relayed_only(links: &[(PeerId, PeerLink)]) -> HashSet<PeerId> {
    links
        .iter()
        .filter(|(_, l)| *l == PeerLink::Relayed)
        .map(|(p, _)| *p)
        .collect()
}

/// The peers a download works with.
struct Swarm {
    ctx: Arc<Ctx>,
    key: RecordKey,
    peers: HashMap<PeerId, PeerState>,
    last_candidates: Option<Instant>,
    /// Give up ([`DownloadError::NoProgress`]) when nothing arrives for this long; `None`:
    /// never (a release's own artifacts: every holder serves them).
    patience: Option<Duration>,
    /// Peers reached only through a relay, as of the last candidate refresh.
    relayed: HashSet<PeerId>,
    mirrors: mirror::Mirrors,
    /// Where the chunks of the artifact being fetched go: its partial file, or (`None`, an
    /// encoded form) chunk files in the store.
    part: Option<Arc<PartialFile>>,
}

impl Swarm {
    fn new(ctx: Arc<Ctx>, key: RecordKey, manifest: &Manifest) -> Self {
        Swarm {
            mirrors: mirror::Mirrors::new(ctx.clone(), manifest),
            ctx,
            key,
            peers: HashMap::new(),
            last_candidates: None,
            patience: None,
            relayed: HashSet::new(),
            part: None,
        }
    }

    /// Providers from the DHT plus every connected peer, minus banned ones.
    fn candidates_future(&mut self) -> Option<BoxFuture<'static, Done>> {
        if self
            .last_candidates
            .is_some_and(|t| t.elapsed() < PROVIDER_REFRESH)
        {
            return None;
        }
        self.last_candidates = Some(Instant::now());
        let client = self.ctx.client.clone();
        let key = self.key.clone();
        Some(Box::pin(async move {
            let mut all = HashSet::new();
            let mut relayed = HashSet::new();
            if let Ok(info) = client.info().await {
                all.extend(info.connected);
                relayed = relayed_only(&info.links);
            }
            if let Ok(Ok(p)) =
                tokio::time::timeout(Duration::from_secs(10), client.get_providers(key)).await
            {
                all.extend(p);
            }
            all.remove(&client.local_peer_id());
            Done::Candidates(all, relayed)
        }))
    }

    fn merge_candidates(&mut self, found: HashSet<PeerId>) {
        for p in found {
            if !self.ctx.peers.is_banned(&p, unix_now()) {
                self.peers.entry(p).or_default();
            }
        }
    }

    fn usable(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(p, s)| {
                s.backoff_until.is_none_or(|t| t <= now) && !self.ctx.peers.is_banned(p, unix_now())
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Fetches and verifies the chunk index, or loads it from the store.
    async fn fetch_index(&mut self, artifact: &Artifact) -> Result<ChunkIndex, DownloadError> {
        let limit = ChunkIndex::max_encoded_len(artifact.size, artifact.chunk_size);
        let stored =
            super::state::outside_workers(|| self.ctx.store.get(&artifact.chunk_index, limit));
        if let Ok(bytes) = stored
            && let Ok(index) = ChunkIndex::decode_for(&bytes, artifact)
        {
            return Ok(index);
        }
        let max_len = u32::try_from(limit).unwrap_or(u32::MAX);
        // Connected peers first (no waiting); the DHT's providers only if they do not have it.
        if let Ok(info) = self.ctx.client.info().await {
            self.relayed = relayed_only(&info.links);
            self.merge_candidates(info.connected.into_iter().collect());
        }
        let mut first = true;
        let started = Instant::now();
        loop {
            if let Some(p) = self.patience
                && started.elapsed() > p
            {
                return Err(DownloadError::NoProgress(p));
            }
            if !first
                && let Some(f) = self.candidates_future()
                && let Done::Candidates(c, relayed) = f.await
            {
                self.relayed = relayed;
                self.merge_candidates(c);
            }
            first = false;
            let mut asks: FuturesUnordered<_> = self
                .usable(Instant::now())
                .into_iter()
                .take(8)
                .map(|peer| {
                    let client = self.ctx.client.clone();
                    let req = FetchRequest::new(Want::Blob {
                        hash: artifact.chunk_index,
                        max_len,
                    });
                    async move { (peer, client.request(peer, req).await) }
                })
                .collect();
            while let Some((peer, result)) = asks.next().await {
                let Ok(resp) = result else { continue };
                let Answer::Blob { bytes } = resp.answer else {
                    continue;
                };
                if Hash32::of(&bytes) != artifact.chunk_index {
                    warn!(%peer, "peer sent a chunk index that does not match the manifest");
                    self.penalise(peer);
                    continue;
                }
                match ChunkIndex::decode_for(&bytes, artifact) {
                    Ok(index) => {
                        super::state::outside_workers(|| {
                            self.ctx.store.put_verified(&artifact.chunk_index, &bytes)
                        })?;
                        debug!(%peer, chunks = index.len(), "chunk index verified");
                        return Ok(index);
                    }
                    Err(e) => {
                        // Signed into the manifest, yet malformed: the signers' mistake, not
                        // the peer's. Nothing to fetch.
                        return Err(DownloadError::Content(ContentError::Index {
                            name: artifact.name.clone(),
                            source: e,
                        }));
                    }
                }
            }
            // No peer has it for a while: a mirror's copy of the artifact, if its chunk
            // index computes to the manifest's.
            if self.mirrors_apply()
                && started.elapsed() >= self.ctx.config.mirrors.after
                && let Some(index) = self.mirrors.index(artifact).await?
            {
                return Ok(index);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.last_candidates = None;
        }
    }

    fn penalise(&mut self, peer: PeerId) {
        if self.ctx.peers.fault(peer, unix_now()) == FaultOutcome::BanNow {
            self.ban(peer);
        }
    }

    fn ban(&mut self, peer: PeerId) {
        warn!(%peer, "banning peer after repeated faults");
        Metrics::inc(&self.ctx.metrics.peers_banned);
        self.peers.remove(&peer);
        let client = self.ctx.client.clone();
        tokio::spawn(async move {
            let _ = client.block(peer).await;
        });
    }

    /// Fetches the chunks of `artifact` this node does not hold. With `into` (the
    /// artifact's partial file and final path) they are written into the partial file,
    /// after taking what this node already holds (the store, other artifacts' files, an
    /// earlier copy at the final path); without, into chunk files (an encoded form).
    async fn fetch_chunks(
        &mut self,
        artifact: &Artifact,
        index: &ChunkIndex,
        progress: &DownloadProgress,
        into: Option<(&Arc<PartialFile>, &std::path::Path)>,
    ) -> Result<(), DownloadError> {
        let n = index.len();
        // Availability is per artifact: forget what peers said about the previous one.
        for s in self.peers.values_mut() {
            *s = PeerState {
                backoff_until: s.backoff_until,
                polled: s.polled,
                ..PeerState::default()
            };
        }
        if let Ok(info) = self.ctx.client.info().await {
            self.relayed = relayed_only(&info.links);
        }
        self.part = into.map(|(p, _)| p.clone());
        let mut held = match into {
            Some((part, dest)) => {
                // A repair finds an earlier copy at `dest` with a damaged chunk: what still
                // verifies there is taken.
                let (store, part, old) = (self.ctx.store.clone(), part.clone(), dest.to_path_buf());
                blocking(move || Ok(part.fill(&store, Some(&old))?)).await?
            }
            None => super::state::outside_workers(|| {
                let mut held = Bitmap::new(n);
                for (i, h) in index.iter().enumerate() {
                    if self.ctx.store.contains(&h) {
                        held.set(i);
                    }
                }
                held
            }),
        };
        self.mirrors.begin(n, self.part.clone());
        let from_mirror = self.mirrors.take_whole(artifact, progress);
        let reused = (held.count() as u64).saturating_sub(from_mirror);
        progress
            .chunks_held
            .fetch_add(from_mirror, Ordering::Relaxed);
        count_reused(&self.ctx, progress, n, reused);
        self.ctx.haves.register(artifact.chunk_index, held.clone());
        if held.is_full() {
            return Ok(());
        }
        info!(artifact = %artifact.name, chunks = n, already = reused, "fetching chunks");
        // Positions with the same content are fetched once: `twins[i]` lists every position
        // whose chunk has the hash of chunk `i`, for the first such `i`; empty otherwise.
        let mut first_seen: HashMap<Hash32, usize> = HashMap::new();
        let mut twins: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, h) in index.iter().enumerate() {
            let rep = *first_seen.entry(h).or_insert(i);
            twins[rep].push(i);
        }

        let cfg = &self.ctx.config.transfer;
        let (max_in_flight, per_peer) = (cfg.max_in_flight, cfg.max_in_flight_per_peer);
        // How many requests are out for each chunk (1, or 2 in the end game).
        let mut requested = vec![0u8; n];
        let mut in_flight = 0usize;
        let mut pending: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut candidates_pending = false;
        let mut last_progress = (Instant::now(), held.count());
        while !held.is_full() {
            let now = Instant::now();
            if held.count() != last_progress.1 {
                last_progress = (now, held.count());
            } else if let Some(p) = self.patience
                && now.duration_since(last_progress.0) > p
            {
                return Err(DownloadError::NoProgress(p));
            }
            if !candidates_pending && let Some(f) = self.candidates_future() {
                pending.push(f);
                candidates_pending = true;
            }
            self.refresh_haves(artifact, &mut pending, now);
            in_flight += self.schedule(
                index,
                &twins,
                &held,
                &mut requested,
                max_in_flight - in_flight.min(max_in_flight),
                per_peer,
                &mut pending,
                now,
            );
            let usable = self.usable(now);
            let peers = &self.peers;
            let peer_has = |i: usize| {
                usable.iter().any(|p| {
                    peers
                        .get(p)
                        .and_then(|s| s.bitmap.as_ref())
                        .is_some_and(|b| b.get(i))
                })
            };
            if self.mirrors_apply() {
                for f in self
                    .mirrors
                    .schedule(artifact, index, &twins, &held, &peer_has, now)
                {
                    pending.push(Box::pin(f.map(Done::Mirror)));
                }
            }
            tokio::select! {
                Some(done) = pending.next() => match done {
                    Done::Candidates(c, relayed) => {
                        candidates_pending = false;
                        self.relayed = relayed;
                        self.merge_candidates(c);
                    }
                    Done::Mirror(d) => {
                        self.mirrors.on_done(d, artifact, index, &twins, &mut held, progress);
                    }
                    Done::Have { peer, answer, asked } => self.on_have(peer, answer, asked, n),
                    Done::Chunk { peer, chunk, outcome } => {
                        in_flight -= 1;
                        requested[chunk] = requested[chunk].saturating_sub(1);
                        if let Some(s) = self.peers.get_mut(&peer) {
                            s.in_flight = s.in_flight.saturating_sub(1);
                        }
                        let len = u64::from(index.chunk_len(chunk));
                        self.on_chunk(artifact, peer, &twins[chunk], len, outcome, &mut held, progress);
                    }
                },
                _ = tick.tick() => {}
            }
        }
        Ok(())
    }

    /// Keeps one availability request out to every peer that is not known to hold the whole
    /// artifact: a first `Have` (its bitmap on meeting it), then `HaveChanged` with the count
    /// it last told us, which the peer answers as soon as it holds another chunk — so a
    /// chunk is asked from its first holder within a round trip of its arrival there.
    /// Peers that do not answer `HaveChanged` are polled every [`HAVE_REFRESH`].
    fn refresh_haves(
        &mut self,
        artifact: &Artifact,
        pending: &mut FuturesUnordered<BoxFuture<'static, Done>>,
        now: Instant,
    ) {
        let wait_ms = u32::try_from(self.ctx.config.transfer.request_timeout.as_millis() * 2 / 3)
            .unwrap_or(u32::MAX)
            .min(MAX_HAVE_WAIT_MS);
        for (peer, s) in self.peers.iter_mut() {
            let complete = s.bitmap.as_ref().is_some_and(Bitmap::is_full);
            let paced = s.polled || s.quiet;
            let due = s
                .last_have
                .is_none_or(|t| !paced || now.duration_since(t) >= HAVE_REFRESH);
            if s.have_pending || complete || !due || s.backoff_until.is_some_and(|t| t > now) {
                continue;
            }
            s.have_pending = true;
            s.last_have = Some(now);
            let chunk_index = artifact.chunk_index;
            let (want, asked) = match &s.bitmap {
                Some(b) if !s.polled => {
                    let held = u32::try_from(b.count()).unwrap_or(u32::MAX);
                    (
                        Want::HaveChanged {
                            held,
                            wait_ms,
                            chunk_index,
                        },
                        Some(held),
                    )
                }
                _ => (Want::Have { chunk_index }, None),
            };
            let client = self.ctx.client.clone();
            let peer = *peer;
            pending.push(Box::pin(async move {
                let answer = client
                    .request(peer, FetchRequest::new(want))
                    .await
                    .map(|r| r.answer);
                Done::Have {
                    peer,
                    answer,
                    asked,
                }
            }));
        }
    }

    fn on_have(
        &mut self,
        peer: PeerId,
        answer: Result<Answer, NetError>,
        asked: Option<u32>,
        n: usize,
    ) {
        let Some(s) = self.peers.get_mut(&peer) else {
            return;
        };
        s.have_pending = false;
        let told = |b: &Bitmap| asked == u32::try_from(b.count()).ok();
        match answer {
            Ok(Answer::Have { bitmap }) => match Bitmap::from_bytes(bitmap, n) {
                Some(b) => {
                    s.quiet = told(&b);
                    s.bitmap = Some(b);
                }
                None => {
                    s.bitmap = None;
                    self.penalise(peer);
                }
            },
            Ok(Answer::DontHave) => {
                let b = Bitmap::new(n);
                s.quiet = told(&b);
                s.bitmap = Some(b);
            }
            Ok(Answer::Busy) => s.backoff_until = Some(Instant::now() + BUSY_BACKOFF),
            Ok(Answer::Blob { .. } | Answer::Signed { .. }) => self.penalise(peer),
            // A peer that does not understand `HaveChanged` (or lost it) is polled instead;
            // whether it is alive, its chunk requests tell.
            Err(_) if asked.is_some() => s.polled = true,
            Err(_) => s.backoff_until = Some(Instant::now() + STALL_BACKOFF),
        }
    }

    /// Starts up to `slots` chunk requests, rarest chunk first. Returns how many started.
    #[allow(clippy::too_many_arguments)]
    fn schedule(
        &mut self,
        index: &ChunkIndex,
        twins: &[Vec<usize>],
        held: &Bitmap,
        requested: &mut [u8],
        slots: usize,
        per_peer: usize,
        pending: &mut FuturesUnordered<BoxFuture<'static, Done>>,
        now: Instant,
    ) -> usize {
        if slots == 0 {
            return 0;
        }
        let usable: Vec<PeerId> = self
            .usable(now)
            .into_iter()
            .filter(|p| {
                self.peers
                    .get(p)
                    .is_some_and(|s| s.in_flight < per_peer && s.bitmap.is_some())
            })
            .collect();
        if usable.is_empty() {
            return 0;
        }
        let missing: Vec<usize> = (0..index.len())
            .filter(|&i| !twins[i].is_empty() && !held.get(i))
            .collect();
        let fresh_left = missing.iter().any(|&i| requested[i] == 0);
        // End game: every missing chunk is already requested; ask a second peer.
        let limit = if fresh_left { 0 } else { 1 };
        let mut wanted: Vec<(usize, u64, usize)> = missing
            .into_iter()
            .filter(|&i| requested[i] <= limit)
            .filter_map(|i| {
                let holders = usable.iter().filter(|p| self.has(p, i)).count();
                (holders > 0).then(|| (holders, rand::random::<u64>(), i))
            })
            .collect();
        wanted.sort_unstable();
        let mut started = 0;
        for (_, _, i) in wanted {
            if started == slots {
                break;
            }
            let best = usable
                .iter()
                .filter(|p| self.has(p, i))
                .filter(|p| self.peers.get(p).is_some_and(|s| s.in_flight < per_peer))
                .min_by_key(|p| {
                    (
                        self.peers.get(p).map_or(usize::MAX, |s| s.in_flight),
                        rand::random::<u16>(),
                    )
                });
            let Some(peer) = best.copied() else { continue };
            if let Some(s) = self.peers.get_mut(&peer) {
                s.in_flight += 1;
            }
            requested[i] += 1;
            started += 1;
            pending.push(self.request_chunk(peer, i, index.hash(i), index.chunk_len(i)));
        }
        started
    }

    fn has(&self, peer: &PeerId, i: usize) -> bool {
        self.peers
            .get(peer)
            .and_then(|s| s.bitmap.as_ref())
            .is_some_and(|b| b.get(i))
    }

    fn request_chunk(
        &self,
        peer: PeerId,
        chunk: usize,
        hash: Hash32,
        len: u32,
    ) -> BoxFuture<'static, Done> {
        let ctx = self.ctx.clone();
        let part = self.part.clone();
        Box::pin(async move {
            ctx.download_limit.acquire(len as usize).await;
            let req = FetchRequest::new(Want::Blob { hash, max_len: len });
            let outcome = match ctx.client.request(peer, req).await {
                Err(e) => Outcome::Failed(e),
                Ok(resp) => match resp.answer {
                    Answer::DontHave => Outcome::DontHave,
                    Answer::Busy => Outcome::Busy,
                    Answer::Have { .. } | Answer::Signed { .. } => {
                        Outcome::Bad("answered a chunk request with something else".into())
                    }
                    Answer::Blob { bytes } => {
                        if bytes.len() != len as usize {
                            Outcome::Bad(format!("chunk of {} bytes, expected {len}", bytes.len()))
                        } else {
                            let store = ctx.store.clone();
                            match tokio::task::spawn_blocking(move || {
                                put_chunk(&store, part.as_deref(), chunk, &hash, &bytes)
                            })
                            .await
                            {
                                Ok(Ok(false)) => Outcome::AlreadyHad,
                                Ok(Ok(true)) => Outcome::Stored,
                                Ok(Err(ContentError::HashMismatch { .. })) => {
                                    Outcome::Bad("chunk does not match its hash".into())
                                }
                                // Our own disk failed (full, read-only, …): not the
                                // peer's fault.
                                Ok(Err(e)) => Outcome::Local(e.to_string()),
                                Err(e) => Outcome::Failed(NetError::Request {
                                    peer,
                                    reason: e.to_string(),
                                }),
                            }
                        }
                    }
                },
            };
            Done::Chunk {
                peer,
                chunk,
                outcome,
            }
        })
    }

    /// Whether mirrors may be asked: for artifacts only. Mirrors serve the artifacts'
    /// files, not their encoded forms; an encoded form no peer holds is given up on
    /// ([`Swarm::patience`]) and the artifact fetched plainly, where mirrors apply.
    fn mirrors_apply(&self) -> bool {
        self.patience.is_none()
    }

    /// `positions`: every position of the artifact holding this chunk's content (the
    /// requested one first).
    #[allow(clippy::too_many_arguments)]
    fn on_chunk(
        &mut self,
        artifact: &Artifact,
        peer: PeerId,
        positions: &[usize],
        len: u64,
        outcome: Outcome,
        held: &mut Bitmap,
        progress: &DownloadProgress,
    ) {
        let m = &self.ctx.metrics;
        let chunk = positions.first().copied().unwrap_or_default();
        match outcome {
            Outcome::Stored | Outcome::AlreadyHad => {
                if let Ok(mut b) = progress.blocked.lock()
                    && b.take().is_some()
                {
                    info!("chunks can be stored again; the download goes on");
                }
                let relayed = self.relayed.contains(&peer);
                // Counted once, at the first copy that arrives, whichever answer is handled
                // first: in the end game a second copy may also arrive, "stored" or "already
                // had" (the store kept the first).
                if !held.get(chunk) {
                    Metrics::inc(&m.chunks_fetched);
                    Metrics::add(&m.bytes_fetched, len);
                    let (chunks, bytes) = if relayed {
                        (
                            &m.download_chunks_peer_relayed,
                            &m.download_bytes_peer_relayed,
                        )
                    } else {
                        (
                            &m.download_chunks_peer_direct,
                            &m.download_bytes_peer_direct,
                        )
                    };
                    Metrics::inc(chunks);
                    Metrics::add(bytes, len);
                    progress.bytes_fetched.fetch_add(len, Ordering::Relaxed);
                }
                for &i in positions {
                    if !held.get(i) {
                        held.set(i);
                        self.ctx.haves.set(&artifact.chunk_index, i);
                        progress.chunks_held.fetch_add(1, Ordering::Relaxed);
                        progress.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                        if relayed {
                            &progress.chunks_from_peers_relayed
                        } else {
                            &progress.chunks_from_peers_direct
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        progress.fetched_from(&peer.to_base58());
                    }
                }
            }
            Outcome::Bad(why) => {
                warn!(%peer, chunk, "bad chunk: {why}");
                Metrics::inc(&m.bad_chunks_received);
                progress.bad_chunks.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = self.peers.get_mut(&peer)
                    && let Some(b) = s.bitmap.as_mut()
                {
                    b.clear(chunk);
                }
                self.penalise(peer);
            }
            Outcome::DontHave => {
                Metrics::inc(&m.requests_failed);
                if let Some(s) = self.peers.get_mut(&peer)
                    && let Some(b) = s.bitmap.as_mut()
                {
                    b.clear(chunk);
                }
            }
            Outcome::Busy => {
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.backoff_until = Some(Instant::now() + BUSY_BACKOFF);
                }
            }
            Outcome::Local(e) => {
                blocked_by_disk(progress, m, chunk, &e, "peer");
                // Leave that peer alone a moment; it did nothing wrong.
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.backoff_until = Some(Instant::now() + STALL_BACKOFF);
                }
            }
            Outcome::Failed(e) => {
                debug!(%peer, chunk, "request failed: {e}");
                Metrics::inc(&m.requests_failed);
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.backoff_until = Some(Instant::now() + STALL_BACKOFF);
                }
                if self.ctx.peers.stall(peer, unix_now()) == FaultOutcome::BanNow {
                    self.ban(peer);
                }
            }
        }
    }
}

/// Verifies a received chunk (position `chunk` of the artifact being fetched) and writes
/// it into the partial file, or into a chunk file without one. `Ok(false)`: already held.
fn put_chunk(
    store: &upswarm_content::ChunkStore,
    part: Option<&PartialFile>,
    chunk: usize,
    hash: &Hash32,
    bytes: &[u8],
) -> Result<bool, ContentError> {
    match part {
        Some(p) => p.put(store, chunk, bytes),
        None => {
            let already = store.has_file(hash);
            store.put_verified(hash, bytes)?;
            Ok(!already)
        }
    }
}

/// A verified chunk (from a peer or a mirror, `from`) could not be stored on this node's
/// disk: the download is marked blocked — logged and counted once — and nobody is blamed.
fn blocked_by_disk(
    progress: &DownloadProgress,
    m: &Metrics,
    chunk: usize,
    e: &impl std::fmt::Display,
    from: &str,
) {
    let first = progress
        .blocked
        .lock()
        .map(|mut b| {
            b.replace(format!("cannot store chunks on this node: {e}"))
                .is_none()
        })
        .unwrap_or(false);
    if first {
        warn!(
            chunk,
            "cannot store a verified chunk: {e}; the download waits and retries (no {from} is blamed)"
        );
        Metrics::inc(&m.downloads_blocked);
    }
}
