//! The local control API's contract: the JSON bodies of its requests and answers, their
//! limits, and the names of the counters it reports. The daemon's server
//! (`daemon::api`) and the CLI's client (`cli::client`) both depend on this module; it
//! depends on neither, nor on anything else of the daemon (no import circle: see
//! `docs/architecture.md`, "Checking the structure").
//!
//! Owns: types and their serde form. Must not: do I/O, hold state, or know how the daemon
//! computes a value (methods that need the daemon's state live with the daemon, as
//! `impl` blocks on these types).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use upswarm_proto::UpdateType;
use upswarm_rollout::Halt;

/// Longest version string accepted (semver allows any length; no real one comes close).
pub const MAX_VERSION_LEN: usize = 128;
/// Longest path accepted.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest multiaddr accepted.
pub const MAX_ADDR_LEN: usize = 1024;

/// A version field: at most [`MAX_VERSION_LEN`] characters of valid semver.
pub(crate) fn bounded_version<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<semver::Version>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_version(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses a version given to the API, within the bound.
pub fn parse_version(s: &str) -> Result<semver::Version, String> {
    if s.len() > MAX_VERSION_LEN {
        return Err(format!(
            "version: {} characters, more than the limit of {MAX_VERSION_LEN}",
            s.len()
        ));
    }
    s.parse::<semver::Version>()
        .map_err(|e| format!("version: {s:?} is not a semantic version: {e}"))
}

/// Body of `POST /v1/apply`, `/v1/rollback`, `/v1/pin`, `/v1/defer`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRequest {
    #[serde(default, deserialize_with = "bounded_version")]
    pub version: Option<semver::Version>,
    #[serde(default)]
    pub force: bool,
}

/// Answer of `POST /v1/apply` and `/v1/rollback`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransitionResult {
    pub version: String,
    pub outcome: Outcome,
}

/// Body of `POST /v1/publish`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A release directory (as made by `upswarm release create`) on this machine.
    pub dir: PathBuf,
}

/// Body of `POST /v1/gc`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Only say what would be removed.
    #[serde(default)]
    pub dry_run: bool,
}

/// Error body of every endpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Body of `POST /v1/control`, `/v1/proposal` and `/v1/root`: a signed envelope,
/// hex-encoded.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    pub envelope_hex: String,
}

/// Body of `POST /v1/vote`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// Proposal id (64 hex digits).
    pub proposal: String,
    /// `Some(true)`: withhold this node's vote; `Some(false)`: allow it again.
    #[serde(default)]
    pub withhold: Option<bool>,
}

/// Body of `POST /v1/peers`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRequest {
    pub addr: String,
}

/// What `GET /v1/status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub node_id: String,
    pub peer_id: String,
    pub network: String,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
    /// Gossipsub score of each connected peer (`null` when it has none yet), and the peers
    /// banned now with the unix time their ban ends.
    #[serde(default)]
    pub peer_scores: Vec<(String, Option<f64>)>,
    #[serde(default)]
    pub banned: Vec<(String, u64)>,
    /// How others reach this node.
    #[serde(default)]
    pub reachability: ReachabilityView,
    /// Per connected peer: `"direct"` or `"relayed"`.
    #[serde(default)]
    pub peer_links: Vec<(String, String)>,
    pub root_version: u64,
    /// Unix time the pinned trust root expires (0: unknown, from an older daemon).
    #[serde(default)]
    pub root_expires_at: u64,
    pub releases: Vec<ReleaseView>,
    pub managed: Option<ManagedView>,
    /// Conditions an operator must act on, e.g. "upgrade required".
    pub alarms: Vec<String>,
    pub counters: Counters,
    /// Bytes the data directory holds, in all and per part.
    #[serde(default)]
    pub disk: DiskUse,
}

/// One release as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub channel: String,
    pub update_type: String,
    pub source: Source,
    pub first_seen: u64,
    pub download: DownloadState,
    pub progress: Option<ProgressView>,
}

