//! # upswarm-content — chunks on disk
//!
//! Goals: be paranoid about data integrity.
//! - Artifacts are split into fixed-size chunks; every chunk and the whole file are hashed
//!   with blake3, and the chunk hashes form a [`ChunkIndex`](upswarm_proto::ChunkIndex) blob
//!   whose own hash goes into the manifest.
//! - The [`ChunkStore`] keeps chunks (and chunk-index blobs) as files named by their hash.
//!   A chunk is written atomically (temp file, rename) and verified against its hash both
//!   before it is written and every time it is read back, so a torn or tampered file is
//!   never served or assembled; it is dropped and fetched again.
//! - A download writes verified chunks straight into a [`PartialFile`] at their offsets;
//!   once complete it is renamed into place and the store serves the artifact's chunks
//!   from that file ([`ChunkStore::adopt`]): the bytes are on disk once.
//! - [`assemble`] writes a whole artifact atomically (temp file, fsync, rename) and checks
//!   the whole-file hash before the rename.
//!
//! Non-goals: no networking, no metadata database (sled holds progress; files hold bytes).

mod assemble;
mod chunker;
mod error;
pub mod forms;
mod partial;
mod store;

pub use assemble::{assemble, load_index, peek_index, verify_artifact, verify_file};
pub use chunker::{ChunkedArtifact, chunk_file, chunk_reader};
pub use error::ContentError;
pub use partial::{PartialFile, partial_paths};
pub use store::{ChunkStore, MAX_BLOB_BYTES};
