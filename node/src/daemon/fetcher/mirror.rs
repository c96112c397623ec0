//! HTTP(S) mirrors: the download's last resort, verified like peers.
//!
//! A release's signed manifest may name mirrors (`Manifest::mirrors`), and the operator may
//! add local ones (`[mirrors] urls`); the operator's come first, then the manifest's, each
//! list in its order, duplicates once. A mirror `M` serves artifact `a` at
//! `M/<pct(platform)>/<pct(name)>` ([`Manifest::mirror_url`]).
//!
//! Peers are always preferred. A chunk is read from a mirror only once no usable peer has
//! announced it for `[mirrors] after`; the request is an HTTP range request
//! (`Range: bytes=START-END`) through the daemon's HTTP client (rustls, the system's roots
//! plus `tls.extra_ca_file`). The answer must be `206 Partial Content` for exactly that range;
//! at most the chunk's length is read; the bytes are verified against the chunk index and
//! stored exactly like a peer's chunk (so the node seeds it afterwards). When nobody answers
//! for the chunk index either (the release's only holder is a mirror), the whole artifact
//! is read from a mirror once, chunked as it arrives, and its chunk index computed: it is
//! used only if it hashes to the manifest's `chunk_index`.
//!
//! A mirror that answers wrongly — bytes that do not verify, a wrong length, a status other
//! than 206, an HTTP or connection error, a timeout — is a mirror fault: logged, counted
//! (`mirror_faults`), and the mirror is left alone for `[mirrors] backoff`, doubled at each
//! further fault in this download (at most 64 times). The chunk is then taken from the next
//! mirror or from a peer. At most `[mirrors] max_in_flight` mirror requests are out at once.
//!
//! Non-goals: no mirror is trusted with anything the signatures do not cover; mirrors are
//! never written to; no multi-range requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tracing::{info, warn};
use upswarm_content::{ContentError, PartialFile};
use upswarm_proto::fetch::Bitmap;
use upswarm_proto::{Artifact, ChunkIndex, Hash32, Manifest};

use super::DownloadError;
use crate::daemon::ctx::Ctx;
use crate::daemon::metrics::{DownloadProgress, Metrics};

/// The longest a faulty mirror is left alone, in multiples of `[mirrors] backoff`.
const MAX_BACKOFF_FACTOR: u32 = 64;

/// The mirrors of one download and the chunks waiting for them.
pub(super) struct Mirrors {
    ctx: Arc<Ctx>,
    /// Chunk requests (with `[mirrors] timeout` per request).
    client: Option<reqwest::Client>,
    list: Vec<Mirror>,
    /// Per chunk of the current artifact: since when no usable peer has announced it.
    orphan_since: Vec<Option<Instant>>,
    /// Per chunk: a mirror request for it is out.
    asked: Vec<bool>,
    in_flight: usize,
    /// Chunk index → chunk positions stored by reading the whole artifact from a mirror
    /// (counted as mirror chunks, not as chunks already on disk).
    whole: HashMap<Hash32, (u64, u64)>,
    /// The partial file of the artifact being fetched (see [`super::Swarm`]).
    part: Option<Arc<PartialFile>>,
}

struct Mirror {
    base: String,
    backoff_until: Option<Instant>,
    faults: u32,
}

/// How a mirror request ended.
pub(super) struct MirrorDone {
    mirror: usize,
    chunk: usize,
    outcome: Outcome,
}

enum Outcome {
    Stored,
    AlreadyHad,
    /// The mirror's fault.
    Fault(String),
    /// The chunk verified but this node could not store it (its own disk).
    Local(String),
}

