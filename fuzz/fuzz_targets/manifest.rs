//! Manifest::decode, with the round trip and the invariants of an accepted manifest.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::message::<upswarm_proto::Manifest>(data));
