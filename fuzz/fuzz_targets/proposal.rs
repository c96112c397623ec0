//! Proposal::decode, with the round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::message::<upswarm_proto::Proposal>(data));
