//! Fixed-size byte strings: hashes, key ids, public keys and signatures.
//!
//! On the wire (CBOR) each is a byte string of exactly its length. In human-readable
//! formats (JSON from the control API) each is a lowercase hex string.
//!
//! Owns these types, their hex and serde forms, and the blake3 of `Hash32::of` and
//! `PublicKey::key_id`. It never verifies a signature nor reads a key file (`upswarm-trust` does).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! byte_newtype {
    ($(#[$meta:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Full lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses full lowercase or uppercase hex.
            pub fn from_hex(s: &str) -> Result<Self, crate::ProtoError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| {
                    crate::ProtoError::BadHex { what: $what, expected_len: $len }
                })?;
                Ok(Self(out))
            }

            /// Builds from a slice of exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, crate::ProtoError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| crate::ProtoError::BadLength {
                    what: $what,
                    expected: $len,
                    got: bytes.len(),
                })?;
                Ok(Self(arr))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), short_hex(&self.0))
            }
        }

        impl fmt::Display for $name {
            /// Displays the first 8 bytes in hex; use [`Self::to_hex`] for the full value.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&short_hex(&self.0))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} ({} bytes)", $what, $len)
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$name, E> {
                        $name::from_slice(v).map_err(E::custom)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_hex(v).map_err(E::custom)
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
    };
}

/// Hex of the first 8 bytes: enough to tell values apart in logs and reports.
pub fn short_hex(bytes: &[u8]) -> String {
    hex::encode(&bytes[..bytes.len().min(8)])
}

byte_newtype!(
    /// A blake3 hash (32 bytes).
    Hash32,
    32,
    "blake3 hash"
);

byte_newtype!(
    /// An ed25519 public key (32 bytes, compressed Edwards point).
    PublicKey,
    32,
    "ed25519 public key"
);

byte_newtype!(
    /// A key id: `blake3(public key bytes)`. Shown shortened (16 hex digits) for display only.
    KeyId,
    32,
    "key id"
);

byte_newtype!(
    /// An ed25519 signature (64 bytes).
    SignatureBytes,
    64,
    "ed25519 signature"
);

impl Hash32 {
    /// blake3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for Hash32 {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl PublicKey {
    /// The key id of this public key.
    pub fn key_id(&self) -> KeyId {
        KeyId(*blake3::hash(&self.0).as_bytes())
    }
}

/// Serde helpers for maps keyed by a [`Hash32`]: the canonical form allows only text map
/// keys, so the keys are written as full lowercase hex. Use with
/// `#[serde(with = "upswarm_proto::ids::hex_keys")]` on a `BTreeMap<Hash32, V>`.
pub mod hex_keys {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Hash32;

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &BTreeMap<Hash32, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_hex(), v)))
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Hash32, V>, D::Error> {
        let raw: BTreeMap<String, V> = BTreeMap::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let h = Hash32::from_hex(&k).map_err(D::Error::custom)?;
                if h.to_hex() != k {
                    return Err(D::Error::custom("map key is not lowercase hex"));
                }
                Ok((h, v))
            })
            .collect()
    }
}
