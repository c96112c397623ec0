//! # upswarm-fuzz — the bodies of the fuzz targets
//!
//! One function per decoder of bytes from outside (a peer, a signer's file, the API, the
//! daemon's own database). Each `fuzz_targets/<name>.rs` calls one of them, so that the same
//! bodies can be replayed over the committed corpus by `cargo test` (see `tests/corpus.rs`).
//!
//! Every function returns normally for every input, accepted or not; a panic is a finding.
//! Besides "no panic", they assert properties:
//! - **round trip** (every decoder): an accepted input re-encodes to exactly the input bytes,
//!   and decoding those bytes again gives an equal value;
//! - **agreement**: what the strict walker [`codec::check_canonical`] accepts, ciborium
//!   reads as one item whose encoding is the input; every typed decoder only accepts what
//!   the walker accepts; the framed fetch decoders agree with the unframed ones;
//! - **invariants** of accepted values (a role's threshold can be met by its keys, a chunk
//!   index's chunks add up to the artifact's size, a tally counts distinct keys of the role,
//!   a key file is exactly the documented format).
//!
//! Non-goals: no network, no `upswarm-net` / node crate (libp2p); the network's reader uses
//! the same `frame_len` and decoders as [`upswarm_proto::fetch::decode_framed_request`].

use std::fmt::Debug;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use upswarm_activation::{verify_proposal, verify_vote};
use upswarm_proto::codec;
use upswarm_proto::envelope::MAX_SIGNATURES;
use upswarm_proto::fetch::{
    self, Answer, Bitmap, FetchRequest, FetchResponse, decode_framed_request,
    decode_framed_response,
};
use upswarm_proto::manifest::{BP_ALL, MAX_CHUNKS};
use upswarm_proto::{
    Artifact, ChunkIndex, Context, ControlMessage, Hash32, HealthReport, Manifest, Message,
    Proposal, Role, SignedEnvelope, TrustRoot, UpdateType, Vote,
};
use upswarm_trust::{
    Tally, count_signatures, read_public_key, read_secret_key, verify_manifest,
    verify_manifest_signatures, verify_root_signatures, verify_rotation,
};

pub mod fixtures;
pub mod seeds;

/// The largest envelope limit of any message type (manifests and roots: 64 KiB).
pub const MAX_ENVELOPE_BYTES: usize = upswarm_proto::manifest::MAX_MANIFEST_BYTES;

