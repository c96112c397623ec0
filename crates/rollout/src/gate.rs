//! Phase gates: when each phase opens, and whether the rollout halted.
//!
//! The rule, for a plan with phases `0..n` and a release whose rollout starts at `start`
//! (the manifest's `created_at`):
//!
//! 1. Reports dated more than `skew` after `now` are ignored. Every other report belongs to
//!    the phase of its node (by rank). A report is **in cohort** when its node's phase was
//!    already open at the report's time; otherwise it is **out of cohort** (a node that
//!    installed too early: flagged, never counted).
//! 2. Phase 0 opens at `start`.
//! 3. A *final* report is `healthy`, `failed` or `rolled_back`; a node's latest report
//!    counts. Phase `k` has *failed* when, at any moment, its in-cohort nodes satisfy
//!    `failures × 10000 > max_failure_bp × max(finals, needed_k)`; the rollout then halts at
//!    that moment, for the whole network: no further phase opens and nobody else installs.
//! 4. `needed_k = min(min_reports_k, known nodes in phases ≤ k)`, where known nodes are the
//!    node ids the caller has seen (so an empty canary cohort in a small fleet does not
//!    stall the rollout forever). Phase `k + 1` opens at
//!    `max(open_k + min_soak_k, time of the needed_k-th final in-cohort report from phases
//!    ≤ k)`, provided that is not after `now` and the rollout had not halted by then.
//! 5. Control messages: abort and yank halt; `advance` opens phases up to its index at its
//!    issue time (it does not undo a halt); pause is applied by [`crate::decide`].
//!
//! Everything is integer arithmetic on values every node has, so nodes that have seen the
//! same reports, control messages and known nodes compute the same [`Evaluation`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{Hash32, HealthStatus, KeyId, RolloutPlan};

use crate::cohort::{phase_of, rank};
use crate::control::ControlState;

/// A verified health report about this release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub node: KeyId,
    pub status: HealthStatus,
    pub at: u64,
}

/// A report with its node's phase already computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RankedReport {
    pub at: u64,
    pub phase: usize,
    pub node: KeyId,
    pub status: HealthStatus,
}

/// Why the rollout stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Halt {
    /// Too many failures in a phase.
    Failures {
        phase: usize,
        at: u64,
        failures: u32,
        reports: u32,
        max_failure_bp: u16,
    },
    /// Aborted by the control role.
    Aborted,
    /// Yanked by the control role: installed nodes roll back.
    Yanked,
}

/// Counts for one phase (in-cohort nodes, latest report each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseStats {
    /// Known nodes whose rank falls in this phase.
    pub known_nodes: usize,
    pub installed: u32,
    pub healthy: u32,
    pub failed: u32,
}

/// What the next phase waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateWait {
    /// The phase that is not open yet.
    pub phase: usize,
    /// The previous phase's soak ends then (unix seconds).
    pub soak_until: u64,
    /// Final reports so far from the phases before it, and how many are needed.
    pub reports: u32,
    pub reports_needed: u32,
}

/// The state of a rollout as seen from a set of reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Phases `0..open` are open.
    pub open: usize,
    /// When each phase opened.
    pub opened_at: Vec<Option<u64>>,
    pub halted: Option<Halt>,
    pub stats: Vec<PhaseStats>,
    /// Nodes that reported before their phase opened.
    pub out_of_cohort: Vec<KeyId>,
    /// Set when a further phase exists and is not open yet (and no halt).
    pub waiting: Option<GateWait>,
    pub control: ControlState,
}

/// Evaluates a rollout. See the module docs for the rule.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    plan: &RolloutPlan,
    release: &Hash32,
    start: u64,
    reports: &[Report],
    control: &ControlState,
    known_nodes: &BTreeSet<KeyId>,
    now: u64,
    skew: u64,
) -> Evaluation {
    let ranked: Vec<RankedReport> = reports
        .iter()
        .map(|r| RankedReport {
            at: r.at,
            phase: phase_of(plan, rank(release, &r.node)),
            node: r.node,
            status: r.status,
        })
        .collect();
    let mut known = vec![0usize; plan.phases.len()];
    for n in known_nodes {
        known[phase_of(plan, rank(release, n))] += 1;
    }
    evaluate_ranked(plan, start, ranked, control, &known, now, skew)
}

fn is_final(s: HealthStatus) -> bool {
    !matches!(s, HealthStatus::Installed)
}

