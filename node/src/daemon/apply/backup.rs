//! Backing up and restoring the managed program's data directory.
//!
//! A backup is a full copy made with reflinks (copy-on-write clones) when the file system
//! supports them — instant and safe against in-place writes — and plain copies otherwise.
//! (Hard links would be instant too, but a program that writes its files in place would
//! write through them into the backup.) Restoring is crash-safe: the live directory is
//! moved aside, the backup copied in, and only then the aside copy removed; every step can
//! be repeated after a crash.
//!
//! Owns those copies. It deletes only `dest`, `live` and their `.partial`, `.restoring` and
//! `.before-restore` siblings, never `src` or a backup; it blocks for as long as the copy takes, so
//! it must run in `spawn_blocking`, never on an async task.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Copies `src` into a fresh `dest`. Returns how long it took.
pub fn backup(src: &Path, dest: &Path) -> io::Result<Duration> {
    let start = Instant::now();
    let tmp = with_suffix(dest, "partial");
    let _ = fs::remove_dir_all(&tmp);
    if src.exists() {
        copy_tree(src, &tmp)?;
    } else {
        fs::create_dir_all(&tmp)?;
    }
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest)?;
    Ok(start.elapsed())
}

/// Puts the contents of `backup` back as `live`. Idempotent: safe to run again after a
/// crash at any point.
pub fn restore(backup: &Path, live: &Path) -> io::Result<()> {
    let aside = with_suffix(live, "before-restore");
    // 1. Move the live directory aside (unless a previous attempt already did).
    if live.exists() && !aside.exists() {
        fs::rename(live, &aside)?;
    } else if live.exists() {
        // A previous attempt moved it aside and had started copying: start the copy again.
        fs::remove_dir_all(live)?;
    }
    // 2. Copy the backup in, then 3. drop the aside copy.
    let tmp = with_suffix(live, "restoring");
    let _ = fs::remove_dir_all(&tmp);
    copy_tree(backup, &tmp)?;
    fs::rename(&tmp, live)?;
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

fn copy_tree(src: &Path, dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    fs::set_permissions(dest, fs::metadata(src)?.permissions())?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&from, &to)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            reflink_copy::reflink_or_copy(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_and_restore_survive_a_repeated_restore() {
        let t = tempfile::tempdir().unwrap();
        let live = t.path().join("data");
        fs::create_dir_all(live.join("sub")).unwrap();
        fs::write(live.join("a"), b"v1").unwrap();
        fs::write(live.join("sub/b"), b"v1").unwrap();
        let b = t.path().join("backup");
        backup(&live, &b).unwrap();
        fs::write(live.join("a"), b"v2").unwrap();
        fs::write(live.join("new"), b"v2").unwrap();
        restore(&b, &live).unwrap();
        assert_eq!(fs::read(live.join("a")).unwrap(), b"v1");
        assert_eq!(fs::read(live.join("sub/b")).unwrap(), b"v1");
        assert!(!live.join("new").exists());
        // A crash after step 1 (live moved aside, nothing copied yet): run again.
        fs::rename(&live, with_suffix(&live, "before-restore")).unwrap();
        restore(&b, &live).unwrap();
        assert_eq!(fs::read(live.join("a")).unwrap(), b"v1");
        assert!(!with_suffix(&live, "before-restore").exists());
    }
}