/// One candidate of `upswarm check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckItem {
    pub id: String,
    pub name: String,
    pub version: String,
    pub update_type: String,
    pub security_critical: bool,
    /// `None`: it would be applied now.
    pub hold: Option<Hold>,
    /// Human-readable reason.
    pub why: String,
}

/// What the status shows about the managed program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedView {
    pub current: Option<String>,
    pub previous: Vec<String>,
    pub pinned: Option<String>,
    pub failed: Vec<String>,
    pub program: ProgramStatus,
    /// Apply step in progress and the version being applied.
    pub applying: Option<(String, String)>,
    /// Finishing an update interrupted by a restart (no new update may start until done).
    #[serde(default)]
    pub recovering: bool,
    /// Cosmovisor mode: the chain's layout, pending upgrade and staged upgrades.
    #[serde(default)]
    pub cosmovisor: Option<CosmovisorView>,
}

/// What `upswarm explain` returns for one release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainView {
    pub release: String,
    pub name: String,
    pub version: String,
    pub node_id: String,
    pub rollout: RolloutView,
    /// What keeps this node from installing the release now: the one most important reason
    /// (see [`policy`]'s module docs; `None`: nothing holds it, or this node never installs
    /// it — it manages no program, or one of another product; `verdict` says which).
    pub hold: Option<Hold>,
    /// That reason in words, or what happens instead.
    pub verdict: String,
    pub download: DownloadState,
    pub known_nodes: usize,
    /// The download's progress and where its chunks came from, while this daemon has it
    /// (since it started).
    #[serde(default)]
    pub progress: Option<ProgressView>,
    /// The release's changelog, as its signers wrote it (shown escaped, never obeyed).
    #[serde(default)]
    pub changelog: upswarm_proto::Changelog,
}

/// Everything `upswarm explain` shows about one release on this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub rank: f64,
    /// This node's phase (by rank, or promoted so that the canary is never empty).
    pub phase: usize,
    pub phase_until_percent: f64,
    /// Its phase by rank alone; later than `phase` when promoted.
    #[serde(default)]
    pub rank_phase: usize,
    /// Known nodes before it in the release's install order.
    #[serde(default)]
    pub position: usize,
    /// Known nodes the cohorts were drawn from (this node counted if it is known).
    #[serde(default)]
    pub cohort_nodes: usize,
    /// The cohort in words ("rank … → phase …").
    #[serde(default)]
    pub cohort: String,
    pub install_delay_secs: u64,
    pub evaluation: serde_json::Value,
    pub decision: String,
    pub may_install: bool,
}

/// A snapshot of [`DownloadProgress`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProgressView {
    pub chunks_total: u64,
    pub chunks_held: u64,
    pub chunks_fetched: u64,
    pub chunks_reused: u64,
    pub bytes_fetched: u64,
    pub bad_chunks: u64,
    pub from_peers: BTreeMap<String, u64>,
    /// Chunks received from peers over a direct connection, in this download.
    #[serde(default)]
    pub chunks_from_peers_direct: u64,
    /// Chunks received from peers reached only through a relay.
    #[serde(default)]
    pub chunks_from_peers_relayed: u64,
    /// Chunks read from HTTP(S) mirrors, and their bytes.
    #[serde(default)]
    pub chunks_from_mirrors: u64,
    #[serde(default)]
    pub bytes_from_mirrors: u64,
    /// Mirror answers refused in this download (see the `mirror_faults` counter).
    #[serde(default)]
    pub mirror_faults: u64,
    /// Set while verified chunks cannot be stored on this node (a full disk): the reason.
    /// The download waits and goes on by itself once they can.
    #[serde(default)]
    pub blocked: Option<String>,
    /// How each artifact with encoded forms was fetched (none listed: plain only).
    #[serde(default)]
    pub forms: Vec<FormUse>,
    /// Bytes not fetched thanks to encoded forms, over the artifacts of this download.
    #[serde(default)]
    pub bytes_saved: u64,
}

