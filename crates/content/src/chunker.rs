//! Splitting an artifact into chunks.
//!
//! Owns the reading, hashing and storing of one artifact. It only reads its input, never holds the
//! whole artifact in memory (channels of `PIPELINE_DEPTH` chunks feed the two helper threads), and
//! refuses an artifact of more than `MAX_CHUNKS` chunks.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::{Arc, mpsc};

use upswarm_proto::manifest::{MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE};
use upswarm_proto::{ChunkIndex, Hash32};

use crate::{ChunkStore, ContentError};

/// The result of chunking one artifact.
#[derive(Debug, Clone)]
pub struct ChunkedArtifact {
    pub size: u64,
    /// blake3 of the whole file.
    pub hash: Hash32,
    pub chunk_size: u32,
    pub index: ChunkIndex,
    /// blake3 of the encoded index (what the manifest carries); the blob is in the store.
    pub index_hash: Hash32,
}

/// Chunks in flight between the reader and each of the two helper threads.
const PIPELINE_DEPTH: usize = 4;

/// Chunks the file at `path` into `store`. See [`chunk_reader`].
pub fn chunk_file(
    path: &Path,
    chunk_size: u32,
    store: &ChunkStore,
) -> Result<ChunkedArtifact, ContentError> {
    let file = File::open(path).map_err(ContentError::io("open artifact", path))?;
    chunk_reader(file, path, chunk_size, store)
}

/// Reads `reader` to the end, storing every chunk and the chunk index in `store`, and
/// computing the per-chunk and whole-file blake3 hashes.
///
/// Three threads share the work: this one reads and hashes each chunk, a second feeds the
/// same buffers to the whole-file hasher and a third writes them to the store, so the two
/// hash passes and the writes overlap. `source` names the input in errors.
pub fn chunk_reader<R: Read>(
    mut reader: R,
    source: &Path,
    chunk_size: u32,
    store: &ChunkStore,
) -> Result<ChunkedArtifact, ContentError> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(ContentError::BadChunkSize(chunk_size));
    }
    let cs = chunk_size as usize;
    let (to_hasher, hasher_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(PIPELINE_DEPTH);
    let (to_writer, writer_rx) = mpsc::sync_channel::<(Hash32, Arc<Vec<u8>>)>(PIPELINE_DEPTH);
    let spawn_err = |e| ContentError::io("spawn thread for", source)(e);

    std::thread::scope(|scope| {
        let whole = std::thread::Builder::new()
            .name("whole-file-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = blake3::Hasher::new();
                for buf in hasher_rx {
                    hasher.update(&buf);
                }
                Hash32::from(hasher.finalize())
            })
            .map_err(spawn_err)?;
        let writer = std::thread::Builder::new()
            .name("chunk-writer".into())
            .spawn_scoped(scope, move || -> Result<(), ContentError> {
                for (hash, buf) in writer_rx {
                    store.put_prehashed(&hash, &buf)?;
                }
                Ok(())
            })
            .map_err(spawn_err)?;

        let mut hashes = Vec::new();
        let mut size: u64 = 0;
        let read_result = loop {
            let mut buf = vec![0u8; cs];
            let n = match read_full(&mut reader, &mut buf) {
                Ok(n) => n,
                Err(e) => break Err(ContentError::io("read artifact", source)(e)),
            };
            if n == 0 {
                break Ok(());
            }
            buf.truncate(n);
            size += n as u64;
            if hashes.len() as u64 >= MAX_CHUNKS {
                break Err(ContentError::TooLarge {
                    what: "artifact",
                    limit: MAX_CHUNKS * u64::from(chunk_size),
                    got: size,
                });
            }
            let hash = Hash32::of(&buf);
            hashes.push(hash);
            let buf = Arc::new(buf);
            // A send fails only when that thread has stopped; its join reports why.
            if to_hasher.send(Arc::clone(&buf)).is_err() || to_writer.send((hash, buf)).is_err() {
                break Ok(());
            }
            if n < cs {
                break Ok(());
            }
        };
        drop(to_hasher);
        drop(to_writer);
        let panicked = |what: &str| ContentError::Io {
            op: "chunk",
            path: source.to_path_buf(),
            source: std::io::Error::other(format!("the {what} thread panicked")),
        };
        let hash = whole.join().map_err(|_| panicked("hashing"))?;
        writer.join().map_err(|_| panicked("writer"))??;
        read_result?;
        let index = ChunkIndex::new(size, chunk_size, &hashes);
        let index_hash = store.put(&index.encode())?;
        Ok(ChunkedArtifact {
            size,
            hash,
            chunk_size,
            index,
            index_hash,
        })
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_match_plain_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path().join("store")).unwrap();
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect(); // 200 000 bytes
        let out = chunk_reader(&data[..], Path::new("mem"), 65_536, &store).unwrap();
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(out.hash, Hash32::of(&data));
        assert_eq!(out.index.len(), 4);
        for (i, c) in data.chunks(65_536).enumerate() {
            assert_eq!(out.index.hash(i), Hash32::of(c));
            assert_eq!(store.get(&out.index.hash(i), 65_536).unwrap(), c);
        }
        assert!(store.contains(&out.index_hash));
    }

    #[test]
    fn empty_and_exact_multiple() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let empty = chunk_reader(&[][..], Path::new("mem"), 4096, &store).unwrap();
        assert_eq!(empty.size, 0);
        assert!(empty.index.is_empty());
        assert_eq!(empty.hash, Hash32::of(b""));
        let exact = vec![5u8; 8192];
        let out = chunk_reader(&exact[..], Path::new("mem"), 4096, &store).unwrap();
        assert_eq!(out.index.len(), 2);
    }

    #[test]
    fn bad_chunk_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        assert!(matches!(
            chunk_reader(&[][..], Path::new("mem"), 100, &store),
            Err(ContentError::BadChunkSize(100))
        ));
    }
}
