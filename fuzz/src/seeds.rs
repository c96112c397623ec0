//! The seed corpus: valid encodings of every message (from [`crate::fixtures`]) and a few
//! hostile inputs per target. `cargo run --example seeds` writes them to `corpus/<target>/`;
//! the output is deterministic (ed25519 signatures are), so the committed corpus can be
//! regenerated and compared.

use upswarm_proto::fetch::{
    Answer, FETCH_VERSION, FetchRequest, FetchResponse, MAX_REQUEST_BYTES, SignedKind, Want,
};
use upswarm_proto::{ChunkIndex, Context, Hash32, Message, SignedEnvelope, TrustRoot};

use crate::fixtures::{self, Keys};
use crate::frame;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every target's seeds.
pub fn all() -> Vec<Seed> {
    let f = fixtures::fixture();
    let k = &f.keys;
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };

    // Payloads, per type.
    let payloads = payloads(k);
    for (target, name, bytes) in &payloads {
        add(target, &format!("valid-{name}"), bytes.clone());
    }
    for (name, bytes) in hostile() {
        for target in [
            "manifest",
            "trust_root",
            "control",
            "health",
            "proposal",
            "vote",
        ] {
            add(target, &format!("hostile-{name}"), bytes.clone());
        }
    }
    // The parser differential, on the type it was found with.
    add(
        "control",
        "hostile-undercounted-map-advance",
        undercounted_control(),
    );

    // Envelopes of every type, validly signed.
    let envelopes = envelopes(k);
    for (name, env) in &envelopes {
        add("envelope", &format!("valid-{name}"), env.encode());
        add("verify", &format!("valid-{name}"), env.encode());
    }
    for (name, bytes) in hostile() {
        add("envelope", &format!("hostile-{name}"), bytes);
    }
    for (name, env) in hostile_envelopes(k) {
        add("verify", &format!("hostile-{name}"), env.encode());
    }

    // Chunk indexes, behind their 12-byte artifact header.
    let header = |size: u64, chunk_size: u32| {
        let mut h = size.to_be_bytes().to_vec();
        h.extend_from_slice(&chunk_size.to_be_bytes());
        h
    };
    let idx = fixtures::chunk_index();
    let with = |h: Vec<u8>, body: &[u8]| [h, body.to_vec()].concat();
    add(
        "chunk_index",
        "valid-four-chunks",
        with(header(idx.size, idx.chunk_size), &idx.encode()),
    );
    let empty = ChunkIndex::new(0, 4096, &[]);
    add(
        "chunk_index",
        "valid-empty",
        with(header(0, 4096), &empty.encode()),
    );
    let exact = ChunkIndex::new(8192, 4096, &[Hash32([1; 32]), Hash32([2; 32])]);
    add(
        "chunk_index",
        "valid-exact-multiple",
        with(header(8192, 4096), &exact.encode()),
    );
    add(
        "chunk_index",
        "hostile-one-chunk-short",
        with(
            header(8193, 4096),
            &ChunkIndex::new(8193, 4096, &[Hash32([1; 32]), Hash32([2; 32])]).encode(),
        ),
    );
    add(
        "chunk_index",
        "hostile-chunk-size-zero",
        with(header(0, 0), &ChunkIndex::new(0, 0, &[]).encode()),
    );
    add(
        "chunk_index",
        "hostile-max-size",
        with(
            header(u64::MAX, u32::MAX),
            &ChunkIndex::new(u64::MAX, u32::MAX, &[]).encode(),
        ),
    );
    for (name, bytes) in hostile() {
        add(
            "chunk_index",
            &format!("hostile-{name}"),
            with(header(idx.size, idx.chunk_size), &bytes),
        );
    }

    // Fetch messages, framed.
    for (name, r) in requests() {
        add(
            "fetch_request",
            &format!("valid-{name}"),
            frame(&r.encode()),
        );
    }
    for (name, r) in responses(&envelopes) {
        add(
            "fetch_response",
            &format!("valid-{name}"),
            frame(&r.encode()),
        );
    }
    for target in ["fetch_request", "fetch_response"] {
        for (name, bytes) in hostile() {
            add(target, &format!("hostile-{name}"), frame(&bytes));
        }
        let valid = FetchRequest::new(Want::Have {
            chunk_index: Hash32([1; 32]),
        })
        .encode();
        let mut short = frame(&valid);
        short.pop();
        add(target, "hostile-frame-longer-than-stream", short);
        let mut long = frame(&valid);
        long.push(0);
        add(target, "hostile-bytes-after-frame", long);
        add(target, "hostile-frame-header-only", vec![0, 0, 0, 1]);
        add(
            target,
            "hostile-frame-over-limit",
            vec![0xff, 0xff, 0xff, 0xff],
        );
    }
    add(
        "fetch_request",
        "hostile-frame-one-over-limit",
        ((MAX_REQUEST_BYTES + 1) as u32).to_be_bytes().to_vec(),
    );
    add(
        "fetch_response",
        "hostile-unit-variant-as-map",
        frame(&hostile_response_spelling()),
    );

    // The walker alone and the round trip: every valid encoding and every hostile one.
    let mut everything: Vec<(String, Vec<u8>)> = Vec::new();
    for (_, name, bytes) in &payloads {
        everything.push((format!("valid-{name}"), bytes.clone()));
    }
    for (name, env) in envelopes.iter().take(3) {
        everything.push((format!("valid-envelope-{name}"), env.encode()));
    }
    everything.push(("valid-chunk-index".into(), idx.encode()));
    for (name, r) in requests().into_iter().take(2) {
        everything.push((format!("valid-request-{name}"), r.encode()));
    }
    for (name, r) in responses(&envelopes).into_iter().take(3) {
        everything.push((format!("valid-response-{name}"), r.encode()));
    }
    for (name, bytes) in &everything {
        add("canonical", name, bytes.clone());
        add("roundtrip", name, bytes.clone());
    }
    for (name, bytes) in hostile() {
        add("canonical", &format!("hostile-{name}"), bytes.clone());
        add("roundtrip", &format!("hostile-{name}"), bytes);
    }

    // Key files.
    let secret = format!(
        "upswarm-ed25519-secret:{}\n",
        crate::hex(&*k.release_a.seed())
    );
    let public = format!("upswarm-ed25519-public:{}\n", k.release_a.public().to_hex());
    add("key_file", "valid-secret", secret.clone().into_bytes());
    add("key_file", "valid-public", public.clone().into_bytes());
    add(
        "key_file",
        "valid-secret-uppercase-crlf",
        format!(
            "  upswarm-ed25519-secret:{}\r\n",
            crate::hex(&*k.release_a.seed()).to_uppercase()
        )
        .into_bytes(),
    );
    add(
        "key_file",
        "hostile-secret-63-digits",
        secret.trim().as_bytes()[..secret.trim().len() - 1].to_vec(),
    );
    add(
        "key_file",
        "hostile-uppercase-prefix",
        secret.to_uppercase().into_bytes(),
    );
    add(
        "key_file",
        "hostile-two-lines",
        format!("{secret}{public}").into_bytes(),
    );
    add(
        "key_file",
        "hostile-not-utf8",
        [b"upswarm-ed25519-public:".as_slice(), &[0xff; 64]].concat(),
    );
    add("key_file", "hostile-too-long", vec![b' '; 1025]);
    // Found by the key_file target (open, see tests/findings.rs).
    add(
        "key_file",
        "finding-public-whitespace-after-prefix",
        format!(
            "upswarm-ed25519-public:\n{}\n",
            k.release_a.public().to_hex()
        )
        .into_bytes(),
    );
    add(
        "key_file",
        "hostile-invalid-point",
        format!("upswarm-ed25519-public:{}", "ff".repeat(32)).into_bytes(),
    );

    out
}