/// Lowercase hex, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The round-trip property of one decoder: when `decode` accepts `data`, `encode` gives
/// back exactly `data`, and decoding that again gives an equal value. Returns the value.
pub fn round_trip<T, E>(
    what: &str,
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T>
where
    T: PartialEq + Debug,
    E: Debug,
{
    let value = decode(data).ok()?;
    let again = encode(&value);
    assert!(
        again == data,
        "{what}: an accepted input re-encodes to other bytes\n input: {}\n again: {}\n value: {value:?}",
        hex(data),
        hex(&again)
    );
    match decode(&again) {
        Ok(back) => assert!(
            back == value,
            "{what}: decoding the re-encoded bytes gives another value\n first: {value:?}\n again: {back:?}"
        ),
        Err(e) => panic!(
            "{what}: the re-encoding of an accepted value is refused: {e:?}\n bytes: {}",
            hex(&again)
        ),
    }
    Some(value)
}

/// A fetch-protocol frame: 4-byte big-endian length, then the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or_else(|_| panic!("frame over 4 GiB"));
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Asserts that a typed decoder that accepted `data` did so on canonical CBOR.
fn assert_canonical(what: &'static str, data: &[u8]) {
    if let Err(e) = codec::check_canonical(what, data) {
        panic!(
            "{what}: accepted by its decoder but refused by check_canonical: {e}\n input: {}",
            hex(data)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Envelopes

/// `SignedEnvelope::decode_limited` (the generic limit of the largest message), the
/// per-type `SignedEnvelope::decode::<M>` (which must agree with it under their own limits)
/// and `open::<M>()` of every payload type.
pub fn envelope(data: &[u8]) {
    let Some(env) = round_trip(
        "envelope",
        data,
        |b| SignedEnvelope::decode_limited("envelope", b, MAX_ENVELOPE_BYTES),
        SignedEnvelope::encode,
    ) else {
        // Refused under the largest limit: refused under every smaller one.
        assert!(SignedEnvelope::decode::<Manifest>(data).is_err());
        assert!(SignedEnvelope::decode::<Vote>(data).is_err());
        return;
    };
    assert_canonical("envelope", data);
    assert!(env.sigs.len() <= MAX_SIGNATURES);
    let _ = env.payload_hash();
    open_as::<Manifest>(&env, data);
    open_as::<TrustRoot>(&env, data);
    open_as::<ControlMessage>(&env, data);
    open_as::<HealthReport>(&env, data);
    open_as::<Proposal>(&env, data);
    open_as::<Vote>(&env, data);
}

/// `SignedEnvelope::decode::<M>` agrees with the generic decoder, and `open::<M>()` is the
/// payload decoder of `M`.
fn open_as<M: Message + PartialEq + Debug + 'static>(env: &SignedEnvelope, data: &[u8]) {
    let typed = SignedEnvelope::decode::<M>(data);
    assert_eq!(
        typed.is_ok(),
        data.len() <= M::MAX_BYTES,
        "{}: the typed envelope decoder disagrees with the generic one",
        M::WHAT
    );
    if let Ok(typed) = typed {
        assert_eq!(&typed, env);
    }
    if let Ok(m) = env.open::<M>() {
        message_checks(&m, &env.payload);
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// `M::decode` (`Message::decode`: canonical CBOR, version, `validate`) with the round
/// trip, and the checks of an accepted value.
pub fn message<M: Message + PartialEq + Debug + 'static>(data: &[u8]) {
    if let Some(m) = round_trip(M::WHAT, data, M::decode, M::encode) {
        message_checks(&m, data);
    }
}

fn message_checks<M: Message + PartialEq + Debug + 'static>(m: &M, data: &[u8]) {
    assert_canonical(M::WHAT, data);
    // Readers accept every version from the oldest still read (manifests: 1 and 2).
    assert!((M::OLDEST_VERSION..=M::VERSION).contains(&m.version_field()));
    if let Err(e) = m.validate() {
        panic!("{}: accepted but validate() now fails: {e}", M::WHAT);
    }
    assert_eq!(SignedEnvelope::wrap(m).payload, data);
    // The type-specific invariants.
    let any: &dyn std::any::Any = m;
    if let Some(m) = any.downcast_ref::<Manifest>() {
        manifest_checks(m);
    } else if let Some(r) = any.downcast_ref::<TrustRoot>() {
        root_checks(r);
    } else if let Some(c) = any.downcast_ref::<ControlMessage>() {
        let _ = c.action.name();
    } else if let Some(h) = any.downcast_ref::<HealthReport>() {
        let _ = (h.status.as_str(), h.status.is_failure(), h.node.key_id());
    }
}

/// An accepted manifest: its effective plan is a valid plan ending at 100 %, its artifacts'
/// chunk counts are within the limit, and the lookups do not panic.
fn manifest_checks(m: &Manifest) {
    let plan = m.effective_plan();
    assert!(!plan.phases.is_empty());
    assert_eq!(plan.phases.last().map(|p| p.until_bp), Some(BP_ALL));
    for a in &m.artifacts {
        assert!(a.chunk_count() <= MAX_CHUNKS, "{a:?}");
        let limit = ChunkIndex::max_encoded_len(a.size, a.chunk_size);
        assert!(limit <= MAX_CHUNKS * 32 + 64);
        assert!(m.artifact(&a.name, &a.platform).is_some());
    }
}

/// An accepted trust root: every threshold of every role can be met by the role's keys.
fn root_checks(r: &TrustRoot) {
    let roles = &r.roles;
    assert!(roles.root.threshold >= 1 && roles.root.threshold as usize <= roles.root.keys.len());
    for ty in UpdateType::ALL {
        let t = roles.release.threshold_for(ty);
        assert!(
            t >= 1 && t as usize <= roles.release.keys.len(),
            "release threshold {t} for {ty} with {} keys",
            roles.release.keys.len()
        );
        assert_eq!(roles.release.as_role(ty).threshold, t);
    }
    if let Some(c) = &roles.control {
        assert!(c.threshold >= 1 && c.threshold as usize <= c.keys.len());
    }
    let _ = roles.electorate.total_weight();
    for v in &roles.electorate.voters {
        assert_eq!(roles.electorate.weight_of(&v.key.key_id()), Some(v.weight));
    }
}

// ---------------------------------------------------------------------------------------
// Chunk index

/// `ChunkIndex::decode_for`. The input is a 12-byte artifact header (size as u64 and chunk
/// size as u32, big-endian) followed by the index bytes; the index is also decoded against
/// an artifact made from its own size fields, so that the fuzzer reaches the accepting path
/// without having to guess the header.
pub fn chunk_index(data: &[u8]) {
    let Some((header, body)) = data.split_first_chunk::<12>() else {
        return;
    };
    let size = u64::from_be_bytes(header[..8].try_into().unwrap_or([0; 8]));
    let chunk_size = u32::from_be_bytes(header[8..].try_into().unwrap_or([0; 4]));
    index_for(body, &artifact_of(size, chunk_size));

    // The same bytes with no limit from an artifact, then against their own sizes.
    if let Ok(idx) = codec::decode::<ChunkIndex>("chunk index", body, usize::MAX) {
        index_for(body, &artifact_of(idx.size, idx.chunk_size));
    }
}

/// The base every `zstd_form` input with an odd first byte is decoded against: 64 KiB,
/// byte `i` = `i % 251`.
pub fn form_base() -> Vec<u8> {
    (0..65_536u32).map(|i| (i % 251) as u8).collect()
}

/// An encoded form (docs/wire-format.md §5, "Forms"): the first byte `b` gives the
/// artifact's size (`(b >> 1) × 1024` bytes) and whether the frame is a patch against
/// [`form_base`] (`b` odd); the rest is the form. Decoded with a window cap of 2^20 bytes.
/// Properties: no panic; an accepted form decodes to exactly the declared size.
pub fn zstd_form(data: &[u8]) {
    let Some((&b, form)) = data.split_first() else {
        return;
    };
    let expected = u64::from(b >> 1) * 1024;
    let base = (b & 1 == 1).then(form_base);
    let mut out = Vec::new();
    if upswarm_content::forms::decode(form, base.as_deref(), expected, 20, &mut out).is_ok() {
        assert_eq!(out.len() as u64, expected, "accepted form of the wrong size");
    }
}

fn artifact_of(size: u64, chunk_size: u32) -> Artifact {
    Artifact {
        name: "a".into(),
        platform: "any".into(),
        size,
        mode: 0o644,
        hash: Hash32([0; 32]),
        chunk_size,
        chunk_index: Hash32([0; 32]),
        forms: None,
    }
}

fn index_for(body: &[u8], artifact: &Artifact) {
    let Some(idx) = round_trip(
        "chunk index",
        body,
        |b| ChunkIndex::decode_for(b, artifact),
        ChunkIndex::encode,
    ) else {
        return;
    };
    assert_canonical("chunk index", body);
    assert_eq!(idx.len() as u64, artifact.chunk_count());
    assert_eq!(idx.iter().len(), idx.len());
    // The chunks tile the artifact exactly: full chunks, then a non-empty last one.
    let mut total: u64 = 0;
    for i in 0..idx.len() {
        let len = idx.chunk_len(i);
        assert_eq!(idx.offset(i), total, "chunk {i} of {idx:?}");
        assert!(
            len > 0 && len <= idx.chunk_size,
            "chunk {i} of {idx:?}: {len} bytes"
        );
        if i + 1 < idx.len() {
            assert_eq!(len, idx.chunk_size, "chunk {i} of {idx:?}");
        }
        total += u64::from(len);
        let _ = idx.hash(i);
    }
    assert_eq!(total, idx.size, "{idx:?}");
}

// ---------------------------------------------------------------------------------------
// Fetch protocol

/// `decode_framed_request` (4-byte length + CBOR) and `FetchRequest::decode` of the whole
/// input; the framed decoder accepts exactly what the unframed one accepts in a frame.
pub fn fetch_request(data: &[u8]) {
    let framed = round_trip(
        "framed fetch request",
        data,
        decode_framed_request,
        |r: &FetchRequest| frame(&r.encode()),
    );
    if let Some(body) = data.get(4..) {
        let declared = data
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let unframed = FetchRequest::decode(body);
        if declared == Some(body.len() as u32) {
            assert_eq!(
                framed,
                unframed.ok(),
                "framed and unframed requests disagree"
            );
        } else {
            assert!(
                framed.is_none(),
                "a frame with the wrong length was accepted"
            );
        }
    }
    if let Some(r) = round_trip(
        "fetch request",
        data,
        FetchRequest::decode,
        FetchRequest::encode,
    ) {
        assert_canonical("fetch request", data);
        assert!(data.len() <= fetch::MAX_REQUEST_BYTES, "{r:?}");
    }
}

/// `decode_framed_response` and `FetchResponse::decode`, as for requests; the envelopes of
/// a `Signed` answer and the bitmap of a `Have` answer go through their own decoders, as the
/// node does.
pub fn fetch_response(data: &[u8]) {
    let framed = round_trip(
        "framed fetch response",
        data,
        decode_framed_response,
        |r: &FetchResponse| frame(&r.encode()),
    );
    if let Some(body) = data.get(4..) {
        let declared = data
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let unframed = FetchResponse::decode(body);
        if declared == Some(body.len() as u32) {
            assert_eq!(
                framed,
                unframed.ok(),
                "framed and unframed responses disagree"
            );
        } else {
            assert!(
                framed.is_none(),
                "a frame with the wrong length was accepted"
            );
        }
    }
    let unframed = round_trip(
        "fetch response",
        data,
        FetchResponse::decode,
        FetchResponse::encode,
    );
    for r in framed.iter().chain(unframed.iter()) {
        match &r.answer {
            Answer::Signed { envelopes } => {
                for e in envelopes {
                    envelope(e);
                }
            }
            Answer::Have { bitmap } => {
                let chunks = bitmap.len() * 8;
                let b = Bitmap::from_bytes(bitmap.clone(), chunks).unwrap_or_else(|| {
                    panic!("a {}-byte bitmap for {chunks} chunks", bitmap.len())
                });
                assert!(b.count() <= chunks);
                assert_eq!(b.is_full(), bitmap.iter().all(|&x| x == 0xff));
                assert!(Bitmap::from_bytes(bitmap.clone(), chunks + 1).is_none());
            }
            Answer::Blob { bytes } => {
                let _ = Hash32::of(bytes);
            }
            Answer::DontHave | Answer::Busy => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The canonical-form walker

/// `codec::check_canonical` alone, and its agreement with ciborium: whatever the walker
/// accepts, ciborium reads as exactly one item that re-encodes to the input, and
/// `codec::decode` of a generic CBOR value accepts it too.
pub fn canonical(data: &[u8]) {
    if codec::check_canonical("input", data).is_err() {
        return;
    }
    let mut rest = data;
    let value: ciborium::Value =
        match ciborium::de::from_reader_with_recursion_limit(&mut rest, usize::MAX) {
            Ok(v) => v,
            Err(e) => panic!(
                "check_canonical accepts what ciborium cannot read: {e:?}\n input: {}",
                hex(data)
            ),
        };
    assert!(
        rest.is_empty(),
        "check_canonical accepts {} trailing bytes ciborium leaves\n input: {}",
        rest.len(),
        hex(data)
    );
    let mut again = Vec::new();
    ciborium::into_writer(&value, &mut again)
        .unwrap_or_else(|e| panic!("ciborium cannot write what it read: {e:?}"));
    assert!(
        again == data,
        "check_canonical accepts an encoding ciborium writes differently\n input: {}\n again: {}",
        hex(data),
        hex(&again)
    );
    if let Err(e) = codec::decode::<ciborium::Value>("cbor value", data, usize::MAX) {
        panic!(
            "check_canonical accepts what codec::decode refuses: {e}\n input: {}",
            hex(data)
        );
    }
    cbor_value(data);
}

/// `codec::decode::<ciborium::Value>` and its round trip.
fn cbor_value(data: &[u8]) -> Option<ciborium::Value> {
    round_trip(
        "cbor value",
        data,
        |b| codec::decode::<ciborium::Value>("cbor value", b, usize::MAX),
        codec::encode,
    )
}

// ---------------------------------------------------------------------------------------
// Everything at once

/// Every decoder on the same input, each with the round-trip property, and the agreement of
/// each typed decoder with the walker.
pub fn roundtrip_all(data: &[u8]) {
    if round_trip(
        "envelope",
        data,
        |b| SignedEnvelope::decode_limited("envelope", b, MAX_ENVELOPE_BYTES),
        SignedEnvelope::encode,
    )
    .is_some()
    {
        assert_canonical("envelope", data);
    }
    message::<Manifest>(data);
    message::<TrustRoot>(data);
    message::<ControlMessage>(data);
    message::<HealthReport>(data);
    message::<Proposal>(data);
    message::<Vote>(data);
    for (what, ok) in [
        (
            "fetch request",
            round_trip(
                "fetch request",
                data,
                FetchRequest::decode,
                FetchRequest::encode,
            )
            .is_some(),
        ),
        (
            "fetch response",
            round_trip(
                "fetch response",
                data,
                FetchResponse::decode,
                FetchResponse::encode,
            )
            .is_some(),
        ),
        (
            "chunk index",
            round_trip(
                "chunk index",
                data,
                |b| codec::decode::<ChunkIndex>("chunk index", b, usize::MAX),
                ChunkIndex::encode,
            )
            .is_some(),
        ),
    ] {
        if ok {
            assert_canonical(what, data);
        }
    }
    round_trip(
        "framed fetch request",
        data,
        decode_framed_request,
        |r: &FetchRequest| frame(&r.encode()),
    );
    round_trip(
        "framed fetch response",
        data,
        decode_framed_response,
        |r: &FetchResponse| frame(&r.encode()),
    );
    if let Ok(idx) = codec::decode::<ChunkIndex>("chunk index", data, usize::MAX) {
        index_for(data, &artifact_of(idx.size, idx.chunk_size));
    }
    if cbor_value(data).is_some() {
        assert_canonical("cbor value", data);
    }
}

// ---------------------------------------------------------------------------------------
// Signature checks

/// An envelope through every verification path against the fixture's pinned trust root:
/// the root's self-signature and a rotation from the pinned root, the release threshold of
/// a manifest (with the fixed clock), a protocol proposal, a vote, the control role and a
/// health report's node key. Every tally counts distinct keys of its role only.
pub fn verify(data: &[u8]) {
    let Ok(env) = SignedEnvelope::decode_limited("envelope", data, MAX_ENVELOPE_BYTES) else {
        return;
    };
    let f = fixtures::fixture();
    let roles = &f.root.roles;

    if let Ok((root, tally)) = verify_root_signatures(&env) {
        tally_checks(&tally, &root.root().roles.root);
    }
    if let Ok((next, by_previous, by_self)) = verify_rotation(&f.pinned, &env) {
        assert_eq!(next.version(), f.pinned.version() + 1);
        tally_checks(&by_previous, &roles.root);
        tally_checks(&by_self, &next.root().roles.root);
    }
    if let Ok(v) = verify_manifest_signatures(&f.root, &env) {
        assert_eq!(v.release_id, Hash32::of(&env.payload));
        tally_checks(&v.tally, &roles.release.as_role(v.manifest.update_type));
    }
    if let Ok(v) = verify_manifest(&f.root, &env, fixtures::time()) {
        assert!(v.manifest.expires_at.saturating_add(fixtures::time().skew) >= fixtures::NOW);
        assert!(v.manifest.created_at <= fixtures::NOW + fixtures::time().skew);
    }
    if let Ok(p) = verify_proposal(&f.root, &env) {
        tally_checks(&p.tally, &roles.release.as_role(UpdateType::Protocol));
    }
    if let Ok(v) = verify_vote(&f.root, &env) {
        assert!(roles.electorate.weight_of(&v.voter).is_some());
    }
    if let Some(control) = &roles.control {
        let tally = count_signatures("control", control, Context::Control, &env);
        tally_checks_any(&tally, control);
    }
    if let Ok(report) = env.open::<HealthReport>() {
        let role = Role {
            keys: vec![report.node],
            threshold: 1,
        };
        let tally = count_signatures("node", &role, Context::Health, &env);
        tally_checks_any(&tally, &role);
    }
}

/// A tally that met its threshold.
fn tally_checks(tally: &Tally, role: &Role) {
    assert!(tally.met(), "{tally}");
    tally_checks_any(tally, role);
}

/// Any tally: one verdict per signature, `valid` is the number of distinct counted keys,
/// each a key of the role, and never more than the role has.
fn tally_checks_any(tally: &Tally, role: &Role) {
    let counted: Vec<_> = tally.counted().collect();
    let distinct: std::collections::BTreeSet<_> = counted.iter().collect();
    assert_eq!(counted.len(), distinct.len(), "{tally}");
    assert_eq!(tally.valid as usize, counted.len(), "{tally}");
    assert!(tally.valid as usize <= role.keys.len(), "{tally}");
    for k in counted {
        assert!(role.keys.iter().any(|pk| pk.key_id() == *k), "{tally}");
    }
}

// ---------------------------------------------------------------------------------------
// Key files

/// Whether public key files may have whitespace between the prefix and the digits. They
/// could until 2026-12-02 (found by this target, fixed in `read_public_key`; the reproducer
/// is `tests/findings.rs`): now neither key file may.
pub const PUBLIC_KEY_FILE_TOLERATES_INNER_WHITESPACE: bool = false;

/// `read_secret_key` and `read_public_key` on the input as a key file (mode 0600): never
/// both accept the same file, and what is accepted is exactly the documented one-line format
/// (prefix, 64 hex digits, surrounding whitespace; see
/// [`PUBLIC_KEY_FILE_TOLERATES_INNER_WHITESPACE`]).
pub fn key_file(data: &[u8]) {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("upswarm-fuzz-key-{}", std::process::id()))
    });
    let _ = fs::remove_file(path);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(data));
    if let Err(e) = written {
        panic!("cannot write the key file {}: {e}", path.display());
    }
    let secret = read_secret_key(path);
    let public = read_public_key(path);
    let _ = fs::remove_file(path);
    assert!(
        secret.is_err() || public.is_err(),
        "one file read as both a secret and a public key"
    );
    // Prefix exactly, then the hex digits in either case.
    let documented = |prefix: &str, hex_digits: String, inner_whitespace: bool| {
        assert!(
            data.len() <= 1024,
            "a key file of {} bytes was accepted",
            data.len()
        );
        let text = std::str::from_utf8(data)
            .unwrap_or_else(|_| panic!("a key file that is not UTF-8 was accepted"))
            .trim();
        let rest = text.strip_prefix(prefix).unwrap_or_else(|| {
            panic!("a key file without the prefix {prefix:?} was accepted: {text:?}")
        });
        let rest = if inner_whitespace {
            rest.trim_start()
        } else {
            rest
        };
        assert_eq!(
            rest.to_ascii_lowercase(),
            hex_digits,
            "a key file not in the documented format was accepted: {text:?}"
        );
    };
    if let Ok(k) = secret {
        documented("upswarm-ed25519-secret:", hex(&*k.seed()), false);
    }
    if let Ok(k) = public {
        documented(
            "upswarm-ed25519-public:",
            k.to_hex(),
            PUBLIC_KEY_FILE_TOLERATES_INNER_WHITESPACE,
        );
    }
}
