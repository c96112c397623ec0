//! Envelopes through every signature check against a fixed trust root and clock.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::verify(data));