/// How one artifact that has encoded forms was fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormUse {
    pub artifact: String,
    /// `zstd-patch`, `zstd` or `plain`.
    pub form: String,
    /// For `zstd-patch`: the base's whole-file hash.
    #[serde(default)]
    pub base: Option<String>,
    /// Bytes of the form fetched from peers.
    pub bytes_fetched: u64,
    /// Bytes of the artifact's missing chunks not fetched thanks to the form.
    pub bytes_saved: u64,
    /// Time to reconstruct the artifact from the form: decode streaming to disk, hash the
    /// output, store its chunks (milliseconds).
    #[serde(default)]
    pub decode_ms: u64,
    /// Forms tried or passed over before it, and why (no base held, a bad frame, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// What a transition does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An update (automatic or `upswarm apply`).
    Apply,
    /// Back to an earlier version (`upswarm rollback`, or a yank), restoring its data if a
    /// backup of it exists.
    Rollback,
}

/// Who asked for a transition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The policy and the phased rollout.
    #[default]
    Auto,
    /// The operator (`upswarm apply`, `upswarm rollback`).
    Manual,
    /// A signed yank of the running release.
    Yank,
}

/// How a transition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new version runs and is healthy.
    Applied,
    /// The new version failed; the previous one is back.
    RolledBack,
    /// Refused before anything changed (pre-checks, pre-upgrade hook); marked failed.
    Refused,
    /// Not now (the pre-upgrade hook asked to retry later, or could not run; not enough
    /// disk space). The release stays eligible.
    Postponed,
    /// Cosmovisor mode: the new binary failed at the upgrade height and the chain is
    /// stopped (no rollback: the old binary must not run past the height).
    Halted,
}

/// One line of `upswarm history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub outcome: Outcome,
    pub kind: Kind,
    #[serde(default)]
    pub origin: Origin,
    pub from: Option<String>,
    pub to: String,
    pub release: String,
    pub reason: Option<String>,
    pub backup_ms: Option<u64>,
    pub duration_ms: u64,
    /// Output of the pre-upgrade hook (its beginning and end, at most about 4 KiB).
    #[serde(default)]
    pub hook_output: Option<String>,
    /// Daemon restarts the transition went through before it ended.
    #[serde(default)]
    pub restarts: u32,
}

/// Where a release came from first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Gossip,
    Dht,
    Publish,
}

/// What the node is doing with a release's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DownloadState {
    /// Known, but not for this node (another channel or product).
    NotFollowed,
    /// Being fetched.
    Downloading,
    /// Every artifact for this node is assembled and verified; the node seeds it.
    Complete { at: u64 },
    /// Fetching failed for a reason that retrying will not fix (a release signed with a
    /// malformed chunk index, no artifact for this platform).
    Failed { reason: String },
    /// Waiting on this node's own disk: not enough free space for the release, or its files
    /// could not be written. Nothing is held against any peer; the daemon tries again by
    /// itself (every 15 s, and at start) and goes on where it stopped once space returns.
    /// `since`: unix time it was first blocked.
    Blocked { reason: String, since: u64 },
    /// Its files were removed by garbage collection (`retention`); only the signed
    /// manifest is kept, so the release is not fetched again when peers mention it.
    Removed { at: u64 },
}

/// Why a release is not applied now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "hold")]
pub enum Hold {
    /// This node runs this very version.
    Running { version: String },
    /// Not newer than what runs (and not a signed rollback release).
    NotNewer { current: String },
    /// The release may only be applied over `min_version` or later.
    UpgradePath {
        min_version: String,
        current: String,
    },
    /// The rollout stopped for the whole fleet: yanked, aborted, or halted by failures.
    Stopped { halt: Halt },
    /// It failed here before; never retried automatically.
    FailedBefore,
    /// The operator pinned another version.
    Pinned { version: String },
    /// This update type waits for `upswarm apply`.
    Manual { update_type: UpdateType },
    /// Outside every maintenance window.
    OutsideWindow,
    /// Waiting out `delay_after_release`, until this unix time.
    Delay { until: u64 },
    /// Deferred by the operator until this unix time.
    Deferred { until: u64 },
    /// The phased rollout does not let this node install yet.
    Rollout { decision: String },
}

