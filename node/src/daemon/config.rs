//! The daemon's configuration: one TOML file, every field documented, defaults where one
//! makes sense. `docs/operator-guide.md` shows a complete file.
//!
//! Owns the file's shape: fields, defaults, units, and `Config::read`, which reads the file (and,
//! in cosmovisor mode, cosmovisor's environment variables) and makes its paths absolute. It must
//! not judge values (`validate` does: `Config::load` reads, then checks) and never writes a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Network name. Nodes only talk to nodes of the same network (it is part of every
    /// protocol and topic name). Default `upswarm`.
    #[serde(default = "default_network")]
    pub network: String,
    /// Where the daemon keeps its identity, state database, chunks and downloaded releases.
    pub data_dir: PathBuf,
    /// The pinned trust root (`root.cbor`). Newer roots are accepted only as valid
    /// rotations of it.
    pub trust_root: PathBuf,
    /// Release channels this node follows (downloads and installs). Default `["stable"]`.
    #[serde(default = "default_channels")]
    pub channels: Vec<String>,
    /// Product names this node follows; empty: every product.
    #[serde(default)]
    pub products: Vec<String>,
    /// This node's platform, matched against artifacts' `platform` (`any` always matches).
    /// Default: this machine's, e.g. `linux-x86_64`.
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Tolerated clock skew for expiry checks. Default `5m`.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    #[serde(default)]
    pub network_options: NetworkOptions,
    #[serde(default)]
    pub transfer: Transfer,
    #[serde(default)]
    pub api: Api,
    /// The program this daemon keeps up to date. Absent: the daemon only distributes.
    #[serde(default)]
    pub managed: Option<Managed>,
    #[serde(default)]
    pub policy: super::apply::policy::Policy,
    #[serde(default)]
    pub rollout: RolloutOptions,
    #[serde(default)]
    pub voting: VotingOptions,
    #[serde(default)]
    pub webhooks: Webhooks,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub alarms: Alarms,
    #[serde(default)]
    pub mirrors: Mirrors,
}

/// HTTP(S) mirrors: where chunks are read when no peer holds them (a fallback; peers are
/// always preferred). Mirrors named here are tried before those a release's signed
/// manifest names. Every byte read from a mirror is verified like a chunk from a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirrors {
    /// Operator-local mirrors, same layout as manifest mirrors: artifact `a` of a release
    /// is read at `URL/<platform>/<name>` (percent-encoded). Default: none.
    #[serde(default)]
    pub urls: Vec<String>,
    /// How long a chunk must have had no peer holding it before it is read from a mirror
    /// (and how long nobody must have answered for the chunk index before the whole
    /// artifact is read from one). Default `10s`.
    #[serde(default = "default_mirror_after", with = "humantime_serde")]
    pub after: Duration,
    /// Requests to mirrors in flight at once, per download. Default 4.
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: usize,
    /// How long a mirror that answered wrongly (bad bytes, wrong length, no `206 Partial
    /// Content`, an error or a timeout) is left alone; doubled at each further fault of
    /// the same download (at most 64 times this). Default `30s`.
    #[serde(default = "default_mirror_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// A mirror request that has not completed (or, reading a whole artifact, not sent any
    /// bytes) in this long fails. Default `60s`.
    #[serde(default = "default_mirror_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_mirror_after() -> Duration {
    Duration::from_secs(10)
}
fn default_mirror_in_flight() -> usize {
    4
}
fn default_mirror_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_mirror_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            urls: Vec::new(),
            after: default_mirror_after(),
            max_in_flight: default_mirror_in_flight(),
            backoff: default_mirror_backoff(),
            timeout: default_mirror_timeout(),
        }
    }
}

/// Warnings ahead of trouble, shown by `upswarm status`, logged and sent to the webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// Raise the `root_expiring` alarm when the pinned trust root expires within this long.
    /// Default `30d`.
    #[serde(default = "default_root_expiry_warning", with = "humantime_serde")]
    pub root_expiry_warning: Duration,
}

