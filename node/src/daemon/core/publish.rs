//! `upswarm release publish` on this node: the manifest judged like any other, the release
//! directory's files copied in (each chunk verified on the way) off the actor's task, then
//! seeded and announced (`CoreMsg::Imported`). It must not trust the directory: a damaged or
//! missing chunk fails the import and nothing half-copied is served.

use super::*;

impl Core {
    pub(super) fn publish(
        &mut self,
        dir: PathBuf,
        reply: oneshot::Sender<Result<ReleaseView, PublishError>>,
    ) {
        let path = dir.join(crate::layout::MANIFEST_FILE);
        let read = super::super::state::outside_workers(|| {
            crate::files::read_limited(&path, Manifest::WHAT, Manifest::MAX_BYTES)
        });
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Err(PublishError::Unreadable(format!("{e:#}"))));
                return;
            }
        };
        let id = match self.consider(&bytes, Source::Publish) {
            Verdict::Accept(id) => id,
            Verdict::Duplicate(id) => id,
            Verdict::Reject(why) => {
                let _ = reply.send(Err(PublishError::Refused { path, why }));
                return;
            }
            Verdict::Superseded(why) => {
                let _ = reply.send(Err(PublishError::Superseded { path, why }));
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
            .map_err(|e| ImportError::Task(e.to_string()))
            .and_then(|r| r);
            let _ = to_self.send(CoreMsg::Imported { id, result, reply }).await;
        });
    }
}

/// Copies a release directory into the node: the artifacts this node uses are written
/// into place (each chunk verified on the way; served from there), the others and every
/// encoded form as chunk files in the store (to seed them).
fn import(
    store: &ChunkStore,
    dir: &std::path::Path,
    manifest: &Manifest,
    wanted: &[String],
    dest: &std::path::Path,
) -> Result<(), ImportError> {
    let src_dir = dir.join(crate::layout::CHUNKS_DIR);
    // The signer's directory is only read: a damaged chunk there is reported, not removed.
    let at = |source| ImportError::Source {
        dir: src_dir.clone(),
        source,
    };
    let src = ChunkStore::open_read_only(&src_dir).map_err(ImportError::Store)?;
    // Copies one file's chunk index, and its chunks (each verified) into `part` or else
    // into the store.
    let copy = |file: &upswarm_proto::Artifact, part: Option<&PartialFile>| {
        let index = peek_index(&src, file).map_err(at)?;
        let limit = upswarm_proto::ChunkIndex::max_encoded_len(file.size, file.chunk_size);
        let index_bytes = src.peek(&file.chunk_index, limit).map_err(at)?;
        store.put_verified(&file.chunk_index, &index_bytes)?;
        for (i, h) in index.iter().enumerate() {
            let chunk = src.peek(&h, u64::from(index.chunk_len(i))).map_err(at)?;
            match part {
                Some(p) => p.put(store, i, &chunk).map(drop),
                None => store.put_verified(&h, &chunk),
            }?;
        }
        Ok::<_, ImportError>(index)
    };
    for a in &manifest.artifacts {
        if wanted.contains(&a.name) {
            let index = peek_index(&src, a).map_err(at)?;
            let to = dest.join(&a.name);
            let part = PartialFile::open(store, &to, &index)?;
            copy(a, Some(&part))?;
            part.finish(store, a, &to)?;
        } else {
            copy(a, None)?;
        }
        // Its encoded forms, to seed them.
        for f in a.forms() {
            copy(&upswarm_content::forms::form_file(a, f), None)?;
        }
    }
    Ok(())
}