/// `(target, name, encoded payload)` of every sample message.
fn payloads(k: &Keys) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = vec![
        (
            "manifest",
            "full".to_string(),
            fixtures::manifest_full().encode(),
        ),
        (
            "manifest",
            "minimal".to_string(),
            fixtures::manifest_minimal().encode(),
        ),
        (
            "manifest",
            "v2-mirrors-forms".to_string(),
            fixtures::manifest_v2().encode(),
        ),
        (
            "trust_root",
            "v1".to_string(),
            fixtures::trust_root(k, 1).encode(),
        ),
        (
            "proposal",
            "lock-in".to_string(),
            fixtures::proposal().encode(),
        ),
        ("vote", "ready".to_string(), fixtures::vote(k).encode()),
    ];
    let mut lean = fixtures::trust_root(k, 7);
    lean.roles.control = None;
    lean.roles.electorate.voters.clear();
    lean.roles.release.types.clear();
    lean.roles.release.threshold = 1;
    out.push(("trust_root", "no-control-no-voters".into(), lean.encode()));
    for c in fixtures::control_messages() {
        out.push(("control", c.action.name().to_string(), c.encode()));
    }
    for h in fixtures::health_reports(k) {
        out.push(("health", h.status.as_str().to_string(), h.encode()));
    }
    out
}

