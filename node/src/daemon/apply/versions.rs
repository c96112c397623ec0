//! Versions side by side under `<data_dir>/versions/<version>/`, and the `current` symlink
//! switched atomically between them.
//!
//! Owns `versions/` and the `current` symlink. It deletes nothing outside `versions/` but `current`
//! and its `.current.new` temporary link, and never writes into the release directory it installs
//! from (files are hard-linked or copied from it).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use upswarm_proto::Hash32;

use super::record::VersionRef;

/// Directory of `version`.
pub fn dir(versions: &Path, version: &semver::Version) -> PathBuf {
    versions.join(version.to_string())
}

/// Installs the assembled artifacts in `from` as version `version` (hard links where the
/// file system allows, else copies; modes are kept). Builds in a temp directory and renames
/// it into place, so a version directory is either complete or absent.
pub fn install(versions: &Path, version: &semver::Version, from: &Path) -> io::Result<PathBuf> {
    let dest = dir(versions, version);
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(versions)?;
    let tmp = versions.join(format!(".{version}.installing"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = tmp.join(&name);
        if fs::hard_link(entry.path(), &target).is_err() {
            fs::copy(entry.path(), &target)?;
        }
    }
    fs::rename(&tmp, &dest)?;
    sync_dir(versions);
    Ok(dest)
}

/// Points `current` at `target` atomically (a new symlink renamed over the old one).
pub fn switch(current: &Path, target: &Path) -> io::Result<()> {
    let parent = current.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(".current.new");
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, current)?;
    sync_dir(parent);
    Ok(())
}

/// The version directory `current` points at, if any.
pub fn current_target(current: &Path) -> Option<PathBuf> {
    fs::read_link(current).ok()
}

/// Removes `current` (a first install that failed leaves no version in use).
pub fn clear(current: &Path) -> io::Result<()> {
    match fs::remove_file(current) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The version directories on disk (names that are versions), newest first.
pub fn on_disk(versions: &Path) -> Vec<semver::Version> {
    let Ok(entries) = fs::read_dir(versions) else {
        return Vec::new();
    };
    let mut all: Vec<semver::Version> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<semver::Version>()
                .ok()
        })
        .collect();
    all.sort_by(|a, b| b.cmp_precedence(a).then_with(|| b.cmp(a)));
    all
}

/// What retention decides: the version directories to delete, and the earlier good versions
/// (rollback targets, newest first) that remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub remove: Vec<semver::Version>,
    pub previous: Vec<VersionRef>,
}

/// The retention rule of `versions/` (`managed.keep_versions`), pure:
///
/// 1. The current version and the last known-good one (the newest earlier version whose
///    release is neither failed nor yanked: the rollback target) are never removed.
/// 2. An earlier version whose release failed here or was yanked is no rollback target: it
///    leaves `previous` and its directory is removed.
/// 3. Beyond that, while more than `keep` directories remain, the first to go are those no
///    rollback reaches (failed applies, versions left by a rollback), oldest first; then the
///    oldest earlier good versions.
/// 4. `previous` keeps only versions whose directory remains, so `status` never lists, and
///    `rollback` never picks, a version that is gone.
pub fn retention(
    disk: &[semver::Version],
    current: Option<&semver::Version>,
    previous: &[VersionRef],
    bad: &BTreeSet<Hash32>,
    keep: usize,
) -> Retention {
    let good: Vec<&VersionRef> = previous
        .iter()
        .filter(|p| !bad.contains(&p.release) && Some(&p.version) != current)
        .collect();
    let last_good = good.iter().find(|p| disk.contains(&p.version));
    let protected =
        |v: &semver::Version| Some(v) == current || last_good.is_some_and(|g| &g.version == v);
    let mut remove: Vec<semver::Version> = previous
        .iter()
        .filter(|p| bad.contains(&p.release))
        .map(|p| p.version.clone())
        .filter(|v| disk.contains(v) && !protected(v))
        .collect();
    // Oldest first: those no rollback reaches, then the earlier good versions.
    let mut order: Vec<&semver::Version> = disk
        .iter()
        .rev()
        .filter(|v| !good.iter().any(|g| &g.version == *v))
        .collect();
    order.extend(
        disk.iter()
            .rev()
            .filter(|v| good.iter().any(|g| &g.version == *v)),
    );
    let mut left = disk.len() - remove.len();
    for v in order {
        if left <= keep {
            break;
        }
        if protected(v) || remove.contains(v) {
            continue;
        }
        remove.push(v.clone());
        left -= 1;
    }
    let previous = good
        .into_iter()
        .filter(|p| disk.contains(&p.version) && !remove.contains(&p.version))
        .cloned()
        .collect();
    Retention { remove, previous }
}

