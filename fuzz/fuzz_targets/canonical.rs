//! codec::check_canonical alone, and its agreement with ciborium.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::canonical(data));
