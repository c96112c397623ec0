//! Counters the daemon keeps about itself, shown by `upswarm status` and `/metrics`.
//!
//! Owns the counters (atomics, at zero at every start) and their Prometheus text. It persists
//! nothing, and its only I/O is the `statvfs` of `record_disk`, which callers run in
//! `spawn_blocking`.

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

/// Counters shown in `/metrics` as one labelled family: (field prefix, family name, label,
/// the family's HELP). A field `PREFIX<value>` is `upswarm_FAMILY_total{LABEL="<value>"}`.
const FAMILIES: &[(&str, &str, &str, &str)] = &[
    (
        "download_bytes_",
        "download_bytes",
        "source",
        "Bytes of verified chunks received, by source: peer_direct (a direct connection), peer_relayed (through a relay only), mirror (an HTTP(S) mirror).",
    ),
    (
        "download_chunks_",
        "download_chunks",
        "source",
        "Verified chunks received, by source: peer_direct, peer_relayed, mirror.",
    ),
];

/// One metric in the Prometheus text format (version 0.0.4).
fn write_metric(out: &mut String, name: &str, kind: &str, doc: &[&str], value: u64) {
    if let Some((prefix, family, label, help)) = FAMILIES.iter().find(|(p, ..)| name.starts_with(p))
    {
        let full = format!("upswarm_{family}_total");
        if !out.contains(&format!("# TYPE {full} ")) {
            let _ = writeln!(out, "# HELP {full} {help}");
            let _ = writeln!(out, "# TYPE {full} {kind}");
        }
        let _ = writeln!(
            out,
            "{full}{{{label}=\"{}\"}} {value}",
            &name[prefix.len()..]
        );
        return;
    }
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
    pub chunks_from_peers_direct: AtomicU64,
    pub chunks_from_peers_relayed: AtomicU64,
    pub chunks_from_mirrors: AtomicU64,
    pub bytes_from_mirrors: AtomicU64,
    pub mirror_faults: AtomicU64,
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
            chunks_from_peers_direct: self.chunks_from_peers_direct.load(Ordering::Relaxed),
            chunks_from_peers_relayed: self.chunks_from_peers_relayed.load(Ordering::Relaxed),
            chunks_from_mirrors: self.chunks_from_mirrors.load(Ordering::Relaxed),
            bytes_from_mirrors: self.bytes_from_mirrors.load(Ordering::Relaxed),
            mirror_faults: self.mirror_faults.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of every metric `/metrics` has.
    fn names() -> Vec<String> {
        Metrics::default()
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// The operator guide's metrics table names every metric (in backquotes).
    #[test]
    fn the_operator_guide_documents_every_metric() {
        let guide = include_str!("../../../docs/operator-guide.md");
        let table = guide
            .split("## Metrics and logs")
            .nth(1)
            .expect("a \"Metrics and logs\" section");
        let missing: Vec<String> = names()
            .into_iter()
            // `name` or, for a labelled family, `name{label}`.
            .filter(|n| !table.contains(&format!("`{n}`")) && !table.contains(&format!("`{n}{{")))
            .collect();
        assert!(missing.is_empty(), "undocumented metrics: {missing:?}");
    }

    /// The Grafana dashboard uses only metrics that exist.
    #[test]
    fn the_grafana_dashboard_uses_real_metrics() {
        let json = include_str!("../../../deploy/grafana/upswarm-fleet.json");
        let _: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        let known = names();
        let mut used = Vec::new();
        let mut rest = json;
        while let Some(i) = rest.find("upswarm_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.push(name);
        }
        assert!(used.len() > 10, "{used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !known.contains(n)).collect();
        assert!(unknown.is_empty(), "not metrics of the daemon: {unknown:?}");
    }
}