/// What the supervisor knows about the program.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// The daemon wants it running.
    pub wanted: bool,
    pub running: bool,
    pub pid: Option<u32>,
    /// The version directory it was started from.
    pub version_dir: Option<PathBuf>,
    /// Starts since the daemon started.
    pub starts: u64,
    /// Exits (expected or not) since the daemon started.
    pub exits: u64,
    /// How the last exit went, e.g. "exit status: 3".
    pub last_exit: Option<String>,
}

/// One entry of `activations.json` and of `GET /v1/activations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationView {
    pub proposal: String,
    pub protocol: String,
    pub description: String,
    pub state: String,
    pub weight_counted: u64,
    pub weight_needed: u64,
    pub weight_total: u64,
    pub start_at: u64,
    pub lock_in_deadline: u64,
    pub locked_in_at: Option<u64>,
    pub activation_at: Option<u64>,
    /// Whether the software this node runs supports the protocol.
    pub supported: bool,
    /// Whether this node has voted READY.
    pub voted: bool,
    /// Whether the operator withholds this node's vote.
    pub withheld: bool,
}

/// What a collection removed, or (dry run) would remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Why nothing was collected this time, if so.
    pub skipped: Option<String>,
    pub releases: Vec<GcRelease>,
    /// Chunk and chunk-index files no kept release references.
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Signed health reports about removed releases dropped.
    pub signed: u64,
    /// Data backups beyond `retention.keep_backups`.
    pub backups: Vec<String>,
    pub backup_bytes: u64,
    /// Everything together.
    pub bytes: u64,
}

/// Bytes the data directory holds, in all and per part. Files are counted by their length;
/// `total` counts a hard-linked file once, while `versions` (hard links of the assembled
/// artifacts where the file system allows) counts it again, so the parts can add up to more
/// than the total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    pub total: u64,
    pub chunks: u64,
    pub releases: u64,
    pub versions: u64,
    pub backups: u64,
}

/// One release removed (or that would be).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcRelease {
    pub id: String,
    pub name: String,
    pub version: String,
    pub channel: String,
    /// Bytes of its assembled artifacts (`releases/<id>/`).
    pub bytes: u64,
}

/// `upgrade-info.json`, as x/upgrade writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeInfo {
    pub name: String,
    #[serde(default)]
    pub height: i64,
    #[serde(default)]
    pub info: String,
}

/// What `upswarm status` shows of cosmovisor mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CosmovisorView {
    pub home: PathBuf,
    pub name: String,
    /// `genesis` or the upgrade `current` points at.
    pub current: Option<String>,
    /// The upgrade the chain halted for and that is not switched to yet.
    pub pending: Option<UpgradeInfo>,
    /// Upgrades whose binary is ready under `upgrades/`: "v2 (release 2.0.0)".
    pub staged: Vec<String>,
    /// What needs the operator, if anything.
    pub alarm: Option<String>,
}

/// Reachability of the node, as AutoNAT and the relay client see it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReachabilityView {
    /// `"public"`, `"private"` (behind NAT or a firewall) or `"unknown"` (not probed yet).
    pub state: String,
    /// The address peers dialled us back on, when public.
    #[serde(default)]
    pub address: Option<String>,
    /// When private: the relays holding a reservation for us (peer ids).
    #[serde(default)]
    pub relays: Vec<String>,
}

