//! TrustRoot::decode, with the round trip and the invariants of an accepted root.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::message::<upswarm_proto::TrustRoot>(data));
