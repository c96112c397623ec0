//! SignedEnvelope::decode_limited / decode::<M> / open::<M>, with the round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| upswarm_fuzz::envelope(data));
