//! Counters the daemon keeps about itself, shown by `upswarm status` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::api::ProgressView;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident: $kind:literal),* $(,)?) => {
        /// Counters since the daemon started (monotonic unless their Prometheus kind is
        /// `gauge`).
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            pub fn snapshot(&self) -> crate::api::Counters {
                crate::api::Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
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

crate::api::for_each_counter!(counters);

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
    /// Why verified chunks cannot be stored right now (a full disk), if they cannot.
    pub blocked: Mutex<Option<String>>,
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
            blocked: self.blocked.lock().ok().and_then(|b| b.clone()),
        }
    }

    pub fn fetched_from(&self, peer: &str) {
        if let Ok(mut m) = self.from_peers.lock() {
            *m.entry(peer.to_string()).or_default() += 1;
        }
    }
}
