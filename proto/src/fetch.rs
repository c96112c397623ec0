//! The fetch protocol: request-response messages for blobs (chunks and chunk indexes) and
//! for a peer's chunk availability.
//!
//! Framing on a libp2p stream (protocol `/upswarm/<network>/fetch/1`): one request or
//! response per stream, as a 4-byte big-endian length followed by that many bytes of CBOR.
//! The length is checked against the limits below before anything is allocated.
//!
//! Owns the messages, their limits and the frame header. It never reads a stream (the network's
//! codec does, with `frame_len`) and never checks a blob against its hash (the requester does).

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::manifest::{MAX_CHUNK_SIZE, MAX_CHUNKS};
use crate::{Hash32, ProtoError};

/// Format version of fetch messages.
pub const FETCH_VERSION: u32 = 1;
/// Limit on an encoded request.
pub const MAX_REQUEST_BYTES: usize = 1024;
/// Limit on an encoded response: the larger of a chunk and a chunk index, plus framing.
pub const MAX_RESPONSE_BYTES: usize = {
    let chunk = MAX_CHUNK_SIZE as usize;
    let index = MAX_CHUNKS as usize * 32;
    (if chunk > index { chunk } else { index }) + 1024
};

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub v: u32,
    pub want: Want,
}

/// What is requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// The blob (chunk or chunk index) with this blake3 hash, at most `max_len` bytes.
    Blob { hash: Hash32, max_len: u32 },
    /// Which chunks of the artifact with this chunk index the peer holds.
    Have { chunk_index: Hash32 },
    /// Like `Have`, answered once the peer holds a number of chunks other than `held` (an
    /// unknown chunk index counts as 0), or after `wait_ms` milliseconds (at most
    /// [`MAX_HAVE_WAIT_MS`]) with what it holds then: availability pushed to a requester
    /// that keeps one such request open per peer and artifact.
    HaveChanged {
        held: u32,
        wait_ms: u32,
        chunk_index: Hash32,
    },
    /// The signed messages of one kind the peer holds about a release or proposal (health
    /// reports, control messages, votes), for nodes that were offline when they were
    /// gossiped.
    Signed { kind: SignedKind, about: Hash32 },
}

/// The longest a `HaveChanged` request is held open; a longer `wait_ms` counts as this.
/// Below the default request timeout (15 s), so a quiet peer is not taken for a dead one.
pub const MAX_HAVE_WAIT_MS: u32 = 10_000;

/// Kinds of signed messages that can be re-synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedKind {
    Health,
    Control,
    Vote,
    Proposal,
    /// Trust roots newer than the pinned one (subject: all zero).
    Root,
}

/// Most envelopes in one `Signed` answer.
pub const MAX_SIGNED_PER_ANSWER: usize = 8192;

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchResponse {
    pub v: u32,
    pub answer: Answer,
}

/// The content of an answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The blob's bytes. The requester verifies them against the hash it asked for.
    Blob {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Chunk availability: bit `i` (LSB-first within each byte) set when chunk `i` is held.
    Have {
        #[serde(with = "serde_bytes")]
        bitmap: Vec<u8>,
    },
    /// Signed envelopes (each as encoded), answering `Want::Signed`.
    Signed {
        envelopes: Vec<serde_bytes::ByteBuf>,
    },
    /// The peer does not hold it (or does not know the chunk index).
    DontHave,
    /// The peer is over its upload capacity; try again later or elsewhere.
    Busy,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Blob { bytes } => write!(f, "Blob({} bytes)", bytes.len()),
            Answer::Have { bitmap } => write!(f, "Have({} bytes of bitmap)", bitmap.len()),
            Answer::Signed { envelopes } => write!(f, "Signed({} envelopes)", envelopes.len()),
            Answer::DontHave => f.write_str("DontHave"),
            Answer::Busy => f.write_str("Busy"),
        }
    }
}