/// Validly signed envelopes of every type.
fn envelopes(k: &Keys) -> Vec<(String, SignedEnvelope)> {
    let both = [&k.release_a, &k.release_b];
    let mut out = vec![
        (
            "manifest".to_string(),
            fixtures::sign(&fixtures::manifest_full(), &both),
        ),
        (
            "manifest-hotfix-one-signature".to_string(),
            fixtures::sign(&fixtures::manifest_minimal(), &[&k.release_b]),
        ),
        (
            "root-v1".to_string(),
            fixtures::sign(&fixtures::trust_root(k, 1), &[&k.root]),
        ),
        (
            "root-v2-rotation".to_string(),
            fixtures::sign(&fixtures::trust_root(k, 2), &[&k.root]),
        ),
        (
            "proposal".to_string(),
            fixtures::sign(&fixtures::proposal(), &both),
        ),
        (
            "vote".to_string(),
            fixtures::sign(&fixtures::vote(k), &[&k.voter]),
        ),
    ];
    for c in fixtures::control_messages().into_iter().take(2) {
        out.push((
            format!("control-{}", c.action.name()),
            fixtures::sign(&c, &[&k.control]),
        ));
    }
    if let Some(h) = fixtures::health_reports(k).into_iter().nth(2) {
        out.push(("health-failed".into(), fixtures::sign(&h, &[&k.node])));
    }
    out.push((
        "manifest-v2".into(),
        fixtures::sign(&fixtures::manifest_v2(), &both),
    ));
    out
}

/// Envelopes whose signatures must not count.
fn hostile_envelopes(k: &Keys) -> Vec<(String, SignedEnvelope)> {
    let m = fixtures::manifest_full();
    let mut dup = fixtures::sign(&m, &[&k.release_a]);
    fixtures::push_signature(&mut dup, &k.release_a, Context::Manifest);
    let outsider = fixtures::sign(&m, &[&k.release_a, &k.outsider]);
    let mut wrong_context = SignedEnvelope::wrap(&m);
    fixtures::push_signature(&mut wrong_context, &k.release_a, Context::Proposal);
    fixtures::push_signature(&mut wrong_context, &k.release_b, Context::Proposal);
    let mut root_by_release = SignedEnvelope::wrap(&fixtures::trust_root(k, 2));
    fixtures::push_signature(&mut root_by_release, &k.release_a, Context::Root);
    let mut gap: SignedEnvelope = fixtures::sign(&fixtures::trust_root(k, 3), &[&k.root]);
    gap.sigs.truncate(1);
    let mut forged_vote = fixtures::sign(&fixtures::vote(k), &[&k.voter]);
    if let Some(s) = forged_vote.sigs.first_mut() {
        s.sig.0[0] ^= 1;
    }
    vec![
        ("manifest-same-key-twice".into(), dup),
        ("manifest-outsider-signature".into(), outsider),
        ("manifest-signed-as-proposal".into(), wrong_context),
        ("root-signed-by-release-key".into(), root_by_release),
        ("root-version-gap".into(), gap),
        ("vote-forged-signature".into(), forged_vote),
    ]
}

fn requests() -> Vec<(String, FetchRequest)> {
    vec![
        (
            "blob".into(),
            FetchRequest::new(Want::Blob {
                hash: Hash32([1; 32]),
                max_len: 1 << 20,
            }),
        ),
        (
            "blob-max-len-zero".into(),
            FetchRequest::new(Want::Blob {
                hash: Hash32([1; 32]),
                max_len: 0,
            }),
        ),
        (
            "have".into(),
            FetchRequest::new(Want::Have {
                chunk_index: Hash32([2; 32]),
            }),
        ),
        (
            "have-changed".into(),
            FetchRequest::new(Want::HaveChanged {
                held: 3,
                wait_ms: 10_000,
                chunk_index: Hash32([2; 32]),
            }),
        ),
        (
            "have-changed-wait-max".into(),
            FetchRequest::new(Want::HaveChanged {
                held: u32::MAX,
                wait_ms: u32::MAX,
                chunk_index: Hash32([2; 32]),
            }),
        ),
        (
            "signed-health".into(),
            FetchRequest::new(Want::Signed {
                kind: SignedKind::Health,
                about: Hash32([3; 32]),
            }),
        ),
        (
            "signed-root".into(),
            FetchRequest::new(Want::Signed {
                kind: SignedKind::Root,
                about: Hash32([0; 32]),
            }),
        ),
    ]
}

fn responses(envelopes: &[(String, SignedEnvelope)]) -> Vec<(String, FetchResponse)> {
    vec![
        (
            "blob".into(),
            FetchResponse::new(Answer::Blob {
                bytes: fixtures::chunk_index().encode(),
            }),
        ),
        (
            "have".into(),
            FetchResponse::new(Answer::Have {
                bitmap: vec![0b1011, 0xff],
            }),
        ),
        (
            "signed".into(),
            FetchResponse::new(Answer::Signed {
                envelopes: envelopes
                    .iter()
                    .take(3)
                    .map(|(_, e)| serde_bytes::ByteBuf::from(e.encode()))
                    .collect(),
            }),
        ),
        (
            "signed-empty".into(),
            FetchResponse::new(Answer::Signed { envelopes: vec![] }),
        ),
        ("dont-have".into(), FetchResponse::new(Answer::DontHave)),
        ("busy".into(), FetchResponse::new(Answer::Busy)),
    ]
}

