//! Health reports: what a node says about a release it installed.
//!
//! Owns the report type and its field checks. It does not verify the node's signature (the daemon
//! does, with `upswarm-trust`) nor count reports toward a phase (`upswarm-rollout` does).

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::{Hash32, ProtoError, PublicKey};

/// Format version of [`HealthReport`].
pub const HEALTH_VERSION: u32 = 1;
/// Limit on an encoded, signed health report.
pub const MAX_HEALTH_BYTES: usize = 2048;
/// Longest free-text detail.
pub const MAX_DETAIL: usize = 256;

const WHAT: &str = "health report";

/// The state of a release on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Installed and started; health not yet established.
    Installed,
    /// Passed its health check.
    Healthy,
    /// Failed its health check or crashed.
    Failed,
    /// Failed and was rolled back to the previous version.
    RolledBack,
}

impl HealthStatus {
    /// Whether this status counts as a failure for phase gates.
    pub fn is_failure(self) -> bool {
        matches!(self, HealthStatus::Failed | HealthStatus::RolledBack)
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Installed => "installed",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Failed => "failed",
            HealthStatus::RolledBack => "rolled_back",
        }
    }
}

/// A node's signed statement about a release. Signed by the node's own identity key
/// (`node`), with context [`Context::Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    pub v: u32,
    /// The reporting node's identity public key; its node id is `node.key_id()`.
    pub node: PublicKey,
    /// Release id (blake3 of the manifest payload).
    pub release: Hash32,
    pub status: HealthStatus,
    /// Version now running on the node.
    pub running: semver::Version,
    /// Unix seconds when the status was observed.
    pub at: u64,
    /// Short free text (e.g. the failed check), ≤ 256 bytes.
    pub detail: String,
}

impl Message for HealthReport {
    const WHAT: &'static str = WHAT;
    const VERSION: u32 = HEALTH_VERSION;
    const MAX_BYTES: usize = MAX_HEALTH_BYTES;
    const CONTEXT: Context = Context::Health;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        crate::check_time(WHAT, "at", self.at)?;
        if self.detail.len() > MAX_DETAIL {
            return Err(ProtoError::invalid(
                WHAT,
                "detail",
                format!("longer than {MAX_DETAIL} bytes"),
            ));
        }
        Ok(())
    }
}
