//! # upswarm-evil-peer — a hostile peer, for tests
//!
//! Joins an upswarm network through the project's own network crate (`upswarm-net`), so it
//! speaks every documented protocol, and then misbehaves as told on the command line:
//! serves corrupt chunks and chunk indexes, bogus availability bitmaps or no answer at
//! all; floods the release topic with invalid messages; gossips messages nobody verified;
//! replays old signed manifests as DHT records; plays `max_len` games with a victim's
//! store; and, over a second raw libp2p connection, sends oversized, truncated and
//! non-canonical fetch frames. It prints what it did and saw as JSON lines on stdout, so
//! a test can assert what the honest nodes made of it.
//!
//! Non-goals: it is never part of the daemon or of a release; it has no persistence and
//! keeps no promise of good behaviour (that is its point).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{StreamProtocol, noise, tcp, yamux};
use serde_json::json;
use tokio::sync::Mutex;
use upswarm_content::{ChunkStore, peek_index};
use upswarm_net::{
    Event, InboundFetch, MessageAcceptance, Multiaddr, NetConfig, PeerId, Record, RecordKey,
    ResponseChannel, Topic, identity,
};
use upswarm_proto::fetch::{Answer, FetchRequest, FetchResponse, MAX_REQUEST_BYTES, Want};
use upswarm_proto::{Hash32, Manifest, SignedEnvelope};

/// How inbound chunk and chunk-index requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Serve {
    /// The real bytes with one byte flipped (random bytes for blobs it does not know).
    Corrupt,
    /// Random bytes of the expected length.
    Garbage,
    /// Never answer: hold the request until the asker gives up.
    Silent,
    /// "Don't have", truthfully.
    DontHave,
    /// The real chunk indexes, "don't have" for every chunk: a peer that knows a release
    /// but holds none of its chunks (honest, if unhelpful).
    IndexOnly,
}

/// How inbound availability requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bitmaps {
    /// Claim every chunk.
    Full,
    /// A bitmap of the wrong length.
    WrongLength,
    /// "Don't have".
    None,
}

#[derive(Debug, Parser)]
#[command(
    name = "upswarm-evil-peer",
    about = "A hostile upswarm peer, for tests only"
)]
struct Args {
    /// Network name (as in the daemons' config).
    #[arg(long, default_value = "upswarm")]
    network: String,
    /// Listen address.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// Peers to connect to, `/ip4/…/tcp/…/p2p/<id>`.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Release directories (`manifest.cbor` + `chunks/`): public data the attacker knows.
    #[arg(long)]
    release: Vec<PathBuf>,
    /// Answer chunk and chunk-index requests this way.
    #[arg(long, value_enum, default_value = "dont-have")]
    serve: Serve,
    /// Answer availability requests this way.
    #[arg(long, value_enum, default_value = "none")]
    bitmap: Bitmaps,
    /// Announce itself in the DHT as a provider of every `--release`.
    #[arg(long)]
    provide: bool,
    /// Store this signed manifest (file) in the DHT under its channel's "latest" keys.
    #[arg(long, value_name = "FILE")]
    dht_put: Option<PathBuf>,
    /// Gossip this file on the release topic without any check.
    #[arg(long, value_name = "FILE")]
    gossip_release: Vec<PathBuf>,
    /// Gossip this file on the control topic without any check.
    #[arg(long, value_name = "FILE")]
    gossip_control: Vec<PathBuf>,
    /// Publish this many distinct invalid messages on the release topic, twice, with
    /// `--flood-pause` between the two batches.
    #[arg(long, default_value_t = 0)]
    flood: usize,
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    flood_pause: u64,
    /// Probe this peer (one of `--bootstrap`, by peer id): `max_len` games on every blob
    /// of every `--release`, then malformed frames over a raw connection.
    #[arg(long, value_name = "PEER_ID")]
    probe: Option<PeerId>,
    /// Wait this long after connecting before the scripted steps (gossip subscriptions
    /// need a moment to propagate).
    #[arg(long, default_value = "2", value_name = "SECONDS")]
    settle: u64,
    /// Keep running (serving lies) this long after the scripted steps; default forever.
    #[arg(long, value_name = "SECONDS")]
    linger: Option<u64>,
}