/// [`evaluate`] with phases precomputed: `known_per_phase[k]` known nodes rank into phase
/// `k`. (The simulator ranks its nodes once and calls this.)
pub fn evaluate_ranked(
    plan: &RolloutPlan,
    start: u64,
    mut reports: Vec<RankedReport>,
    control: &ControlState,
    known_per_phase: &[usize],
    now: u64,
    skew: u64,
) -> Evaluation {
    let n = plan.phases.len();
    let horizon = now.saturating_add(skew);
    reports.retain(|r| r.at <= horizon && r.phase < n);
    reports.sort_unstable();
    reports.dedup();

    let mut opened_at: Vec<Option<u64>> = vec![None; n];
    let control_halt = if control.yanked {
        Some(Halt::Yanked)
    } else if control.aborted {
        Some(Halt::Aborted)
    } else {
        None
    };
    let mut halted = control_halt.clone();
    let mut waiting = None;
    let forced = control.advanced_to.filter(|(_, at)| *at <= now);

    if n > 0 && start <= now {
        opened_at[0] = Some(start);
    }
    let mut k = 0;
    while k < n {
        let Some(open_k) = opened_at[k] else { break };
        // Earliest failure of any open phase so far (phases ≤ k), at or after it opened.
        if control_halt.is_none() {
            halted = first_failure(plan, &reports, &opened_at, k, known_per_phase);
        }
        if k + 1 == n {
            break;
        }
        let p = &plan.phases[k];
        let known_upto: usize = known_per_phase.iter().take(k + 1).sum();
        let needed = (p.min_reports as usize).min(known_upto);
        let finals = finals_upto(&reports, &opened_at, k);
        let soak_until = open_k.saturating_add(p.min_soak_secs);
        let reports_at = if needed == 0 {
            Some(open_k)
        } else {
            finals.get(needed - 1).copied()
        };
        let gate_time = reports_at.map(|t| t.max(soak_until));
        let halt_time = match &halted {
            Some(Halt::Failures { at, .. }) => Some(*at),
            Some(_) => Some(0),
            None => None,
        };
        let mut next = gate_time.filter(|t| *t <= now && halt_time.is_none_or(|h| h > *t));
        if let Some((to, at)) = forced
            && k < to
            && halt_time.is_none()
        {
            next = Some(next.map_or(at, |t| t.min(at)).max(open_k));
        }
        match next {
            Some(t) => opened_at[k + 1] = Some(t),
            None => {
                if halted.is_none() {
                    waiting = Some(GateWait {
                        phase: k + 1,
                        soak_until,
                        reports: u32::try_from(finals.len()).unwrap_or(u32::MAX),
                        reports_needed: u32::try_from(needed).unwrap_or(u32::MAX),
                    });
                }
                break;
            }
        }
        k += 1;
    }
    if control_halt.is_none()
        && let Some(k) = opened_at.iter().rposition(Option::is_some)
    {
        halted = first_failure(plan, &reports, &opened_at, k, known_per_phase);
    }
    let open = opened_at.iter().take_while(|o| o.is_some()).count();

    // Stats and out-of-cohort reports.
    let mut latest: BTreeMap<KeyId, (usize, HealthStatus)> = BTreeMap::new();
    let mut out: BTreeSet<KeyId> = BTreeSet::new();
    for r in &reports {
        match opened_at[r.phase] {
            Some(t) if t <= r.at => {
                latest.insert(r.node, (r.phase, r.status));
            }
            _ => {
                out.insert(r.node);
            }
        }
    }
    let mut stats: Vec<PhaseStats> = (0..n)
        .map(|k| PhaseStats {
            known_nodes: known_per_phase.get(k).copied().unwrap_or(0),
            ..Default::default()
        })
        .collect();
    for (phase, status) in latest.values() {
        let s = &mut stats[*phase];
        match status {
            HealthStatus::Installed => s.installed += 1,
            HealthStatus::Healthy => s.healthy += 1,
            HealthStatus::Failed | HealthStatus::RolledBack => s.failed += 1,
        }
    }
    Evaluation {
        open,
        opened_at,
        halted,
        stats,
        out_of_cohort: out.into_iter().collect(),
        waiting,
        control: control.clone(),
    }
}