/// Calls `$m!` with the list of the daemon's counters: each one's documentation, name and
/// Prometheus kind. The snapshot the API reports ([`Counters`]) and the daemon's live
/// atomics (`daemon::metrics::Metrics`) are both made from this one list.
macro_rules! for_each_counter {
    ($m:ident) => {
        $m! {
        /// Gossip messages validated and forwarded.
        gossip_accepted: "counter",
        /// Gossip messages rejected (bad signature, malformed, stale): the sender was penalised.
        gossip_rejected: "counter",
        /// Gossip messages dropped without penalty (duplicates, not for us).
        gossip_ignored: "counter",
        /// DHT records validated and stored.
        dht_records_accepted: "counter",
        /// DHT records refused.
        dht_records_rejected: "counter",
        /// Chunks (and chunk indexes) served to peers.
        blobs_served: "counter",
        /// Bytes served to peers.
        bytes_served: "counter",
        /// Fetch requests answered "don't have".
        requests_dont_have: "counter",
        /// Chunk requests answered "busy": no upload slot (`transfer.upload_slots`) came free in time; the peer asks another holder.
        requests_busy: "counter",
        /// Chunks fetched from peers and verified.
        chunks_fetched: "counter",
        /// Bytes fetched from peers and verified.
        bytes_fetched: "counter",
        /// Chunks already on disk when a download (re)started: not fetched again.
        chunks_reused: "counter",
        /// Bytes not fetched thanks to encoded forms: for each artifact fetched as a delta or compressed, the bytes of its missing chunks minus the bytes of the form fetched.
        transfer_saved_bytes: "counter",
        /// Encoded forms given up (no holder, bad frame, output not matching the artifact's hash): the node fell back to another form or the plain artifact.
        forms_failed: "counter",
        /// Bytes of verified chunks received from peers over a direct connection (`/metrics`: `upswarm_download_bytes_total{source="peer_direct"}`).
        download_bytes_peer_direct: "counter",
        /// Bytes of verified chunks received from peers reached only through a relay (`source="peer_relayed"`).
        download_bytes_peer_relayed: "counter",
        /// Bytes of verified chunks read from HTTP(S) mirrors (`source="mirror"`).
        download_bytes_mirror: "counter",
        /// Verified chunks received from peers over a direct connection (`/metrics`: `upswarm_download_chunks_total{source="peer_direct"}`).
        download_chunks_peer_direct: "counter",
        /// Verified chunks received from peers reached only through a relay (`source="peer_relayed"`).
        download_chunks_peer_relayed: "counter",
        /// Verified chunks read from HTTP(S) mirrors (`source="mirror"`).
        download_chunks_mirror: "counter",
        /// Mirror answers refused: bytes that do not verify, a wrong length, no `206 Partial Content`, an HTTP or connection error, a timeout. The mirror is left alone for a while.
        mirror_faults: "counter",
        /// Chunks received that did not match their hash or size.
        bad_chunks_received: "counter",
        /// Times a download was blocked by this node's own disk (full, or not writable).
        downloads_blocked: "counter",
        /// Requests that failed or timed out.
        requests_failed: "counter",
        /// Peers banned after repeated faults.
        peers_banned: "counter",
        /// Hole punches (DCUtR) over a relayed connection that gave a direct connection.
        hole_punch_succeeded: "counter",
        /// Hole punches that failed: the peer stays reachable through the relay only.
        hole_punch_failed: "counter",
        /// Releases fully downloaded and verified.
        releases_completed: "counter",
        /// 1 while a protocol is ACTIVE that the running software does not support.
        upgrade_required: "gauge",
        /// Updates applied: the new version runs and passed its health check.
        updates_applied: "counter",
        /// Updates that failed on this node and were rolled back to the previous version.
        updates_rolled_back: "counter",
        /// Transitions refused before anything changed, or rollbacks that failed.
        updates_failed: "counter",
        /// Current rollouts (the newest followed release of each product and channel) this node sees halted: failures over the gate, or aborted.
        rollouts_halted: "gauge",
        /// Peers connected now (as of the last scrape or status call).
        peers_connected: "gauge",
        /// Unix time (seconds) the pinned trust root expires.
        root_expiry_timestamp_seconds: "gauge",
        /// Bytes the data directory holds (a hard-linked file counted once; updated at each scrape and status call).
        data_dir_used_bytes: "gauge",
        /// Bytes available to the daemon on the data directory's file system (updated at each scrape and status call).
        data_dir_available_bytes: "gauge",
        /// Size in bytes of the data directory's file system (updated at each scrape and status call).
        data_dir_filesystem_bytes: "gauge",
        }
    };
}
pub(crate) use for_each_counter;

