//! The activation state machine: a pure function of (proposal, electorate, votes, now).
//!
//! See the crate documentation for the rule; `docs/activation.md` has a worked example.
//!
//! Owns the counting of votes and the state. It must not verify signatures (it takes
//! `VerifiedVote`s), read the clock (callers pass `now`) or do I/O.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use upswarm_proto::{Electorate, Hash32, KeyId, Proposal};

use crate::{VerifiedProposal, VerifiedVote};

/// Where a proposal stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivationState {
    /// `now < start_at`: votes are not counted yet.
    Defined,
    /// Voting is open and the threshold has not been reached (as far as this node knows).
    Started,
    /// The threshold was reached (or the deadline passed with `lock_in_on_timeout`);
    /// activation is scheduled at `activation_at`.
    LockedIn,
    /// `now ≥ activation_at`: nodes speak the new protocol.
    Active,
    /// The deadline passed without reaching the threshold.
    Failed,
}

impl ActivationState {
    /// The upper-case name used in logs, the API and this crate's docs.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationState::Defined => "DEFINED",
            ActivationState::Started => "STARTED",
            ActivationState::LockedIn => "LOCKED_IN",
            ActivationState::Active => "ACTIVE",
            ActivationState::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ActivationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a vote did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// The vote is for another proposal (only from [`evaluate_verified`]).
    OtherProposal,
    /// The voter is not in the electorate evaluated against (never was, or was removed by a
    /// root rotation).
    NotAVoter,
    /// Dated before the proposal's `start_at`.
    BeforeStart,
    /// Dated after the proposal's `lock_in_deadline`.
    AfterDeadline,
    /// Dated after `now`; it counts once the clock reaches its time.
    InFuture,
    /// The voter already counts with an earlier vote.
    Superseded,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoreReason::OtherProposal => "vote is for another proposal",
            IgnoreReason::NotAVoter => "voter key is not in the current electorate",
            IgnoreReason::BeforeStart => "dated before the proposal's start time",
            IgnoreReason::AfterDeadline => "dated after the proposal's lock-in deadline",
            IgnoreReason::InFuture => "dated in the future; counts once the clock reaches it",
            IgnoreReason::Superseded => "the voter already counts with an earlier vote",
        })
    }
}

/// A vote that did not count, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IgnoredVote {
    pub voter: KeyId,
    /// The vote's time (unix seconds).
    pub at: u64,
    pub reason: IgnoreReason,
}

/// The result of [`evaluate`]: a deterministic function of its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationStatus {
    /// The proposal's protocol / feature name.
    pub protocol: String,
    pub state: ActivationState,
    /// Total weight of the counted votes (all of them, also those after the lock-in time).
    pub weight_counted: u64,
    /// `ceil(threshold_bp × weight_total / 10000)`.
    pub weight_needed: u64,
    /// Total weight of the electorate.
    pub weight_total: u64,
    /// Unix seconds: t*, or the deadline for a lock-in on timeout. `None` until locked in.
    pub locked_in_at: Option<u64>,
    /// Unix seconds: `locked_in_at + activation_delay_secs` (saturating).
    pub activation_at: Option<u64>,
    /// Voters whose vote counts, by key id.
    pub voters_counted: Vec<KeyId>,
    /// Votes that do not count, sorted by (voter, time, reason), each listed once.
    pub ignored: Vec<IgnoredVote>,
}

impl fmt::Display for ActivationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol {}: {} — weight {} of {} needed ({} total), {} voter(s) counted",
            self.protocol,
            self.state,
            self.weight_counted,
            self.weight_needed,
            self.weight_total,
            self.voters_counted.len()
        )?;
        if let Some(t) = self.locked_in_at {
            write!(f, "; locked in at {t}")?;
        }
        if let Some(t) = self.activation_at {
            write!(f, "; activation at {t}")?;
        }
        if !self.ignored.is_empty() {
            write!(f, "; {} vote(s) ignored", self.ignored.len())?;
        }
        Ok(())
    }
}

