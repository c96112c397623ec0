//! Garbage collection of the data directory (`upswarm gc`, and every `retention.interval`):
//! which downloaded releases go, what of them is deleted, and how much the data directory
//! uses.
//!
//! The rule ([`plan`]) is pure; the core gathers its inputs and carries it out
//! (`Core::gc`). A release is removed only when all of these hold:
//! - it has something on disk (complete, or a failed download);
//! - it is not installed: not the current version, not an earlier version kept for rollback;
//! - it is not among the newest `retention.keep_releases` of its (product, channel);
//! - it was first seen at least `retention.grace` ago.
//!
//! And the collection does nothing at all while a download runs or a transition (apply,
//! rollback, recovery) is under way: nothing a running download or an in-flight apply uses
//! is ever touched.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use upswarm_proto::Hash32;

pub use crate::api::{DiskUse, GcRelease, GcReport};
use crate::layout::Layout;

/// What [`plan`] needs to know of one release.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Hash32,
    pub product: String,
    pub channel: String,
    pub version: semver::Version,
    pub first_seen: u64,
    /// Complete, or a failed download: it may have files on disk.
    pub on_disk: bool,
    /// Installed (current or kept for rollback): never removed.
    pub installed: bool,
}

/// The releases to remove, in no particular order.
pub fn plan(releases: &[Candidate], keep: usize, grace_secs: u64, now: u64) -> Vec<Hash32> {
    let mut lines: BTreeMap<(&str, &str), Vec<&Candidate>> = BTreeMap::new();
    for c in releases.iter().filter(|c| c.on_disk) {
        lines
            .entry((c.product.as_str(), c.channel.as_str()))
            .or_default()
            .push(c);
    }
    let mut remove = Vec::new();
    for (_, mut line) in lines {
        line.sort_by(|a, b| {
            b.version
                .cmp_precedence(&a.version)
                .then_with(|| b.version.cmp(&a.version))
        });
        for c in line.into_iter().skip(keep) {
            if !c.installed && now.saturating_sub(c.first_seen) >= grace_secs {
                remove.push(c.id);
            }
        }
    }
    remove
}

/// Measures a data directory (symlinks are not followed).
pub fn disk_use(layout: &Layout) -> DiskUse {
    let mut seen = HashSet::new();
    DiskUse {
        total: tree_bytes(&layout.root, &mut seen),
        chunks: tree_bytes(&layout.chunks, &mut HashSet::new()),
        releases: tree_bytes(&layout.releases, &mut HashSet::new()),
        versions: tree_bytes(&layout.versions, &mut HashSet::new()),
        backups: tree_bytes(&layout.backups, &mut HashSet::new()),
    }
}

/// How old a measure of the data directory [`DiskCache`] hands out at most.
pub const DISK_USE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// The last [`disk_use`] of the data directory: `GET /v1/status`, `/metrics` and the
/// dashboard read it instead of walking the whole directory on every call. It is measured
/// again when older than [`DISK_USE_MAX_AGE`], or at the first call after something that
/// changes it (a download finished or imported, an apply or rollback, a garbage collection)
/// called [`DiskCache::invalidate`]. One walk at a time: concurrent callers wait for it.
#[derive(Debug, Default)]
pub struct DiskCache {
    last: std::sync::Mutex<Option<(std::time::Instant, DiskUse)>>,
}

impl DiskCache {
    /// The data directory's use, measured at most [`DISK_USE_MAX_AGE`] ago (blocking: call
    /// it off the async threads).
    pub fn get(&self, layout: &Layout) -> DiskUse {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((at, u)) if at.elapsed() < DISK_USE_MAX_AGE => u.clone(),
            _ => {
                let u = disk_use(layout);
                *last = Some((std::time::Instant::now(), u.clone()));
                u
            }
        }
    }

    /// Forgets the last measure: the next [`DiskCache::get`] walks the directory.
    pub fn invalidate(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Bytes of the files under `p`, each inode counted once.
pub fn tree_bytes(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(p)
            .map(|d| d.flatten().map(|e| tree_bytes(&e.path(), seen)).sum())
            .unwrap_or(0)
    } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
        meta.len()
    } else {
        0
    }
}

