//! # upswarm-rollout — phased cohort rollout, as pure functions
//!
//! A release reaches a small canary cohort first, then larger ones, and a bad release is
//! stopped at the canaries — with no coordinator: every node evaluates the same functions
//! on the signed health reports it has seen, and nodes that have seen the same reports
//! reach the same answer.
//!
//! Goals:
//! - [`cohort`]: a node's rank `blake3(release id ‖ node id)` as a fraction of 2^64, its
//!   phase, and its install delay inside the phase — deterministic and verifiable by anyone.
//! - [`gate`]: when each phase opens and whether the rollout halted, from (plan, start time,
//!   reports, control messages, known nodes, clock). Integer arithmetic only.
//! - [`decision`]: may this node install now, and if not, why (for `upswarm explain`).
//! - [`sim`]: the same gate logic over up to 100 000 simulated nodes.
//!
//! Non-goals: no I/O, no clock reads, no signature checks (callers pass reports and
//! control messages they have verified).

pub mod cohort;
pub mod control;
pub mod decision;
pub mod gate;
pub mod sim;

pub use cohort::{Rank, install_delay, phase_of, rank};
pub use control::{ControlState, control_state};
pub use decision::{Decision, decide};
pub use gate::{
    Evaluation, GateWait, Halt, PhaseStats, RankedReport, Report, evaluate, evaluate_ranked,
};
