//! # upswarm-activation — protocol activation voting, as pure functions
//!
//! A protocol change (a new wire protocol, a feature every node must understand) is switched
//! on only once enough of the electorate runs software that supports it. The release role
//! signs a [`Proposal`](upswarm_proto::Proposal); nodes that are ready sign
//! [`Vote`](upswarm_proto::Vote)s with their voter keys; every node computes the proposal's
//! state from the votes it has seen, with no coordinator (SPEC §8).
//!
//! Goals:
//! - [`verify_proposal`] / [`verify_vote`]: signature checks, each through
//!   [`upswarm_trust::count_signatures`] (the one counting function). A proposal needs the
//!   release role's threshold for `UpdateType::Protocol`; a vote needs a valid signature by
//!   its own voter key, which must be in the trust root's electorate.
//! - [`evaluate`]: the state machine DEFINED → STARTED → LOCKED_IN → ACTIVE, or FAILED, as
//!   a deterministic function of (proposal, electorate, votes, now). Integer arithmetic only.
//!
//! Non-goals: no I/O, no clock reads (the caller passes `now`), no gossip, storage or
//! deciding *whether* to vote; no check of the trust root itself (the caller verifies it and
//! its expiry, e.g. with `upswarm_trust::RootChain`).
//!
//! ## The rule
//!
//! Given a proposal `P`, an electorate `E` (voter key → weight; the electorate of the trust
//! root current at evaluation time), a set of verified votes `V` for `P`, and `now`:
//!
//! 1. `total = Σ weight(E)`; `needed = ceil(P.threshold_bp × total / 10000)`.
//! 2. A vote **counts** when its voter is in `E`, and
//!    `P.start_at ≤ at ≤ P.lock_in_deadline` (both ends inclusive), and `at ≤ now` (a vote
//!    dated in the future counts once the clock reaches it). Each voter counts once, with
//!    its earliest such vote and its weight in `E`. Others are listed in
//!    [`ActivationStatus::ignored`] with an [`IgnoreReason`].
//! 3. `W(t)` = total weight of counted votes with `at ≤ t`. **t\*** = the smallest vote time
//!    `t` with `W(t) ≥ needed`, if any.
//! 4. If t\* exists, the proposal is LOCKED_IN at t\* and activates at
//!    `activation_at = t* + P.activation_delay_secs`; it is ACTIVE once `now ≥ activation_at`.
//!    (t\* ≤ `now` always, since counted votes are not in the future.)
//! 5. Otherwise, with `P.lock_in_on_timeout`, once `now ≥ lock_in_deadline` it is LOCKED_IN
//!    at the deadline and activates at `lock_in_deadline + activation_delay_secs`.
//! 6. Otherwise: DEFINED if `now < start_at`; FAILED if `now > lock_in_deadline` (at the
//!    deadline second itself a vote dated at the deadline may still be signed); else
//!    STARTED.
//!
//! An empty electorate never reaches the threshold (there is nothing to count).
//!
//! ## Convergence
//!
//! The result depends only on the *set* of distinct votes (duplicates and order vanish: the
//! votes are reduced to a sorted set first), the electorate and `now`. Two nodes that have
//! seen the same votes under the same root compute the same t\* and the same activation
//! time, whenever and in whatever order the votes arrived; a node that was partitioned or
//! offline converges as soon as it re-syncs the votes. Adding votes never moves t\* later
//! (W only grows), so a node that has seen a superset of another's votes has an equal or
//! earlier t\*.
//!
//! ## Limits
//!
//! - **Late votes can move t\* earlier.** A vote dated before a node's t\* that reaches it
//!   late (the voter was partitioned, or gossip was slow) makes that node's t\* — and its
//!   activation time — earlier. Votes are self-dated, so a voter can also sign a backdated
//!   vote (never before `start_at`). Nodes therefore must keep re-evaluating on every new
//!   vote and act on the latest result; if the activation time has moved into the past they
//!   activate at once (that is the converged answer). To make this rare, the proposal's
//!   `activation_delay_secs` must exceed worst-case vote propagation + re-sync time + clock
//!   skew: then every vote dated ≤ t\* from a connected voter has reached every node before
//!   anyone activates, and all nodes activate at the same time.
//! - **Clock skew** decides when a future-dated vote starts counting and when states change;
//!   it does not change t\* or `activation_at`, which depend only on vote times.
//! - **Root rotations re-weigh votes.** Weights come from the electorate passed in, so a
//!   rotation that removes a voter revokes its vote, and one that changes weights can undo a
//!   lock-in — even after activation. Whether the node keeps an activation it already acted
//!   on is the caller's policy; the electorate should not be rotated between a proposal's
//!   start and its activation.

mod error;
mod state;
mod verify;

pub use error::ActivationError;
pub use state::{
    ActivationState, ActivationStatus, IgnoreReason, IgnoredVote, evaluate, evaluate_verified,
    weight_needed,
};
pub use verify::{VerifiedProposal, VerifiedVote, sign_vote, verify_proposal, verify_vote};