/// `ceil(threshold_bp × total / 10000)`, saturating at `u64::MAX`.
pub fn weight_needed(threshold_bp: u16, total: u64) -> u64 {
    let n = (u128::from(threshold_bp) * u128::from(total)).div_ceil(10_000);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Evaluates `proposal` at time `now` (unix seconds) from `votes`, with weights from
/// `electorate` (the electorate of the trust root current at evaluation time).
///
/// `votes` must already be filtered to this proposal: their `proposal` field is not looked
/// at (use [`evaluate_verified`] to have it checked). Order and duplicates do not matter.
pub fn evaluate(
    proposal: &Proposal,
    electorate: &Electorate,
    votes: &[VerifiedVote],
    now: u64,
) -> ActivationStatus {
    evaluate_inner(proposal, None, electorate, votes, now)
}

/// Like [`evaluate`], but votes whose `proposal` is not `proposal.id` are ignored with
/// [`IgnoreReason::OtherProposal`].
pub fn evaluate_verified(
    proposal: &VerifiedProposal,
    electorate: &Electorate,
    votes: &[VerifiedVote],
    now: u64,
) -> ActivationStatus {
    evaluate_inner(
        &proposal.proposal,
        Some(proposal.id),
        electorate,
        votes,
        now,
    )
}

fn evaluate_inner(
    p: &Proposal,
    id: Option<Hash32>,
    electorate: &Electorate,
    votes: &[VerifiedVote],
    now: u64,
) -> ActivationStatus {
    // Weights by key id; the first entry wins should an (invalid) electorate list a key twice.
    let mut weights: BTreeMap<KeyId, u64> = BTreeMap::new();
    for v in &electorate.voters {
        weights.entry(v.key.key_id()).or_insert(v.weight);
    }
    let total = weights.values().fold(0u64, |acc, w| acc.saturating_add(*w));
    let needed = weight_needed(p.threshold_bp, total);

    // The distinct votes, in a canonical order: order and duplicates of the input vanish.
    let distinct: BTreeSet<(KeyId, u64, Hash32)> =
        votes.iter().map(|v| (v.voter, v.at, v.proposal)).collect();

    let mut ignored: BTreeSet<IgnoredVote> = BTreeSet::new();
    // Per voter, its earliest eligible vote. `distinct` is sorted by (voter, at), so the first
    // eligible vote seen for a voter is its earliest.
    let mut counted: BTreeMap<KeyId, u64> = BTreeMap::new();
    for &(voter, at, prop) in &distinct {
        let reason = if id.is_some_and(|id| id != prop) {
            Some(IgnoreReason::OtherProposal)
        } else if !weights.contains_key(&voter) {
            Some(IgnoreReason::NotAVoter)
        } else if at < p.start_at {
            Some(IgnoreReason::BeforeStart)
        } else if at > p.lock_in_deadline {
            Some(IgnoreReason::AfterDeadline)
        } else if at > now {
            Some(IgnoreReason::InFuture)
        } else if let Entry::Vacant(slot) = counted.entry(voter) {
            slot.insert(at);
            None
        } else {
            Some(IgnoreReason::Superseded)
        };
        if let Some(reason) = reason {
            ignored.insert(IgnoredVote { voter, at, reason });
        }
    }

    // Cumulative weight in vote-time order; t* is the time of the vote that reaches `needed`.
    let mut timeline: Vec<(u64, u64)> = counted
        .iter()
        .map(|(k, at)| (*at, weights.get(k).copied().unwrap_or(0)))
        .collect();
    timeline.sort_unstable();
    let mut cumulative = 0u64;
    let mut t_star = None;
    for (at, w) in &timeline {
        cumulative = cumulative.saturating_add(*w);
        if t_star.is_none() && cumulative >= needed {
            t_star = Some(*at);
        }
    }
    let weight_counted = cumulative;

    // Every counted vote is dated ≤ min(now, deadline), so t* (if any) is already past.
    let locked_in_at = match t_star {
        Some(t) => Some(t),
        None if p.lock_in_on_timeout && now >= p.lock_in_deadline => Some(p.lock_in_deadline),
        None => None,
    };
    let activation_at = locked_in_at.map(|t| t.saturating_add(p.activation_delay_secs));
    let state = match activation_at {
        Some(a) if now >= a => ActivationState::Active,
        Some(_) => ActivationState::LockedIn,
        None if now < p.start_at => ActivationState::Defined,
        None if now > p.lock_in_deadline => ActivationState::Failed,
        None => ActivationState::Started,
    };

    ActivationStatus {
        protocol: p.protocol.clone(),
        state,
        weight_counted,
        weight_needed: needed,
        weight_total: total,
        locked_in_at,
        activation_at,
        voters_counted: counted.into_keys().collect(),
        ignored: ignored.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use upswarm_proto::activation::ACTIVATION_VERSION;
    use upswarm_proto::{PublicKey, Voter};

    use super::*;

    const START: u64 = 1_000;
    const DEADLINE: u64 = 2_000;
    const DELAY: u64 = 600;
    const PID: Hash32 = Hash32([0xaa; 32]);

    fn pk(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    fn kid(n: u8) -> KeyId {
        pk(n).key_id()
    }

    fn proposal(threshold_bp: u16, on_timeout: bool) -> Proposal {
        Proposal {
            v: ACTIVATION_VERSION,
            protocol: "sync-v2".into(),
            description: String::new(),
            threshold_bp,
            start_at: START,
            lock_in_deadline: DEADLINE,
            activation_delay_secs: DELAY,
            lock_in_on_timeout: on_timeout,
        }
    }

    /// Voters 1..=n with the given weights.
    fn electorate(weights: &[u64]) -> Electorate {
        Electorate {
            voters: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Voter {
                    key: pk(i as u8 + 1),
                    weight: *w,
                })
                .collect(),
        }
    }

    fn vote(voter: u8, at: u64) -> VerifiedVote {
        VerifiedVote {
            proposal: PID,
            voter: kid(voter),
            at,
        }
    }

    /// Ten voters of weight 1, 90 %.
    fn ten() -> (Proposal, Electorate) {
        (proposal(9000, false), electorate(&[1; 10]))
    }

    fn nine_votes_from(first_at: u64) -> Vec<VerifiedVote> {
        (1..=9).map(|i| vote(i, first_at + u64::from(i))).collect()
    }

    #[test]
    fn weight_needed_rounds_up() {
        assert_eq!(weight_needed(9000, 10), 9);
        assert_eq!(weight_needed(9000, 11), 10); // 9.9 → 10
        assert_eq!(weight_needed(6667, 3), 3); // 2.0001 → 3
        assert_eq!(weight_needed(5000, 3), 2); // 1.5 → 2
        assert_eq!(weight_needed(10000, u64::MAX), u64::MAX);
        assert_eq!(weight_needed(1, 0), 0);
    }

    #[test]
    fn defined_before_start() {
        let (p, e) = ten();
        let s = evaluate(&p, &e, &[], START - 1);
        assert_eq!(s.state, ActivationState::Defined);
        assert_eq!((s.weight_needed, s.weight_total), (9, 10));
        assert_eq!(evaluate(&p, &e, &[], START).state, ActivationState::Started);
    }

    #[test]
    fn threshold_reached_early_locks_in_then_activates() {
        let (p, e) = ten();
        let votes = nine_votes_from(1100); // the 9th vote is at 1109
        let s = evaluate(&p, &e, &votes, 1108);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!(s.weight_counted, 8);

        let s = evaluate(&p, &e, &votes, 1109);
        assert_eq!(s.state, ActivationState::LockedIn);
        assert_eq!(s.locked_in_at, Some(1109));
        assert_eq!(s.activation_at, Some(1109 + DELAY));
        assert_eq!(s.weight_counted, 9);
        assert_eq!(s.voters_counted.len(), 9);

        assert_eq!(
            evaluate(&p, &e, &votes, 1109 + DELAY - 1).state,
            ActivationState::LockedIn
        );
        let s = evaluate(&p, &e, &votes, 1109 + DELAY);
        assert_eq!(s.state, ActivationState::Active);
        // Long after the deadline it stays active.
        assert_eq!(
            evaluate(&p, &e, &votes, DEADLINE + 10_000).state,
            ActivationState::Active
        );
        let text = s.to_string();
        assert!(text.contains("ACTIVE") && text.contains("9 of 9"), "{text}");
    }

    #[test]
    fn later_votes_do_not_move_lock_in() {
        let (p, e) = ten();
        let mut votes = nine_votes_from(1100);
        votes.push(vote(10, 1500));
        let s = evaluate(&p, &e, &votes, 1600);
        assert_eq!(s.locked_in_at, Some(1109));
        assert_eq!(s.weight_counted, 10);
    }

    #[test]
    fn reached_exactly_at_the_deadline_counts() {
        let (p, e) = ten();
        let mut votes = nine_votes_from(1100);
        votes[8].at = DEADLINE; // the 9th vote, at the deadline itself
        let s = evaluate(&p, &e, &votes, DEADLINE);
        assert_eq!(s.state, ActivationState::LockedIn);
        assert_eq!(s.locked_in_at, Some(DEADLINE));
        assert_eq!(s.activation_at, Some(DEADLINE + DELAY));
        assert_eq!(
            evaluate(&p, &e, &votes, DEADLINE + DELAY).state,
            ActivationState::Active
        );

        // One second later it is too late.
        votes[8].at = DEADLINE + 1;
        let s = evaluate(&p, &e, &votes, DEADLINE + 1);
        assert_eq!(s.state, ActivationState::Failed);
        assert!(s.ignored.contains(&IgnoredVote {
            voter: kid(9),
            at: DEADLINE + 1,
            reason: IgnoreReason::AfterDeadline
        }));
    }

    #[test]
    fn never_reached_fails_after_the_deadline() {
        let (p, e) = ten();
        let votes: Vec<_> = (1..=8).map(|i| vote(i, 1100)).collect();
        // At the deadline a vote dated at the deadline could still come: not failed yet.
        assert_eq!(
            evaluate(&p, &e, &votes, DEADLINE).state,
            ActivationState::Started
        );
        let s = evaluate(&p, &e, &votes, DEADLINE + 1);
        assert_eq!(s.state, ActivationState::Failed);
        assert_eq!((s.locked_in_at, s.activation_at), (None, None));
        assert_eq!(s.weight_counted, 8);
    }

    #[test]
    fn lock_in_on_timeout() {
        let e = electorate(&[1; 10]);
        let p = proposal(9000, true);
        let votes: Vec<_> = (1..=3).map(|i| vote(i, 1100)).collect();
        assert_eq!(
            evaluate(&p, &e, &votes, DEADLINE - 1).state,
            ActivationState::Started
        );
        let s = evaluate(&p, &e, &votes, DEADLINE);
        assert_eq!(s.state, ActivationState::LockedIn);
        assert_eq!(s.locked_in_at, Some(DEADLINE));
        assert_eq!(s.activation_at, Some(DEADLINE + DELAY));
        assert_eq!(
            evaluate(&p, &e, &votes, DEADLINE + DELAY).state,
            ActivationState::Active
        );
        // With no votes at all, too.
        assert_eq!(
            evaluate(&p, &e, &[], DEADLINE + DELAY).state,
            ActivationState::Active
        );
        // Reaching the threshold before the deadline still locks in at t*.
        let s = evaluate(&p, &e, &nine_votes_from(1100), DEADLINE + 1);
        assert_eq!(s.locked_in_at, Some(1109));
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let (p, e) = ten();
        let votes = nine_votes_from(1100);
        let base = evaluate(&p, &e, &votes, 1500);
        let mut mixed: Vec<_> = votes.iter().rev().copied().collect();
        mixed.extend(votes.iter().step_by(2).copied());
        mixed.push(vote(3, 1103));
        assert_eq!(evaluate(&p, &e, &mixed, 1500), base);
    }

    #[test]
    fn a_voters_earliest_eligible_vote_counts() {
        let (p, e) = ten();
        let mut votes = nine_votes_from(1100);
        // Voter 9 also voted later, before the start, and after the deadline.
        votes.extend([vote(9, 1300), vote(9, START - 5), vote(9, DEADLINE + 5)]);
        let s = evaluate(&p, &e, &votes, DEADLINE + 100);
        assert_eq!(s.locked_in_at, Some(1109));
        assert_eq!(s.weight_counted, 9);
        let nine: Vec<_> = s.ignored.iter().filter(|i| i.voter == kid(9)).collect();
        assert_eq!(
            nine.iter().map(|i| (i.at, i.reason)).collect::<Vec<_>>(),
            vec![
                (START - 5, IgnoreReason::BeforeStart),
                (1300, IgnoreReason::Superseded),
                (DEADLINE + 5, IgnoreReason::AfterDeadline),
            ]
        );
    }

    #[test]
    fn votes_before_start_do_not_count() {
        let (p, e) = ten();
        let votes: Vec<_> = (1..=9).map(|i| vote(i, START - 1)).collect();
        let s = evaluate(&p, &e, &votes, 1500);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!(s.weight_counted, 0);
        assert_eq!(s.ignored.len(), 9);
    }

    #[test]
    fn non_electorate_keys_are_ignored() {
        let (p, e) = ten();
        let mut votes: Vec<_> = (1..=8).map(|i| vote(i, 1100)).collect();
        votes.extend((50..60).map(|i| vote(i, 1100)));
        let s = evaluate(&p, &e, &votes, 1500);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!(s.weight_counted, 8);
        assert_eq!(s.ignored.len(), 10);
        assert!(
            s.ignored
                .iter()
                .all(|i| i.reason == IgnoreReason::NotAVoter)
        );
    }

    #[test]
    fn a_voter_removed_by_rotation_no_longer_counts() {
        let (p, old) = ten();
        let votes = nine_votes_from(1100);
        assert_eq!(
            evaluate(&p, &old, &votes, 1500).state,
            ActivationState::LockedIn
        );
        // The new root drops voter 9 (and adds voter 11, who has not voted): 8 of 9 needed.
        let mut new = old.clone();
        new.voters.retain(|v| v.key != pk(9));
        new.voters.push(Voter {
            key: pk(11),
            weight: 1,
        });
        let s = evaluate(&p, &new, &votes, 1500);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!((s.weight_counted, s.weight_needed), (8, 9));
        assert!(s.ignored.contains(&IgnoredVote {
            voter: kid(9),
            at: 1109,
            reason: IgnoreReason::NotAVoter
        }));
        // Once voter 11 votes, it locks in at that vote.
        let mut more = votes.clone();
        more.push(vote(11, 1400));
        assert_eq!(evaluate(&p, &new, &more, 1500).locked_in_at, Some(1400));
    }

    #[test]
    fn weights_matter() {
        // Voter 1 has weight 8 of 10: 80 % alone locks in; voters 2 and 3 cannot without it.
        let e = electorate(&[8, 1, 1]);
        let p = proposal(8000, false);
        let s = evaluate(&p, &e, &[vote(2, 1100), vote(3, 1200)], 1500);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!((s.weight_counted, s.weight_needed), (2, 8));
        let s = evaluate(&p, &e, &[vote(2, 1100), vote(1, 1300)], 1500);
        assert_eq!(s.locked_in_at, Some(1300));
        assert_eq!(s.weight_counted, 9);
    }

    #[test]
    fn exactly_met_versus_one_short() {
        // Weights 5, 3, 2 (total 10), 70 %: needed 7.
        let e = electorate(&[5, 3, 2]);
        let p = proposal(7000, false);
        let met = evaluate(&p, &e, &[vote(1, 1100), vote(3, 1200)], 1500);
        assert_eq!((met.weight_counted, met.weight_needed), (7, 7));
        assert_eq!(met.locked_in_at, Some(1200)); // 5 + 2 = 7: exactly met
        let p = proposal(7001, false); // needed ceil(7.001) = 8
        let s = evaluate(&p, &e, &[vote(1, 1100), vote(3, 1200)], 1500);
        assert_eq!((s.weight_counted, s.weight_needed), (7, 8));
        assert_eq!(s.state, ActivationState::Started);
    }

    #[test]
    fn future_dated_vote_counts_only_once_now_reaches_it() {
        let (p, e) = ten();
        let mut votes: Vec<_> = (1..=8).map(|i| vote(i, 1100)).collect();
        votes.push(vote(9, 1800));
        let s = evaluate(&p, &e, &votes, 1200);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!(s.weight_counted, 8);
        assert!(s.ignored.contains(&IgnoredVote {
            voter: kid(9),
            at: 1800,
            reason: IgnoreReason::InFuture
        }));
        assert_eq!(
            evaluate(&p, &e, &votes, 1799).state,
            ActivationState::Started
        );
        let s = evaluate(&p, &e, &votes, 1800);
        assert_eq!(s.state, ActivationState::LockedIn);
        assert_eq!(s.locked_in_at, Some(1800));
        assert!(s.ignored.is_empty());
    }

    #[test]
    fn late_vote_dated_before_t_star_moves_it_earlier() {
        // The documented limit: a node that had not seen voter 1's vote computes a later t*.
        let (p, e) = ten();
        let seen: Vec<_> = (2..=10).map(|i| vote(i, 1200 + u64::from(i))).collect();
        assert_eq!(evaluate(&p, &e, &seen, 1500).locked_in_at, Some(1210));
        let mut all = seen.clone();
        all.push(vote(1, 1100));
        assert_eq!(evaluate(&p, &e, &all, 1500).locked_in_at, Some(1209));
    }

    /// The worked example of `docs/activation.md`.
    #[test]
    fn worked_example_from_the_docs() {
        // A 40, B 25, C 15, D 10, E 10; 75 %; start 10 000, deadline 100 000, delay 3 600.
        let e = electorate(&[40, 25, 15, 10, 10]);
        let p = Proposal {
            threshold_bp: 7500,
            start_at: 10_000,
            lock_in_deadline: 100_000,
            activation_delay_secs: 3_600,
            ..proposal(7500, false)
        };
        let (a, b, c, d, f) = (1, 2, 3, 4, 6);
        let votes = [
            vote(f, 11_000),
            vote(b, 12_000),
            vote(d, 15_000),
            vote(a, 20_000),
            vote(a, 22_000),
            vote(c, 25_000),
            vote(b, 9_000),
        ];
        let s = evaluate(&p, &e, &votes, 21_000);
        assert_eq!(s.state, ActivationState::LockedIn);
        assert_eq!(
            (s.weight_counted, s.weight_needed, s.weight_total),
            (75, 75, 100)
        );
        assert_eq!(s.locked_in_at, Some(20_000));
        assert_eq!(s.activation_at, Some(23_600));
        assert_eq!(s.ignored.len(), 4); // F, A's second vote, C (future at 21 000), B's early one
        let s = evaluate(&p, &e, &votes, 23_600);
        assert_eq!(s.state, ActivationState::Active);
        assert_eq!(s.weight_counted, 75); // C's vote is still in the future
        // Node X has not seen D's vote yet.
        let without_d: Vec<_> = votes
            .iter()
            .copied()
            .filter(|v| v.voter != kid(d))
            .collect();
        let x = evaluate(&p, &e, &without_d, 26_000);
        assert_eq!(x.state, ActivationState::LockedIn);
        assert_eq!(
            (x.locked_in_at, x.activation_at),
            (Some(25_000), Some(28_600))
        );
        // Once it arrives, X agrees with everyone and activates at once.
        let x = evaluate(&p, &e, &votes, 26_000);
        assert_eq!(
            (x.state, x.activation_at),
            (ActivationState::Active, Some(23_600))
        );
    }

    #[test]
    fn evaluate_verified_checks_the_proposal_id() {
        let (p, e) = ten();
        let vp = VerifiedProposal {
            id: PID,
            proposal: p.clone(),
            envelope: upswarm_proto::SignedEnvelope::unsigned(Vec::new()),
            tally: upswarm_trust::count_signatures(
                "release",
                &upswarm_proto::Role {
                    keys: Vec::new(),
                    threshold: 0,
                },
                upswarm_proto::Context::Proposal,
                &upswarm_proto::SignedEnvelope::unsigned(Vec::new()),
            ),
        };
        let mut votes = nine_votes_from(1100);
        votes[0].proposal = Hash32([0xbb; 32]);
        let s = evaluate_verified(&vp, &e, &votes, 1500);
        assert_eq!(s.state, ActivationState::Started);
        assert_eq!(s.ignored[0].reason, IgnoreReason::OtherProposal);
        // `evaluate` trusts the caller's filtering.
        assert_eq!(
            evaluate(&p, &e, &votes, 1500).state,
            ActivationState::LockedIn
        );
    }

    #[test]
    fn status_is_serialisable_and_displayable() {
        fn serialisable<T: Serialize>(_: &T) {}
        let (p, e) = ten();
        let s = evaluate(&p, &e, &nine_votes_from(1100), 1500);
        serialisable(&s);
        assert_eq!(ActivationState::LockedIn.to_string(), "LOCKED_IN");
        let text = s.to_string();
        assert!(
            text.contains("LOCKED_IN") && text.contains("locked in at 1109"),
            "{text}"
        );
    }

    fn arb_votes() -> impl Strategy<Value = Vec<VerifiedVote>> {
        // Voters 1..=12 (11 and 12 are outside the electorate), times around the window.
        proptest::collection::vec((1u8..=12, 900u64..2100), 0..30)
            .prop_map(|v| v.into_iter().map(|(k, at)| vote(k, at)).collect())
    }

    fn arb_case() -> impl Strategy<Value = (Proposal, Electorate)> {
        (
            proptest::collection::vec(1u64..5, 10),
            1u16..=10_000,
            any::<bool>(),
        )
            .prop_map(|(w, bp, t)| (proposal(bp, t), electorate(&w)))
    }

    proptest! {
        #[test]
        fn permutation_and_duplication_never_change_the_status(
            (p, e) in arb_case(),
            votes in arb_votes(),
            now in 900u64..3000,
            seed in any::<u64>(),
            dups in 0usize..10,
        ) {
            let base = evaluate(&p, &e, &votes, now);
            let mut mixed = votes.clone();
            mixed.extend(votes.iter().cycle().take(dups.min(votes.len() * 3)).copied());
            let len = mixed.len().max(1);
            for i in 0..mixed.len() {
                mixed.swap(i, (seed as usize).wrapping_mul(i + 7) % len);
            }
            prop_assert_eq!(evaluate(&p, &e, &mixed, now), base);
        }

        #[test]
        fn adding_votes_never_moves_lock_in_later(
            (p, e) in arb_case(),
            votes in arb_votes(),
            extra in arb_votes(),
            now in 900u64..3000,
        ) {
            let before = evaluate(&p, &e, &votes, now);
            let mut more = votes.clone();
            more.extend(extra);
            let after = evaluate(&p, &e, &more, now);
            if let Some(t) = before.locked_in_at {
                prop_assert!(after.locked_in_at.is_some_and(|u| u <= t),
                    "before {:?}, after {:?}", before.locked_in_at, after.locked_in_at);
            }
            prop_assert!(after.weight_counted >= before.weight_counted);
        }

        #[test]
        fn the_status_is_consistent(
            (p, e) in arb_case(),
            votes in arb_votes(),
            now in 900u64..3000,
        ) {
            let s = evaluate(&p, &e, &votes, now);
            match s.state {
                ActivationState::Defined | ActivationState::Started | ActivationState::Failed => {
                    prop_assert!(s.locked_in_at.is_none());
                }
                ActivationState::LockedIn => {
                    prop_assert!(s.activation_at.is_some_and(|a| now < a));
                }
                ActivationState::Active => {
                    prop_assert!(s.activation_at.is_some_and(|a| now >= a));
                }
            }
            if let Some(t) = s.locked_in_at {
                prop_assert!(t >= p.start_at && t <= p.lock_in_deadline && t <= now);
            }
            prop_assert!(s.weight_counted <= s.weight_total);
        }
    }
}
