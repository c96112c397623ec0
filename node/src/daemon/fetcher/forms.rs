//! Fetching an artifact through one of its encoded forms (manifest version 2): a
//! `zstd-patch` delta from a version this node holds, or the `zstd`-compressed artifact.
//!
//! Per artifact with forms, before its plain chunks are fetched:
//! 1. The plain cost is the bytes of the artifact's chunks not in the store. Nothing to do
//!    when it is 0 (or forms are off: `transfer.max_decode_window = 0`).
//! 2. Candidates are the forms smaller than that, smallest first. A `zstd-patch` form is a
//!    candidate only when this node holds its base: a file whose BLAKE3 is the form's
//!    `base`, looked up among the artifacts of the releases it knows (assembled under
//!    `releases/`, installed under `versions/`, or complete in the chunk store) and the
//!    files of the same name there. A base is hashed when it is found and again when it is
//!    loaded; one that does not hash right is never used.
//! 3. The form's chunk index and chunks are fetched like an artifact's (from any peer,
//!    each verified), giving up when nothing arrives for [`PATIENCE`].
//! 4. It is decoded streaming to a temporary file beside the artifact, hashed on the way;
//!    only when the output is the artifact's size and whole-file hash are its chunks
//!    written into the artifact's partial file (each verified against the artifact's chunk
//!    index); the temporary file is then removed. The caller's plain path then finds every
//!    slot written and completes the artifact as always, and the node serves those chunks
//!    (and the form's) to others.
//! 5. Any failure — no holder, a bad frame, a frame over the window cap, a wrong output —
//!    leaves the store as it was and moves to the next candidate; the plain artifact is
//!    last. No peer is blamed for a bad form: every chunk of it matched its signed hash, so
//!    a wrong output is the signers' (or the base's) fault, not a sender's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use upswarm_content::forms::{self as codec, FormError, IndexReader};
use upswarm_content::{ChunkStore, PartialFile, load_index};
use upswarm_proto::manifest::{Form, FormKind};
use upswarm_proto::{Artifact, ChunkIndex, Hash32, Manifest, SignedEnvelope};

use super::*;
use crate::api::FormUse;

/// How long a form's download may go without receiving anything before it is given up.
const PATIENCE: Duration = Duration::from_secs(20);

/// Where a base was found.
#[derive(Debug, Clone)]
enum BaseSource {
    File(PathBuf),
    /// A complete artifact of a known release, read from its chunks.
    Store(Artifact),
}

/// Fetches `artifact` through its smallest usable form, if one is smaller than its missing
/// chunks. On success every chunk of `index` is in the store; otherwise nothing changed
/// and the plain path fetches it. What happened is recorded in `progress`.
pub(super) async fn fetch_by_form(
    swarm: &mut Swarm,
    artifact: &Artifact,
    index: &ChunkIndex,
    progress: &DownloadProgress,
    dest: &Path,
    part: &Arc<PartialFile>,
) {
    let ctx = swarm.ctx.clone();
    let Some(wlog) = ctx.config.transfer.decode_window_log() else {
        return;
    };
    if artifact.forms().is_empty() || dest.is_file() {
        return;
    }
    let plain_cost = missing_bytes(&ctx.store, index);
    if plain_cost == 0 {
        return;
    }
    let mut candidates: Vec<&Form> = artifact
        .forms()
        .iter()
        .filter(|f| f.size < plain_cost)
        .collect();
    candidates.sort_by_key(|f| (f.size, f.kind == FormKind::Zstd));
    let mut used = FormUse {
        artifact: artifact.name.clone(),
        form: "plain".into(),
        ..FormUse::default()
    };
    for f in candidates {
        let label = label(f);
        let base = match f.base {
            None => None,
            Some(b) => {
                let (c, name) = (ctx.clone(), artifact.name.clone());
                let found = tokio::task::spawn_blocking(move || find_base(&c, &b, &name, wlog))
                    .await
                    .ok()
                    .flatten();
                match found {
                    Some(src) => Some(src),
                    None => {
                        debug!(artifact = %artifact.name, base = %b, "no base for a delta held here");
                        used.notes.push(format!("{label}: base not held here"));
                        continue;
                    }
                }
            }
        };
        let before = progress.bytes_fetched.load(Ordering::Relaxed);
        match fetch_and_decode(swarm, artifact, f, base, wlog, progress, part).await {
            Ok(decode_ms) => {
                let fetched = progress
                    .bytes_fetched
                    .load(Ordering::Relaxed)
                    .saturating_sub(before);
                let saved = plain_cost.saturating_sub(fetched);
                info!(
                    artifact = %artifact.name,
                    form = f.kind.as_str(),
                    fetched,
                    saved,
                    decode_ms,
                    "artifact reconstructed from an encoded form and verified"
                );
                Metrics::add(&ctx.metrics.transfer_saved_bytes, saved);
                progress.bytes_saved.fetch_add(saved, Ordering::Relaxed);
                used.form = f.kind.as_str().into();
                used.base = f.base.map(|b| b.to_hex());
                used.bytes_fetched = fetched;
                used.bytes_saved = saved;
                used.decode_ms = decode_ms;
                break;
            }
            Err(e) => {
                warn!(artifact = %artifact.name, form = %label, "encoded form not usable, trying the next: {e}");
                Metrics::inc(&ctx.metrics.forms_failed);
                used.notes.push(format!("{label}: {e}"));
            }
        }
    }
    if let Ok(mut v) = progress.forms.lock() {
        v.push(used);
    }
}