impl FetchRequest {
    pub fn new(want: Want) -> Self {
        FetchRequest {
            v: FETCH_VERSION,
            want,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let r: FetchRequest = codec::decode("fetch request", bytes, MAX_REQUEST_BYTES)?;
        codec::check_version("fetch request", r.v, FETCH_VERSION)?;
        Ok(r)
    }
}

impl FetchResponse {
    pub fn new(answer: Answer) -> Self {
        FetchResponse {
            v: FETCH_VERSION,
            answer,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let r: FetchResponse = codec::decode("fetch response", bytes, MAX_RESPONSE_BYTES)?;
        codec::check_version("fetch response", r.v, FETCH_VERSION)?;
        Ok(r)
    }
}

/// Reads a frame header: the 4-byte big-endian length of the CBOR message that follows,
/// refused when over `limit` (checked before anything is allocated for the body).
pub fn frame_len(header: [u8; 4], what: &'static str, limit: usize) -> Result<usize, ProtoError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(ProtoError::TooLarge {
            what,
            limit,
            got: len as u64,
        });
    }
    Ok(len)
}

/// Decodes one framed request from a complete stream: header, body, and nothing after it.
/// The network reads the same way from a libp2p stream; this form is for tests and fuzzing.
pub fn decode_framed_request(bytes: &[u8]) -> Result<FetchRequest, ProtoError> {
    let body = framed_body(bytes, "fetch request", MAX_REQUEST_BYTES)?;
    FetchRequest::decode(body)
}

/// Like [`decode_framed_request`], for a response.
pub fn decode_framed_response(bytes: &[u8]) -> Result<FetchResponse, ProtoError> {
    let body = framed_body(bytes, "fetch response", MAX_RESPONSE_BYTES)?;
    FetchResponse::decode(body)
}

fn framed_body<'a>(
    bytes: &'a [u8],
    what: &'static str,
    limit: usize,
) -> Result<&'a [u8], ProtoError> {
    let (header, body) = bytes
        .split_first_chunk::<4>()
        .ok_or(ProtoError::Malformed {
            what,
            detail: "truncated: stream ended inside the 4-byte length".into(),
        })?;
    let len = frame_len(*header, what, limit)?;
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(ProtoError::Malformed {
            what,
            detail: format!(
                "truncated: frame announces {len} bytes, stream has {}",
                body.len()
            ),
        }),
        std::cmp::Ordering::Greater => Err(ProtoError::TrailingBytes {
            what,
            extra: body.len() - len,
        }),
        std::cmp::Ordering::Equal => Ok(body),
    }
}

/// A fixed-size bitmap of chunk availability.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitmap {
    bits: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// All clear, for `len` chunks.
    pub fn new(len: usize) -> Self {
        Bitmap {
            bits: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// All set.
    pub fn full(len: usize) -> Self {
        let mut b = Bitmap::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes; `None` when the byte length does not fit `len` chunks.
    pub fn from_bytes(bytes: Vec<u8>, len: usize) -> Option<Self> {
        (bytes.len() == len.div_ceil(8)).then_some(Bitmap { bits: bytes, len })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    pub fn set(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] |= 1 << (i % 8);
        }
    }

    pub fn clear(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] &= !(1 << (i % 8));
        }
    }

    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether every bit is set.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_basics() {
        let mut b = Bitmap::new(10);
        assert_eq!(b.as_bytes().len(), 2);
        b.set(0);
        b.set(9);
        b.set(10); // out of range: ignored
        assert!(b.get(0) && b.get(9) && !b.get(5) && !b.get(10));
        assert_eq!(b.count(), 2);
        assert!(Bitmap::full(10).is_full());
        assert!(Bitmap::from_bytes(vec![0; 3], 10).is_none());
    }

    #[test]
    fn messages_roundtrip_and_limits() {
        let req = FetchRequest::new(Want::Blob {
            hash: Hash32([1; 32]),
            max_len: 4096,
        });
        assert_eq!(FetchRequest::decode(&req.encode()).unwrap(), req);
        let resp = FetchResponse::new(Answer::Blob {
            bytes: vec![5; 100],
        });
        assert_eq!(FetchResponse::decode(&resp.encode()).unwrap(), resp);
        assert!(matches!(
            FetchRequest::decode(&[0u8; 2000]),
            Err(ProtoError::TooLarge { .. })
        ));
    }
}