/// One JSON line on stdout.
fn emit(v: serde_json::Value) {
    println!("{v}");
}

/// What the attacker knows about the releases it was given.
#[derive(Default)]
struct Known {
    manifests: Vec<(Manifest, Vec<u8>)>,
    /// Chunk-index hash → number of chunks.
    chunk_counts: HashMap<Hash32, usize>,
    /// Blob hash → its bytes (chunks and chunk indexes).
    blobs: HashMap<Hash32, Vec<u8>>,
}

impl Known {
    fn load(dirs: &[PathBuf]) -> anyhow::Result<Self> {
        let mut k = Known::default();
        for dir in dirs {
            let path = dir.join("manifest.cbor");
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let env = SignedEnvelope::decode::<Manifest>(&bytes)?;
            let m: Manifest = env.open()?;
            let store = ChunkStore::open_read_only(dir.join("chunks"))?;
            for a in &m.artifacts {
                let index = peek_index(&store, a)?;
                k.chunk_counts.insert(a.chunk_index, index.len());
                k.blobs.insert(a.chunk_index, index.encode());
                for (i, h) in index.iter().enumerate() {
                    k.blobs
                        .insert(h, store.peek(&h, u64::from(index.chunk_len(i)))?);
                }
            }
            k.manifests.push((m, bytes));
        }
        Ok(k)
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut x = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    out
}

#[derive(Default)]
struct Served {
    blobs: AtomicU64,
    bitmaps: AtomicU64,
    held: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let known = Arc::new(Known::load(&args.release)?);
    let keypair = identity::Keypair::generate_ed25519();
    let mut cfg = NetConfig::new(args.network.clone(), keypair);
    cfg.listen = vec![args.listen.clone()];
    cfg.bootstrap = args.bootstrap.clone();
    cfg.request_timeout = Duration::from_secs(10);
    let (client, mut events, fetches, event_loop) = upswarm_net::new(cfg)?;
    tokio::spawn(event_loop.run());