fn default_root_expiry_warning() -> Duration {
    Duration::from_secs(30 * 86400)
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            root_expiry_warning: default_root_expiry_warning(),
        }
    }
}

/// Garbage collection of the data directory: what is kept of downloaded releases and of
/// data backups (`upswarm gc`, and periodically).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Newest releases kept per (product, channel), besides those installed (current and
    /// earlier versions kept for rollback) and those still downloading. Default 3.
    #[serde(default = "default_keep_releases")]
    pub keep_releases: usize,
    /// A release first seen less than this long ago is never removed. Default `7d`.
    #[serde(default = "default_gc_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// Data backups of the managed program kept under `backups/` (the newest; the one a
    /// rollback restores is always kept). Default 3.
    #[serde(default = "default_keep_backups")]
    pub keep_backups: usize,
    /// How often the daemon collects garbage by itself. Default `1h`.
    #[serde(default = "default_gc_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_keep_releases() -> usize {
    3
}
fn default_gc_grace() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn default_keep_backups() -> usize {
    3
}
fn default_gc_interval() -> Duration {
    Duration::from_secs(3600)
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_releases: default_keep_releases(),
            grace: default_gc_grace(),
            keep_backups: default_keep_backups(),
            interval: default_gc_interval(),
        }
    }
}

/// TLS of the daemon's outbound HTTPS (webhooks, health probes): the platform's trusted
/// roots, plus the operator's own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// A PEM file of extra root certificates to trust (an internal CA), besides the
    /// system's. Default: none.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
}

/// Peer-to-peer networking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOptions {
    /// Listen addresses. Default `["/ip4/0.0.0.0/tcp/4001"]`.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Bootstrap peers, `/ip4/…/tcp/…/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Most established connections, both directions. Default 512: a node talks to every
    /// peer it learns of, with about three connections each (its own dial, the peer's, an
    /// AutoNAT dial-back), and a bootstrap node at this limit refuses newcomers.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Peer ids never to connect with.
    #[serde(default)]
    pub denied_peers: Vec<String>,
    /// How often to look for the latest release of each channel in the DHT. Default `30s`.
    #[serde(default = "default_dht_refresh", with = "humantime_serde")]
    pub dht_refresh: Duration,
    /// Addresses at which others reach this node although it cannot see them itself (a port
    /// forward on the router), e.g. `/ip4/203.0.113.7/tcp/4001`. Default: none.
    #[serde(default)]
    pub external_addresses: Vec<String>,
    /// Relays to reserve a slot on when this node turns out not to be publicly reachable,
    /// `/ip4/…/tcp/…/p2p/<peer id>`. Connected peers that serve as relays are used too.
    /// Default: none.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Serve as a circuit relay for nodes behind NAT (within the `relay_*` limits).
    /// Default `false`.
    #[serde(default)]
    pub relay_server: bool,
    /// Relay service: most reservations held at once. Default 128.
    #[serde(default = "default_relay_max_reservations")]
    pub relay_max_reservations: usize,
    /// Relay service: most circuits relayed at once. Default 16.
    #[serde(default = "default_relay_max_circuits")]
    pub relay_max_circuits: usize,
    /// Relay service: a circuit is closed after this long. Default `2m`.
    #[serde(
        default = "default_relay_max_circuit_duration",
        with = "humantime_serde"
    )]
    pub relay_max_circuit_duration: Duration,
    /// Relay service: a circuit is closed after this many bytes (both directions together).
    /// Default `8MiB`.
    #[serde(default = "default_relay_max_circuit_bytes", deserialize_with = "size")]
    pub relay_max_circuit_bytes: u64,
    /// Ask the local router for a port mapping with UPnP. Default `false`.
    #[serde(default)]
    pub upnp: bool,
}

fn default_relay_max_reservations() -> usize {
    upswarm_net::RelayLimits::default().max_reservations
}
fn default_relay_max_circuits() -> usize {
    upswarm_net::RelayLimits::default().max_circuits
}
fn default_relay_max_circuit_duration() -> Duration {
    upswarm_net::RelayLimits::default().max_circuit_duration
}
fn default_relay_max_circuit_bytes() -> u64 {
    upswarm_net::RelayLimits::default().max_circuit_bytes
}

