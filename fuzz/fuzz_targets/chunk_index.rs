//! ChunkIndex::decode_for (12-byte artifact header, then the index), with the round trip and the tiling of the artifact by its chunks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::chunk_index(data));
