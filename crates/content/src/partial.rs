//! An artifact being downloaded, written in place: one copy on disk.
//!
//! A download writes every verified chunk straight into `.<name>.partial` beside the
//! artifact's final path, at `offset = position × chunk size`, and registers that slot with
//! the [`ChunkStore`] so that peers are served from it at once. Which slots are written is
//! kept in `.<name>.held`, a bitmap in the chunk index's bit order whose byte is rewritten
//! right after the slot's bytes (not synced: a process killed at any point leaves no bit
//! set for an unwritten slot, and after a power cut every bit is checked anyway); after a
//! restart only the slots it names are trusted, and each of them only once it verifies
//! again. When every slot is written, the whole-file hash is checked and the file renamed
//! to its final name: no chunk files, no second copy.
//!
//! Owns the `.partial` and `.held` files of one download. It never writes a slot whose bytes did
//! not verify, never writes to the earlier copy `fill` reads from, and deletes no file but its own
//! two (chunk files that `finish` makes redundant are the store's to drop, in `ChunkStore::adopt`).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use upswarm_proto::fetch::Bitmap;
use upswarm_proto::{Artifact, ChunkIndex, Hash32};

use crate::{ChunkStore, ContentError};

/// The file of an artifact being downloaded.
#[derive(Debug)]
pub struct PartialFile {
    path: Arc<PathBuf>,
    held_path: PathBuf,
    file: fs::File,
    held_file: fs::File,
    index: ChunkIndex,
    written: Mutex<Bitmap>,
}

/// `.<name>.partial` and `.<name>.held` beside `dest`.
pub fn partial_paths(dest: &Path) -> (PathBuf, PathBuf) {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        dir.join(format!(".{name}.partial")),
        dir.join(format!(".{name}.held")),
    )
}