/// Chunk transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Download rate limit in bytes per second (`"8MiB"`, `"500KiB"`), or `0` for none.
    #[serde(default, deserialize_with = "size")]
    pub max_download_rate: u64,
    /// Upload rate limit in bytes per second, or `0` for none.
    #[serde(default, deserialize_with = "size")]
    pub max_upload_rate: u64,
    /// Chunk requests in flight per download. Default 32.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Chunk requests in flight to one peer. Default 4.
    #[serde(default = "default_in_flight_per_peer")]
    pub max_in_flight_per_peer: usize,
    /// Chunks this node uploads at once, to all peers together; a request beyond that waits
    /// a moment for a slot, then is answered "busy" (the peer asks another holder). Few
    /// uploads at full speed get each chunk to a first holder soon, who shares it on.
    /// `0`: no limit. Default 4.
    #[serde(default = "default_upload_slots")]
    pub upload_slots: usize,
    /// A peer that has not answered a request in this long is stalled. Default `15s`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bad chunks (wrong hash, wrong size) after which a peer is banned. Default 3.
    #[serde(default = "default_ban_after")]
    pub ban_after_faults: u32,
    /// How long a first ban lasts; each later ban of the same peer lasts twice as long (at
    /// most 64 times this). Default `1h`.
    #[serde(default = "default_ban_duration", with = "humantime_serde")]
    pub ban_duration: Duration,
    /// The largest zstd window this node decodes an encoded form (delta or compressed) with,
    /// in bytes (`"128MiB"`); also the largest base it holds in memory for a delta. Decoding
    /// uses at most about twice this. A frame that needs more is refused (the plain artifact
    /// is fetched instead); `0` never fetches encoded forms. Default `128MiB`.
    #[serde(default = "default_max_decode_window", deserialize_with = "size")]
    pub max_decode_window: u64,
}

impl Transfer {
    /// `max_decode_window` as a window log (rounded down), `None` when forms are off.
    pub fn decode_window_log(&self) -> Option<u32> {
        (self.max_decode_window > 0).then(|| {
            (63 - self.max_decode_window.leading_zeros()).clamp(
                upswarm_content::forms::MIN_WINDOW_LOG,
                upswarm_content::forms::MAX_WINDOW_LOG,
            )
        })
    }
}

/// The local control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// HTTP listen address; keep it on loopback. Default `127.0.0.1:7780`.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
}

/// Phased rollout behaviour of this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutOptions {
    /// Installs inside an open phase are spread over this long (each node's delay is
    /// derived from its id, so it is stable and verifiable). Default `60s`.
    #[serde(default = "default_spread", with = "humantime_serde")]
    pub spread: Duration,
    /// How often to pull health reports, control messages and votes from a few peers
    /// (anti-entropy, for what gossip did not deliver). Default `15s`.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync_interval: Duration,
}

fn default_spread() -> Duration {
    Duration::from_secs(60)
}
fn default_resync() -> Duration {
    Duration::from_secs(15)
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            spread: default_spread(),
            resync_interval: default_resync(),
        }
    }
}

/// Event webhooks for operators' own alerting: each event is POSTed as JSON
/// (`{"event": "...", "at": unix, "node_id": "...", ...details}`) to every URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    #[serde(default)]
    pub urls: Vec<String>,
    /// Events to send (`update_available`, `applied`, `rolled_back`, `failed`, `halted`,
    /// `upgrade_required`, `root_expiring`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// Protocol activation voting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingOptions {
    /// This node's voter key (an electorate key of the trust root). Without it the node
    /// computes activations but never votes.
    #[serde(default)]
    pub voter_key: Option<PathBuf>,
    /// Protocols this node never votes for (the operator withholds its readiness).
    #[serde(default)]
    pub withhold: Vec<String>,
    /// Command run once when a proposal becomes ACTIVE; gets `UPSWARM_PROTOCOL`,
    /// `UPSWARM_PROPOSAL` and `UPSWARM_ACTIVATION_AT` in its environment.
    #[serde(default)]
    pub activation_hook: Vec<String>,
}

