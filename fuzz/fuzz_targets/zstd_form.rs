//! The decoder of encoded forms (zstd and zstd-patch frames) under a small window cap.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::zstd_form(data));
