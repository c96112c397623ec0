//! CBOR encoding and strict, bounded decoding.
//!
//! Every decoder in upswarm goes through [`decode`], whatever the bytes came from (a peer,
//! a signer's file, the API, the daemon's own database). Two implementations of the wire
//! format must never disagree on what a message says, so decoding accepts exactly one
//! encoding of each value — the *canonical form* (`docs/wire-format.md` §1):
//!
//! 1. The input's length is checked against the message type's limit before parsing.
//! 2. [`check_canonical`] walks the raw items: one top-level item and nothing after it;
//!    definite lengths only; integers and lengths in their shortest encoding; no tags; no
//!    floating-point numbers; of the simple values only `false`, `true` and `null`; map
//!    keys are text strings, in the order of RFC 8949 §4.2.1 (shorter key first, then
//!    bytewise), with no duplicates; text strings are UTF-8; arrays and maps nested at
//!    most [`MAX_DEPTH`] deep (the count serde's reader applies too).
//! 3. serde maps the items onto the message type (unknown fields, wrong types and integers
//!    outside the field's width are errors).
//! 4. The value is encoded again and must give back the very same bytes. This closes every
//!    remaining gap between "a CBOR reading" and "our reading" (a `null` where a field is
//!    required to be absent, an enum variant spelled in a way serde tolerates, …): whatever
//!    is accepted is byte-for-byte what [`encode`] would have produced.
//!
//! [`encode`] produces the canonical form: serde's output with every map's entries sorted
//! by the rule above.
//!
//! Why ciborium: it is the CBOR crate chosen for the product, maintained, and with serde
//! support; its reader is lenient (it accepts indefinite lengths, tags, `undefined`), which
//! is why the strictness lives here, in front of it, rather than in the choice of crate.
//!
//! Owns the canonical encoder and the strict decoder. It works on bytes in memory, never on a
//! file or a stream, and knows nothing of signatures or of what a message means.

use std::cmp::Ordering;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ProtoError;

/// Most arrays and maps nested in one another (a top-level map is 1 deep). Our messages
/// nest at most ~6 deep.
pub const MAX_DEPTH: usize = 32;

/// Encodes `value` as canonical CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and our types contain nothing serde can refuse.
    ciborium::into_writer(value, &mut out)
        .unwrap_or_else(|e| unreachable!("CBOR encoding into a Vec failed: {e}"));
    if check_canonical("value", &out).is_ok() {
        // The common case: the type's fields are declared in canonical order.
        return out;
    }
    let mut v = ciborium::Value::serialized(value)
        .unwrap_or_else(|e| unreachable!("CBOR value of a serialisable type failed: {e}"));
    sort_maps(&mut v);
    out.clear();
    ciborium::into_writer(&v, &mut out)
        .unwrap_or_else(|e| unreachable!("CBOR encoding into a Vec failed: {e}"));
    out
}

/// Sorts every map's entries (recursively) by the canonical key order.
fn sort_maps(v: &mut ciborium::Value) {
    match v {
        ciborium::Value::Array(items) => items.iter_mut().for_each(sort_maps),
        ciborium::Value::Map(entries) => {
            for (k, val) in entries.iter_mut() {
                sort_maps(k);
                sort_maps(val);
            }
            let mut keyed: Vec<(Vec<u8>, (ciborium::Value, ciborium::Value))> = entries
                .drain(..)
                .map(|(k, val)| {
                    let mut kb = Vec::new();
                    let _ = ciborium::into_writer(&k, &mut kb);
                    (kb, (k, val))
                })
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            entries.extend(keyed.into_iter().map(|(_, e)| e));
        }
        ciborium::Value::Tag(_, inner) => sort_maps(inner),
        _ => {}
    }
}

