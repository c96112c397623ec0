//! Rollout control messages, signed by the control role.
//!
//! Owns the message type and its field checks. Whether its signers hold the control role is checked
//! with `upswarm-trust`, and what control messages mean for a rollout is `upswarm-rollout`'s;
//! neither is decided here.

use serde::{Deserialize, Serialize};

use crate::envelope::{Context, Message};
use crate::{Hash32, ProtoError};

/// Format version of [`ControlMessage`].
pub const CONTROL_VERSION: u32 = 1;
/// Limit on an encoded, signed control message.
pub const MAX_CONTROL_BYTES: usize = 16 * 1024;

const WHAT: &str = "control message";

/// What a control message orders for a release's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    /// No new installs until resumed.
    Pause,
    /// Undo a pause.
    Resume,
    /// Stop the rollout for good: no new installs, ever.
    Abort,
    /// Open phases up to and including `to_phase` regardless of gates.
    Advance { to_phase: u32 },
    /// Abort, and nodes that installed the release roll back to their last good version.
    Yank,
}

impl ControlAction {
    /// Lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Abort => "abort",
            ControlAction::Advance { .. } => "advance",
            ControlAction::Yank => "yank",
        }
    }
}

/// A control message. Between pause and resume, the one issued later wins; abort and yank
/// are final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    pub v: u32,
    /// Release id the message is about.
    pub release: Hash32,
    pub action: ControlAction,
    /// Unix seconds when the signers issued it; orders pause/resume.
    pub issued_at: u64,
    /// Why, for operators (≤ 256 bytes).
    pub reason: String,
}

impl Message for ControlMessage {
    const WHAT: &'static str = WHAT;
    const VERSION: u32 = CONTROL_VERSION;
    const MAX_BYTES: usize = MAX_CONTROL_BYTES;
    const CONTEXT: Context = Context::Control;

    fn version_field(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), ProtoError> {
        crate::check_time(WHAT, "issued_at", self.issued_at)?;
        if self.reason.len() > 256 {
            return Err(ProtoError::invalid(WHAT, "reason", "longer than 256 bytes"));
        }
        if let ControlAction::Advance { to_phase } = self.action
            && to_phase as usize >= crate::manifest::MAX_PHASES
        {
            return Err(ProtoError::invalid(
                WHAT,
                "action.to_phase",
                format!("{to_phase} is not a phase index"),
            ));
        }
        Ok(())
    }
}