macro_rules! counters_snapshot {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:literal),* $(,)?) => {
        /// Counters since the daemon started (a snapshot of `daemon::metrics::Metrics`):
        /// the `counters` of `GET /v1/status`.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Counters {
            $($(#[doc = $doc])* #[serde(default)] pub $name: u64,)*
        }
    };
}
for_each_counter!(counters_snapshot);

/// Most nodes the fleet inventory keeps (`GET /v1/fleet`): past it, the node whose last
/// report is the oldest is forgotten first. About 200 bytes a node: 2 MB at the cap.
pub const FLEET_CAP: usize = 10_000;

/// The states a node's last report can have, as `upswarm fleet --state` takes them.
pub const FLEET_STATES: [&str; 4] = ["installed", "healthy", "failed", "rolled_back"];

/// Query of `GET /v1/fleet`: every filter given must match.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// The version a node runs.
    #[serde(default, deserialize_with = "bounded_version")]
    pub version: Option<semver::Version>,
    /// The state of its last report: one of [`FLEET_STATES`].
    #[serde(default)]
    pub state: Option<String>,
    /// The release its last report is about: a release id (or a prefix of at least 8 hex
    /// digits of it), or a release's version.
    #[serde(default)]
    pub release: Option<String>,
}

/// What `GET /v1/fleet` returns: every node this node has a verified health report from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetView {
    /// This node.
    pub node_id: String,
    /// Nodes known, before the filters.
    pub nodes_known: usize,
    /// The most nodes kept ([`FLEET_CAP`]).
    pub cap: usize,
    /// The newest release this node follows: the rollout ranks and phases are for it.
    pub rollout: Option<FleetRollout>,
    /// How many known nodes run each version, the most common first (before the filters).
    pub coverage: Vec<VersionCount>,
    /// The nodes that match the filters, in the current rollout's install order (else by
    /// node id).
    pub nodes: Vec<FleetNode>,
    /// Coverage over time, oldest first (before the filters): see [`CoverageSample`].
    #[serde(default)]
    pub history: Vec<CoverageSample>,
}

/// Most samples of coverage over time kept ([`FleetView::history`]): past it, the oldest
/// is dropped first. A few hundred bytes a sample.
pub const COVERAGE_HISTORY_CAP: usize = 1000;
/// How often (seconds) the daemon compares the fleet's coverage with its last sample.
pub const COVERAGE_SAMPLE_SECS: u64 = 10;

/// The fleet's coverage from `at` on: a sample is taken when the per-version counts differ
/// from the previous sample (checked every [`COVERAGE_SAMPLE_SECS`]), so the series is a
/// step function; it lives in memory and starts again when the daemon restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageSample {
    /// Unix seconds (this node's clock).
    pub at: u64,
    /// Nodes per version, as [`FleetView::coverage`].
    pub versions: Vec<VersionCount>,
}

/// The release whose rollout `upswarm fleet` places the nodes in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetRollout {
    pub release: String,
    pub name: String,
    pub version: String,
}

/// Nodes on one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    pub version: String,
    pub nodes: usize,
}

/// One node of the fleet, from its latest signed health report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetNode {
    pub node_id: String,
    /// The version it runs.
    pub version: String,
    /// Its last report: `installed`, `healthy`, `failed` or `rolled_back`.
    pub state: String,
    /// The release that report is about, and that release's name and version if known.
    pub release: String,
    pub release_name: Option<String>,
    pub release_version: Option<String>,
    /// When it observed that state (unix seconds, the node's clock).
    pub at: u64,
    /// Its rank, phase and position in the current rollout (`None`: no current rollout).
    pub rank: Option<f64>,
    pub phase: Option<usize>,
    pub position: Option<usize>,
}

/// What `GET /readyz` answers (200 when `ready`, else 503).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyView {
    pub ready: bool,
    pub checks: Vec<ReadyCheck>,
}

/// One condition of readiness.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyCheck {
    /// `trust_root`, `state`, `listening` or `peers`.
    pub name: String,
    pub ok: bool,
    pub detail: String,
}
