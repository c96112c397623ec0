//! The content-addressed chunk store.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use upswarm_proto::Hash32;

use crate::ContentError;

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

    /// Reads and verifies the blob with `hash`. A blob that does not match its hash is
    /// removed and reported as [`ContentError::Corrupt`]; one longer than `max_len` is refused.
    pub fn get(&self, hash: &Hash32, max_len: u64) -> Result<Vec<u8>, ContentError> {
        let path = self.path_of(hash);
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
        if len > max_len {
            self.discard(hash);
            return Err(ContentError::Corrupt { hash: *hash, path });
        }
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf)
            .map_err(ContentError::io("read chunk", &path))?;
        if Hash32::of(&buf) != *hash {
            self.discard(hash);
            return Err(ContentError::Corrupt { hash: *hash, path });
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
    fn oversized_file_in_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let h = store.put(&[1u8; 100]).unwrap();
        assert!(matches!(
            store.get(&h, 10),
            Err(ContentError::Corrupt { .. })
        ));
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
