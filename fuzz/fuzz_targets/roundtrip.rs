//! Every decoder on one input: accepted -> re-encode -> same bytes -> same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::roundtrip_all(data));