/// Deletes the version directories `remove`; returns those deleted.
pub fn remove(versions: &Path, remove: &[semver::Version]) -> Vec<semver::Version> {
    remove
        .iter()
        .filter(|v| fs::remove_dir_all(dir(versions, v)).is_ok())
        .cloned()
        .collect()
}

fn sync_dir(d: &Path) {
    if let Ok(f) = fs::File::open(d) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_switch_prune() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("node"), b"bin").unwrap();
        let versions = t.path().join("versions");
        let current = t.path().join("current");
        for v in ["1.0.0", "1.1.0", "1.2.0", "2.0.0"] {
            let d = install(&versions, &v.parse().unwrap(), &src).unwrap();
            switch(&current, &d).unwrap();
            assert_eq!(current_target(&current).unwrap(), d);
            assert_eq!(fs::read(current.join("node")).unwrap(), b"bin");
        }
        assert_eq!(
            on_disk(&versions),
            ["2.0.0", "1.2.0", "1.1.0", "1.0.0"]
                .map(|v| v.parse::<semver::Version>().unwrap())
                .to_vec()
        );
        let gone = remove(&versions, &["1.1.0".parse().unwrap()]);
        assert_eq!(gone, vec!["1.1.0".parse::<semver::Version>().unwrap()]);
        assert!(dir(&versions, &"1.0.0".parse().unwrap()).exists());
        assert!(!dir(&versions, &"1.1.0".parse().unwrap()).exists());
    }

    fn v(s: &str) -> semver::Version {
        s.parse().unwrap()
    }

    fn r(s: &str, n: u8) -> VersionRef {
        VersionRef {
            version: v(s),
            release: Hash32([n; 32]),
        }
    }

    fn names(vs: &[semver::Version]) -> Vec<String> {
        vs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn failed_and_yanked_go_first_and_the_last_good_version_stays() {
        // 1.0 and 1.1 good, 1.2 failed, 1.3 good and later yanked, 1.4 current; keep 3.
        let disk: Vec<_> = ["1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]
            .map(v)
            .to_vec();
        let previous = vec![r("1.3.0", 3), r("1.1.0", 1), r("1.0.0", 0)];
        let failed = BTreeSet::from([Hash32([2; 32])]);
        let r1 = retention(&disk, Some(&v("1.4.0")), &previous, &failed, 3);
        assert_eq!(names(&r1.remove), ["1.2.0", "1.0.0"]);
        assert_eq!(r1.previous, vec![r("1.3.0", 3), r("1.1.0", 1)]);
        // 1.3 yanked: it leaves `previous` and the disk; 1.1 is the rollback target.
        let disk: Vec<_> = ["1.4.0", "1.3.0", "1.1.0"].map(v).to_vec();
        let mut bad = failed.clone();
        bad.insert(Hash32([3; 32]));
        let r2 = retention(&disk, Some(&v("1.4.0")), &r1.previous, &bad, 3);
        assert_eq!(names(&r2.remove), ["1.3.0"]);
        assert_eq!(r2.previous, vec![r("1.1.0", 1)]);
        // keep 1: the current version and the rollback target stay all the same.
        let r3 = retention(&disk, Some(&v("1.4.0")), &r1.previous, &bad, 1);
        assert_eq!(names(&r3.remove), ["1.3.0"]);
        assert_eq!(r3.previous, vec![r("1.1.0", 1)]);
    }

    #[test]
    fn previous_never_names_a_version_that_is_gone() {
        // 1.1 was deleted by hand: the rollback target is 1.0, and `previous` says so.
        let disk: Vec<_> = ["1.2.0", "1.0.0"].map(v).to_vec();
        let previous = vec![r("1.1.0", 1), r("1.0.0", 0)];
        let r = retention(&disk, Some(&v("1.2.0")), &previous, &BTreeSet::new(), 5);
        assert!(r.remove.is_empty());
        assert_eq!(
            names(
                &r.previous
                    .iter()
                    .map(|p| p.version.clone())
                    .collect::<Vec<_>>()
            ),
            ["1.0.0"]
        );
        // Within the limit nothing else goes.
        let disk: Vec<_> = ["2.0.0", "1.2.0", "1.0.0"].map(v).to_vec();
        let r = retention(&disk, Some(&v("1.2.0")), &previous, &BTreeSet::new(), 3);
        assert!(r.remove.is_empty());
        // Over it, a version no rollback reaches (2.0, left by a rollback) goes first.
        let r = retention(&disk, Some(&v("1.2.0")), &previous, &BTreeSet::new(), 2);
        assert_eq!(names(&r.remove), ["2.0.0"]);
    }
}