    // The first listen address, for the test to dial us.
    let addr = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(Event::Listening(a))) => break a,
            Ok(Some(_)) => {}
            _ => bail!("no listen address"),
        }
    };
    let me = client.local_peer_id();
    emit(json!({"event": "ready", "peer_id": me.to_base58(), "addr": format!("{addr}/p2p/{me}")}));

    // Gossip that reaches us is never validated: drop it without forwarding.
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Event::Gossip {
                message_id, source, ..
            } = ev
            {
                let _ = c
                    .report_validation(message_id, source, MessageAcceptance::Ignore)
                    .await;
            }
        }
    });

    let served = Arc::new(Served::default());
    tokio::spawn(serve(
        client.clone(),
        fetches,
        known.clone(),
        args.serve,
        args.bitmap,
        served.clone(),
    ));

    // Wait until connected to every bootstrap peer.
    let want = args.bootstrap.len();
    for _ in 0..100 {
        let n = client.info().await.map(|i| i.connected.len()).unwrap_or(0);
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    emit(
        json!({"event": "connected", "peers": client.info().await.map(|i| i.connected.len()).unwrap_or(0)}),
    );

    if args.provide {
        for (m, bytes) in &known.manifests {
            let id = Hash32::of(&SignedEnvelope::decode::<Manifest>(bytes)?.payload);
            let key = RecordKey::new(&format!(
                "/upswarm/{}/release/{}",
                args.network,
                id.to_hex()
            ));
            let r = client.start_providing(key).await;
            emit(json!({"event": "provide", "version": m.version.to_string(), "ok": r.is_ok()}));
        }
    }

    if let Some(file) = &args.dht_put {
        let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
        let m: Manifest = SignedEnvelope::decode::<Manifest>(&bytes)?.open()?;
        for key in [
            format!("/upswarm/{}/latest/{}", args.network, m.channel),
            format!("/upswarm/{}/latest/{}/{}", args.network, m.channel, m.name),
        ] {
            let r = client
                .put_record(Record::new(RecordKey::new(&key), bytes.clone()))
                .await;
            emit(
                json!({"event": "dht_put", "key": key, "version": m.version.to_string(), "result": format!("{r:?}")}),
            );
        }
    }

    for (topic, files) in [
        (Topic::Releases, &args.gossip_release),
        (Topic::Control, &args.gossip_control),
    ] {
        for file in files {
            let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
            // Until a peer's subscription has arrived, gossipsub has nobody to send to.
            let mut r = client.publish(topic, bytes.clone()).await;
            for _ in 0..50 {
                if r.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                r = client.publish(topic, bytes.clone()).await;
            }
            emit(
                json!({"event": "gossip", "topic": topic.kind(), "file": file, "result": format!("{r:?}")}),
            );
        }
    }

    if args.flood > 0 {
        for batch in 0..2 {
            if batch == 1 {
                tokio::time::sleep(Duration::from_secs(args.flood_pause)).await;
            }
            let mut sent = 0;
            for i in 0..args.flood {
                let mut junk = format!("not a manifest, batch {batch}, message {i}: ").into_bytes();
                junk.extend_from_slice(&random_bytes(64 + i));
                if client.publish(Topic::Releases, junk).await.is_ok() {
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            emit(json!({"event": "flood", "batch": batch, "sent": sent}));
        }
    }

    if let Some(target) = args.probe {
        probe_max_len(&client, target, &known).await;
        let addr = args
            .bootstrap
            .iter()
            .find(|a| a.to_string().ends_with(&target.to_base58()))
            .cloned()
            .context("--probe must name one of the --bootstrap peers")?;
        raw_frames(&args.network, target, addr, &known).await?;
    }

    emit(json!({
        "event": "done",
        "served_blobs": served.blobs.load(Ordering::Relaxed),
        "served_bitmaps": served.bitmaps.load(Ordering::Relaxed),
        "held": served.held.load(Ordering::Relaxed),
    }));
    match args.linger {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            emit(json!({
                "event": "serving",
                "served_blobs": served.blobs.load(Ordering::Relaxed),
                "served_bitmaps": served.bitmaps.load(Ordering::Relaxed),
                "held": served.held.load(Ordering::Relaxed),
            }));
        },
    }
    Ok(())
}

/// Answers inbound fetch requests with lies.
async fn serve(
    client: upswarm_net::Client,
    mut fetches: tokio::sync::mpsc::Receiver<InboundFetch>,
    known: Arc<Known>,
    how: Serve,
    bitmaps: Bitmaps,
    served: Arc<Served>,
) {
    let held: Arc<Mutex<Vec<ResponseChannel<FetchResponse>>>> = Arc::default();
    while let Some(f) = fetches.recv().await {
        let answer = match f.request.want {
            Want::Blob { hash, max_len } => {
                let real = known.blobs.get(&hash);
                let len = real.map_or(max_len.min(4096) as usize, Vec::len);
                match how {
                    Serve::Silent => {
                        served.held.fetch_add(1, Ordering::Relaxed);
                        held.lock().await.push(f.channel);
                        continue;
                    }
                    Serve::DontHave => Answer::DontHave,
                    Serve::IndexOnly => match real {
                        Some(bytes) if known.chunk_counts.contains_key(&hash) => Answer::Blob {
                            bytes: bytes.clone(),
                        },
                        _ => Answer::DontHave,
                    },
                    Serve::Garbage => Answer::Blob {
                        bytes: random_bytes(len),
                    },
                    Serve::Corrupt => {
                        let mut bytes = real.cloned().unwrap_or_else(|| random_bytes(len));
                        if let Some(b) = bytes.first_mut() {
                            *b ^= 0x5a;
                        }
                        Answer::Blob { bytes }
                    }
                }
            }
            // The liar answers at once, with the same lie, whether asked to wait or not.
            Want::Have { chunk_index } | Want::HaveChanged { chunk_index, .. } => {
                let n = known.chunk_counts.get(&chunk_index).copied().unwrap_or(8);
                match bitmaps {
                    Bitmaps::None => Answer::DontHave,
                    Bitmaps::Full => Answer::Have {
                        bitmap: upswarm_proto::fetch::Bitmap::full(n).as_bytes().to_vec(),
                    },
                    Bitmaps::WrongLength => Answer::Have {
                        bitmap: vec![0xff; n.div_ceil(8) + 3],
                    },
                }
            }
            Want::Signed { .. } => Answer::DontHave,
        };
        match &answer {
            Answer::Blob { .. } => served.blobs.fetch_add(1, Ordering::Relaxed),
            Answer::Have { .. } => served.bitmaps.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let _ = client
            .respond(f.id, f.channel, FetchResponse::new(answer))
            .await;
    }
}

/// Asks `target` for every known blob with `max_len` 0 and 1 (a request's limit must never
/// make a node drop what it holds), then asks again properly and checks the answers.
async fn probe_max_len(client: &upswarm_net::Client, target: PeerId, known: &Known) {
    let mut refused_small = 0;
    for hash in known.blobs.keys() {
        for max_len in [0u32, 1] {
            let r = client
                .request(
                    target,
                    FetchRequest::new(Want::Blob {
                        hash: *hash,
                        max_len,
                    }),
                )
                .await;
            if matches!(
                r,
                Ok(FetchResponse {
                    answer: Answer::DontHave,
                    ..
                })
            ) {
                refused_small += 1;
            }
        }
    }
    let mut still_served = 0;
    for (hash, bytes) in &known.blobs {
        let max_len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        if let Ok(FetchResponse {
            answer: Answer::Blob { bytes: got },
            ..
        }) = client
            .request(
                target,
                FetchRequest::new(Want::Blob {
                    hash: *hash,
                    max_len,
                }),
            )
            .await
            && Hash32::of(&got) == *hash
        {
            still_served += 1;
        }
    }
    emit(json!({
        "event": "max_len_probe",
        "blobs": known.blobs.len(),
        "refused_small": refused_small,
        "still_served": still_served,
    }));
}

/// Writes raw bytes as a fetch request and reads whatever comes back until the stream ends.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(std::io::Error::other("the raw prober serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut out = Vec::new();
        io.take(32 * 1024 * 1024).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Err(std::io::Error::other("the raw prober serves nothing"))
    }
}

