//! The content-addressed chunk store.
//!
//! Owns the blob files under its root and the in-memory map of extents. It never hands out bytes
//! that did not verify against their hash, never writes into an extent's file (it only reads it)
//! and deletes nothing outside its root. Blocking std I/O: async callers must run it in
//! `spawn_blocking`.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use upswarm_proto::{ChunkIndex, Hash32};

use crate::ContentError;

/// The longest blob the store holds: the larger of a chunk and a chunk index.
pub const MAX_BLOB_BYTES: u64 = {
    let chunk = upswarm_proto::manifest::MAX_CHUNK_SIZE as u64;
    let index = upswarm_proto::manifest::MAX_CHUNKS * 32 + 1024;
    if chunk > index { chunk } else { index }
};

/// Where a chunk's bytes sit inside a file that is not a chunk file: an assembled artifact,
/// or an artifact still being downloaded (see [`crate::PartialFile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extent {
    file: Arc<PathBuf>,
    offset: u64,
    len: u32,
}

/// Chunks and index blobs, found by their blake3 hash, in one of two places:
///
/// - **chunk files** named by their hash, `<root>/<first two hex digits>/<64 hex digits>`
///   (temp files live in `<root>/.tmp` and are swept on open): chunk indexes, chunks of
///   artifacts this node holds but does not assemble, and chunks on their way into a file;
/// - **extents**: a range of an artifact's file (`offset = position × chunk size`),
///   registered in memory by [`ChunkStore::adopt`] for assembled artifacts and by
///   [`ChunkStore::register_extent`] for the slots of a download in progress. The bytes
///   of a complete artifact are on disk once: its chunks are served from the file.
///
/// Every read is verified against the hash, from either place.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Distinguishes temp files of concurrent writers in this process.
    seq: AtomicU64,
    extents: RwLock<HashMap<Hash32, Vec<Extent>>>,
}

