//! read_secret_key / read_public_key on the input as a key file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::key_file(data));
