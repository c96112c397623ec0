//! Counters the daemon keeps about itself, shown by `upswarm status` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident: $kind:literal),* $(,)?) => {
        /// Counters since the daemon started (monotonic unless their Prometheus kind is
        /// `gauge`).
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of [`Metrics`].
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Counters {
            $(pub $name: u64,)*
        }

        impl Metrics {
            pub fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Prometheus text exposition of every metric.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# TYPE upswarm_{} {}", stringify!($name), $kind);
                    let _ = writeln!(out, "upswarm_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    /// Gossip messages validated and forwarded.
    gossip_accepted: "counter",
    /// Gossip messages rejected (bad signature, malformed, stale): the sender was penalised.
    gossip_rejected: "counter",
    /// Gossip messages dropped without penalty (duplicates, not for us).
    gossip_ignored: "counter",
    /// DHT records validated and stored.
    dht_records_accepted: "counter",
    /// DHT records refused.
    dht_records_rejected: "counter",
    /// Chunks (and chunk indexes) served to peers.
    blobs_served: "counter",
    /// Bytes served to peers.
    bytes_served: "counter",
    /// Fetch requests answered "don't have".
    requests_dont_have: "counter",
    /// Chunks fetched from peers and verified.
    chunks_fetched: "counter",
    /// Bytes fetched from peers and verified.
    bytes_fetched: "counter",
    /// Chunks already on disk when a download (re)started: not fetched again.
    chunks_reused: "counter",
    /// Chunks received that did not match their hash or size.
    bad_chunks_received: "counter",
    /// Requests that failed or timed out.
    requests_failed: "counter",
    /// Peers banned after repeated faults.
    peers_banned: "counter",
    /// Hole punches (DCUtR) over a relayed connection that gave a direct connection.
    hole_punch_succeeded: "counter",
    /// Hole punches that failed: the peer stays reachable through the relay only.
    hole_punch_failed: "counter",
    /// Releases fully downloaded and verified.
    releases_completed: "counter",
    /// 1 while a protocol is ACTIVE that the running software does not support.
    upgrade_required: "gauge",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Progress of one download, shared between its fetcher and the status API.
#[derive(Debug, Default)]
pub struct DownloadProgress {
    pub chunks_total: AtomicU64,
    pub chunks_held: AtomicU64,
    pub chunks_fetched: AtomicU64,
    pub chunks_reused: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub bad_chunks: AtomicU64,
    /// Chunks fetched per peer id (base58).
    pub from_peers: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of [`DownloadProgress`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProgressView {
    pub chunks_total: u64,
    pub chunks_held: u64,
    pub chunks_fetched: u64,
    pub chunks_reused: u64,
    pub bytes_fetched: u64,
    pub bad_chunks: u64,
    pub from_peers: BTreeMap<String, u64>,
}

impl DownloadProgress {
    pub fn view(&self) -> ProgressView {
        ProgressView {
            chunks_total: self.chunks_total.load(Ordering::Relaxed),
            chunks_held: self.chunks_held.load(Ordering::Relaxed),
            chunks_fetched: self.chunks_fetched.load(Ordering::Relaxed),
            chunks_reused: self.chunks_reused.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            bad_chunks: self.bad_chunks.load(Ordering::Relaxed),
            from_peers: self
                .from_peers
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
        }
    }

    pub fn fetched_from(&self, peer: &str) {
        if let Ok(mut m) = self.from_peers.lock() {
            *m.entry(peer.to_string()).or_default() += 1;
        }
    }
}
