//! Names on disk and in the DHT: every path under a daemon's data directory, the files of a
//! release directory, this machine's platform name, and every DHT key the daemon reads or
//! writes are spelled here and nowhere else.
//!
//! Owns: names. Must not: do I/O (callers create, read, write and remove), or know what is
//! inside a file.
//!
//! The data directory (`data_dir` in the configuration; `docs/architecture.md`, "Where state
//! lives", is the operator's view of the same):
//!
//! ```text
//! identity.key, identity.pub   the node's key pair (its node id and peer id)
//! api.token                    the control API's token (0600)
//! api.addr, listen.addrs       written at start: the API address, the libp2p addresses
//! state.db/                    the sled database (releases, peers, journal, history, votes)
//! chunks/                      the content-addressed chunk store
//! releases/<release id>/       assembled artifacts of each release
//! releases/.forms/             encoded forms being decoded (temporary files)
//! versions/<version>/          installed versions of the managed program
//! current                      symlink to the version in use
//! backups/<version>/           data backups, taken when leaving a version
//! managed.pid, managed.log     the running program's `PID START_TIME`, and its output
//! activations.json             protocol activations, for the managed program
//! ```

use std::path::{Path, PathBuf};

use upswarm_net::RecordKey;
use upswarm_proto::Hash32;

/// The signed manifest in a release directory made by `upswarm release create`.
pub const MANIFEST_FILE: &str = "manifest.cbor";
/// The chunk store in a release directory (`chunks/`), the same format as a daemon's.
pub const CHUNKS_DIR: &str = "chunks";

/// The prefix, in a signed manifest's `protocols.provides`, of the cosmovisor upgrade a
/// release implements (`cosmos-upgrade.v2`; docs/wire-format.md, `protocols`).
pub const UPGRADE_PREFIX: &str = "cosmos-upgrade.";

/// This machine's platform name, e.g. `linux-x86_64`: the default of `platform` in the
/// configuration and of `release create --platform`.
pub fn host_platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Every path under one data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data directory itself.
    pub root: PathBuf,
    /// `identity`: the prefix of `identity.key` and `identity.pub`.
    pub identity: PathBuf,
    /// `api.token`.
    pub token: PathBuf,
    /// `api.addr`: the control API's address, written once it listens.
    pub api_addr: PathBuf,
    /// `listen.addrs`: one libp2p address per line, appended as listeners come up.
    pub listen_addrs: PathBuf,
    /// `state.db`: the sled database.
    pub db: PathBuf,
    /// `chunks`: the chunk store.
    pub chunks: PathBuf,
    /// `releases`: one directory per release id with its assembled artifacts.
    pub releases: PathBuf,
    /// `releases/.forms`: temporary files of encoded forms being decoded (emptied at start).
    pub decoding: PathBuf,
    /// `current`, a symlink to the version directory in use.
    pub current: PathBuf,
    /// `versions`.
    pub versions: PathBuf,
    /// `backups`: data backups, one per version left.
    pub backups: PathBuf,
    /// `managed.pid`: `PID START_TIME` of the running program.
    pub pidfile: PathBuf,
    /// `managed.log`.
    pub log: PathBuf,
    /// `activations.json`, passed to the program.
    pub activations: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        Layout {
            root: data_dir.to_path_buf(),
            identity: data_dir.join("identity"),
            token: data_dir.join("api.token"),
            api_addr: data_dir.join("api.addr"),
            listen_addrs: data_dir.join("listen.addrs"),
            db: data_dir.join("state.db"),
            chunks: data_dir.join("chunks"),
            releases: data_dir.join("releases"),
            decoding: data_dir.join("releases").join(".forms"),
            current: data_dir.join("current"),
            versions: data_dir.join("versions"),
            backups: data_dir.join("backups"),
            pidfile: data_dir.join("managed.pid"),
            log: data_dir.join("managed.log"),
            activations: data_dir.join("activations.json"),
        }
    }

    /// Where the assembled artifacts of `release` live.
    pub fn release(&self, release: &Hash32) -> PathBuf {
        self.releases.join(release.to_hex())
    }

    /// `releases/.mirror-<chunk index>.part`: an artifact being read whole from a mirror
    /// (to learn its chunk index when no peer has it); removed once its chunks are stored.
    pub fn mirror_part(&self, chunk_index: &Hash32) -> PathBuf {
        self.releases
            .join(format!(".mirror-{}.part", chunk_index.to_hex()))
    }
}

/// The DHT key under which holders of a release announce themselves (provider records).
pub fn provider_key(network: &str, release: &Hash32) -> RecordKey {
    RecordKey::new(&format!("{}{}", provider_prefix(network), release.to_hex()))
}

/// The prefix of every provider key of `network`: provider records under other keys are
/// not stored.
pub fn provider_prefix(network: &str) -> String {
    format!("/upswarm/{network}/release/")
}

/// The DHT key of the latest signed manifest of a channel, for one product or for all.
pub fn latest_key(network: &str, channel: &str, product: Option<&str>) -> RecordKey {
    match product {
        Some(p) => RecordKey::new(&format!("/upswarm/{network}/latest/{channel}/{p}")),
        None => RecordKey::new(&format!("/upswarm/{network}/latest/{channel}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_documented_strings() {
        let id = Hash32([0xab; 32]);
        assert_eq!(
            provider_key("net", &id).as_ref(),
            format!("/upswarm/net/release/{}", "ab".repeat(32)).as_bytes()
        );
        assert_eq!(
            latest_key("net", "stable", Some("app")).as_ref(),
            b"/upswarm/net/latest/stable/app"
        );
        assert_eq!(
            latest_key("net", "stable", None).as_ref(),
            b"/upswarm/net/latest/stable"
        );
        let l = Layout::new(Path::new("/d"));
        assert_eq!(
            l.release(&id),
            Path::new("/d/releases").join("ab".repeat(32))
        );
    }
}