/// The data backups under `backups` beyond the newest `keep` (by modification time), never
/// `protect`.
pub fn backups_beyond(backups: &Path, keep: usize, protect: &[&Path]) -> Vec<std::path::PathBuf> {
    let Ok(entries) = fs::read_dir(backups) else {
        return Vec::new();
    };
    let mut all: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Only finished backups (named by version), never one being made or restored.
            !name.contains(".partial") && name.parse::<semver::Version>().is_ok()
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if m.is_dir() {
                Some((m.modified().ok()?, e.path()))
            } else {
                None
            }
        })
        .collect();
    all.sort_by_key(|b| std::cmp::Reverse(b.0));
    let protect: BTreeSet<&Path> = protect.iter().copied().collect();
    all.into_iter()
        .skip(keep)
        .map(|(_, p)| p)
        .filter(|p| !protect.contains(p.as_path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(product: &str, version: &str, n: u8, first_seen: u64, installed: bool) -> Candidate {
        Candidate {
            id: Hash32([n; 32]),
            product: product.into(),
            channel: "stable".into(),
            version: version.parse().unwrap(),
            first_seen,
            on_disk: true,
            installed,
        }
    }

    #[test]
    fn the_newest_per_line_the_installed_and_the_recent_stay() {
        let all = vec![
            c("app", "1.0.0", 1, 0, true),
            c("app", "1.1.0", 2, 0, false),
            c("app", "1.2.0", 3, 0, false),
            c("app", "1.3.0", 4, 0, false),
            c("bulk", "1.0.0", 5, 0, false),
            c("bulk", "2.0.0", 6, 0, false),
            c("bulk", "1.5.0", 7, 90, false),
        ];
        let mut r = plan(&all, 2, 60, 100);
        r.sort();
        // app: 1.3, 1.2 newest; 1.0 installed; 1.1 goes. bulk: 2.0, 1.5 newest; 1.0 goes.
        assert_eq!(r, vec![Hash32([2; 32]), Hash32([5; 32])]);
        // Within the grace period nothing goes.
        assert!(plan(&all, 1, 1000, 100).is_empty());
        // Nothing on disk, nothing to remove, and it does not count as one of the newest.
        let mut all = all;
        all[3].on_disk = false;
        let mut r = plan(&all, 2, 60, 100);
        r.sort();
        assert_eq!(r, vec![Hash32([5; 32])]);
    }

    #[test]
    fn disk_use_counts_hard_links_once_in_the_total() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("releases/r")).unwrap();
        fs::create_dir_all(d.join("versions/1.0.0")).unwrap();
        fs::create_dir_all(d.join("chunks/ab")).unwrap();
        fs::write(d.join("releases/r/app"), vec![0u8; 1000]).unwrap();
        fs::hard_link(d.join("releases/r/app"), d.join("versions/1.0.0/app")).unwrap();
        fs::write(d.join("chunks/ab/abcd"), vec![0u8; 300]).unwrap();
        std::os::unix::fs::symlink(d.join("versions/1.0.0"), d.join("current")).unwrap();
        let u = disk_use(&Layout::new(d));
        assert_eq!(
            u,
            DiskUse {
                total: 1300,
                chunks: 300,
                releases: 1000,
                versions: 1000,
                backups: 0
            }
        );
    }

    #[test]
    fn backups_beyond_the_newest_go_but_never_the_protected_one() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
            fs::create_dir_all(b.join(v)).unwrap();
            let f = fs::File::open(b.join(v)).unwrap();
            f.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64),
            )
            .unwrap();
        }
        fs::create_dir_all(b.join("1.3.0.partial")).unwrap();
        let gone = backups_beyond(b, 1, &[&b.join("1.0.0")]);
        assert_eq!(gone, vec![b.join("1.1.0")]);
    }
}
