//! Turning verified chunks back into files, and checking a stored artifact.
//!
//! Owns writing a whole artifact from the store and the whole-file hash check (`check_whole`, which
//! `PartialFile` uses too). `verify_artifact`, `verify_file` and `peek_index` change nothing;
//! `assemble` writes only `dest` and a temporary file beside it, removed on failure, and never
//! renames into place bytes that failed the check. Blocking std I/O: async callers must run it in
//! `spawn_blocking`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use upswarm_proto::{Artifact, ChunkIndex, Hash32};

use crate::{ChunkStore, ContentError};

/// Loads and checks the chunk index of `artifact` from `store`: the blob must hash to the
/// manifest's `chunk_index` and describe the artifact's size and chunk size.
pub fn load_index(store: &ChunkStore, artifact: &Artifact) -> Result<ChunkIndex, ContentError> {
    let limit = ChunkIndex::max_encoded_len(artifact.size, artifact.chunk_size);
    let bytes = store.get(&artifact.chunk_index, limit)?;
    decode_index(&bytes, artifact)
}

/// Like [`load_index`], without changing the store (see [`ChunkStore::peek`]).
pub fn peek_index(store: &ChunkStore, artifact: &Artifact) -> Result<ChunkIndex, ContentError> {
    let limit = ChunkIndex::max_encoded_len(artifact.size, artifact.chunk_size);
    let bytes = store.peek(&artifact.chunk_index, limit)?;
    decode_index(&bytes, artifact)
}

fn decode_index(bytes: &[u8], artifact: &Artifact) -> Result<ChunkIndex, ContentError> {
    ChunkIndex::decode_for(bytes, artifact).map_err(|source| ContentError::Index {
        name: artifact.name.clone(),
        source,
    })
}

/// Checks that every chunk of `artifact` is in `store` and that together they hash to the
/// artifact's whole-file hash. Returns the artifact's chunk index. Read-only: nothing in
/// the store is changed, damaged blobs included.
pub fn verify_artifact(
    store: &ChunkStore,
    artifact: &Artifact,
) -> Result<ChunkIndex, ContentError> {
    let index = peek_index(store, artifact)?;
    let mut whole = blake3::Hasher::new();
    for (i, h) in index.iter().enumerate() {
        let chunk = store.peek(&h, u64::from(index.chunk_len(i)))?;
        if chunk.len() != index.chunk_len(i) as usize {
            return Err(ContentError::HashMismatch {
                what: "chunk length",
                expected: h,
                got: Hash32::of(&chunk),
            });
        }
        whole.update(&chunk);
    }
    check_whole(artifact, &whole)?;
    Ok(index)
}

/// Checks the whole-file hash of `artifact`'s bytes, fed to `whole`.
pub(crate) fn check_whole(artifact: &Artifact, whole: &blake3::Hasher) -> Result<(), ContentError> {
    let got = Hash32::from(whole.finalize());
    if got != artifact.hash {
        return Err(ContentError::WholeFile {
            name: artifact.name.clone(),
            expected: artifact.hash,
            got,
        });
    }
    Ok(())
}

/// Checks that the file at `path` is `artifact`: its size, then its whole-file hash (one
/// read). Read-only.
pub fn verify_file(path: &Path, artifact: &Artifact) -> Result<(), ContentError> {
    let mut f = fs::File::open(path).map_err(ContentError::io("open", path))?;
    let len = f.metadata().map_err(ContentError::io("stat", path))?.len();
    if len != artifact.size {
        return Err(ContentError::FileSize {
            name: artifact.name.clone(),
            path: path.to_path_buf(),
            expected: artifact.size,
            got: len,
        });
    }
    let mut whole = blake3::Hasher::new();
    whole
        .update_reader(&mut f)
        .map_err(ContentError::io("read", path))?;
    check_whole(artifact, &whole)?;
    Ok(())
}

/// Writes `artifact` to `dest` from the chunks in `store`, atomically: a temp file beside
/// `dest` is written, synced, checked against the whole-file hash, given the manifest's
/// mode and only then renamed into place (and the directory synced). On any error nothing
/// is left at `dest` and the temp file is removed.
pub fn assemble(
    store: &ChunkStore,
    artifact: &Artifact,
    index: &ChunkIndex,
    dest: &Path,
) -> Result<(), ContentError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(ContentError::io("create directory", dir))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.part.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(ContentError::io("create", &tmp))?;
        let mut whole = blake3::Hasher::new();
        for (i, h) in index.iter().enumerate() {
            let chunk = store.get(&h, u64::from(index.chunk_len(i)))?;
            whole.update(&chunk);
            f.write_all(&chunk)
                .map_err(ContentError::io("write", &tmp))?;
        }
        check_whole(artifact, &whole)?;
        f.set_permissions(fs::Permissions::from_mode(artifact.mode & 0o777))
            .map_err(ContentError::io("set mode of", &tmp))?;
        f.sync_all().map_err(ContentError::io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(ContentError::io("rename into place", dest))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_file;

    fn setup(data: &[u8]) -> (tempfile::TempDir, ChunkStore, Artifact) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        fs::write(&src, data).unwrap();
        let store = ChunkStore::open(dir.path().join("store")).unwrap();
        let c = chunk_file(&src, 4096, &store).unwrap();
        let artifact = Artifact {
            name: "src.bin".into(),
            platform: "any".into(),
            size: c.size,
            mode: 0o755,
            hash: c.hash,
            chunk_size: 4096,
            chunk_index: c.index_hash,
            forms: None,
        };
        (dir, store, artifact)
    }

    #[test]
    fn assemble_roundtrip_with_mode() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (dir, store, artifact) = setup(&data);
        let index = verify_artifact(&store, &artifact).unwrap();
        let dest = dir.path().join("out/node");
        assemble(&store, &artifact, &index, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }

    #[test]
    fn a_chunk_whose_bytes_do_not_match_its_hash_is_caught() {
        let data = vec![9u8; 10_000];
        let (dir, store, artifact) = setup(&data);
        let index = load_index(&store, &artifact).unwrap();
        let h = index.hash(1);
        fs::write(store.path_of(&h), vec![8u8; 4096]).unwrap();
        // Verifying is read-only: the damage is reported, the file left in place.
        let err = verify_artifact(&store, &artifact).unwrap_err();
        assert!(matches!(err, ContentError::Damaged { .. }), "{err}");
        assert!(store.contains(&h));
        let dest = dir.path().join("out");
        // Chunk 0 has the same bytes as chunk 1 (all 9s): rewrite it first so both vanish.
        fs::write(store.path_of(&index.hash(0)), vec![8u8; 4096]).unwrap();
        assert!(assemble(&store, &artifact, &index, &dest).is_err());
        assert!(!dest.exists());
        assert_eq!(
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .contains(".part")
                })
                .count(),
            0
        );
    }

    #[test]
    fn whole_hash_mismatch_leaves_nothing() {
        let data = vec![1u8; 5000];
        let (dir, store, mut artifact) = setup(&data);
        artifact.hash = Hash32([0; 32]);
        let index = load_index(&store, &artifact).unwrap();
        let dest = dir.path().join("out");
        let err = assemble(&store, &artifact, &index, &dest).unwrap_err();
        assert!(matches!(err, ContentError::WholeFile { .. }), "{err}");
        assert!(!dest.exists());
    }
}
