//! Cosmovisor's folder layout under a chain's home, and what is read and written there:
//! the `current` link, the upgrade the chain halted for (`upgrade-info.json`), and staging
//! an upgrade's binaries (checked copies renamed into place).
//!
//! ```text
//! <home>/cosmovisor/genesis/bin/<name>           the binary the chain started with
//! <home>/cosmovisor/upgrades/<upgrade>/bin/<name> the binary of each upgrade
//! <home>/cosmovisor/current                      symlink to genesis or upgrades/<upgrade>
//! <home>/data/upgrade-info.json                  written by x/upgrade at the upgrade height
//! ```
//!
//! Owns those paths and the file operations on them. It must not start or stop the chain
//! (the supervisor does) nor decide when to switch (the cosmovisor watcher does); the
//! supervisor and the watcher both use it, so it uses neither.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use upswarm_proto::Hash32;

use super::versions;
pub use crate::api::UpgradeInfo;
use crate::daemon::config::Cosmovisor;

/// A downloaded release that implements an upgrade, as the core hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRelease {
    pub upgrade: String,
    pub release: Hash32,
    pub version: semver::Version,
    /// The release's assembled artifacts.
    pub source: PathBuf,
    /// This platform's artifacts: name and blake3 hash from the signed manifest.
    pub artifacts: Vec<(String, Hash32)>,
}

/// The paths of cosmovisor's layout.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub name: String,
    pub root: PathBuf,
    pub current: PathBuf,
    pub upgrade_info: PathBuf,
}