impl Mirrors {
    /// The operator's mirrors, then the manifest's.
    pub(super) fn new(ctx: Arc<Ctx>, manifest: &Manifest) -> Self {
        let mut bases: Vec<String> = Vec::new();
        for m in ctx.config.mirrors.urls.iter().chain(manifest.mirrors()) {
            if !bases.contains(m) {
                bases.push(m.clone());
            }
        }
        let client = if bases.is_empty() {
            None
        } else {
            match crate::http::client(ctx.config.mirrors.timeout) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!("cannot build the HTTP client for mirrors, so none is used: {e}");
                    None
                }
            }
        };
        Mirrors {
            ctx,
            client,
            list: bases
                .into_iter()
                .map(|base| Mirror {
                    base,
                    backoff_until: None,
                    faults: 0,
                })
                .collect(),
            orphan_since: Vec::new(),
            asked: Vec::new(),
            in_flight: 0,
            whole: HashMap::new(),
            part: None,
        }
    }

    fn usable(&self) -> bool {
        self.client.is_some() && !self.list.is_empty()
    }

    /// The first mirror (in precedence order) not left alone now.
    fn pick(&self, now: Instant) -> Option<usize> {
        self.list
            .iter()
            .position(|m| m.backoff_until.is_none_or(|t| t <= now))
    }

    fn fault(&mut self, mirror: usize, what: &str, why: &str, progress: Option<&DownloadProgress>) {
        Metrics::inc(&self.ctx.metrics.mirror_faults);
        if let Some(p) = progress {
            p.mirror_faults.fetch_add(1, Ordering::Relaxed);
        }
        let base = self.ctx.config.mirrors.backoff;
        let Some(m) = self.list.get_mut(mirror) else {
            return;
        };
        let factor = 1u32 << m.faults.min(6);
        m.faults = m.faults.saturating_add(1);
        let pause = base.saturating_mul(factor.min(MAX_BACKOFF_FACTOR));
        m.backoff_until = Some(Instant::now() + pause);
        warn!(
            mirror = %m.base,
            "mirror fault ({what}): {why}; mirror left alone for {}",
            humantime::format_duration(pause)
        );
    }

    /// Starts reading the next artifact (`n` chunks): nothing is asked of a mirror yet.
    pub(super) fn begin(&mut self, n: usize, part: Option<Arc<PartialFile>>) {
        self.part = part;
        self.orphan_since = vec![None; n];
        self.asked = vec![false; n];
        self.in_flight = 0;
    }

    /// Chunk positions of `artifact` stored by reading it whole from a mirror, taken once:
    /// counted in `progress` as mirror chunks (the caller counts them as held).
    pub(super) fn take_whole(&mut self, artifact: &Artifact, progress: &DownloadProgress) -> u64 {
        let Some((positions, bytes)) = self.whole.remove(&artifact.chunk_index) else {
            return 0;
        };
        progress
            .chunks_from_mirrors
            .fetch_add(positions, Ordering::Relaxed);
        progress
            .chunks_fetched
            .fetch_add(positions, Ordering::Relaxed);
        progress
            .bytes_from_mirrors
            .fetch_add(bytes, Ordering::Relaxed);
        progress.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
        positions
    }

    /// Starts mirror requests for the missing chunks no usable peer has announced for
    /// `[mirrors] after` (`peer_has(i)`: some usable peer announced chunk `i`), in index
    /// order, while fewer than `[mirrors] max_in_flight` are out.
    pub(super) fn schedule(
        &mut self,
        artifact: &Artifact,
        index: &ChunkIndex,
        twins: &[Vec<usize>],
        held: &Bitmap,
        peer_has: &dyn Fn(usize) -> bool,
        now: Instant,
    ) -> Vec<BoxFuture<'static, MirrorDone>> {
        let mut started = Vec::new();
        if !self.usable() {
            return started;
        }
        let cfg = &self.ctx.config.mirrors;
        let (after, max) = (cfg.after, cfg.max_in_flight);
        for (i, positions) in twins.iter().enumerate().take(index.len()) {
            if positions.is_empty() || held.get(i) {
                continue;
            }
            if peer_has(i) {
                self.orphan_since[i] = None;
                continue;
            }
            let since = *self.orphan_since[i].get_or_insert(now);
            if self.asked[i] || now.duration_since(since) < after || self.in_flight >= max {
                continue;
            }
            let Some(m) = self.pick(now) else { break };
            let Some(client) = self.client.clone() else {
                break;
            };
            let offset = index.offset(i);
            self.asked[i] = true;
            self.in_flight += 1;
            let url = Manifest::mirror_url(&self.list[m].base, artifact);
            let (hash, len) = (index.hash(i), index.chunk_len(i));
            started.push(request_chunk(
                self.ctx.clone(),
                self.part.clone(),
                client,
                url,
                m,
                i,
                offset,
                len,
                hash,
            ));
        }
        started
    }

    /// Takes in the end of a mirror request: a stored chunk is held (like a peer's), a
    /// fault penalises the mirror and leaves the chunk to the next mirror or a peer.
    pub(super) fn on_done(
        &mut self,
        done: MirrorDone,
        artifact: &Artifact,
        index: &ChunkIndex,
        twins: &[Vec<usize>],
        held: &mut Bitmap,
        progress: &DownloadProgress,
    ) {
        let MirrorDone {
            mirror,
            chunk,
            outcome,
        } = done;
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(a) = self.asked.get_mut(chunk) {
            *a = false;
        }
        let m = &self.ctx.metrics;
        match outcome {
            Outcome::Stored | Outcome::AlreadyHad => {
                if let Ok(mut b) = progress.blocked.lock()
                    && b.take().is_some()
                {
                    info!("chunks can be stored again; the download goes on");
                }
                let len = u64::from(index.chunk_len(chunk));
                // Counted once (a peer may have brought it meanwhile).
                if matches!(outcome, Outcome::Stored) && !held.get(chunk) {
                    Metrics::inc(&m.download_chunks_mirror);
                    Metrics::add(&m.download_bytes_mirror, len);
                    progress.bytes_fetched.fetch_add(len, Ordering::Relaxed);
                    progress
                        .bytes_from_mirrors
                        .fetch_add(len, Ordering::Relaxed);
                }
                if let Some(s) = self.list.get_mut(mirror) {
                    s.faults = 0;
                }
                for &i in twins.get(chunk).map(Vec::as_slice).unwrap_or_default() {
                    if !held.get(i) {
                        held.set(i);
                        self.ctx.haves.set(&artifact.chunk_index, i);
                        progress.chunks_held.fetch_add(1, Ordering::Relaxed);
                        progress.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                        progress.chunks_from_mirrors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Outcome::Fault(why) => {
                self.fault(
                    mirror,
                    &format!("chunk {chunk} of {}", artifact.name),
                    &why,
                    Some(progress),
                );
            }
            Outcome::Local(e) => super::blocked_by_disk(progress, m, chunk, &e, "mirror"),
        }
    }

    /// The chunk index of `artifact` when no peer has it: computed for an empty artifact,
    /// else by reading the whole artifact from the first mirror that serves it correctly
    /// (its chunks are stored on the way). `None`: no mirror could, for now.
    pub(super) async fn index(
        &mut self,
        artifact: &Artifact,
    ) -> Result<Option<ChunkIndex>, DownloadError> {
        if artifact.size == 0 {
            let index = ChunkIndex::new(0, artifact.chunk_size, &[]);
            let bytes = index.encode();
            if Hash32::of(&bytes) != artifact.chunk_index {
                return Ok(None);
            }
            self.ctx.store.put_verified(&artifact.chunk_index, &bytes)?;
            return Ok(Some(index));
        }
        if !self.usable() {
            return Ok(None);
        }
        while let Some(m) = self.pick(Instant::now()) {
            let url = Manifest::mirror_url(&self.list[m].base, artifact);
            info!(%url, artifact = %artifact.name, "no peer has the chunk index: reading the whole artifact from a mirror");
            match self.read_whole(&url, artifact).await {
                Ok((index, positions, bytes)) => {
                    self.whole.insert(artifact.chunk_index, (positions, bytes));
                    return Ok(Some(index));
                }
                Err(Whole::Local(e)) => return Err(e),
                Err(Whole::Fault(why)) => {
                    self.fault(m, &format!("whole artifact {}", artifact.name), &why, None);
                }
            }
        }
        Ok(None)
    }

    /// Reads `artifact` whole from `url` into a part file, chunking and hashing as it
    /// arrives; if the chunk index computed matches the manifest's, stores the chunks and
    /// the index. Returns the index, and the chunk positions and bytes newly stored.
    async fn read_whole(
        &self,
        url: &str,
        artifact: &Artifact,
    ) -> Result<(ChunkIndex, u64, u64), Whole> {
        use tokio::io::AsyncWriteExt as _;
        let size = artifact.size;
        let chunk_size = artifact.chunk_size as usize;
        let timeout = self.ctx.config.mirrors.timeout;
        // No limit on the whole transfer (an artifact may be large): every wait for more
        // bytes is limited instead.
        let client = crate::http::client(Duration::from_secs(365 * 86400))
            .map_err(|e| Whole::Fault(e.to_string()))?;
        let req = client
            .get(url)
            .header(RANGE, format!("bytes=0-{}", size - 1));
        let mut resp = match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => return Err(Whole::Fault("no answer in time".into())),
            Ok(Err(e)) => return Err(Whole::Fault(error_text(&e))),
            Ok(Ok(r)) => r,
        };
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => check_content_range(&resp, 0, size)?,
            // The whole file is what was asked for.
            StatusCode::OK => {}
            s => {
                return Err(Whole::Fault(format!(
                    "answered {s}, not 206 Partial Content"
                )));
            }
        }
        check_content_length(&resp, size)?;
        let part = self.ctx.layout.mirror_part(&artifact.chunk_index);
        let local = |e: std::io::Error| {
            Whole::Local(DownloadError::Content(ContentError::Io {
                op: "write",
                path: part.clone(),
                source: e,
            }))
        };
        if let Some(dir) = part.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(local)?;
        }
        let mut file = tokio::fs::File::create(&part).await.map_err(local)?;
        let mut hashes = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(chunk_size);
        let mut total = 0u64;
        loop {
            let piece = match tokio::time::timeout(timeout, resp.chunk()).await {
                Err(_) => return Err(Whole::Fault("stalled: no bytes in time".into())),
                Ok(Err(e)) => return Err(Whole::Fault(error_text(&e))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(p))) => p,
            };
            total += piece.len() as u64;
            if total > size {
                return Err(Whole::Fault(format!(
                    "sent more than the {size} bytes of the artifact"
                )));
            }
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let take = rest.len().min(chunk_size - buf.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == chunk_size {
                    hashes.push(Hash32::of(&buf));
                    file.write_all(&buf).await.map_err(local)?;
                    buf.clear();
                }
            }
        }
        if total != size {
            return Err(Whole::Fault(format!(
                "sent {total} bytes, the artifact has {size}"
            )));
        }
        if !buf.is_empty() {
            hashes.push(Hash32::of(&buf));
            file.write_all(&buf).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        drop(file);
        let index = ChunkIndex::new(size, artifact.chunk_size, &hashes);
        let encoded = index.encode();
        if Hash32::of(&encoded) != artifact.chunk_index {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Whole::Fault(
                "the file does not match the release's chunk index (damaged, or another file)"
                    .into(),
            ));
        }
        let (store, idx, path) = (self.ctx.store.clone(), index.clone(), part.clone());
        let index_hash = artifact.chunk_index;
        let stored =
            tokio::task::spawn_blocking(move || -> Result<(u64, u64, u64), ContentError> {
                use std::io::Read as _;
                let io = |source| ContentError::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                };
                let mut f = std::fs::File::open(&path).map_err(io)?;
                let (mut positions, mut chunks, mut bytes) = (0u64, 0u64, 0u64);
                let mut seen = HashSet::new();
                let mut buf = Vec::new();
                for (i, h) in idx.iter().enumerate() {
                    buf.resize(idx.chunk_len(i) as usize, 0);
                    f.read_exact(&mut buf).map_err(io)?;
                    if seen.contains(&h) {
                        positions += 1;
                        continue;
                    }
                    if !store.contains(&h) {
                        store.put_verified(&h, &buf)?;
                        seen.insert(h);
                        positions += 1;
                        chunks += 1;
                        bytes += buf.len() as u64;
                    }
                }
                store.put_verified(&index_hash, &encoded)?;
                Ok((positions, chunks, bytes))
            })
            .await;
        let _ = tokio::fs::remove_file(&part).await;
        let (positions, chunks, bytes) = match stored {
            Err(e) => return Err(Whole::Local(DownloadError::Join(e.to_string()))),
            Ok(Err(e)) => return Err(Whole::Local(e.into())),
            Ok(Ok(v)) => v,
        };
        let m = &self.ctx.metrics;
        Metrics::add(&m.download_chunks_mirror, chunks);
        Metrics::add(&m.download_bytes_mirror, bytes);
        info!(artifact = %artifact.name, chunks, "chunk index and chunks read from a mirror and verified");
        Ok((index, positions, bytes))
    }
}

