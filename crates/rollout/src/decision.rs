//! May this node install the release now?

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::gate::{Evaluation, Halt};

/// The answer for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Its phase is open and its install delay has passed.
    Install,
    /// Its phase is open; its install delay ends at this unix time.
    InstallAt { at: u64 },
    /// Its phase is not open yet.
    WaitForPhase { phase: usize, open: usize },
    /// Paused by the control role.
    Paused,
    /// The rollout halted: this node never installs the release.
    Never { why: String },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Install => f.write_str("install now"),
            Decision::InstallAt { at } => write!(f, "install at {at} (spread inside the phase)"),
            Decision::WaitForPhase { phase, open } => {
                write!(
                    f,
                    "wait: this node is in phase {phase}; phases 0..{open} are open"
                )
            }
            Decision::Paused => f.write_str("wait: the rollout is paused by the control role"),
            Decision::Never { why } => write!(f, "never: {why}"),
        }
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::Failures {
                phase,
                failures,
                reports,
                max_failure_bp,
                ..
            } => write!(
                f,
                "halted: phase {phase} had {failures} failure(s) in {reports} report(s), over the {:.2} % allowed",
                f64::from(*max_failure_bp) / 100.0
            ),
            Halt::Aborted => f.write_str("aborted by the control role"),
            Halt::Yanked => f.write_str("yanked by the control role"),
        }
    }
}

/// Decides for a node of phase `phase` with install delay `delay`.
pub fn decide(eval: &Evaluation, phase: usize, delay: Duration, now: u64) -> Decision {
    if let Some(h) = &eval.halted {
        return Decision::Never { why: h.to_string() };
    }
    if eval.control.paused {
        return Decision::Paused;
    }
    match eval.opened_at.get(phase).copied().flatten() {
        Some(opened) if phase < eval.open => {
            let at = opened.saturating_add(delay.as_secs());
            if now >= at {
                Decision::Install
            } else {
                Decision::InstallAt { at }
            }
        }
        _ => Decision::WaitForPhase {
            phase,
            open: eval.open,
        },
    }
}