/// How the managed program is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManagedMode {
    /// The daemon starts the program as its child and restarts it when it exits.
    Supervise,
    /// The operator's service manager runs it; the daemon calls `hooks.start` / `hooks.stop`
    /// (e.g. `systemctl start mynode`).
    External,
    /// The program is a Cosmos SDK chain binary in cosmovisor's folder layout
    /// (`[managed.cosmovisor]`): the daemon runs `<home>/cosmovisor/current/bin/<name>` as
    /// its child and switches `current` to `upgrades/<upgrade>` when the chain halts for an
    /// upgrade (`<home>/data/upgrade-info.json`), to the release that names that upgrade.
    Cosmovisor,
}

/// The `[managed.cosmovisor]` section: where the chain lives. Each field left out takes the
/// value of the environment variable cosmovisor reads (named on the field) when the daemon
/// reads its configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosmovisor {
    /// `DAEMON_HOME`: the chain's home, holding `cosmovisor/` and `data/`.
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// `DAEMON_NAME`: the chain binary's file name under `bin/`.
    #[serde(default)]
    pub name: Option<String>,
    /// `DAEMON_RESTART_AFTER_UPGRADE`: start the new binary after the switch. Only `true`
    /// (the default) is supported.
    #[serde(default)]
    pub restart_after_upgrade: Option<bool>,
    /// Arguments of the chain binary (what follows `cosmovisor run`), e.g.
    /// `["start", "--home", "/var/lib/gaia"]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// `UNSAFE_SKIP_BACKUP`: do not copy `<home>/data` before switching. Default false.
    #[serde(default)]
    pub unsafe_skip_backup: Option<bool>,
    /// `DAEMON_DATA_BACKUP_DIR`: where the copy of `<home>/data` goes
    /// (`data-backup-<upgrade>` in it). Default `home`.
    #[serde(default)]
    pub data_backup_dir: Option<PathBuf>,
    /// `DAEMON_POLL_INTERVAL`: how often `upgrade-info.json` is looked at. Default `300ms`.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
}

impl Cosmovisor {
    /// Fills the fields left out from cosmovisor's environment variables, through `env`
    /// (`std::env::var` in the daemon). A value that does not parse is kept for
    /// validation to name, as the text it was.
    pub fn fill_from_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), (String, String)> {
        if self.home.is_none() {
            self.home = env("DAEMON_HOME").map(PathBuf::from);
        }
        if self.name.is_none() {
            self.name = env("DAEMON_NAME");
        }
        let flag = |var: &str| -> Result<Option<bool>, (String, String)> {
            match env(var) {
                None => Ok(None),
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "on" | "yes" => Ok(Some(true)),
                    "false" | "0" | "off" | "no" | "" => Ok(Some(false)),
                    _ => Err((var.to_string(), v)),
                },
            }
        };
        if self.restart_after_upgrade.is_none() {
            self.restart_after_upgrade = flag("DAEMON_RESTART_AFTER_UPGRADE")?;
        }
        if self.unsafe_skip_backup.is_none() {
            self.unsafe_skip_backup = flag("UNSAFE_SKIP_BACKUP")?;
        }
        if self.data_backup_dir.is_none() {
            self.data_backup_dir = env("DAEMON_DATA_BACKUP_DIR").map(PathBuf::from);
        }
        if self.poll_interval.is_none()
            && let Some(v) = env("DAEMON_POLL_INTERVAL")
        {
            // cosmovisor takes a Go duration ("300ms", "1s") or milliseconds.
            let d = v
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .or_else(|_| humantime::parse_duration(v.trim()))
                .map_err(|_| ("DAEMON_POLL_INTERVAL".to_string(), v.clone()))?;
            self.poll_interval = Some(d);
        }
        Ok(())
    }

    /// The chain's home (validated to be set).
    pub fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_default()
    }

    /// The binary's name (validated to be set).
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_default()
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(Duration::from_millis(300))
    }

    pub fn backup(&self) -> bool {
        !self.unsafe_skip_backup.unwrap_or(false)
    }

    /// Where the data backup of `upgrade` goes.
    pub fn backup_dir(&self, upgrade: &str) -> PathBuf {
        self.data_backup_dir
            .clone()
            .unwrap_or_else(|| self.home())
            .join(format!("data-backup-{upgrade}"))
    }
}