/// Why reading a whole artifact failed.
enum Whole {
    Fault(String),
    Local(DownloadError),
}

impl From<Whole> for String {
    fn from(w: Whole) -> String {
        match w {
            Whole::Fault(s) => s,
            Whole::Local(e) => e.to_string(),
        }
    }
}

/// An error of reqwest with its causes (reqwest's own text hides them).
fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A `Content-Range`, when present, must be `bytes START-END/…` for the range asked for.
fn check_content_range(resp: &reqwest::Response, start: u64, len: u64) -> Result<(), Whole> {
    let Some(v) = resp.headers().get(CONTENT_RANGE) else {
        return Ok(());
    };
    let want = format!("bytes {start}-{}/", start + len - 1);
    match v.to_str() {
        Ok(s) if s.starts_with(&want) => Ok(()),
        Ok(s) => Err(Whole::Fault(format!(
            "Content-Range {s:?} is not the range asked for ({want}…)"
        ))),
        Err(_) => Err(Whole::Fault("unreadable Content-Range".into())),
    }
}

/// A `Content-Length`, when present, must be `len`.
fn check_content_length(resp: &reqwest::Response, len: u64) -> Result<(), Whole> {
    match resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::parse::<u64>)
    {
        None => Ok(()),
        Some(Ok(n)) if n == len => Ok(()),
        Some(_) => Err(Whole::Fault(format!(
            "Content-Length is not the {len} bytes asked for"
        ))),
    }
}

