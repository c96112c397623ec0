//! Counters the daemon keeps about itself, shown by `upswarm status` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::api::ProgressView;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:literal),* $(,)?) => {
        /// Counters since the daemon started (monotonic unless their Prometheus kind is
        /// `gauge`).
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            pub fn snapshot(&self) -> crate::api::Counters {
                crate::api::Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Prometheus text exposition of every metric: `upswarm_<name>`, with the
            /// `_total` suffix for counters, and its documentation as HELP.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let help: &[&str] = &[$($doc),*];
                    write_metric(&mut out, stringify!($name), $kind, help, self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

crate::api::for_each_counter!(counters);

/// One metric in the Prometheus text format (version 0.0.4).
fn write_metric(out: &mut String, name: &str, kind: &str, doc: &[&str], value: u64) {
    let full = if kind == "counter" {
        format!("upswarm_{name}_total")
    } else {
        format!("upswarm_{name}")
    };
    let help = doc
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\\', "\\\\")
        .replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {full} {help}");
    let _ = writeln!(out, "# TYPE {full} {kind}");
    let _ = writeln!(out, "{full} {value}");
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the data directory's disk use (`used` bytes) and the space of the file
    /// system under `root` (left as they were when it cannot be read).
    pub fn record_disk(&self, used: u64, root: &std::path::Path) {
        self.data_dir_used_bytes.store(used, Ordering::Relaxed);
        if let Ok(st) = nix::sys::statvfs::statvfs(root) {
            let available = st.blocks_available().saturating_mul(st.fragment_size());
            let size = st.blocks().saturating_mul(st.fragment_size());
            self.data_dir_available_bytes
                .store(available, Ordering::Relaxed);
            self.data_dir_filesystem_bytes
                .store(size, Ordering::Relaxed);
        }
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
    /// How each artifact with encoded forms was fetched.
    pub forms: Mutex<Vec<crate::api::FormUse>>,
    pub bytes_saved: AtomicU64,
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
            forms: self.forms.lock().map(|f| f.clone()).unwrap_or_default(),
            bytes_saved: self.bytes_saved.load(Ordering::Relaxed),
        }
    }

    pub fn fetched_from(&self, peer: &str) {
        if let Ok(mut m) = self.from_peers.lock() {
            *m.entry(peer.to_string()).or_default() += 1;
        }
    }
}