/// The `[managed]` section: the operator's node program.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Managed {
    /// Default `supervise`.
    #[serde(default = "default_mode")]
    pub mode: ManagedMode,
    /// The product whose releases this program is: only that product's releases are ever
    /// applied to it. Required unless `products` names exactly one product (then that
    /// one).
    #[serde(default)]
    pub product: Option<String>,
    /// The program: an artifact name of the release (run from the version directory), or
    /// an absolute path. Not used in cosmovisor mode (the binary is
    /// `<home>/cosmovisor/current/bin/<name>`).
    #[serde(default)]
    pub command: String,
    /// Arguments. `{data_dir}`, `{version}` and `{version_dir}` are replaced.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory; default the managed data directory, else the version directory.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// The program's own data directory: backed up before each update, restored on rollback.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Signal sent to the program's process group to ask it to stop (`SIGTERM`, `SIGINT`,
    /// `SIGQUIT`, `SIGHUP`, `SIGUSR1`, …). Default `SIGTERM`.
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// How long to wait for it to exit before SIGKILL. Default `10s`.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// First restart delay after a crash; doubles up to 1 minute. Default `1s`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub restart_backoff: Duration,
    /// Versions kept side by side under `<data_dir>/versions`. Default 3.
    #[serde(default = "default_keep")]
    pub keep_versions: usize,
    #[serde(default)]
    pub health: HealthCheck,
    #[serde(default)]
    pub hooks: Hooks,
    /// Cosmovisor mode: the chain's layout.
    #[serde(default)]
    pub cosmovisor: Option<Cosmovisor>,
}

/// How the daemon decides the program is healthy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// URL that answers 2xx when healthy.
    #[serde(default)]
    pub http: Option<String>,
    /// Or a command that exits 0 when healthy.
    #[serde(default)]
    pub command: Vec<String>,
    /// Timeout of one probe. Default `2s`.
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Time between probes. Default `500ms`.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Consecutive successes required. Default 3.
    #[serde(default = "default_successes")]
    pub successes: u32,
    /// The program must be healthy within this long after start. Default `60s`.
    #[serde(default = "default_health_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

/// Operator commands run around an update. Exit codes of `pre_upgrade`: 0 proceed;
/// 2 not now (retried later, the release is not marked failed); anything else — and a run
/// longer than its timeout, which is killed — refuses the release (marked failed, nothing
/// changed). Each hook runs in its own process group; its output (the first 1 KiB and the
/// last 3 KiB) goes to the log and, for `pre_upgrade`, to the history entry. A hook may be
/// run again after a daemon restart: make it idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default)]
    pub pre_upgrade: Vec<String>,
    /// External mode: start the program (e.g. `["systemctl", "start", "mynode"]`).
    #[serde(default)]
    pub start: Vec<String>,
    /// External mode: stop the program and return once it has exited.
    #[serde(default)]
    pub stop: Vec<String>,
    /// How long one hook may run before its whole process group is killed. Default `5m`.
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides `timeout` for `pre_upgrade` (a long migration).
    #[serde(default, with = "humantime_serde")]
    pub pre_upgrade_timeout: Option<Duration>,
    /// Overrides `timeout` for `start`.
    #[serde(default, with = "humantime_serde")]
    pub start_timeout: Option<Duration>,
    /// Overrides `timeout` for `stop`.
    #[serde(default, with = "humantime_serde")]
    pub stop_timeout: Option<Duration>,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            pre_upgrade: Vec::new(),
            start: Vec::new(),
            stop: Vec::new(),
            timeout: default_hook_timeout(),
            pre_upgrade_timeout: None,
            start_timeout: None,
            stop_timeout: None,
        }
    }
}