fn framed(body: &[u8], claimed: u32) -> Vec<u8> {
    let mut out = claimed.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Sends hostile fetch frames over a fresh connection with a second identity, then one good
/// request; reports for each whether a valid response came back.
async fn raw_frames(
    network: &str,
    target: PeerId,
    addr: Multiaddr,
    known: &Known,
) -> anyhow::Result<()> {
    let protocol = StreamProtocol::try_from_owned(format!("/upswarm/{network}/fetch/1"))?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(protocol, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.add_peer_address(target, addr);

    let good = FetchRequest::new(Want::Blob {
        hash: known
            .blobs
            .keys()
            .next()
            .copied()
            .unwrap_or(Hash32([0; 32])),
        max_len: 16 * 1024 * 1024,
    })
    .encode();
    // An indefinite-length map where the canonical form has a definite one.
    let mut indefinite = good.clone();
    if let Some(b) = indefinite.first_mut() {
        *b = 0xbf;
    }
    indefinite.push(0xff);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length_4GiB", framed(&[1, 2, 3], u32::MAX)),
        (
            "over_request_limit",
            framed(
                &vec![0xa0; MAX_REQUEST_BYTES + 1],
                (MAX_REQUEST_BYTES + 1) as u32,
            ),
        ),
        (
            "truncated",
            framed(&good[..good.len() / 2], good.len() as u32),
        ),
        ("garbage", framed(&[0xff, 0x00, 0x13, 0x37], 4)),
        (
            "indefinite_length",
            framed(&indefinite, indefinite.len() as u32),
        ),
        ("trailing_bytes", {
            let mut b = good.clone();
            b.push(0);
            framed(&b, b.len() as u32)
        }),
        ("good", framed(&good, good.len() as u32)),
    ];
    for (name, bytes) in cases {
        let id = swarm.behaviour_mut().send_request(&target, bytes);
        let outcome = loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => {
                    break upswarm_proto::fetch::decode_framed_response(&response)
                        .map(|r| format!("{:?}", r.answer))
                        .map_err(|e| format!("{e} ({} bytes)", response.len()));
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => break Err(error.to_string()),
                _ => {}
            }
        };
        emit(json!({
            "event": "raw",
            "case": name,
            "answered": outcome.is_ok(),
            "outcome": match &outcome { Ok(a) => a.clone(), Err(e) => e.clone() },
        }));
    }
    Ok(())
}
