#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Regression tests for inputs found by the fuzz targets in `fuzz/` (`scripts/fuzz.sh`).
//! Each test names the target and the finding; docs/threat-model.md, "Fuzzing", lists them.

use upswarm_proto::codec::{self, MAX_DEPTH};

/// `n` one-element arrays around `inner`.
fn nested(n: usize, inner: &[u8]) -> Vec<u8> {
    [vec![0x81u8; n], inner.to_vec()].concat()
}

/// Target `canonical`: 32 nested one-element arrays around an empty array (33 containers)
/// passed the raw-item walker, which counted items, while serde's reader, which counts
/// containers, refused it. The walker now counts containers: both refuse.
#[test]
fn canonical_empty_array_at_depth_32() {
    let found = nested(32, &[0x80]);
    assert!(codec::check_canonical("input", &found).is_err());
    assert!(codec::decode::<ciborium::Value>("input", &found, usize::MAX).is_err());
}

/// The walker and serde's reader agree on the depth limit for arrays, maps and their mix:
/// `MAX_DEPTH` containers are accepted by both, one more by neither.
#[test]
fn walker_and_serde_agree_on_the_depth_limit() {
    let map = |n: usize, inner: &[u8]| [[0xa1u8, 0x61, b'a'].repeat(n), inner.to_vec()].concat();
    let mixed = |n: usize, inner: &[u8]| {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(if i % 2 == 0 {
                &[0xa1, 0x61, b'a']
            } else {
                &[0x81]
            });
        }
        v.extend_from_slice(inner);
        v
    };
    for build in [nested as fn(usize, &[u8]) -> Vec<u8>, map, mixed] {
        for (containers, inner) in [
            (MAX_DEPTH, &[0x00][..]),
            (MAX_DEPTH - 1, &[0x80][..]),
            (MAX_DEPTH - 1, &[0xa0][..]),
            (MAX_DEPTH, &[0x80][..]),
            (MAX_DEPTH, &[0xa0][..]),
            (MAX_DEPTH + 1, &[0x00][..]),
        ] {
            let total = containers + usize::from(inner[0] != 0x00);
            let bytes = build(containers, inner);
            let walker = codec::check_canonical("input", &bytes).is_ok();
            let serde = codec::decode::<ciborium::Value>("input", &bytes, usize::MAX).is_ok();
            assert_eq!(walker, total <= MAX_DEPTH, "{total} containers: walker");
            assert_eq!(
                serde, walker,
                "{total} containers: serde and walker disagree"
            );
        }
    }
}