impl Hooks {
    pub fn pre_upgrade_timeout(&self) -> Duration {
        self.pre_upgrade_timeout.unwrap_or(self.timeout)
    }
    pub fn start_timeout(&self) -> Duration {
        self.start_timeout.unwrap_or(self.timeout)
    }
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout.unwrap_or(self.timeout)
    }
}

fn default_mode() -> ManagedMode {
    ManagedMode::Supervise
}
fn default_stop_signal() -> String {
    "SIGTERM".into()
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_keep() -> usize {
    3
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_probe_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_successes() -> u32 {
    3
}
fn default_health_deadline() -> Duration {
    Duration::from_secs(60)
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            http: None,
            command: Vec::new(),
            timeout: default_probe_timeout(),
            interval: default_probe_interval(),
            successes: default_successes(),
            deadline: default_health_deadline(),
        }
    }
}

fn default_network() -> String {
    "upswarm".into()
}
fn default_channels() -> Vec<String> {
    vec!["stable".into()]
}
fn default_platform() -> String {
    crate::layout::host_platform()
}
fn default_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/4001".into()]
}
fn default_max_connections() -> u32 {
    512
}
fn default_dht_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_in_flight() -> usize {
    32
}
fn default_in_flight_per_peer() -> usize {
    4
}
fn default_upload_slots() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_ban_after() -> u32 {
    3
}
fn default_max_decode_window() -> u64 {
    1 << upswarm_content::forms::DEFAULT_MAX_WINDOW_LOG
}
fn default_ban_duration() -> Duration {
    Duration::from_secs(3600)
}
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7780))
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            listen: default_listen(),
            bootstrap: Vec::new(),
            max_connections: default_max_connections(),
            denied_peers: Vec::new(),
            dht_refresh: default_dht_refresh(),
            external_addresses: Vec::new(),
            relays: Vec::new(),
            relay_server: false,
            relay_max_reservations: default_relay_max_reservations(),
            relay_max_circuits: default_relay_max_circuits(),
            relay_max_circuit_duration: default_relay_max_circuit_duration(),
            relay_max_circuit_bytes: default_relay_max_circuit_bytes(),
            upnp: false,
        }
    }
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            max_download_rate: 0,
            max_upload_rate: 0,
            max_in_flight: default_in_flight(),
            max_in_flight_per_peer: default_in_flight_per_peer(),
            upload_slots: default_upload_slots(),
            request_timeout: default_request_timeout(),
            ban_after_faults: default_ban_after(),
            ban_duration: default_ban_duration(),
            max_decode_window: default_max_decode_window(),
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: default_api_listen(),
        }
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Num(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Num(n) => Ok(n),
        Size::Text(s) => crate::parse::size(&s).map_err(serde::de::Error::custom),
    }
}

impl Config {
    /// The product the managed program is bound to (see [`Managed::product`]), if any.
    pub fn managed_product(&self) -> Option<&str> {
        let m = self.managed.as_ref()?;
        match (&m.product, self.products.as_slice()) {
            (Some(p), _) => Some(p),
            (None, [only]) => Some(only),
            _ => None,
        }
    }