impl ChunkStore {
    /// Opens (creating if needed) a store at `root`, removing temp files left by a crash.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let root = root.into();
        let tmp = root.join(".tmp");
        fs::create_dir_all(&tmp).map_err(ContentError::io("create directory", &tmp))?;
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(ChunkStore {
            root,
            tmp,
            seq: AtomicU64::new(0),
            extents: RwLock::default(),
        })
    }

    /// Opens an existing store for reading only: nothing is created, swept or removed
    /// (use [`ChunkStore::peek`] to read). For inspecting someone else's release directory.
    pub fn open_read_only(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(ContentError::Io {
                op: "open store",
                source: std::io::Error::new(ErrorKind::NotFound, "not a directory"),
                path: root,
            });
        }
        Ok(ChunkStore {
            tmp: root.join(".tmp"),
            root,
            seq: AtomicU64::new(0),
            extents: RwLock::default(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `hash` lives (whether or not it is there).
    pub fn path_of(&self, hash: &Hash32) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Whether a blob with this hash is stored, as a chunk file or inside an artifact's file
    /// (its content is verified when read).
    pub fn contains(&self, hash: &Hash32) -> bool {
        self.has_file(hash) || self.extents_of(hash).is_some_and(|e| !e.is_empty())
    }

    /// Whether a chunk file with this hash is there (extents not counted).
    pub fn has_file(&self, hash: &Hash32) -> bool {
        self.path_of(hash).is_file()
    }

    /// Length of the chunk file with `hash`, if it is there (extents not counted: they
    /// take no space of their own).
    pub fn len_of(&self, hash: &Hash32) -> Option<u64> {
        fs::metadata(self.path_of(hash))
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// Deletes the chunk file with `hash` (garbage collection: the caller knows no kept release
    /// references it). Returns the bytes freed; 0 when it was not there.
    pub fn remove(&self, hash: &Hash32) -> Result<u64, ContentError> {
        let path = self.path_of(hash);
        let len = self.len_of(hash).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ContentError::io("remove chunk", &path)(e)),
        }
    }

    /// Stores `bytes`, returning their hash. Already-stored content is not rewritten.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash32, ContentError> {
        let hash = Hash32::of(bytes);
        self.write_new(&hash, bytes)?;
        Ok(hash)
    }

    /// Stores `bytes` only if they hash to `expected`.
    pub fn put_verified(&self, expected: &Hash32, bytes: &[u8]) -> Result<(), ContentError> {
        let got = Hash32::of(bytes);
        if got != *expected {
            return Err(ContentError::HashMismatch {
                what: "chunk",
                expected: *expected,
                got,
            });
        }
        self.write_new(expected, bytes)
    }

    /// Stores bytes the caller has just hashed to `hash` (the chunker hashes as it reads).
    pub(crate) fn put_prehashed(&self, hash: &Hash32, bytes: &[u8]) -> Result<(), ContentError> {
        self.write_new(hash, bytes)
    }

    fn write_new(&self, hash: &Hash32, bytes: &[u8]) -> Result<(), ContentError> {
        let dest = self.path_of(hash);
        if dest.is_file() {
            return Ok(());
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{}.{}.{n}", hash.to_hex(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(ContentError::io("write chunk", &tmp)(e));
        }
        // No fsync per chunk: a chunk is verified every time it is read, so a chunk torn by
        // a power cut is detected, dropped and fetched again. Assembled artifacts are synced.
        let parent = dest.parent().unwrap_or(&self.root);
        let mut renamed = fs::rename(&tmp, &dest);
        if matches!(&renamed, Err(e) if e.kind() == ErrorKind::NotFound) {
            fs::create_dir_all(parent).map_err(ContentError::io("create directory", parent))?;
            renamed = fs::rename(&tmp, &dest);
        }
        renamed.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ContentError::io("store chunk", &dest)(e)
        })
    }

    /// Reads and verifies the blob with `hash`.
    ///
    /// `max_len` only limits the answer: an intact blob longer than that is refused with
    /// [`ContentError::TooLarge`] and left alone (a requester's limit says nothing about the
    /// blob). A blob that does not match its hash — whatever its length — is damaged: it is
    /// removed and reported as [`ContentError::Corrupt`], so that the caller gets it again.
    pub fn get(&self, hash: &Hash32, max_len: u64) -> Result<Vec<u8>, ContentError> {
        self.read(hash, max_len, true)
    }

    /// Like [`ChunkStore::get`], but never changes the store: a damaged blob is reported as
    /// [`ContentError::Damaged`] and left where it is. For read-only inspections.
    pub fn peek(&self, hash: &Hash32, max_len: u64) -> Result<Vec<u8>, ContentError> {
        self.read(hash, max_len, false)
    }

    fn read(&self, hash: &Hash32, max_len: u64, repair: bool) -> Result<Vec<u8>, ContentError> {
        let path = self.path_of(hash);
        let damaged = |path: PathBuf| {
            if repair {
                self.discard(hash);
                ContentError::Corrupt { hash: *hash, path }
            } else {
                ContentError::Damaged { hash: *hash, path }
            }
        };
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self
                    .read_extent(hash, max_len, repair)
                    .unwrap_or(Err(ContentError::Missing { hash: *hash, path }));
            }
            Err(e) => return Err(ContentError::io("open chunk", &path)(e)),
        };
        let len = f
            .metadata()
            .map_err(ContentError::io("stat chunk", &path))?
            .len();
        if len > MAX_BLOB_BYTES {
            // No blob of ours is this long: damaged for sure.
            return Err(damaged(path));
        }
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf)
            .map_err(ContentError::io("read chunk", &path))?;
        if Hash32::of(&buf) != *hash {
            return Err(damaged(path));
        }
        if buf.len() as u64 > max_len {
            return Err(ContentError::TooLarge {
                what: "stored blob",
                limit: max_len,
                got: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    /// Removes a blob's chunk file (best effort).
    pub fn discard(&self, hash: &Hash32) {
        let _ = fs::remove_file(self.path_of(hash));
    }

    fn extents_of(&self, hash: &Hash32) -> Option<Vec<Extent>> {
        self.extents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    fn drop_extent(&self, hash: &Hash32, gone: &Extent) {
        let mut map = self.extents.write().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(hash) {
            list.retain(|e| e != gone);
            if list.is_empty() {
                map.remove(hash);
            }
        }
    }

    /// Reads `hash` from the files registered for it, the first that verifies; `None` when
    /// no extent is registered. An extent whose file is gone, is short or does not verify
    /// is dropped (with `repair`) and the next one tried; the file itself is never changed.
    fn read_extent(
        &self,
        hash: &Hash32,
        max_len: u64,
        repair: bool,
    ) -> Option<Result<Vec<u8>, ContentError>> {
        let extents = self.extents_of(hash)?;
        let mut damaged = None;
        for e in extents {
            let mut buf = vec![0u8; e.len as usize];
            let read =
                fs::File::open(e.file.as_path()).and_then(|f| f.read_exact_at(&mut buf, e.offset));
            match read {
                Ok(()) if Hash32::of(&buf) == *hash => {
                    if buf.len() as u64 > max_len {
                        return Some(Err(ContentError::TooLarge {
                            what: "stored blob",
                            limit: max_len,
                            got: buf.len() as u64,
                        }));
                    }
                    return Some(Ok(buf));
                }
                Ok(()) => {
                    damaged = Some(e.file.as_path().to_path_buf());
                    if repair {
                        self.drop_extent(hash, &e);
                    }
                }
                Err(_) => {
                    if repair {
                        self.drop_extent(hash, &e);
                    }
                }
            }
        }
        let path = damaged?;
        Some(Err(if repair {
            ContentError::Corrupt { hash: *hash, path }
        } else {
            ContentError::Damaged { hash: *hash, path }
        }))
    }

    /// Registers that the chunk `hash` (`len` bytes) sits at `offset` of `file`.
    pub fn register_extent(&self, file: &Arc<PathBuf>, hash: Hash32, offset: u64, len: u32) {
        let e = Extent {
            file: file.clone(),
            offset,
            len,
        };
        let mut map = self.extents.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(hash).or_default();
        if !list.contains(&e) {
            list.push(e);
        }
    }

    /// Forgets every extent inside `file` (it is renamed, removed or rewritten).
    pub fn forget_file(&self, file: &Path) {
        self.forget_where(|f| f == file);
    }

    /// Forgets every extent inside a file under `dir` (the directory is removed).
    pub fn forget_under(&self, dir: &Path) {
        self.forget_where(|f| f.starts_with(dir));
    }

    fn forget_where(&self, gone: impl Fn(&Path) -> bool) {
        let mut map = self.extents.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, list| {
            list.retain(|e| !gone(e.file.as_path()));
            !list.is_empty()
        });
    }

    /// Serves the chunks of the assembled artifact `file` (described by `index`) from that
    /// file, and removes the chunk files that held the same bytes: after this the bytes are
    /// on disk once. A chunk file is removed only after the file's own copy of that chunk
    /// verified, so a damaged file never costs a good chunk file. Returns the bytes freed.
    pub fn adopt(&self, file: &Path, index: &ChunkIndex) -> u64 {
        let file = Arc::new(file.to_path_buf());
        let Ok(f) = fs::File::open(file.as_path()) else {
            return 0;
        };
        let mut freed = 0;
        let mut buf = Vec::new();
        for (i, h) in index.iter().enumerate() {
            let len = index.chunk_len(i);
            let offset = i as u64 * u64::from(index.chunk_size);
            self.register_extent(&file, h, offset, len);
            if !self.has_file(&h) {
                continue;
            }
            buf.resize(len as usize, 0);
            if f.read_exact_at(&mut buf, offset).is_ok() && Hash32::of(&buf) == h {
                freed += self.remove(&h).unwrap_or(0);
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_corruption_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let h = store.put(b"hello chunk").unwrap();
        assert!(store.contains(&h));
        assert_eq!(store.get(&h, 1024).unwrap(), b"hello chunk");
        // Tamper with the file on disk: the read notices, removes it.
        fs::write(store.path_of(&h), b"hellO chunk").unwrap();
        assert!(matches!(
            store.get(&h, 1024),
            Err(ContentError::Corrupt { .. })
        ));
        assert!(!store.contains(&h));
        assert!(matches!(
            store.get(&h, 1024),
            Err(ContentError::Missing { .. })
        ));
    }

    #[test]
    fn peek_reports_damage_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let h = store.put(b"hello chunk").unwrap();
        fs::write(store.path_of(&h), b"hellO chunk").unwrap();
        assert!(matches!(
            store.peek(&h, 1024),
            Err(ContentError::Damaged { .. })
        ));
        assert!(store.contains(&h));
    }

    #[test]
    fn put_verified_refuses_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let h = Hash32::of(b"right");
        let err = store.put_verified(&h, b"wrong").unwrap_err();
        assert!(matches!(err, ContentError::HashMismatch { .. }), "{err}");
        assert!(!store.contains(&h));
        store.put_verified(&h, b"right").unwrap();
        assert!(store.contains(&h));
    }

    #[test]
    fn a_small_limit_refuses_the_read_and_never_removes_the_blob() {
        // A peer asking with `max_len` 0 or 1 must not make the node drop a good chunk.
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let h = store.put(&[1u8; 100]).unwrap();
        for limit in [0, 1, 10, 99] {
            assert!(matches!(
                store.get(&h, limit),
                Err(ContentError::TooLarge { got: 100, .. })
            ));
            assert!(store.contains(&h), "limit {limit} removed the blob");
        }
        assert_eq!(store.get(&h, 100).unwrap(), vec![1u8; 100]);
    }

    #[test]
    fn open_sweeps_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let stale = store.tmp.join("leftover");
        fs::write(&stale, b"x").unwrap();
        drop(store);
        ChunkStore::open(dir.path()).unwrap();
        assert!(!stale.exists());
    }
}
