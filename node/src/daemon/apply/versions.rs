//! Versions side by side under `<data_dir>/versions/<version>/`, and the `current` symlink
//! switched atomically between them.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

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

/// Deletes version directories beyond the newest `keep`, never one in `protect`.
pub fn prune(versions: &Path, keep: usize, protect: &[semver::Version]) -> Vec<semver::Version> {
    let Ok(entries) = fs::read_dir(versions) else {
        return Vec::new();
    };
    let mut all: Vec<semver::Version> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<semver::Version>()
                .ok()
        })
        .collect();
    all.sort_by(|a, b| b.cmp_precedence(a).then_with(|| b.cmp(a)));
    let mut removed = Vec::new();
    for v in all.into_iter().skip(keep) {
        if protect.contains(&v) {
            continue;
        }
        if fs::remove_dir_all(dir(versions, &v)).is_ok() {
            removed.push(v);
        }
    }
    removed
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
        let removed = prune(&versions, 2, &["1.0.0".parse().unwrap()]);
        assert_eq!(removed, vec!["1.1.0".parse::<semver::Version>().unwrap()]);
        assert!(dir(&versions, &"1.0.0".parse().unwrap()).exists());
        assert!(dir(&versions, &"2.0.0".parse().unwrap()).exists());
    }
}