impl Paths {
    pub fn new(cv: &Cosmovisor) -> Paths {
        let home = cv.home();
        let root = home.join("cosmovisor");
        Paths {
            current: root.join("current"),
            upgrade_info: home.join("data").join("upgrade-info.json"),
            name: cv.name(),
            root,
            home,
        }
    }

    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis")
    }

    pub fn upgrade(&self, upgrade: &str) -> PathBuf {
        self.root.join("upgrades").join(upgrade)
    }

    /// The binary of the directory `dir` (genesis or an upgrade's).
    pub fn binary(&self, dir: &Path) -> PathBuf {
        dir.join("bin").join(&self.name)
    }

    /// Creates `current` → `genesis` when there is no `current` yet (as cosmovisor does
    /// on its first run).
    pub fn ensure_current(&self) -> io::Result<()> {
        if fs::symlink_metadata(&self.current).is_ok() {
            return Ok(());
        }
        let genesis = self.genesis();
        if !self.binary(&genesis).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: no chain binary (and no {})",
                    self.binary(&genesis).display(),
                    self.current.display()
                ),
            ));
        }
        versions::switch(&self.current, &genesis)
    }

    /// `genesis` or the upgrade `current` points at.
    pub fn current_upgrade(&self) -> Option<String> {
        let target = fs::read_link(&self.current).ok()?;
        let name = target.file_name()?.to_string_lossy().into_owned();
        let parent = target
            .parent()
            .and_then(Path::file_name)
            .map(|p| p.to_string_lossy().into_owned());
        match parent.as_deref() {
            Some("upgrades") => Some(name),
            _ if name == "genesis" => Some(name),
            _ => None,
        }
    }

    /// The upgrade the chain halted for and that `current` does not run yet. An
    /// `upgrade-info.json` that cannot be read is an error (whether the height has passed
    /// cannot be told).
    pub fn pending(&self) -> Result<Option<UpgradeInfo>, String> {
        let bytes = match fs::read(&self.upgrade_info) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.upgrade_info.display())),
        };
        let info: UpgradeInfo = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: not valid upgrade info: {e}",
                self.upgrade_info.display()
            )
        })?;
        if info.name.is_empty() {
            return Err(format!(
                "{}: the upgrade has no name",
                self.upgrade_info.display()
            ));
        }
        if self.current_upgrade().as_deref() == Some(info.name.as_str()) {
            return Ok(None);
        }
        Ok(Some(info))
    }

    /// Whether the binary of `upgrade` is in place.
    pub fn staged(&self, upgrade: &str) -> bool {
        self.binary(&self.upgrade(upgrade)).is_file()
    }

    /// Installs `rel` as `upgrades/<upgrade>/bin/` (checked copies, renamed into place).
    /// Returns false if the upgrade's binary is there already (staged earlier, or put there
    /// by the operator).
    pub fn stage(&self, rel: &UpgradeRelease) -> Result<bool, String> {
        if self.staged(&rel.upgrade) {
            return Ok(false);
        }
        if !rel.artifacts.iter().any(|(n, _)| *n == self.name) {
            return Err(format!(
                "release {} names upgrade {} but has no artifact {} for this platform",
                rel.version, rel.upgrade, self.name
            ));
        }
        if upswarm_proto::manifest::check_artifact_name(&rel.upgrade).is_err() {
            return Err(format!(
                "release {}: upgrade name {:?} is not a plain directory name",
                rel.version, rel.upgrade
            ));
        }
        let dest = self.upgrade(&rel.upgrade);
        let upgrades = self.root.join("upgrades");
        let tmp = upgrades.join(format!(".{}.staging", rel.upgrade));
        let io = |what: &Path, e: io::Error| format!("{}: {e}", what.display());
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("bin")).map_err(|e| io(&tmp, e))?;
        for (name, hash) in &rel.artifacts {
            let from = rel.source.join(name);
            let to = tmp.join("bin").join(name);
            fs::copy(&from, &to).map_err(|e| io(&from, e))?;
            let got = blake3::hash(&fs::read(&to).map_err(|e| io(&to, e))?);
            if got.as_bytes() != &hash.0 {
                let _ = fs::remove_dir_all(&tmp);
                return Err(format!(
                    "{}: the copy does not match the signed manifest's hash; not staged",
                    from.display()
                ));
            }
        }
        let mark = serde_json::json!({
            "release": rel.release.to_hex(),
            "version": rel.version.to_string(),
        });
        fs::write(tmp.join("upswarm-release.json"), mark.to_string()).map_err(|e| io(&tmp, e))?;
        if dest.exists() {
            // A directory without the binary (made by hand): fill in its bin/.
            let bin = dest.join("bin");
            if bin.exists() {
                let _ = fs::remove_dir_all(&tmp);
                return Err(format!(
                    "{} exists without {}: left alone",
                    bin.display(),
                    self.name
                ));
            }
            fs::rename(tmp.join("bin"), &bin).map_err(|e| io(&bin, e))?;
            let _ = fs::remove_dir_all(&tmp);
        } else {
            fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(home: &Path) -> Paths {
        Paths::new(&Cosmovisor {
            home: Some(home.to_path_buf()),
            name: Some("chaind".into()),
            ..Cosmovisor::default()
        })
    }

    #[test]
    fn staged_copies_are_checked_and_pending_follows_current() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(t.path());
        fs::create_dir_all(p.genesis().join("bin")).unwrap();
        fs::write(p.binary(&p.genesis()), b"old").unwrap();
        p.ensure_current().unwrap();
        assert_eq!(p.current_upgrade().as_deref(), Some("genesis"));
        assert_eq!(p.pending(), Ok(None));

        let src = t.path().join("release");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("chaind"), b"new").unwrap();
        let mut rel = UpgradeRelease {
            upgrade: "v2".into(),
            release: Hash32([7; 32]),
            version: "2.0.0".parse().unwrap(),
            source: src,
            artifacts: vec![("chaind".into(), Hash32([0; 32]))],
        };
        // A copy that does not match the signed hash is not staged.
        let err = p.stage(&rel).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(!p.staged("v2"));
        rel.artifacts[0].1 = Hash32(*blake3::hash(b"new").as_bytes());
        assert_eq!(p.stage(&rel), Ok(true));
        assert_eq!(p.stage(&rel), Ok(false));
        assert_eq!(fs::read(p.binary(&p.upgrade("v2"))).unwrap(), b"new");
        // No artifact of the binary's name: refused.
        let other = UpgradeRelease {
            upgrade: "v3".into(),
            artifacts: vec![("readme".into(), Hash32([0; 32]))],
            ..rel.clone()
        };
        assert!(p.stage(&other).unwrap_err().contains("no artifact chaind"));

        fs::create_dir_all(t.path().join("data")).unwrap();
        fs::write(&p.upgrade_info, br#"{"name":"v2","height":100}"#).unwrap();
        assert_eq!(p.pending().unwrap().unwrap().height, 100);
        versions::switch(&p.current, &p.upgrade("v2")).unwrap();
        assert_eq!(p.current_upgrade().as_deref(), Some("v2"));
        assert_eq!(p.pending(), Ok(None));
        fs::write(&p.upgrade_info, b"{not json").unwrap();
        assert!(p.pending().unwrap_err().contains("not valid upgrade info"));
    }
}