/// Reads bytes `offset .. offset + len` of `url`: exactly a `206` for that range, and
/// never more than `len` bytes of body.
async fn read_range(
    client: &reqwest::Client,
    url: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    let mut resp = client
        .get(url)
        .header(RANGE, format!("bytes={offset}-{}", offset + len - 1))
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Err(format!(
            "answered {}, not 206 Partial Content",
            resp.status()
        ));
    }
    check_content_range(&resp, offset, len).map_err(String::from)?;
    check_content_length(&resp, len).map_err(String::from)?;
    let mut body = Vec::with_capacity(len as usize);
    while let Some(piece) = resp.chunk().await.map_err(|e| error_text(&e))? {
        if (body.len() + piece.len()) as u64 > len {
            return Err(format!("sent more than the {len} bytes asked for"));
        }
        body.extend_from_slice(&piece);
    }
    if body.len() as u64 != len {
        return Err(format!("sent {} bytes, {len} asked for", body.len()));
    }
    Ok(body)
}

#[allow(clippy::too_many_arguments)]
fn request_chunk(
    ctx: Arc<Ctx>,
    part: Option<Arc<PartialFile>>,
    client: reqwest::Client,
    url: String,
    mirror: usize,
    chunk: usize,
    offset: u64,
    len: u32,
    hash: Hash32,
) -> BoxFuture<'static, MirrorDone> {
    Box::pin(async move {
        ctx.download_limit.acquire(len as usize).await;
        let outcome = match read_range(&client, &url, offset, u64::from(len)).await {
            Err(why) => Outcome::Fault(why),
            Ok(bytes) => {
                let store = ctx.store.clone();
                match tokio::task::spawn_blocking(move || {
                    super::put_chunk(&store, part.as_deref(), chunk, &hash, &bytes)
                })
                .await
                {
                    Ok(Ok(false)) => Outcome::AlreadyHad,
                    Ok(Ok(true)) => Outcome::Stored,
                    Ok(Err(ContentError::HashMismatch { .. })) => {
                        Outcome::Fault("bytes that do not match the chunk's hash".into())
                    }
                    Ok(Err(e)) => Outcome::Local(e.to_string()),
                    Err(e) => Outcome::Local(e.to_string()),
                }
            }
        };
        MirrorDone {
            mirror,
            chunk,
            outcome,
        }
    })
}
