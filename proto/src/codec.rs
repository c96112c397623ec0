//! CBOR encoding and bounded decoding.
//!
//! Every decoder in upswarm goes through [`decode`]: the input's length is checked against
//! the message type's limit *before* any parsing happens, nesting depth is bounded, and
//! trailing bytes after the value are an error (one message, one value).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ProtoError;

/// Maximum CBOR nesting depth accepted from the wire. Our messages nest at most ~6 deep.
const MAX_DEPTH: usize = 32;

/// Encodes `value` as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and our types contain nothing serde can refuse.
    ciborium::into_writer(value, &mut out)
        .unwrap_or_else(|e| unreachable!("CBOR encoding into a Vec failed: {e}"));
    out
}

/// Decodes one CBOR value of type `T` from `bytes`, refusing inputs over `limit` bytes
/// before parsing, and refusing trailing bytes.
///
/// `what` names the message in errors ("manifest", "trust root", ...).
pub fn decode<T: DeserializeOwned>(
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
    if bytes.is_empty() {
        return Err(ProtoError::Malformed {
            what,
            detail: "empty input".into(),
        });
    }
    let mut rest = bytes;
    let value =
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
    Ok(value)
}

/// Checks a message's `v` field.
pub fn check_version(what: &'static str, got: u32, supported: u32) -> Result<(), ProtoError> {
    if got != supported {
        return Err(ProtoError::UnsupportedVersion {
            what,
            got,
            supported,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = decode::<ciborium::Value>("thing", &bytes, 1000).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }
}