fn label(f: &Form) -> String {
    match f.base {
        Some(b) => format!("{} from {}", f.kind.as_str(), &b.to_hex()[..16]),
        None => f.kind.as_str().to_string(),
    }
}

/// Bytes of the chunks of `index` not in the store (each distinct chunk counted once).
fn missing_bytes(store: &ChunkStore, index: &ChunkIndex) -> u64 {
    let mut seen = HashSet::new();
    index
        .iter()
        .enumerate()
        .filter(|(_, h)| seen.insert(*h) && !store.contains(h))
        .map(|(i, _)| u64::from(index.chunk_len(i)))
        .sum()
}

#[derive(Debug, thiserror::Error)]
enum FormFailure {
    #[error("fetching the form: {0}")]
    Fetch(#[from] DownloadError),
    #[error("the base no longer hashes right: {0}")]
    Base(String),
    #[error("decoding: {0}")]
    Decode(#[from] FormError),
    #[error("the decoded file is not the artifact: blake3 {got}, the manifest says {expected}")]
    Mismatch { expected: Hash32, got: Hash32 },
    #[error("the decoded file's chunks do not match the artifact's chunk index")]
    Chunks,
    #[error("decoding task failed: {0}")]
    Join(String),
    #[error("writing the artifact: {0}")]
    Store(ContentError),
}

async fn fetch_and_decode(
    swarm: &mut Swarm,
    artifact: &Artifact,
    form: &Form,
    base: Option<BaseSource>,
    wlog: u32,
    progress: &DownloadProgress,
    part: &Arc<PartialFile>,
) -> Result<u64, FormFailure> {
    let file = codec::form_file(artifact, form);
    swarm.patience = Some(PATIENCE);
    let fetched = async {
        let form_index = swarm.fetch_index(&file).await?;
        swarm
            .fetch_chunks(&file, &form_index, progress, None)
            .await?;
        Ok::<_, DownloadError>(form_index)
    }
    .await;
    swarm.patience = None;
    let form_index = fetched?;
    let ctx = swarm.ctx.clone();
    let b = base.zip(form.base);
    let (a, part) = (artifact.clone(), part.clone());
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        decode_into(&ctx, &a, &part, &file, &form_index, b, wlog)
            .map(|()| t.elapsed().as_millis() as u64)
    })
    .await
    .map_err(|e| FormFailure::Join(e.to_string()))?
}

