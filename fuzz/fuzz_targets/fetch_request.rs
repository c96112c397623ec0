//! fetch::decode_framed_request and FetchRequest::decode, with the round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::fetch_request(data));
