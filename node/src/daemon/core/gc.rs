//! The core's side of garbage collection (the rule: [`crate::daemon::gc`]): gathering what
//! the rule needs, deleting what it removes, the disk use in `status`.

use super::*;
use crate::daemon::gc::{self as rule, Candidate, GcRelease, GcReport};

/// Chunk-index and chunk hashes of every stored artifact of `manifests` and of every
/// encoded form of them (one whose index is not stored contributes its index hash only).
fn blobs_of(store: &ChunkStore, manifests: &[Manifest]) -> BTreeSet<Hash32> {
    let mut blobs = BTreeSet::new();
    for a in files_of(manifests) {
        blobs.insert(a.chunk_index);
        if let Ok(index) = peek_index(store, &a) {
            blobs.extend(index.iter());
        }
    }
    blobs
}

/// The artifacts of `manifests` and the files of their encoded forms.
fn files_of(manifests: &[Manifest]) -> Vec<upswarm_proto::Artifact> {
    manifests
        .iter()
        .flat_map(|m| &m.artifacts)
        .flat_map(|a| {
            std::iter::once(a.clone()).chain(
                a.forms()
                    .iter()
                    .map(|f| upswarm_content::forms::form_file(a, f)),
            )
        })
        .collect()
}

impl Core {
    /// Why garbage collection must not run now, if so: a download or a transition uses
    /// files it could remove.
    fn gc_busy(&self) -> Option<String> {
        let running = self
            .downloads
            .iter()
            .find(|(_, (_, task))| !task.is_finished())
            .map(|(id, _)| id)
            .or_else(|| {
                self.releases
                    .iter()
                    .find(|(_, k)| k.stored.download == DownloadState::Downloading)
                    .map(|(id, _)| id)
            });
        if let Some(id) = running {
            let what = self.releases.get(id).map_or_else(
                || id.to_hex(),
                |k| {
                    format!(
                        "{} {}",
                        k.verified.manifest.name, k.verified.manifest.version
                    )
                },
            );
            return Some(format!(
                "release {what} is downloading; nothing is collected while a download runs"
            ));
        }
        if let Some(a) = &self.apply {
            let v = a.view();
            if !v.idle() {
                return Some(
                    "an update is being applied or recovered; nothing is collected meanwhile"
                        .into(),
                );
            }
        }
        None
    }

