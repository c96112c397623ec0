//! The content-addressed chunk store.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use upswarm_proto::Hash32;

use crate::ContentError;

/// The longest blob the store holds: the larger of a chunk and a chunk index.
pub const MAX_BLOB_BYTES: u64 = {
    let chunk = upswarm_proto::manifest::MAX_CHUNK_SIZE as u64;
    let index = upswarm_proto::manifest::MAX_CHUNKS * 32 + 1024;
    if chunk > index { chunk } else { index }
};

/// Chunks and index blobs as files named by their blake3 hash:
/// `<root>/<first two hex digits>/<64 hex digits>`. Temp files live in `<root>/.tmp` and are
/// swept on open.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Distinguishes temp files of concurrent writers in this process.
    seq: AtomicU64,
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

    /// Whether a blob with this hash is stored (its content is verified when read).
    pub fn contains(&self, hash: &Hash32) -> bool {
        self.path_of(hash).is_file()
    }

    /// Length of the stored blob with `hash`, if it is there.
    pub fn len_of(&self, hash: &Hash32) -> Option<u64> {
        fs::metadata(self.path_of(hash))
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// Deletes the blob with `hash` (garbage collection: the caller knows no kept release
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
                return Err(ContentError::Missing { hash: *hash, path });
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

    /// Removes a blob (best effort).
    pub fn discard(&self, hash: &Hash32) {
        let _ = fs::remove_file(self.path_of(hash));
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