/// Decodes one CBOR value of type `T` from `bytes`, accepting only its canonical encoding
/// (see the module docs) and refusing inputs over `limit` bytes before parsing.
///
/// `what` names the message in errors ("manifest", "trust root", ...).
pub fn decode<T: DeserializeOwned + Serialize>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, ProtoError> {
    if bytes.len() > limit {
        return Err(ProtoError::TooLarge {
            what,
            limit,
            got: bytes.len() as u64,
        });
    }
    check_canonical(what, bytes)?;
    let mut rest = bytes;
    let value: T =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH).map_err(|e| {
            let detail = match e {
                ciborium::de::Error::Io(_) => "truncated: input ended inside a value".to_string(),
                ciborium::de::Error::Syntax(off) => format!("invalid CBOR at byte {off}"),
                ciborium::de::Error::Semantic(Some(off), msg) => format!("{msg} (at byte {off})"),
                ciborium::de::Error::Semantic(None, msg) => msg,
                ciborium::de::Error::RecursionLimitExceeded => {
                    format!("nested deeper than {MAX_DEPTH} levels")
                }
            };
            ProtoError::Malformed { what, detail }
        })?;
    if !rest.is_empty() {
        return Err(ProtoError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    let again = encode(&value);
    if again != bytes {
        let at = again
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(again.len().min(bytes.len()));
        return Err(ProtoError::NotCanonical {
            what,
            detail: format!(
                "re-encoding the decoded value differs from the input at byte {at} \
                 (a value where the field must be absent or null, an enum spelled \
                 another way, or a field this version does not read)"
            ),
        });
    }
    Ok(value)
}

/// Checks that `bytes` is exactly one CBOR item in canonical form (rule 2 of the module
/// docs). Does not look at what the item means.
pub fn check_canonical(what: &'static str, bytes: &[u8]) -> Result<(), ProtoError> {
    if bytes.is_empty() {
        return Err(ProtoError::Malformed {
            what,
            detail: "empty input".into(),
        });
    }
    let mut r = Reader {
        what,
        bytes,
        pos: 0,
    };
    r.item(0)?;
    if r.pos != bytes.len() {
        return Err(ProtoError::TrailingBytes {
            what,
            extra: bytes.len() - r.pos,
        });
    }
    Ok(())
}

/// A cursor over raw CBOR items.
struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

/// CBOR major types.
const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;

impl Reader<'_> {
    fn fail(&self, at: usize, detail: impl Into<String>) -> ProtoError {
        let detail = detail.into();
        if detail.starts_with("truncated") {
            return ProtoError::Malformed {
                what: self.what,
                detail,
            };
        }
        ProtoError::NotCanonical {
            what: self.what,
            detail: format!("{detail} (at byte {at})"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.fail(self.pos, "truncated: input ended inside a value"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads an initial byte and its argument: `(major, argument)`. Refuses indefinite
    /// lengths, reserved encodings and arguments not in their shortest form.
    fn head(&mut self) -> Result<(u8, u64), ProtoError> {
        let at = self.pos;
        let ib = self.take(1)?[0];
        let (major, info) = (ib >> 5, ib & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.take(1)?[0]);
                if v < 24 && major != SIMPLE {
                    return Err(self.fail(at, format!("{v} not in its shortest encoding")));
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if v <= 0xff && major != SIMPLE {
                    return Err(self.fail(at, format!("{v} not in its shortest encoding")));
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if v <= 0xffff && major != SIMPLE {
                    return Err(self.fail(at, format!("{v} not in its shortest encoding")));
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if v <= 0xffff_ffff && major != SIMPLE {
                    return Err(self.fail(at, format!("{v} not in its shortest encoding")));
                }
                v
            }
            31 => {
                return Err(self.fail(
                    at,
                    if major == SIMPLE {
                        "a \"break\" outside an indefinite-length item"
                    } else {
                        "an indefinite-length item (only definite lengths are used)"
                    },
                ));
            }
            _ => return Err(self.fail(at, format!("reserved additional information {info}"))),
        };
        if major == SIMPLE {
            match info {
                20..=22 => {}
                23 => return Err(self.fail(at, "`undefined` (use null)")),
                25..=27 => {
                    return Err(self.fail(at, "a floating-point number (none is used)"));
                }
                _ => return Err(self.fail(at, format!("simple value {arg}"))),
            }
        }
        Ok((major, arg))
    }

    /// Reads one item (recursively), returning where it started. `depth` is the number of
    /// arrays and maps it is inside.
    fn item(&mut self, depth: usize) -> Result<usize, ProtoError> {
        let at = self.pos;
        let (major, arg) = self.head()?;
        // Containers are counted, as serde's reader counts them: an empty array at depth 32
        // is a 33rd level (found by fuzzing: the two readers disagreed).
        if matches!(major, ARRAY | MAP) && depth >= MAX_DEPTH {
            return Err(ProtoError::Malformed {
                what: self.what,
                detail: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        match major {
            UINT | NINT | SIMPLE => {}
            BYTES => {
                self.take(self.len(arg)?)?;
            }
            TEXT => {
                let s = self.take(self.len(arg)?)?;
                if std::str::from_utf8(s).is_err() {
                    return Err(self.fail(at, "a text string that is not UTF-8"));
                }
            }
            ARRAY => {
                for _ in 0..self.count(arg, 1)? {
                    self.item(depth + 1)?;
                }
            }
            MAP => {
                let mut prev: Option<(usize, usize)> = None;
                for _ in 0..self.count(arg, 2)? {
                    let key_at = self.pos;
                    let (kmajor, _) = {
                        let save = self.pos;
                        let h = self.head()?;
                        self.pos = save;
                        h
                    };
                    if kmajor != TEXT {
                        return Err(self.fail(key_at, "a map key that is not a text string"));
                    }
                    self.item(depth + 1)?;
                    let key = (key_at, self.pos);
                    if let Some(p) = prev {
                        match self.bytes[p.0..p.1].cmp(&self.bytes[key.0..key.1]) {
                            Ordering::Less => {}
                            Ordering::Equal => {
                                return Err(self.fail(key_at, "a duplicate map key"));
                            }
                            Ordering::Greater => {
                                return Err(self.fail(
                                    key_at,
                                    "map keys out of canonical order (shorter first, then \
                                     bytewise)",
                                ));
                            }
                        }
                    }
                    prev = Some(key);
                    self.item(depth + 1)?;
                }
            }
            TAG => return Err(self.fail(at, "a CBOR tag (none is used)")),
            _ => unreachable!("major types are 3 bits"),
        }
        Ok(at)
    }

    /// A byte or text string length that fits in what is left of the input.
    fn len(&self, arg: u64) -> Result<usize, ProtoError> {
        usize::try_from(arg)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.pos)
            .ok_or_else(|| self.fail(self.pos, "truncated: a string longer than the input"))
    }

    /// An item count that could fit in what is left (each item is at least `min` bytes).
    fn count(&self, arg: u64, min: u64) -> Result<u64, ProtoError> {
        let left = (self.bytes.len() - self.pos) as u64;
        if arg.saturating_mul(min) > left {
            return Err(self.fail(
                self.pos,
                "truncated: more items announced than the input holds",
            ));
        }
        Ok(arg)
    }
}

/// Checks a message's `v` field.
pub fn check_version(what: &'static str, got: u32, supported: u32) -> Result<(), ProtoError> {
    check_version_range(what, got, supported, supported)
}

/// Checks a format version against the range `oldest..=supported` a reader understands.
pub fn check_version_range(
    what: &'static str,
    got: u32,
    oldest: u32,
    supported: u32,
) -> Result<(), ProtoError> {
    if !(oldest..=supported).contains(&got) {
        return Err(ProtoError::UnsupportedVersion {
            what,
            got,
            oldest,
            supported,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        zeta: u32,
        a: Option<String>,
        list: Vec<u64>,
    }

    fn sample() -> Sample {
        Sample {
            zeta: 7,
            a: Some("x".into()),
            list: vec![1, 300],
        }
    }

    fn err_of<T: DeserializeOwned + Serialize + std::fmt::Debug>(bytes: &[u8]) -> String {
        decode::<T>("thing", bytes, 1 << 20)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn encode_sorts_keys_and_decode_roundtrips() {
        let bytes = encode(&sample());
        // Keys: "a" (1), "list" (4), "zeta" (4): shorter first, then bytewise.
        let a = bytes.windows(2).position(|w| w == [0x61, b'a']).unwrap();
        let list = bytes.windows(5).position(|w| w == b"\x64list").unwrap();
        let zeta = bytes.windows(5).position(|w| w == b"\x64zeta").unwrap();
        assert!(a < list && list < zeta);
        assert_eq!(decode::<Sample>("thing", &bytes, 1000).unwrap(), sample());
    }

    #[test]
    fn refuses_oversized_before_parsing() {
        let big = vec![0u8; 100];
        let err = decode::<u32>("thing", &big, 10).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::TooLarge {
                    limit: 10,
                    got: 100,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        let err = decode::<u32>("thing", &bytes, 100).unwrap_err();
        assert!(
            matches!(err, ProtoError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_truncated() {
        let bytes = encode(&"hello world".to_string());
        let err = decode::<String>("thing", &bytes[..5], 100).unwrap_err();
        assert!(matches!(err, ProtoError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn refuses_deep_nesting() {
        // 100 nested one-element arrays: 0x81 0x81 ... 0x00
        let mut bytes = vec![0x81u8; 100];
        bytes.push(0);
        let err = check_canonical("thing", &bytes).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn refuses_every_non_canonical_spelling() {
        let cases: &[(&[u8], &str)] = &[
            // 7 as a one-byte argument.
            (&[0x18, 0x07], "shortest"),
            // 300 as a four-byte argument.
            (&[0x1a, 0, 0, 1, 0x2c], "shortest"),
            // Indefinite-length array [1].
            (&[0x9f, 0x01, 0xff], "indefinite"),
            // Indefinite-length text.
            (&[0x7f, 0x61, b'a', 0xff], "indefinite"),
            // A lone break.
            (&[0xff], "break"),
            // Tag 1 (epoch time) around 0.
            (&[0xc1, 0x00], "tag"),
            // undefined.
            (&[0xf7], "undefined"),
            // Half-float 0.0.
            (&[0xf9, 0, 0], "floating-point"),
            // Simple value 16.
            (&[0xf0], "simple value"),
            // Map with a byte-string key {h'61': 1}.
            (&[0xa1, 0x41, b'a', 0x01], "not a text string"),
            // Map with an integer key {1: 1}.
            (&[0xa1, 0x01, 0x01], "not a text string"),
            // Duplicate key {"a": 1, "a": 2}.
            (&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], "duplicate"),
            // Out of order {"b": 1, "a": 2}.
            (&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02], "order"),
            // Longer key first {"aa": 1, "b": 2}.
            (&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02], "order"),
            // Text that is not UTF-8.
            (&[0x61, 0xff], "UTF-8"),
            // Reserved additional information.
            (&[0x1c], "reserved"),
            // A map announcing more pairs than there are bytes.
            (
                &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                "truncated",
            ),
        ];
        for (bytes, needle) in cases {
            let err = check_canonical("thing", bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{bytes:02x?}: {err}");
        }
    }

    #[test]
    fn refuses_an_undercounted_map_with_a_trailing_item() {
        // {"v": 1} followed by {"x": 7}: a reader that takes the second map as the content of
        // the first's last value would see something else than a standard decoder.
        let bytes = [0xa1, 0x61, b'v', 0x01, 0xa1, 0x61, b'x', 0x07];
        let err = check_canonical("thing", &bytes).unwrap_err();
        assert!(
            matches!(err, ProtoError::TrailingBytes { extra: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_null_where_the_canonical_form_differs() {
        // An externally tagged unit variant spelled as {"pause": null}.
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Action {
            Pause,
            Advance { to_phase: u32 },
        }
        let bytes = [0xa1, 0x65, b'p', b'a', b'u', b's', b'e', 0xf6];
        let err = err_of::<Action>(&bytes);
        assert!(
            err.contains("canonical") || err.contains("unexpected bytes"),
            "{err}"
        );
        // A unit-variant name followed by a struct body is two items, not one.
        let mut bytes = vec![0x67];
        bytes.extend_from_slice(b"advance");
        bytes.extend_from_slice(&[0xa1, 0x68]);
        bytes.extend_from_slice(b"to_phase");
        bytes.push(0x07);
        let err = err_of::<Action>(&bytes);
        assert!(err.contains("unexpected bytes"), "{err}");
    }

    #[test]
    fn refuses_integers_outside_the_field_width() {
        let bytes = encode(&(u64::from(u32::MAX) + 1));
        assert!(decode::<u32>("thing", &bytes, 100).is_err());
        let bytes = encode(&-1i64);
        assert!(decode::<u64>("thing", &bytes, 100).is_err());
    }

    #[test]
    fn canonical_encoding_of_maps_with_many_keys() {
        let m: BTreeMap<String, u32> = [("bb", 1), ("a", 2), ("ccc", 3), ("ab", 4)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let bytes = encode(&m);
        check_canonical("thing", &bytes).unwrap();
        assert_eq!(
            decode::<BTreeMap<String, u32>>("t", &bytes, 100).unwrap(),
            m
        );
    }
}