/// Times of final in-cohort reports from phases ≤ `k`, one per node (its first final
/// report), in order.
fn finals_upto(reports: &[RankedReport], opened_at: &[Option<u64>], k: usize) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    reports
        .iter()
        .filter(|r| {
            r.phase <= k && is_final(r.status) && opened_at[r.phase].is_some_and(|t| t <= r.at)
        })
        .filter(|r| seen.insert(r.node))
        .map(|r| r.at)
        .collect()
}

/// The earliest moment at which some open phase ≤ `k` exceeded its failure rate.
fn first_failure(
    plan: &RolloutPlan,
    reports: &[RankedReport],
    opened_at: &[Option<u64>],
    k: usize,
    known_per_phase: &[usize],
) -> Option<Halt> {
    let mut best: Option<Halt> = None;
    for (j, open) in opened_at.iter().enumerate().take(k + 1) {
        let Some(open) = *open else { continue };
        let p = &plan.phases[j];
        let needed = (p.min_reports as u64)
            .min(known_per_phase.get(j).copied().unwrap_or(0) as u64)
            .max(1);
        let mut latest: BTreeMap<KeyId, HealthStatus> = BTreeMap::new();
        let (mut finals, mut failures) = (0u64, 0u64);
        for r in reports.iter().filter(|r| r.phase == j && r.at >= open) {
            let before = latest.insert(r.node, r.status);
            for (s, sign) in [(before, false), (Some(r.status), true)] {
                let Some(s) = s else { continue };
                let (f, x) = (u64::from(is_final(s)), u64::from(s.is_failure()));
                if sign {
                    finals += f;
                    failures += x;
                } else {
                    finals -= f;
                    failures -= x;
                }
            }
            if failures * u64::from(BP_ALL) > u64::from(p.max_failure_bp) * finals.max(needed) {
                let halt = Halt::Failures {
                    phase: j,
                    at: r.at,
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    reports: u32::try_from(finals).unwrap_or(u32::MAX),
                    max_failure_bp: p.max_failure_bp,
                };
                if !matches!(&best, Some(Halt::Failures { at, .. }) if *at <= r.at) {
                    best = Some(halt);
                }
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use upswarm_proto::Phase;

    use super::*;
    use crate::control::control_state;
    use crate::decision::{Decision, decide};
    use upswarm_proto::ControlAction;

    /// Three phases: 10 % soak 100 s, 50 % soak 100 s, 100 %; max 20 % failures; 2 reports.
    fn plan() -> RolloutPlan {
        let p = |until_bp, soak| Phase {
            until_bp,
            min_soak_secs: soak,
            max_failure_bp: 2000,
            min_reports: 2,
        };
        RolloutPlan {
            phases: vec![p(1000, 100), p(5000, 100), p(10_000, 0)],
        }
    }

    fn node(i: u8) -> KeyId {
        KeyId([i; 32])
    }

    fn r(phase: usize, i: u8, status: HealthStatus, at: u64) -> RankedReport {
        RankedReport {
            at,
            phase,
            node: node(i),
            status,
        }
    }

    const KNOWN: [usize; 3] = [10, 40, 50];
    use HealthStatus::*;

    fn eval(reports: &[RankedReport], now: u64) -> Evaluation {
        evaluate_ranked(
            &plan(),
            1000,
            reports.to_vec(),
            &ControlState::default(),
            &KNOWN,
            now,
            30,
        )
    }

    #[test]
    fn phase_zero_opens_at_start_and_waits_for_soak_and_reports() {
        let e = eval(&[], 999);
        assert_eq!(e.open, 0, "not before the start");
        let e = eval(&[], 1000);
        assert_eq!(e.open, 1);
        assert_eq!(
            e.waiting,
            Some(GateWait {
                phase: 1,
                soak_until: 1100,
                reports: 0,
                reports_needed: 2
            })
        );
        // Two healthy canaries by 1050, but the soak runs to 1100.
        let reps = [r(0, 1, Healthy, 1040), r(0, 2, Healthy, 1050)];
        assert_eq!(eval(&reps, 1099).open, 1);
        let e = eval(&reps, 1100);
        assert_eq!(e.open, 2);
        assert_eq!(e.opened_at[1], Some(1100));
        // Soak done long ago, reports arrive late: the phase opens at the second report.
        let late = [r(0, 1, Healthy, 1200), r(0, 2, Healthy, 1300)];
        assert_eq!(eval(&late, 1250).open, 1);
        assert_eq!(eval(&late, 1300).opened_at[1], Some(1300));
        // Installed-only reports do not count.
        let pending = [r(0, 1, Installed, 1040), r(0, 2, Installed, 1050)];
        assert_eq!(eval(&pending, 5000).open, 1);
    }

    #[test]
    fn empty_canary_cohort_does_not_stall_the_rollout() {
        let known = [0, 5, 5];
        let e = evaluate_ranked(
            &plan(),
            1000,
            vec![],
            &ControlState::default(),
            &known,
            1100,
            0,
        );
        assert_eq!(e.open, 2, "no known canary: the soak alone opens phase 1");
        let e = evaluate_ranked(
            &plan(),
            1000,
            vec![],
            &ControlState::default(),
            &[1, 5, 5],
            5000,
            0,
        );
        assert_eq!(
            e.open, 1,
            "one known canary: its report is needed (min(2, 1) = 1)"
        );
        assert_eq!(e.waiting.unwrap().reports_needed, 1);
    }

    #[test]
    fn halts_just_over_the_failure_rate_not_at_it() {
        // 20 % allowed. 1 failure in 5 finals = exactly 20 %: not over.
        let mut reps: Vec<RankedReport> = (1..=4)
            .map(|i| r(0, i, Healthy, 1010 + u64::from(i)))
            .collect();
        reps.push(r(0, 5, Failed, 1020));
        let e = eval(&reps, 1200);
        assert!(e.halted.is_none(), "{e:?}");
        assert_eq!(e.open, 3);
        // A single failure before enough reports: 1 × 10000 > 2000 × max(1, 2) → halt.
        let e = eval(&[r(0, 1, Failed, 1010)], 1200);
        assert!(
            matches!(
                e.halted,
                Some(Halt::Failures {
                    phase: 0,
                    at: 1010,
                    failures: 1,
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(e.open, 1, "later phases never open");
        assert_eq!(
            decide(&e, 1, std::time::Duration::ZERO, 1200),
            Decision::Never {
                why: e.halted.clone().unwrap().to_string()
            }
        );
        // 2 of 5 failed = 40 %.
        let mut reps: Vec<RankedReport> = (1..=3)
            .map(|i| r(0, i, Healthy, 1010 + u64::from(i)))
            .collect();
        reps.push(r(0, 4, RolledBack, 1020));
        reps.push(r(0, 5, Failed, 1021));
        assert!(eval(&reps, 1200).halted.is_some());
    }

    #[test]
    fn a_halt_in_a_later_phase_stops_the_rest() {
        let mut reps = vec![r(0, 1, Healthy, 1010), r(0, 2, Healthy, 1011)];
        let e = eval(&reps, 1100);
        assert_eq!(e.open, 2);
        reps.push(r(1, 20, Failed, 1150));
        let e = eval(&reps, 5000);
        assert!(
            matches!(e.halted, Some(Halt::Failures { phase: 1, .. })),
            "{e:?}"
        );
        assert_eq!(e.open, 2);
    }

    #[test]
    fn out_of_cohort_reports_are_flagged_and_not_counted() {
        // Node 30 is in phase 2 but reports at 1010, long before phase 2 could open.
        let reps = [
            r(2, 30, Failed, 1010),
            r(0, 1, Healthy, 1011),
            r(0, 2, Healthy, 1012),
        ];
        let e = eval(&reps, 1100);
        assert_eq!(e.out_of_cohort, vec![node(30)]);
        assert!(e.halted.is_none(), "an out-of-cohort failure does not halt");
        assert_eq!(e.open, 2);
    }

    #[test]
    fn future_reports_beyond_the_skew_are_ignored() {
        let reps = [r(0, 1, Healthy, 1040), r(0, 2, Healthy, 1500)];
        // now 1100, skew 30: the report dated 1500 does not exist yet.
        assert_eq!(eval(&reps, 1100).open, 1);
        assert_eq!(eval(&reps, 1470).open, 1, "still beyond now + skew");
        assert_eq!(eval(&reps, 1500).open, 2);
    }

    #[test]
    fn control_messages() {
        let reps = [r(0, 1, Healthy, 1010), r(0, 2, Healthy, 1011)];
        let paused = control_state(&[(ControlAction::Pause, 1005)]);
        let e = evaluate_ranked(&plan(), 1000, reps.to_vec(), &paused, &KNOWN, 1200, 0);
        assert_eq!(
            decide(&e, 0, std::time::Duration::ZERO, 1200),
            Decision::Paused
        );
        let resumed = control_state(&[(ControlAction::Pause, 1005), (ControlAction::Resume, 1006)]);
        let e = evaluate_ranked(&plan(), 1000, reps.to_vec(), &resumed, &KNOWN, 1200, 0);
        assert_eq!(
            decide(&e, 0, std::time::Duration::ZERO, 1200),
            Decision::Install
        );
        let aborted = control_state(&[(ControlAction::Abort, 1005)]);
        let e = evaluate_ranked(&plan(), 1000, reps.to_vec(), &aborted, &KNOWN, 1200, 0);
        assert_eq!(e.halted, Some(Halt::Aborted));
        let yanked = control_state(&[(ControlAction::Yank, 1005)]);
        let e = evaluate_ranked(&plan(), 1000, reps.to_vec(), &yanked, &KNOWN, 1200, 0);
        assert_eq!(e.halted, Some(Halt::Yanked));
        // Force-advance to phase 2 at 1020 with no reports at all.
        let adv = control_state(&[(ControlAction::Advance { to_phase: 2 }, 1020)]);
        let e = evaluate_ranked(&plan(), 1000, vec![], &adv, &KNOWN, 1019, 0);
        assert_eq!(e.open, 1, "not before the message's time");
        let e = evaluate_ranked(&plan(), 1000, vec![], &adv, &KNOWN, 1020, 0);
        assert_eq!(e.open, 3);
        assert_eq!(e.opened_at, vec![Some(1000), Some(1020), Some(1020)]);
    }

    #[test]
    fn decisions_inside_an_open_phase_respect_the_delay() {
        let e = eval(&[], 1000);
        assert_eq!(
            decide(&e, 0, std::time::Duration::from_secs(30), 1010),
            Decision::InstallAt { at: 1030 }
        );
        assert_eq!(
            decide(&e, 0, std::time::Duration::from_secs(30), 1030),
            Decision::Install
        );
        assert_eq!(
            decide(&e, 1, std::time::Duration::ZERO, 1030),
            Decision::WaitForPhase { phase: 1, open: 1 }
        );
    }

    #[test]
    fn evaluate_ranks_real_node_ids() {
        let release = Hash32([9; 32]);
        let known: BTreeSet<KeyId> = (0..50u8).map(node).collect();
        let e = evaluate(
            &plan(),
            &release,
            1000,
            &[],
            &ControlState::default(),
            &known,
            1000,
            0,
        );
        assert_eq!(e.stats.iter().map(|s| s.known_nodes).sum::<usize>(), 50);
    }

    fn arb_reports() -> impl Strategy<Value = Vec<RankedReport>> {
        let status = prop_oneof![
            Just(Installed),
            Just(Healthy),
            Just(Failed),
            Just(RolledBack)
        ];
        proptest::collection::vec((0usize..3, 0u8..20, status, 990u64..1400), 0..40)
            .prop_map(|v| v.into_iter().map(|(p, n, s, at)| r(p, n, s, at)).collect())
    }

    proptest! {
        #[test]
        fn order_and_duplicates_never_change_the_result(reps in arb_reports(), now in 1000u64..1500, seed in any::<u64>()) {
            let base = eval(&reps, now);
            let mut shuffled = reps.clone();
            shuffled.extend(reps.iter().take(5).copied());
            let len = shuffled.len().max(1);
            for i in 0..shuffled.len() {
                shuffled.swap(i, (seed as usize).wrapping_mul(i + 7) % len);
            }
            prop_assert_eq!(eval(&shuffled, now), base);
        }

        #[test]
        fn more_failures_never_reopen_a_halted_rollout(reps in arb_reports(), extra in arb_reports(), now in 1000u64..1500) {
            let e = eval(&reps, now);
            if e.halted.is_some() {
                let mut more = reps.clone();
                more.extend(extra.into_iter().map(|mut x| { x.status = Failed; x }));
                let e2 = eval(&more, now);
                prop_assert!(e2.halted.is_some());
                prop_assert!(e2.open <= e.open);
            }
        }

        #[test]
        fn time_only_moves_forward(reps in arb_reports(), now in 1000u64..1400, later in 0u64..200) {
            let a = eval(&reps, now);
            let b = eval(&reps, now + later);
            prop_assert!(b.open >= a.open || b.halted.is_some());
        }
    }
}