impl PartialFile {
    /// Opens the partial file for the artifact that goes to `dest` (described by `index`),
    /// creating it — sparse, at the artifact's size — when it is not there or has another
    /// size. A file left by an earlier run is resumed: the slots its saved bitmap names are
    /// read back, and those that verify count as written.
    pub fn open(store: &ChunkStore, dest: &Path, index: &ChunkIndex) -> Result<Self, ContentError> {
        let (path, held_path) = partial_paths(dest);
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(ContentError::io("create directory", dir))?;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(ContentError::io("open", &path))?;
        let len = file
            .metadata()
            .map_err(ContentError::io("stat", &path))?
            .len();
        let n = index.len();
        let mut saved = None;
        if len == index.size {
            saved = fs::read(&held_path)
                .ok()
                .and_then(|b| Bitmap::from_bytes(b, n));
        } else {
            file.set_len(0)
                .and_then(|()| file.set_len(index.size))
                .map_err(ContentError::io("size", &path))?;
        }
        let held_file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&held_path)
            .map_err(ContentError::io("open", &held_path))?;
        let held_len = Bitmap::new(n).as_bytes().len() as u64;
        if saved.is_none() {
            held_file
                .set_len(0)
                .and_then(|()| held_file.set_len(held_len))
                .map_err(ContentError::io("size", &held_path))?;
        }
        let part = PartialFile {
            path: Arc::new(path),
            held_path,
            file,
            held_file,
            index: index.clone(),
            written: Mutex::new(Bitmap::new(n)),
        };
        if let Some(saved) = saved {
            let mut buf = Vec::new();
            for i in (0..n).filter(|&i| saved.get(i)) {
                if part.read_slot(i, &mut buf).is_ok() && Hash32::of(&buf) == index.hash(i) {
                    part.mark(store, i)?;
                }
            }
            // Bits of slots that did not verify are cleared on disk too.
            let bytes = part.lock().as_bytes().to_vec();
            part.held_file
                .write_all_at(&bytes, 0)
                .map_err(ContentError::io("write", &part.held_path))?;
        }
        Ok(part)
    }

    /// The partial file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slots written so far.
    pub fn written(&self) -> Bitmap {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bitmap> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn offset(&self, i: usize) -> u64 {
        i as u64 * u64::from(self.index.chunk_size)
    }

    fn read_slot(&self, i: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.resize(self.index.chunk_len(i) as usize, 0);
        self.file.read_exact_at(buf, self.offset(i))
    }

    /// Records slot `i` as written: in memory, in the bitmap file, and with the store.
    fn mark(&self, store: &ChunkStore, i: usize) -> Result<(), ContentError> {
        {
            let mut written = self.lock();
            written.set(i);
            let byte = written.as_bytes()[i / 8];
            self.held_file
                .write_all_at(&[byte], (i / 8) as u64)
                .map_err(ContentError::io("write", &self.held_path))?;
        }
        store.register_extent(
            &self.path,
            self.index.hash(i),
            self.offset(i),
            self.index.chunk_len(i),
        );
        Ok(())
    }

    /// Verifies `bytes` against chunk `i` and writes them into its slot; from then on the
    /// store serves that chunk from here. `Ok(false)`: the slot was already written.
    pub fn put(&self, store: &ChunkStore, i: usize, bytes: &[u8]) -> Result<bool, ContentError> {
        let expected = self.index.hash(i);
        let got = Hash32::of(bytes);
        if got != expected || bytes.len() != self.index.chunk_len(i) as usize {
            return Err(ContentError::HashMismatch {
                what: "chunk",
                expected,
                got,
            });
        }
        if self.lock().get(i) {
            return Ok(false);
        }
        self.file
            .write_all_at(bytes, self.offset(i))
            .map_err(ContentError::io("write", self.path.as_path()))?;
        self.mark(store, i)?;
        Ok(true)
    }

    /// Fills every slot not yet written from what this node already holds, each chunk
    /// verified: the store (chunk files, or the same chunk in another artifact's file —
    /// dedup across versions, and positions with the same content) and, when given, `old`,
    /// an earlier copy of this very artifact (a repair). Returns the slots written.
    pub fn fill(&self, store: &ChunkStore, old: Option<&Path>) -> Result<Bitmap, ContentError> {
        let old = old.and_then(|p| fs::File::open(p).ok()).filter(|f| {
            f.metadata()
                .is_ok_and(|m| m.is_file() && m.len() == self.index.size)
        });
        let mut buf = Vec::new();
        for i in 0..self.index.len() {
            if self.lock().get(i) {
                continue;
            }
            let h = self.index.hash(i);
            let len = self.index.chunk_len(i);
            let bytes = match store.get(&h, u64::from(len)) {
                Ok(b) => Some(b),
                Err(ContentError::Io { op, path, source }) => {
                    return Err(ContentError::Io { op, path, source });
                }
                Err(_) => old.as_ref().and_then(|f| {
                    buf.resize(len as usize, 0);
                    f.read_exact_at(&mut buf, self.offset(i)).ok()?;
                    (Hash32::of(&buf) == h).then(|| buf.clone())
                }),
            };
            if let Some(bytes) = bytes {
                self.put(store, i, &bytes)?;
            }
        }
        Ok(self.written())
    }

    /// Completes the artifact: every slot written (the rest filled from the store first),
    /// the whole file read once against the manifest's hash, given the manifest's mode,
    /// synced and renamed to `dest`, its directory synced. The store then serves the chunks
    /// from `dest` and drops chunk files holding the same bytes. On a whole-file mismatch
    /// the partial file is removed (every chunk verified, so the manifest contradicts
    /// itself: the signers' fault, nothing to fetch again).
    pub fn finish(
        &self,
        store: &ChunkStore,
        artifact: &Artifact,
        dest: &Path,
    ) -> Result<(), ContentError> {
        let written = self.fill(store, None)?;
        if let Some(i) = (0..written.len()).find(|&i| !written.get(i)) {
            let hash = self.index.hash(i);
            return Err(ContentError::Missing {
                hash,
                path: store.path_of(&hash),
            });
        }
        let path = self.path.as_path();
        let mut whole = blake3::Hasher::new();
        let mut f = fs::File::open(path).map_err(ContentError::io("open", path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(ContentError::io("read", path))?;
            if n == 0 {
                break;
            }
            whole.update(&buf[..n]);
        }
        if let Err(e) = crate::assemble::check_whole(artifact, &whole) {
            store.forget_file(path);
            let _ = fs::remove_file(path);
            let _ = fs::remove_file(&self.held_path);
            return Err(e);
        }
        self.file
            .set_permissions(fs::Permissions::from_mode(artifact.mode & 0o777))
            .map_err(ContentError::io("set mode of", path))?;
        self.file
            .sync_all()
            .map_err(ContentError::io("sync", path))?;
        fs::rename(path, dest).map_err(ContentError::io("rename into place", dest))?;
        let _ = fs::remove_file(&self.held_path);
        if let Some(d) = dest.parent().and_then(|d| fs::File::open(d).ok()) {
            let _ = d.sync_all();
        }
        store.adopt(dest, &self.index);
        store.forget_file(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_file;

    fn setup(data: &[u8]) -> (tempfile::TempDir, ChunkStore, Artifact, ChunkIndex) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        fs::write(&src, data).unwrap();
        let signer = ChunkStore::open(dir.path().join("signer")).unwrap();
        let c = chunk_file(&src, 4096, &signer).unwrap();
        let artifact = Artifact {
            name: "app".into(),
            platform: "any".into(),
            size: c.size,
            mode: 0o750,
            hash: c.hash,
            chunk_size: 4096,
            chunk_index: c.index_hash,
            forms: None,
        };
        let index = crate::load_index(&signer, &artifact).unwrap();
        let store = ChunkStore::open(dir.path().join("store")).unwrap();
        (dir, store, artifact, index)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn chunk(data: &[u8], i: usize) -> &[u8] {
        &data[i * 4096..((i + 1) * 4096).min(data.len())]
    }

    /// Blocks allocated under `dir`, in bytes (a sparse file counts what is written).
    fn allocated(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0;
        for e in fs::read_dir(dir).unwrap().flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() {
                allocated(&e.path())
            } else {
                m.blocks() * 512
            };
        }
        total
    }

    #[test]
    fn chunks_in_any_order_become_the_artifact_with_no_second_copy() {
        let d = data(40_000);
        let (dir, store, artifact, index) = setup(&d);
        let dest = dir.path().join("rel/app");
        let part = PartialFile::open(&store, &dest, &index).unwrap();
        for i in (0..index.len()).rev() {
            assert!(part.put(&store, i, chunk(&d, i)).unwrap());
            // Served at once, from the partial file.
            assert_eq!(store.get(&index.hash(i), 4096).unwrap(), chunk(&d, i));
        }
        assert!(!part.put(&store, 0, chunk(&d, 0)).unwrap());
        part.finish(&store, &artifact, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), d);
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o750
        );
        // Only the artifact is left in its directory, and the store serves it from there.
        let names: Vec<String> = fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["app"]);
        for (i, h) in index.iter().enumerate() {
            assert!(!store.has_file(&h));
            assert_eq!(store.get(&h, 4096).unwrap(), chunk(&d, i));
        }
        assert!(allocated(store.root()) < 64 * 1024);
    }

    #[test]
    fn wrong_bytes_are_refused_and_never_written() {
        let d = data(10_000);
        let (dir, store, _artifact, index) = setup(&d);
        let part = PartialFile::open(&store, &dir.path().join("rel/app"), &index).unwrap();
        let err = part.put(&store, 1, chunk(&d, 0)).unwrap_err();
        assert!(matches!(err, ContentError::HashMismatch { .. }), "{err}");
        assert!(!part.written().get(1));
        assert!(!store.contains(&index.hash(1)));
    }

    #[test]
    fn a_restart_resumes_from_the_bitmap_and_trusts_only_slots_that_verify() {
        let d = data(40_000);
        let (dir, store, artifact, index) = setup(&d);
        let dest = dir.path().join("rel/app");
        let part = PartialFile::open(&store, &dest, &index).unwrap();
        for i in [0, 3, 5] {
            part.put(&store, i, chunk(&d, i)).unwrap();
        }
        drop(part);
        // Slot 3 damaged on disk while the node was down.
        let (path, _) = partial_paths(&dest);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"XXXX", 3 * 4096)
            .unwrap();
        let store = ChunkStore::open(dir.path().join("store")).unwrap();
        let part = PartialFile::open(&store, &dest, &index).unwrap();
        let w = part.written();
        assert_eq!(
            (0..index.len()).filter(|&i| w.get(i)).collect::<Vec<_>>(),
            [0, 5]
        );
        for i in (0..index.len()).filter(|&i| !w.get(i)) {
            part.put(&store, i, chunk(&d, i)).unwrap();
        }
        part.finish(&store, &artifact, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), d);
    }

    #[test]
    fn fill_takes_chunks_from_chunk_files_other_artifacts_and_an_old_copy() {
        let d = data(40_000);
        let (dir, store, artifact, index) = setup(&d);
        // Chunk 0 as a chunk file; chunks 1..=4 inside an older artifact's file that has
        // them at other offsets; the rest from a damaged earlier copy of this artifact.
        store.put(chunk(&d, 0)).unwrap();
        let older = dir.path().join("older");
        let mut bytes = vec![0u8; 4096];
        for i in 1..=4 {
            bytes.extend_from_slice(chunk(&d, i));
        }
        fs::write(&older, &bytes).unwrap();
        let older_index = ChunkIndex::new(
            bytes.len() as u64,
            4096,
            &bytes.chunks(4096).map(Hash32::of).collect::<Vec<_>>(),
        );
        store.adopt(&older, &older_index);
        let mut damaged = d.clone();
        damaged[6 * 4096] ^= 1;
        let old_copy = dir.path().join("old-copy");
        fs::write(&old_copy, &damaged).unwrap();
        let dest = dir.path().join("rel/app");
        let part = PartialFile::open(&store, &dest, &index).unwrap();
        let w = part.fill(&store, Some(&old_copy)).unwrap();
        assert_eq!(
            (0..index.len()).filter(|&i| !w.get(i)).collect::<Vec<_>>(),
            [6]
        );
        assert!(matches!(
            part.finish(&store, &artifact, &dest),
            Err(ContentError::Missing { .. })
        ));
    }

    #[test]
    fn a_whole_file_mismatch_leaves_nothing() {
        let d = data(10_000);
        let (dir, store, mut artifact, index) = setup(&d);
        artifact.hash = Hash32([7; 32]);
        let dest = dir.path().join("rel/app");
        let part = PartialFile::open(&store, &dest, &index).unwrap();
        for i in 0..index.len() {
            part.put(&store, i, chunk(&d, i)).unwrap();
        }
        let err = part.finish(&store, &artifact, &dest).unwrap_err();
        assert!(matches!(err, ContentError::WholeFile { .. }), "{err}");
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 0);
        assert!(!store.contains(&index.hash(0)));
    }

    #[test]
    fn adopt_removes_chunk_files_only_where_the_file_verifies() {
        let d = data(20_000);
        let (dir, store, _artifact, index) = setup(&d);
        for i in 0..index.len() {
            store.put(chunk(&d, i)).unwrap();
        }
        let mut copy = d.clone();
        copy[4096 * 2 + 10] ^= 0xff;
        let file = dir.path().join("assembled");
        fs::write(&file, &copy).unwrap();
        store.adopt(&file, &index);
        for (i, h) in index.iter().enumerate() {
            assert_eq!(store.has_file(&h), i == 2, "chunk {i}");
            assert_eq!(store.get(&h, 4096).unwrap(), chunk(&d, i));
        }
        // A damaged extent is dropped when read; the file is left alone.
        store.discard(&index.hash(2));
        assert!(matches!(
            store.get(&index.hash(2), 4096),
            Err(ContentError::Corrupt { .. })
        ));
        assert!(!store.contains(&index.hash(2)));
        assert_eq!(fs::read(&file).unwrap(), copy);
        store.forget_under(dir.path());
        assert!(!store.contains(&index.hash(0)));
    }
}
