//! fetch::decode_framed_response and FetchResponse::decode, with the round trip; envelopes and bitmaps inside answers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::fetch_response(data));