    /// Collects garbage (`dry_run`: only says what would go).
    pub(super) async fn gc(&mut self, dry_run: bool) -> GcReport {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        if let Some(why) = self.gc_busy() {
            report.skipped = Some(why);
            return report;
        }
        let r = self.ctx.config.retention.clone();
        let (installed, last_backup) = match &self.apply {
            Some(a) => {
                let i = a.installed();
                let ids: BTreeSet<Hash32> = i
                    .current
                    .iter()
                    .chain(i.previous.iter())
                    .map(|v| v.release)
                    .collect();
                (ids, i.last_backup.map(|(_, p)| p))
            }
            None => (BTreeSet::new(), None),
        };
        let candidates: Vec<Candidate> = self
            .releases
            .iter()
            .map(|(id, k)| Candidate {
                id: *id,
                product: k.verified.manifest.name.clone(),
                channel: k.verified.manifest.channel.clone(),
                version: k.verified.manifest.version.clone(),
                first_seen: k.stored.first_seen,
                on_disk: matches!(
                    k.stored.download,
                    DownloadState::Complete { .. } | DownloadState::Failed { .. }
                ),
                installed: installed.contains(id),
            })
            .collect();
        let mut remove = rule::plan(&candidates, r.keep_releases, r.grace.as_secs(), self.now());
        remove.sort_by(|a, b| {
            let (ka, kb) = (
                &self.releases[a].verified.manifest,
                &self.releases[b].verified.manifest,
            );
            (&ka.name, &ka.channel, &ka.version).cmp(&(&kb.name, &kb.channel, &kb.version))
        });
        let gone: BTreeSet<Hash32> = remove.iter().copied().collect();
        let kept: Vec<Manifest> = self
            .releases
            .iter()
            .filter(|(id, k)| {
                !gone.contains(id)
                    && !matches!(
                        k.stored.download,
                        DownloadState::NotFollowed | DownloadState::Removed { .. }
                    )
            })
            .map(|(_, k)| k.verified.manifest.clone())
            .collect();
        let removed: Vec<(Hash32, Manifest)> = remove
            .iter()
            .map(|id| (*id, self.releases[id].verified.manifest.clone()))
            .collect();
        let (store, layout) = (self.ctx.store.clone(), self.ctx.layout.clone());
        let keep_backups = r.keep_backups;
        let backups_dir = layout.backups.clone();
        // The file work, off the core's thread.
        let files = tokio::task::spawn_blocking(move || {
            let referenced = blobs_of(&store, &kept);
            let manifests: Vec<Manifest> = removed.iter().map(|(_, m)| m.clone()).collect();
            // Chunk indexes no kept release shares: no longer announced as held.
            let forget: Vec<Hash32> = files_of(&manifests)
                .into_iter()
                .map(|a| a.chunk_index)
                .filter(|h| !referenced.contains(h))
                .collect();
            let blobs: Vec<Hash32> = blobs_of(&store, &manifests)
                .into_iter()
                .filter(|h| !referenced.contains(h) && store.has_file(h))
                .collect();
            let mut dirs = Vec::new();
            for (id, _) in &removed {
                let dir = layout.release(id);
                let bytes = rule::tree_bytes(&dir, &mut std::collections::HashSet::new());
                if !dry_run {
                    let _ = std::fs::remove_dir_all(&dir);
                    store.forget_under(&dir);
                }
                dirs.push(bytes);
            }
            let (mut chunks, mut chunk_bytes) = (0u64, 0u64);
            for h in &blobs {
                let n = if dry_run {
                    store.len_of(h).unwrap_or(0)
                } else {
                    match store.remove(h) {
                        Ok(n) => n,
                        Err(e) => {
                            warn!("garbage collection: {e}");
                            continue;
                        }
                    }
                };
                chunks += 1;
                chunk_bytes += n;
            }
            let protect: Vec<&std::path::Path> = last_backup.iter().map(PathBuf::as_path).collect();
            let mut backups = Vec::new();
            let mut backup_bytes = 0;
            for b in rule::backups_beyond(&backups_dir, keep_backups, &protect) {
                backup_bytes += rule::tree_bytes(&b, &mut std::collections::HashSet::new());
                if !dry_run {
                    let _ = std::fs::remove_dir_all(&b);
                }
                backups.push(
                    b.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
            (dirs, chunks, chunk_bytes, backups, backup_bytes, forget)
        })
        .await;
        let Ok((dirs, chunks, chunk_bytes, backups, backup_bytes, forget)) = files else {
            report.skipped = Some("garbage collection task failed".into());
            return report;
        };
        report.chunks = chunks;
        report.chunk_bytes = chunk_bytes;
        report.backups = backups;
        report.backup_bytes = backup_bytes;
        for (id, bytes) in remove.iter().zip(dirs) {
            let m = &self.releases[id].verified.manifest;
            report.releases.push(GcRelease {
                id: id.to_hex(),
                name: m.name.clone(),
                version: m.version.to_string(),
                channel: m.channel.clone(),
                bytes,
            });
            // Health reports about a release no longer held; control messages (a yank
            // among them) are kept: they are small and must outlive the release.
            report.signed += self
                .ctx
                .signed
                .remove_subject(SignedKind::Health, id, dry_run);
            if !dry_run {
                self.set_download(*id, DownloadState::Removed { at: self.now() });
            }
        }
        // Health reports about releases removed earlier that peers handed over again.
        let earlier: Vec<Hash32> = self
            .releases
            .iter()
            .filter(|(_, k)| matches!(k.stored.download, DownloadState::Removed { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in &earlier {
            report.signed += self
                .ctx
                .signed
                .remove_subject(SignedKind::Health, id, dry_run);
        }
        if !dry_run {
            for h in &forget {
                self.ctx.haves.forget(h);
            }
        }
        report.bytes = report.releases.iter().map(|r| r.bytes).sum::<u64>()
            + report.chunk_bytes
            + report.backup_bytes;
        if !dry_run {
            self.ctx.disk.invalidate();
        }
        if !dry_run && (report.bytes > 0 || report.signed > 0) {
            let _ = self.ctx.state.flush_durably();
            info!(
                releases = report.releases.len(),
                chunks = report.chunks,
                bytes = report.bytes,
                signed = report.signed,
                backups = report.backups.len(),
                "garbage collected"
            );
        }
        report
    }
}