/// Hostile CBOR: every form the canonical-form rules refuse, and inputs that announce more
/// than they hold.
pub fn hostile() -> Vec<(String, Vec<u8>)> {
    let control = fixtures::control_messages()
        .into_iter()
        .nth(3)
        .map(|c| c.encode())
        .unwrap_or_default();
    let mut v: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("indefinite-map", vec![0xbf, 0x61, b'v', 0x01, 0xff]),
        ("indefinite-array", vec![0x9f, 0x01, 0xff]),
        ("indefinite-text", vec![0x7f, 0x61, b'a', 0xff]),
        ("indefinite-bytes", vec![0x5f, 0x41, 0x00, 0xff]),
        ("break-alone", vec![0xff]),
        ("tag-0", vec![0xc0, 0x60]),
        (
            "tag-self-describe",
            [vec![0xd9, 0xd9, 0xf7], control.clone()].concat(),
        ),
        ("undefined", vec![0xf7]),
        ("simple-16", vec![0xf0]),
        ("simple-255", vec![0xf8, 0xff]),
        ("half-float", vec![0xf9, 0x3c, 0x00]),
        ("double", vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        ("reserved-info-28", vec![0x1c]),
        ("non-shortest-int", vec![0x18, 0x05]),
        ("non-shortest-length", vec![0x78, 0x01, b'a']),
        (
            "duplicate-key",
            vec![0xa2, 0x61, b'v', 0x01, 0x61, b'v', 0x01],
        ),
        (
            "keys-out-of-order",
            vec![0xa2, 0x62, b'z', b'z', 0x01, 0x61, b'a', 0x02],
        ),
        ("byte-string-key", vec![0xa1, 0x41, b'v', 0x01]),
        ("integer-key", vec![0xa1, 0x00, 0x01]),
        ("text-not-utf8", vec![0x62, 0xff, 0xfe]),
        (
            "huge-byte-string",
            vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "huge-array",
            vec![0x9b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
        ),
        ("map-count-over-input", vec![0xb8, 0xff, 0x61, b'v', 0x01]),
        (
            "v-over-u32",
            [b"\xa1\x61v\x1b".as_slice(), &[0, 0, 0, 1, 0, 0, 0, 0]].concat(),
        ),
        ("v-negative", vec![0xa1, 0x61, b'v', 0x20]),
        ("nested-33", [vec![0x81; 33], vec![0x00]].concat()),
        ("nested-34", [vec![0x81; 34], vec![0x00]].concat()),
        ("nested-200", [vec![0x81; 200], vec![0x00]].concat()),
        // Found by the canonical target: 33 containers, the innermost empty.
        (
            "nested-32-around-empty-array",
            [vec![0x81; 32], vec![0x80]].concat(),
        ),
    ];
    let mut trailing = control.clone();
    trailing.push(0x00);
    v.push(("trailing-byte", trailing));
    let mut truncated = control.clone();
    truncated.pop();
    v.push(("truncated", truncated));
    let root = TrustRoot::decode(&fixtures::trust_root(&fixtures::fixture().keys, 1).encode())
        .map(|r| r.encode())
        .unwrap_or_default();
    v.push((
        "root-with-version-zero",
        replace_once(&root, b"\x67version\x01", b"\x67version\x00"),
    ));
    v.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// Issue 11, finding 4: a control message whose map header undercounts its items, then a
/// trailing `{"to_phase": 7}`; a lenient reader took it as `advance(7)`.
pub fn undercounted_control() -> Vec<u8> {
    let c = fixtures::control_messages()
        .into_iter()
        .nth(3)
        .map(|c| c.encode())
        .unwrap_or_default();
    let mut out = c.clone();
    if let Some(first) = out.first_mut()
        && (0xa1..=0xb7).contains(first)
    {
        *first -= 1;
    }
    out.extend_from_slice(b"\xa1\x68to_phase\x07");
    out
}

/// A unit variant spelled as a one-entry map (`{"dont_have": null}`), which serde
/// tolerates and the re-encoding check refuses.
pub fn hostile_response_spelling() -> Vec<u8> {
    let mut out = vec![0xa2, 0x61, b'v', FETCH_VERSION as u8];
    out.extend_from_slice(b"\x66answer\xa1\x69dont_have\xf6");
    out
}

fn replace_once(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    match haystack.windows(from.len()).position(|w| w == from) {
        Some(i) => [&haystack[..i], to, &haystack[i + from.len()..]].concat(),
        None => haystack.to_vec(),
    }
}