    /// Reads a configuration file as it is written, without checking it (that is
    /// `Config::load`, in `validate`). Relative paths in it are made relative to the file's
    /// directory.
    pub fn read(path: &Path) -> anyhow::Result<Config> {
        let bytes = crate::files::read_limited(path, "configuration", 1024 * 1024)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        // Paths in the file are relative to the file; make them absolute once, here (a
        // relative `current` symlink target would otherwise point nowhere).
        let base = std::path::absolute(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .with_context(|| format!("{}: cannot resolve its directory", path.display()))?;
        let base = base.as_path();
        config.data_dir = base.join(&config.data_dir);
        config.trust_root = base.join(&config.trust_root);
        config.voting.voter_key = config.voting.voter_key.as_ref().map(|k| base.join(k));
        if let Some(m) = &mut config.managed {
            m.data_dir = m.data_dir.as_ref().map(|d| base.join(d));
            m.working_dir = m.working_dir.as_ref().map(|d| base.join(d));
            if m.mode == ManagedMode::Cosmovisor {
                let cv = m.cosmovisor.get_or_insert_with(Cosmovisor::default);
                cv.fill_from_env(|k| std::env::var(k).ok())
                    .map_err(|(var, value)| {
                        anyhow::anyhow!(
                            "{}: environment variable {var}={value:?} is not valid for \
                             [managed.cosmovisor]",
                            path.display()
                        )
                    })?;
                // Relative paths (in the file or the environment) are relative to the file.
                cv.home = cv.home.as_ref().map(|d| base.join(d));
                cv.data_backup_dir = cv.data_backup_dir.as_ref().map(|d| base.join(d));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_defaults() {
        let c: Config = toml::from_str("data_dir = \"d\"\ntrust_root = \"r.cbor\"\n").unwrap();
        assert_eq!(c.network, "upswarm");
        assert_eq!(c.channels, vec!["stable"]);
        assert_eq!(c.transfer.max_in_flight, 32);
        assert_eq!(c.api.listen.port(), 7780);
    }

    #[test]
    fn cosmovisor_fields_left_out_come_from_the_environment() {
        let env = |k: &str| match k {
            "DAEMON_HOME" => Some("/var/lib/gaia".to_string()),
            "DAEMON_NAME" => Some("gaiad".to_string()),
            "DAEMON_RESTART_AFTER_UPGRADE" => Some("true".to_string()),
            "UNSAFE_SKIP_BACKUP" => Some("TRUE".to_string()),
            "DAEMON_POLL_INTERVAL" => Some("1s".to_string()),
            _ => None,
        };
        let mut cv = Cosmovisor {
            name: Some("simd".into()),
            ..Cosmovisor::default()
        };
        cv.fill_from_env(env).unwrap();
        assert_eq!(cv.home(), PathBuf::from("/var/lib/gaia"));
        assert_eq!(cv.name(), "simd", "the file wins");
        assert_eq!(cv.restart_after_upgrade, Some(true));
        assert!(!cv.backup());
        assert_eq!(cv.poll_interval(), Duration::from_secs(1));
        assert_eq!(
            cv.backup_dir("v2"),
            PathBuf::from("/var/lib/gaia/data-backup-v2")
        );
        let mut cv = Cosmovisor::default();
        let err = cv
            .fill_from_env(|k| (k == "UNSAFE_SKIP_BACKUP").then(|| "maybe".to_string()))
            .unwrap_err();
        assert_eq!(err, ("UNSAFE_SKIP_BACKUP".to_string(), "maybe".to_string()));
        let mut cv = Cosmovisor::default();
        cv.fill_from_env(|k| (k == "DAEMON_POLL_INTERVAL").then(|| "250".to_string()))
            .unwrap();
        assert_eq!(cv.poll_interval(), Duration::from_millis(250));
    }

    #[test]
    fn sizes_and_durations() {
        let c: Config = toml::from_str(
            "data_dir = \"d\"\ntrust_root = \"r\"\nclock_skew = \"1m\"\n[transfer]\nmax_download_rate = \"4MiB\"\nmax_upload_rate = 1000\n",
        )
        .unwrap();
        assert_eq!(c.transfer.max_download_rate, 4 << 20);
        assert_eq!(c.transfer.max_upload_rate, 1000);
        assert_eq!(c.clock_skew, Duration::from_secs(60));
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let err = toml::from_str::<Config>("data_dir = \"d\"\ntrust_root = \"r\"\nchanels = []\n")
            .unwrap_err();
        assert!(err.to_string().contains("chanels"), "{err}");
        let err = toml::from_str::<Config>(
            "data_dir = \"d\"\ntrust_root = \"r\"\nclock_skew = \"soon\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("clock_skew") || err.to_string().contains("soon"),
            "{err}"
        );
    }
}