/// Decodes the form (its chunks in the store) to a temporary file, checks it is the
/// artifact, and writes the artifact's chunks (each verified) into its partial file.
fn decode_into(
    ctx: &Ctx,
    artifact: &Artifact,
    part: &PartialFile,
    file: &Artifact,
    form_index: &ChunkIndex,
    base: Option<(BaseSource, Hash32)>,
    wlog: u32,
) -> Result<(), FormFailure> {
    let base = match &base {
        None => None,
        Some((src, expected)) => {
            Some(load_base(ctx, src, expected, wlog).map_err(FormFailure::Base)?)
        }
    };
    let dir = ctx.layout.decoding.clone();
    std::fs::create_dir_all(&dir)
        .map_err(|e| FormFailure::Base(format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(format!("{}.decoded.{}", file.name, std::process::id()));
    let result = (|| {
        let out = std::fs::File::create(&tmp).map_err(FormError::Io)?;
        let mut w = HashingWriter {
            inner: std::io::BufWriter::new(out),
            hasher: blake3::Hasher::new(),
        };
        codec::decode(
            IndexReader::new(&ctx.store, form_index),
            base.as_deref(),
            artifact.size,
            wlog,
            &mut w,
        )?;
        w.inner.flush().map_err(FormError::Io)?;
        let got = Hash32::from(w.hasher.finalize());
        if got != artifact.hash {
            return Err(FormFailure::Mismatch {
                expected: artifact.hash,
                got,
            });
        }
        let held = part
            .fill(&ctx.store, Some(&tmp))
            .map_err(FormFailure::Store)?;
        if held.is_full() {
            Ok(())
        } else {
            Err(FormFailure::Chunks)
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Finds a base with whole-file hash `base` (at most `2^wlog` bytes): among the artifacts
/// of the releases this node knows with that hash (assembled, installed, or complete in the
/// store), then among the files named `name` under `releases/` and `versions/`. Every
/// candidate is hashed; the first that matches is returned.
fn find_base(ctx: &Ctx, base: &Hash32, name: &str, wlog: u32) -> Option<BaseSource> {
    let limit = 1u64 << wlog;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut in_store: Vec<Artifact> = Vec::new();
    for (id, stored) in ctx.state.releases.iter().flatten() {
        let Ok(env) = SignedEnvelope::decode::<Manifest>(&stored.envelope) else {
            continue;
        };
        let Ok(m) = env.open::<Manifest>() else {
            continue;
        };
        for a in m.artifacts.iter().filter(|a| a.hash == *base) {
            if let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) {
                files.push(ctx.layout.release(&Hash32(id)).join(&a.name));
            }
            // `versions/<version>/` (docs/architecture.md, "Where state lives").
            files.push(
                ctx.layout
                    .versions
                    .join(m.version.to_string())
                    .join(&a.name),
            );
            in_store.push(a.clone());
        }
    }
    for dir in [&ctx.layout.releases, &ctx.layout.versions] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(entries.flatten().map(|e| e.path().join(name)));
        }
    }
    let mut tried = HashSet::new();
    for f in files {
        if !tried.insert(f.clone()) {
            continue;
        }
        if hash_file(&f, limit).is_some_and(|h| h == *base) {
            return Some(BaseSource::File(f));
        }
    }
    in_store
        .into_iter()
        .find(|a| a.size <= limit && upswarm_content::verify_artifact(&ctx.store, a).is_ok())
        .map(BaseSource::Store)
}

/// BLAKE3 of the file at `path` when it is a regular file of at most `limit` bytes.
fn hash_file(path: &Path, limit: u64) -> Option<Hash32> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(Hash32::from(h.finalize()))
}

/// Reads a base into memory and checks its hash (again: the file may have changed since
/// it was found).
fn load_base(ctx: &Ctx, src: &BaseSource, expected: &Hash32, wlog: u32) -> Result<Vec<u8>, String> {
    let limit = 1u64 << wlog;
    let bytes = match src {
        BaseSource::File(p) => {
            let len = std::fs::metadata(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .len();
            if len > limit {
                return Err(format!("{}: {len} bytes, over the window cap", p.display()));
            }
            std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?
        }
        BaseSource::Store(a) => {
            let index = load_index(&ctx.store, a).map_err(|e| e.to_string())?;
            let mut buf = Vec::with_capacity(a.size as usize);
            std::io::Read::read_to_end(&mut IndexReader::new(&ctx.store, &index), &mut buf)
                .map_err(|e| e.to_string())?;
            buf
        }
    };
    let got = Hash32::of(&bytes);
    if got != *expected {
        return Err(format!("blake3 {got}, expected {expected}"));
    }
    Ok(bytes)
}
