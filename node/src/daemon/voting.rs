//! Protocol activation on this node: proposals and votes it has accepted, its own readiness
//! votes, the activation states it computes, and what it tells the managed program
//! (`activations.json`, the API, an optional hook). Owned by the core.
//!
//! It holds its books in memory and never signs or writes a file: the core signs this node's votes,
//! stores the envelopes (`signed`) and writes `activations.json`. The activation hook runs on a
//! task of its own; `run_hook` never waits for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::api::ActivationView;
use tracing::{info, warn};
use upswarm_activation::{
    ActivationState, ActivationStatus, VerifiedProposal, VerifiedVote, evaluate_verified,
    verify_proposal, verify_vote,
};
use upswarm_proto::{Hash32, KeyId, SignedEnvelope, TrustRoot};

/// Subject under which proposals are stored (and re-synced): all of them at once.
pub const ALL_PROPOSALS: Hash32 = Hash32([0; 32]);

/// Proposals and votes.
#[derive(Debug, Default)]
pub struct VotingBook {
    proposals: HashMap<Hash32, VerifiedProposal>,
    votes: HashMap<Hash32, BTreeSet<VerifiedVote>>,
    /// Proposals whose activation hook has run.
    announced: BTreeSet<Hash32>,
}

/// Why a vote is not taken.
#[derive(Debug, thiserror::Error)]
pub enum VoteCheckError {
    /// Its signature, its voter or its proposal reference are refused.
    #[error(transparent)]
    Invalid(#[from] upswarm_activation::ActivationError),
    /// Cast in the future.
    #[error(transparent)]
    Untrusted(#[from] upswarm_trust::TrustError),
}

impl VotingBook {
    /// Verifies and keeps a proposal; returns its id.
    pub fn add_proposal(
        &mut self,
        root: &TrustRoot,
        env: &SignedEnvelope,
    ) -> Result<Hash32, upswarm_activation::ActivationError> {
        let p = verify_proposal(root, env)?;
        let id = p.id;
        if !self.proposals.contains_key(&id) {
            info!(proposal = %id, protocol = %p.proposal.protocol, "protocol proposal accepted");
        }
        self.proposals.insert(id, p);
        Ok(id)
    }

    /// Verifies and keeps a vote; returns the proposal it is for, or `None` when that
    /// proposal is unknown (kept anyway, not spread).
    pub fn add_vote(
        &mut self,
        root: &TrustRoot,
        env: &SignedEnvelope,
        time: upswarm_trust::TimeCheck,
    ) -> Result<(Hash32, bool), VoteCheckError> {
        let v = verify_vote(root, env)?;
        time.not_in_future("vote", "at", v.at)?;
        self.votes.entry(v.proposal).or_default().insert(v);
        Ok((v.proposal, self.proposals.contains_key(&v.proposal)))
    }

    pub fn proposal_ids(&self) -> Vec<Hash32> {
        self.proposals.keys().copied().collect()
    }

    pub fn proposal(&self, id: &Hash32) -> Option<&VerifiedProposal> {
        self.proposals.get(id)
    }

    pub fn has_voted(&self, id: &Hash32, voter: &KeyId) -> bool {
        self.votes
            .get(id)
            .is_some_and(|s| s.iter().any(|v| v.voter == *voter))
    }

    /// The state of every proposal at `now`.
    pub fn statuses(&self, root: &TrustRoot, now: u64) -> BTreeMap<Hash32, ActivationStatus> {
        let empty = BTreeSet::new();
        self.proposals
            .iter()
            .map(|(id, p)| {
                let votes: Vec<VerifiedVote> = self
                    .votes
                    .get(id)
                    .unwrap_or(&empty)
                    .iter()
                    .copied()
                    .collect();
                (
                    *id,
                    evaluate_verified(p, &root.roles.electorate, &votes, now),
                )
            })
            .collect()
    }

    /// Proposals that turned ACTIVE since the last call (each reported once).
    pub fn newly_active(&mut self, statuses: &BTreeMap<Hash32, ActivationStatus>) -> Vec<Hash32> {
        let mut out = Vec::new();
        for (id, s) in statuses {
            if s.state == ActivationState::Active && self.announced.insert(*id) {
                out.push(*id);
            }
        }
        out
    }
}

/// Builds the views the API and `activations.json` show.
pub fn views(
    book: &VotingBook,
    statuses: &BTreeMap<Hash32, ActivationStatus>,
    provides: &[String],
    me: Option<&KeyId>,
    withheld: &BTreeSet<Hash32>,
) -> Vec<ActivationView> {
    statuses
        .iter()
        .filter_map(|(id, s)| {
            let p = &book.proposal(id)?.proposal;
            Some(ActivationView {
                proposal: id.to_hex(),
                protocol: p.protocol.clone(),
                description: p.description.clone(),
                state: s.state.as_str().to_string(),
                weight_counted: s.weight_counted,
                weight_needed: s.weight_needed,
                weight_total: s.weight_total,
                start_at: p.start_at,
                lock_in_deadline: p.lock_in_deadline,
                locked_in_at: s.locked_in_at,
                activation_at: s.activation_at,
                supported: provides.contains(&p.protocol),
                voted: me.is_some_and(|m| book.has_voted(id, m)),
                withheld: withheld.contains(id),
            })
        })
        .collect()
}

/// Protocols that are ACTIVE but not supported by the running software.
pub fn upgrade_required(views: &[ActivationView]) -> Vec<String> {
    views
        .iter()
        .filter(|v| v.state == "ACTIVE" && !v.supported)
        .map(|v| v.protocol.clone())
        .collect()
}

/// Runs the operator's activation hook for one proposal (best effort, logged).
pub fn run_hook(hook: &[String], view: &ActivationView) {
    let Some((prog, args)) = hook.split_first() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env("UPSWARM_PROTOCOL", &view.protocol)
        .env("UPSWARM_PROPOSAL", &view.proposal)
        .env(
            "UPSWARM_ACTIVATION_AT",
            view.activation_at
                .map(|t| t.to_string())
                .unwrap_or_default(),
        );
    let protocol = view.protocol.clone();
    tokio::spawn(async move {
        match cmd.status().await {
            Ok(s) if s.success() => info!(%protocol, "activation hook ran"),
            Ok(s) => warn!(%protocol, "activation hook exited with {s}"),
            Err(e) => warn!(%protocol, "activation hook could not run: {e}"),
        }
    });
}
