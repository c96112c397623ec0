//! # upswarm-rollout — phased cohort rollout, as pure functions
//!
//! A release reaches a small canary cohort first, then larger ones, then everyone — and a
//! bad release is stopped at the canaries — with no coordinator: every node evaluates the
//! same functions on the signed health reports and control messages it has seen, and nodes
//! that have seen the same ones reach the same answer (SPEC §6).
//!
//! Goals:
//! - [`cohort`]: a node's [`Rank`] `blake3(release id ‖ node id)` as a fraction of 2^64, its
//!   phase among the known nodes ([`Cohorts`]: by rank, but the canary phase is never empty
//!   while any node is known), and its install delay inside the phase — deterministic,
//!   verifiable by anyone, integer arithmetic only.
//! - [`gate`]: when each phase opens and whether (and why) the rollout halted, as a
//!   function of (plan, start time, reports, control messages, known nodes, `now`). The
//!   exact rule is in the [`gate`] docs; no phase opens on zero reports from the phases
//!   before it. Opening times are functions of report *dates*, not
//!   of when a node happened to receive them, so nodes converge.
//! - [`control`]: what pause / resume / abort / advance / yank messages mean together.
//! - [`decision`]: may this node install now, and if not, why — the [`Explanation`] behind
//!   `upswarm explain` (human `Display`, JSON `Serialize`).
//! - [`sim`]: the same [`RolloutTimeline`] over up to 100 000+ simulated nodes, to measure
//!   the exposure of a bad release and the time to full rollout of a good one.
//!
//! Non-goals: no I/O, no networking, no clock reads (callers pass `now`), no signature
//! checks (callers pass reports and control messages they have verified), no storage of
//! reports, no operator policy (maintenance windows, pins: the daemon applies those on top).

pub mod cohort;
pub mod control;
pub mod decision;
pub mod gate;
pub mod sim;

pub use cohort::{
    Cohort, Cohorts, Placement, Rank, below, install_delay, phase_at, phase_of, rank,
};
pub use control::{ControlState, control_state};
pub use decision::{
    Decision, Explanation, OpenPhases, RolloutStatus, Time, WaitReason, decide, explain,
    may_install,
};
pub use gate::{
    Evaluation, GateWait, Halt, PhaseGate, PhaseStats, QUORUM_OF_KNOWN, RankedReport, Report,
    RolloutTimeline, evaluate, evaluate_cohorts, evaluate_ranked, quorum, reports_for,
};
