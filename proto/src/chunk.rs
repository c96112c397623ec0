//! The chunk index: the list of chunk hashes of one artifact.
//!
//! It is a content-addressed blob: the manifest carries its blake3, so a node fetches it
//! from any peer and verifies it before trusting a single chunk hash in it.
//!
//! Owns the index's encoding and its match with the artifact's size and chunk size. It never checks
//! the blob's hash against the manifest (callers do, before `ChunkIndex::decode_for`) and never
//! reads or hashes a file (`upswarm-content` does).

use serde::{Deserialize, Serialize};

use crate::codec::{self, check_version};
use crate::manifest::{MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE};
use crate::{Artifact, Hash32, ProtoError};

/// Format version of [`ChunkIndex`].
pub const CHUNK_INDEX_VERSION: u32 = 1;
/// Bytes of CBOR framing around the hashes, generously: map header, three small fields,
/// the byte-string header.
const FRAMING: u64 = 64;

const WHAT: &str = "chunk index";

/// The blake3 hash of every chunk of an artifact, in order.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkIndex {
    pub v: u32,
    /// Size of the whole artifact in bytes.
    pub size: u64,
    /// Size of every chunk but the last.
    pub chunk_size: u32,
    /// The chunk hashes concatenated: 32 bytes per chunk.
    #[serde(with = "serde_bytes")]
    pub hashes: Vec<u8>,
}

impl std::fmt::Debug for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkIndex")
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.len())
            .finish()
    }
}

impl ChunkIndex {
    /// Builds an index from chunk hashes.
    pub fn new(size: u64, chunk_size: u32, hashes: &[Hash32]) -> Self {
        let mut bytes = Vec::with_capacity(hashes.len() * 32);
        for h in hashes {
            bytes.extend_from_slice(&h.0);
        }
        ChunkIndex {
            v: CHUNK_INDEX_VERSION,
            size,
            chunk_size,
            hashes: bytes,
        }
    }

    /// Encodes as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Largest encoded index that can describe an artifact of `size` bytes in chunks of
    /// `chunk_size` bytes.
    pub fn max_encoded_len(size: u64, chunk_size: u32) -> u64 {
        let count = if chunk_size == 0 {
            0
        } else {
            size.div_ceil(u64::from(chunk_size))
        };
        count.saturating_mul(32).saturating_add(FRAMING)
    }

    /// Decodes an index and checks it describes `artifact` exactly. The input is refused
    /// before parsing when it is longer than such an index can be.
    ///
    /// This does not check the blob's hash against `artifact.chunk_index`; callers do that
    /// first (the content store does it on receipt).
    pub fn decode_for(bytes: &[u8], artifact: &Artifact) -> Result<Self, ProtoError> {
        let limit = Self::max_encoded_len(artifact.size, artifact.chunk_size);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let index: ChunkIndex = codec::decode(WHAT, bytes, limit)?;
        check_version(WHAT, index.v, CHUNK_INDEX_VERSION)?;
        index.check_matches(artifact)?;
        Ok(index)
    }

    /// Checks this index against the artifact's declared size and chunk size.
    pub fn check_matches(&self, artifact: &Artifact) -> Result<(), ProtoError> {
        let mismatch = |reason: String| Err(ProtoError::ChunkIndexMismatch { reason });
        if self.size != artifact.size {
            return mismatch(format!(
                "index says {} bytes, manifest says {}",
                self.size, artifact.size
            ));
        }
        if self.chunk_size != artifact.chunk_size {
            return mismatch(format!(
                "index says chunks of {} bytes, manifest says {}",
                self.chunk_size, artifact.chunk_size
            ));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return mismatch(format!("chunk size {} is out of range", self.chunk_size));
        }
        let expected = artifact.chunk_count();
        if expected > MAX_CHUNKS {
            return mismatch(format!(
                "{expected} chunks is more than the limit of {MAX_CHUNKS}"
            ));
        }
        if self.hashes.len() as u64 != expected * 32 {
            return mismatch(format!(
                "index holds {} bytes of hashes, expected {} for {expected} chunks",
                self.hashes.len(),
                expected * 32
            ));
        }
        Ok(())
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.hashes.len() / 32
    }

    /// Whether the artifact is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Hash of chunk `i`. Panics if `i >= len()`; callers iterate `0..len()`.
    pub fn hash(&self, i: usize) -> Hash32 {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.hashes[i * 32..i * 32 + 32]);
        Hash32(h)
    }

    /// All chunk hashes in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Hash32> + '_ {
        (0..self.len()).map(|i| self.hash(i))
    }

    /// Offset of chunk `i` in the artifact.
    pub fn offset(&self, i: usize) -> u64 {
        i as u64 * u64::from(self.chunk_size)
    }

    /// Length of chunk `i` (the last one may be shorter).
    pub fn chunk_len(&self, i: usize) -> u32 {
        let start = self.offset(i);
        let end = (start + u64::from(self.chunk_size)).min(self.size);
        // end - start ≤ chunk_size, which is a u32.
        u32::try_from(end.saturating_sub(start)).unwrap_or(self.chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(size: u64, chunk_size: u32) -> Artifact {
        Artifact {
            name: "a".into(),
            platform: "any".into(),
            size,
            mode: 0o644,
            hash: Hash32([0; 32]),
            chunk_size,
            chunk_index: Hash32([0; 32]),
            forms: None,
        }
    }

    #[test]
    fn roundtrip_and_lengths() {
        let hashes: Vec<Hash32> = (0..3u8).map(|i| Hash32([i; 32])).collect();
        let idx = ChunkIndex::new(10_000, 4096, &hashes);
        let back = ChunkIndex::decode_for(&idx.encode(), &artifact(10_000, 4096)).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.hash(2), Hash32([2; 32]));
        assert_eq!(back.chunk_len(0), 4096);
        assert_eq!(back.chunk_len(2), 10_000 - 8192);
    }

    #[test]
    fn wrong_count_is_refused() {
        let hashes: Vec<Hash32> = (0..2u8).map(|i| Hash32([i; 32])).collect();
        let idx = ChunkIndex::new(10_000, 4096, &hashes);
        let err = ChunkIndex::decode_for(&idx.encode(), &artifact(10_000, 4096)).unwrap_err();
        assert!(
            matches!(err, ProtoError::ChunkIndexMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn oversized_blob_refused_before_parsing() {
        // An index claiming many more chunks than the artifact's size allows.
        let hashes: Vec<Hash32> = (0..1000u32).map(|_| Hash32([7; 32])).collect();
        let idx = ChunkIndex::new(10_000, 4096, &hashes);
        let err = ChunkIndex::decode_for(&idx.encode(), &artifact(10_000, 4096)).unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn empty_artifact() {
        let idx = ChunkIndex::new(0, 4096, &[]);
        let back = ChunkIndex::decode_for(&idx.encode(), &artifact(0, 4096)).unwrap();
        assert!(back.is_empty());
    }
}
