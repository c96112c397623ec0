use std::time::Duration;

use upswarm_proto::{ControlAction, Phase, UpdateType};

use super::*;
use crate::control::control_state;
use crate::decision::{Decision, WaitReason, decide};

use HealthStatus::*;

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
const START: u64 = 1000;

fn eval(reports: &[RankedReport], now: u64) -> Evaluation {
    eval_c(reports, &ControlState::default(), now)
}

fn eval_c(reports: &[RankedReport], control: &ControlState, now: u64) -> Evaluation {
    evaluate_ranked(&plan(), START, reports.to_vec(), control, &KNOWN, now, 30)
}

/// Two healthy canaries by 1050: phase 1 opens at the end of phase 0's soak (1100).
fn canaries_ok() -> Vec<RankedReport> {
    vec![r(0, 1, Healthy, 1040), r(0, 2, Healthy, 1050)]
}

fn ctl(msgs: &[(ControlAction, u64)]) -> ControlState {
    control_state(msgs)
}

#[test]
fn phase_zero_opens_at_start_then_waits_for_soak_and_reports() {
    let e = eval(&[], 999);
    assert_eq!(e.open, 0, "not before the start");
    assert_eq!(e.waiting.as_ref().unwrap().opens_at, Some(1000));
    let e = eval(&[], 1000);
    assert_eq!(e.open, 1);
    let w = e.waiting.unwrap();
    assert_eq!(
        (
            w.phase,
            w.soak_until,
            w.reports,
            w.reports_needed,
            w.opens_at
        ),
        (1, 1100, 0, 2, None)
    );
    // Two healthy canaries by 1050, but the soak runs to 1100.
    let e = eval(&canaries_ok(), 1099);
    assert_eq!(e.open, 1);
    assert_eq!(e.waiting.unwrap().opens_at, Some(1100), "scheduled");
    let e = eval(&canaries_ok(), 1100);
    assert_eq!(e.open, 2);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1100), None]);
    // Soak done long ago, reports arrive late: the phase opens at the second report.
    let late = [r(0, 1, Healthy, 1200), r(0, 2, Healthy, 1300)];
    assert_eq!(eval(&late, 1250).open, 1);
    assert_eq!(eval(&late, 1300).opened_at[1], Some(1300));
    // Installed-only reports are pending: they do not count.
    let pending = [r(0, 1, Installed, 1040), r(0, 2, Installed, 1050)];
    let e = eval(&pending, 5000);
    assert_eq!(e.open, 1);
    assert_eq!(e.stats[0].installed, 2);
    assert_eq!(e.waiting.unwrap().reports, 0);
}

#[test]
fn a_quorum_counts_only_the_previous_phase_and_each_node_once() {
    let mut reps = canaries_ok();
    // Phase 1 opens at 1100; phase 2 needs two phase-1 reports, not more canary ones.
    reps.push(r(0, 3, Healthy, 1150));
    reps.push(r(0, 4, Healthy, 1160));
    reps.push(r(1, 20, Healthy, 1170));
    reps.push(r(1, 20, Healthy, 1180)); // the same node again
    let e = eval(&reps, 5000);
    assert_eq!(e.open, 2, "{e:?}");
    assert_eq!(e.stats[1].reports, 1);
    reps.push(r(1, 21, Failed, 1190)); // a failure is a report too (1 of 2: 50 % …)
    let e = eval(&reps, 5000);
    assert!(
        matches!(e.halted, Some(Halt::Failures { phase: 1, .. })),
        "… over 20 %: {e:?}"
    );
    reps.pop();
    reps.push(r(1, 21, Healthy, 1190));
    let e = eval(&reps, 5000);
    assert_eq!(
        e.opened_at[2],
        Some(1200),
        "soak of phase 1 (opened 1100) ends 1200"
    );
    assert!(e.complete());
}

#[test]
fn quorums_are_capped_at_three_quarters_of_the_known_nodes() {
    let cases = [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 3),
        (5, 4),
        (10, 8),
        (26, 20),
        (1000, 20),
    ];
    for (known, needed) in cases {
        assert_eq!(quorum(20, known), needed, "{known} known");
    }
    assert_eq!(quorum(0, 100), 0);
    assert_eq!(quorum(u32::MAX, usize::MAX), u32::MAX);
    // Ten known canaries, two never report: eight reports open the next phase.
    let reps: Vec<RankedReport> = (1..=8)
        .map(|i| r(0, i, Healthy, 1010 + u64::from(i)))
        .collect();
    let p = RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 1000,
                min_soak_secs: 0,
                max_failure_bp: 2000,
                min_reports: 20,
            },
            Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp: 2000,
                min_reports: 20,
            },
        ],
    };
    let e = evaluate_ranked(
        &p,
        START,
        reps.clone(),
        &ControlState::default(),
        &[10, 90],
        2000,
        0,
    );
    assert_eq!(e.opened_at[1], Some(1018));
    let e = evaluate_ranked(
        &p,
        START,
        reps[..7].to_vec(),
        &ControlState::default(),
        &[10, 90],
        2000,
        0,
    );
    assert_eq!(e.open, 1, "seven of ten is not enough");
}

#[test]
fn small_fleets_cap_the_quorum_and_never_open_on_zero_reports() {
    let ev = |known: &[usize], reps: Vec<RankedReport>, now| {
        evaluate_ranked(
            &plan(),
            START,
            reps,
            &ControlState::default(),
            known,
            now,
            0,
        )
    };
    // No known canary (`evaluate` never draws such cohorts while it knows a node): phase 0
    // needs no reports of its own, but phase 1 waits for a first report all the same.
    let e = ev(&[0, 5, 5], vec![], 5000);
    assert_eq!(e.open, 1, "the soak alone does not open phase 1");
    assert_eq!(
        e.stats[0].quorum_at,
        Some(1000),
        "a quorum of 0 is met at once"
    );
    let w = e.waiting.unwrap();
    assert_eq!(
        (w.reports_needed, w.earlier_reports, w.opens_at),
        (0, 0, None)
    );
    let e = ev(&[1, 5, 5], vec![], 5000);
    assert_eq!(e.open, 1, "one known canary: its report is needed");
    assert_eq!(e.waiting.unwrap().reports_needed, 1);
    let e = ev(&[1, 5, 5], vec![r(0, 1, Healthy, 1010)], 1100);
    assert_eq!(e.open, 2);
    // An *installed* report is no report: still closed.
    let e = ev(&[1, 5, 5], vec![r(0, 1, Installed, 1010)], 5000);
    assert_eq!(e.open, 1);
    // An empty phase between: phase 0's report is the first report for phase 2 too, which
    // opens on phase 1's soak.
    let e = ev(&[1, 0, 8], vec![r(0, 1, Healthy, 1010)], 1200);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1100), Some(1200)]);
    // The first report may come from any earlier phase, whenever it comes.
    let e = ev(&[0, 0, 8], vec![], 5000);
    assert_eq!(e.open, 1);
    let e = ev(&[0, 0, 8], vec![r(0, 1, Healthy, 1300)], 5000);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1300), Some(1400)]);
    // Only an advance opens a phase without a report.
    let adv = ctl(&[(ControlAction::Advance { to_phase: 1 }, 1050)]);
    let e = evaluate_ranked(&plan(), START, vec![], &adv, &[0, 0, 8], 5000, 0);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1050), None]);
    assert_eq!(e.waiting.unwrap().earlier_reports, 0);
    // `evaluate` counts reporters as known nodes even when the caller did not know them:
    // a lone reporter is the canary, whatever its rank.
    let release = Hash32([9; 32]);
    for i in 0..8 {
        let e = evaluate(
            &plan(),
            &release,
            START,
            &[Report {
                node: node(i),
                status: Installed,
                at: 1010,
            }],
            &ControlState::default(),
            &BTreeSet::new(),
            5000,
            0,
        );
        assert_eq!(e.stats[0].known_nodes, 1);
        assert_eq!(e.stats[0].installed, 1);
        assert_eq!(e.open, 1, "its final report is awaited");
    }
}

/// The fleet: three known nodes, a 34 % canary phase that no rank falls in.
#[test]
fn three_known_nodes_get_a_canary_and_a_bad_release_halts_there() {
    let plan = RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 3400,
                min_soak_secs: 30,
                max_failure_bp: 1000,
                min_reports: 1,
            },
            Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp: 1000,
                min_reports: 1,
            },
        ],
    };
    let nodes: BTreeSet<KeyId> = (1..=3).map(node).collect();
    let release = (0..1000u32)
        .map(|i| Hash32::of(&i.to_le_bytes()))
        .find(|id| {
            nodes
                .iter()
                .all(|n| crate::phase_of(&plan, crate::rank(id, n)) == 1)
        })
        .unwrap();
    let cohorts = Cohorts::new(&plan, &release, nodes.iter().copied());
    let order: Vec<KeyId> = cohorts.placements().map(|p| p.node).collect();
    let (canary, rest) = (order[0], &order[1..]);
    let ev = |reports: &[Report], now| {
        evaluate(
            &plan,
            &release,
            START,
            reports,
            &ControlState::default(),
            &nodes,
            now,
            0,
        )
    };
    let rep = |node, status, at| Report { node, status, at };
    let e = ev(&[], 5000);
    assert_eq!(e.stats[0].known_nodes, 1);
    assert_eq!(e.stats[1].known_nodes, 2);
    assert_eq!((e.open, e.stats[0].reports_needed), (1, 1));
    // Soak over, no report: phase 1 stays closed.
    assert!(e.waiting.as_ref().unwrap().opens_at.is_none());
    // The canary is healthy: phase 1 opens when the soak ends.
    let e = ev(&[rep(canary, Healthy, 1010)], 5000);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1030)]);
    // The canary fails: halted at its report; the others never install.
    let e = ev(&[rep(canary, RolledBack, 1010)], 5000);
    assert!(
        matches!(
            e.halted,
            Some(Halt::Failures {
                phase: 0,
                at: 1010,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(e.open, 1);
    for n in rest {
        assert!(matches!(
            decide(&e, cohorts.phase(n), Duration::ZERO, 5000),
            Decision::Never { .. }
        ));
    }
    // Another node that installed anyway is out of cohort and opens nothing.
    let e = ev(&[rep(rest[0], Healthy, 1010)], 5000);
    assert_eq!(e.out_of_cohort, vec![rest[0]]);
    assert_eq!(e.open, 1);
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
    assert_eq!(e.open, 2);
    // The same failure one report earlier: 1 in 4 = 25 % → halt, at that report's date.
    let mut reps: Vec<RankedReport> = (1..=3)
        .map(|i| r(0, i, Healthy, 1010 + u64::from(i)))
        .collect();
    reps.push(r(0, 5, Failed, 1020));
    reps.push(r(0, 4, Healthy, 1030));
    let e = eval(&reps, 1200);
    assert_eq!(
        e.halted,
        Some(Halt::Failures {
            phase: 0,
            at: 1020,
            failures: 1,
            reports: 4,
            max_failure_bp: 2000
        })
    );
    assert_eq!(e.open, 1, "later phases never open");
    assert_eq!(e.waiting, None);
    // Before the quorum the denominator is the quorum: 1 × 10000 > 2000 × max(1, 2).
    let e = eval(&[r(0, 1, Failed, 1010)], 1200);
    assert!(matches!(
        e.halted,
        Some(Halt::Failures {
            phase: 0,
            at: 1010,
            ..
        })
    ));
    assert_eq!(
        decide(&e, 1, Duration::ZERO, 1200),
        Decision::Never {
            reason: e.halted.clone().unwrap()
        }
    );
    assert_eq!(
        decide(&e, 0, Duration::from_secs(500), 1200),
        Decision::Never {
            reason: e.halted.clone().unwrap()
        },
        "canaries still waiting out their delay do not install either"
    );
    assert!(
        decide(&e, 1, Duration::ZERO, 1200)
            .to_string()
            .starts_with("never")
    );
    // Rolled back counts as a failure.
    let reps = [
        r(0, 1, Healthy, 1011),
        r(0, 2, Healthy, 1012),
        r(0, 3, Healthy, 1013),
        r(0, 4, RolledBack, 1020),
    ];
    assert!(eval(&reps, 1200).halted.is_some());
}

#[test]
fn thresholds_at_the_extremes() {
    let with = |max_failure_bp, min_reports| RolloutPlan {
        phases: vec![
            Phase {
                until_bp: 5000,
                min_soak_secs: 0,
                max_failure_bp,
                min_reports,
            },
            Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp,
                min_reports,
            },
        ],
    };
    let ev = |plan: &RolloutPlan, reps: &[RankedReport]| {
        evaluate_ranked(
            plan,
            START,
            reps.to_vec(),
            &ControlState::default(),
            &[10, 10],
            2000,
            0,
        )
    };
    let all_failed: Vec<RankedReport> = (1..=10)
        .map(|i| r(0, i, Failed, 1000 + u64::from(i)))
        .collect();
    let e = ev(&with(10_000, 3), &all_failed);
    assert!(e.halted.is_none(), "100 % allowed: never halts");
    assert_eq!(e.open, 2);
    let e = ev(
        &with(0, 3),
        &[r(0, 1, Healthy, 1001), r(0, 2, Failed, 1002)],
    );
    assert!(e.halted.is_some(), "0 % allowed: any failure halts");
    // min_reports 0: the next phase opens at the first report (never on none), and one
    // failure in one report is judged.
    let e = ev(&with(2000, 0), &[]);
    assert_eq!(e.opened_at, vec![Some(1000), None]);
    let e = ev(&with(2000, 0), &[r(0, 1, Healthy, 1001)]);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1001)]);
    // A failure as the first report halts in that second, before phase 1's gate.
    for at in [1000, 1001] {
        let e = ev(&with(2000, 0), &[r(0, 1, Failed, at)]);
        assert_eq!(e.opened_at, vec![Some(1000), None]);
        assert!(matches!(
            e.halted,
            Some(Halt::Failures { phase: 0, at: a, .. }) if a == at
        ));
    }
}

#[test]
fn the_latest_report_counts_but_a_halt_is_for_good() {
    // A canary fails, then recovers: the failure halted the rollout at 1010 for good.
    let reps = [
        r(0, 1, Failed, 1010),
        r(0, 1, Healthy, 1020),
        r(0, 2, Healthy, 1030),
    ];
    let e = eval(&reps, 1200);
    assert!(matches!(e.halted, Some(Halt::Failures { at: 1010, .. })));
    assert_eq!(
        (e.stats[0].healthy, e.stats[0].failed),
        (2, 0),
        "latest status"
    );
    // Healthy first, then failed: the failure counts.
    let reps = [
        r(0, 1, Healthy, 1010),
        r(0, 2, Healthy, 1011),
        r(0, 3, Healthy, 1012),
        r(0, 1, Failed, 1013),
    ];
    let e = eval(&reps, 1200);
    assert_eq!((e.stats[0].healthy, e.stats[0].failed), (2, 1));
    assert!(e.halted.is_some(), "1 in 3 is over 20 %");
}

#[test]
fn a_halt_in_a_later_phase_stops_the_rest_and_keeps_what_opened() {
    let mut reps = canaries_ok();
    assert_eq!(eval(&reps, 1100).open, 2);
    reps.push(r(1, 20, Failed, 1150));
    let e = eval(&reps, 5000);
    assert!(
        matches!(
            e.halted,
            Some(Halt::Failures {
                phase: 1,
                at: 1150,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(e.opened_at, vec![Some(1000), Some(1100), None]);
    assert!(e.out_of_cohort.is_empty());
}

#[test]
fn a_halt_in_the_same_second_as_a_gate_blocks_it() {
    // The soak ends at 1100; a failure dated 1100 (2 failures / 4) halts first.
    let mut reps = canaries_ok();
    reps.push(r(0, 3, Healthy, 1060));
    reps.push(r(0, 4, Failed, 1100));
    let e = eval(&reps, 1100);
    assert!(matches!(e.halted, Some(Halt::Failures { at: 1100, .. })));
    assert_eq!(e.open, 1);
    // A failure one second after the gate: the phase had opened.
    reps.pop();
    reps.push(r(0, 4, Failed, 1101));
    let e = eval(&reps, 1101);
    assert!(e.halted.is_some());
    assert_eq!(e.open, 2);
}

#[test]
fn clock_at_exact_boundaries() {
    // Soak ends exactly at now: open. One second earlier: not.
    assert_eq!(eval(&canaries_ok(), 1100).open, 2);
    assert_eq!(eval(&canaries_ok(), 1099).open, 1);
    // A report dated exactly when its phase opened is in cohort; one second earlier is not.
    let mut reps = canaries_ok();
    reps.push(r(1, 20, Healthy, 1100));
    reps.push(r(1, 21, Healthy, 1099));
    let e = eval(&reps, 1300);
    assert_eq!(e.out_of_cohort, vec![node(21)]);
    assert_eq!(e.stats[1].reports, 1);
    assert_eq!(e.stats[1].out_of_cohort, 1);
    assert_eq!(e.open, 2, "one in-cohort report of two needed");
    // A report at the gate's second completing the quorum opens the phase in that second,
    // and reports of the new phase in the same second are in cohort.
    let reps = [
        r(0, 1, Healthy, 1040),
        r(0, 2, Healthy, 1200),
        r(1, 20, Healthy, 1200),
    ];
    let e = eval(&reps, 1200);
    assert_eq!(e.opened_at[1], Some(1200));
    assert!(e.out_of_cohort.is_empty());
    assert_eq!(e.stats[1].reports, 1);
}

#[test]
fn out_of_cohort_reports_are_flagged_and_never_open_a_gate() {
    // Node 30 is in phase 2 and reports at 1010, long before phase 2 could open.
    let reps = [
        r(2, 30, Failed, 1010),
        r(0, 1, Healthy, 1011),
        r(0, 2, Healthy, 1012),
    ];
    let e = eval(&reps, 1100);
    assert_eq!(e.out_of_cohort, vec![node(30)]);
    assert!(e.halted.is_none(), "phase 2 is not open: nothing to halt");
    assert_eq!(e.open, 2);
    // Early healthy reports from phase 1 do not make phase 2 open early.
    let mut reps = canaries_ok();
    reps.push(r(1, 20, Healthy, 1020));
    reps.push(r(1, 21, Healthy, 1030));
    let e = eval(&reps, 5000);
    assert_eq!(e.out_of_cohort, vec![node(20), node(21)]);
    assert_eq!(
        e.open, 2,
        "phase 2 still waits for in-cohort reports of phase 1"
    );
    assert_eq!(e.stats[1].reports, 0);
    assert_eq!(e.stats[1].healthy, 2, "their status is still known");
    // An early failure is evidence: once its phase opens it counts in the failure rate.
    let mut reps = canaries_ok();
    reps.push(r(1, 20, Failed, 1020));
    let e = eval(&reps, 1099);
    assert!(e.halted.is_none());
    let e = eval(&reps, 1100);
    assert!(
        matches!(
            e.halted,
            Some(Halt::Failures {
                phase: 1,
                at: 1100,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(e.out_of_cohort, vec![node(20)]);
}

#[test]
fn future_reports_beyond_the_skew_are_ignored() {
    let reps = [r(0, 1, Healthy, 1040), r(0, 2, Healthy, 1500)];
    // now 1100, skew 30: the report dated 1500 does not exist yet.
    assert_eq!(eval(&reps, 1100).open, 1);
    assert_eq!(eval(&reps, 1469).open, 1, "still beyond now + skew");
    let e = eval(&reps, 1470);
    assert_eq!(e.open, 1, "inside the skew, but no phase opens after now");
    assert_eq!(e.stats[0].healthy, 2, "the report is counted");
    assert_eq!(eval(&reps, 1500).opened_at[1], Some(1500));
    // A failure dated within the skew halts at once.
    let e = eval(&[r(0, 1, Failed, 1120)], 1100);
    assert!(matches!(e.halted, Some(Halt::Failures { at: 1120, .. })));
    // Beyond it, not.
    assert!(eval(&[r(0, 1, Failed, 1131)], 1100).halted.is_none());
}

#[test]
fn duplicates_and_order_do_not_matter_and_the_worst_status_of_a_second_wins() {
    let reps = vec![
        r(0, 1, Healthy, 1040),
        r(0, 2, Healthy, 1050),
        r(1, 20, Healthy, 1150),
        r(1, 21, Healthy, 1160),
    ];
    let base = eval(&reps, 1300);
    assert_eq!(base.open, 3);
    let mut shuffled: Vec<RankedReport> = reps.iter().rev().copied().collect();
    shuffled.extend(reps.iter().copied());
    shuffled.extend(reps.iter().copied());
    assert_eq!(eval(&shuffled, 1300), base);
    // Same node, same second, two statuses: the worse one counts.
    let reps = [r(0, 1, Healthy, 1040), r(0, 1, Failed, 1040)];
    let e = eval(&reps, 1300);
    assert_eq!((e.stats[0].healthy, e.stats[0].failed), (0, 1));
    let reps = [r(0, 1, Failed, 1040), r(0, 1, Healthy, 1040)];
    assert_eq!(eval(&reps, 1300), e);
}

#[test]
fn pause_holds_installs_and_openings_until_resume() {
    let paused = ctl(&[(ControlAction::Pause, 1005)]);
    let e = eval_c(&canaries_ok(), &paused, 1200);
    assert_eq!(e.paused_since, Some(1005));
    assert_eq!(e.open, 1, "no phase opens while paused");
    assert!(e.waiting.as_ref().unwrap().paused);
    let d = decide(&e, 0, Duration::ZERO, 1200);
    assert_eq!(
        d,
        Decision::Wait {
            until: None,
            reason: WaitReason::Paused { since: 1005 }
        }
    );
    assert!(d.to_string().contains("paused"));
    // Resumed at 1150: the gate (due 1100) opens at the resume.
    let resumed = ctl(&[(ControlAction::Pause, 1005), (ControlAction::Resume, 1150)]);
    let e = eval_c(&canaries_ok(), &resumed, 1200);
    assert_eq!(e.paused_since, None);
    assert_eq!(e.opened_at[1], Some(1150));
    assert_eq!(decide(&e, 0, Duration::ZERO, 1200), Decision::Install);
    // A pause after a phase opened does not close it; the gate after it waits.
    let late = ctl(&[(ControlAction::Pause, 1120)]);
    let mut reps = canaries_ok();
    reps.extend([r(1, 20, Healthy, 1110), r(1, 21, Healthy, 1111)]);
    let e = eval_c(&reps, &late, 5000);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1100), None]);
    // Paused before the start: phase 0 opens at the resume.
    let early = ctl(&[(ControlAction::Pause, 900), (ControlAction::Resume, 1030)]);
    let e = eval_c(&[], &early, 1040);
    assert_eq!(e.opened_at[0], Some(1030));
    // A resume tied with a pause: paused.
    let tie = ctl(&[(ControlAction::Pause, 1005), (ControlAction::Resume, 1005)]);
    assert!(eval_c(&[], &tie, 1200).paused_since.is_some());
}

#[test]
fn control_messages_dated_in_the_future() {
    // A pause dated within the skew is in force now; beyond it, not yet.
    let e = eval_c(&[], &ctl(&[(ControlAction::Pause, 1220)]), 1200);
    assert_eq!(e.paused_since, Some(1220));
    let e = eval_c(&[], &ctl(&[(ControlAction::Pause, 1231)]), 1200);
    assert_eq!(e.paused_since, None);
    // An advance beyond the skew does nothing yet.
    let e = eval_c(
        &[],
        &ctl(&[(ControlAction::Advance { to_phase: 2 }, 1300)]),
        1200,
    );
    assert_eq!(e.open, 1);
    // Abort and yank are in force whatever their date.
    let e = eval_c(&[], &ctl(&[(ControlAction::Abort, 9999)]), 1200);
    assert_eq!(e.halted, Some(Halt::Aborted { at: 9999 }));
}

#[test]
fn abort_and_yank_stop_the_rollout_for_good() {
    let reps = canaries_ok();
    let aborted = ctl(&[(ControlAction::Abort, 1150), (ControlAction::Resume, 1160)]);
    let e = eval_c(&reps, &aborted, 1400);
    assert_eq!(e.halted, Some(Halt::Aborted { at: 1150 }));
    assert_eq!(e.open, 2, "phase 1 had opened at 1100, before the abort");
    let d = decide(&e, 0, Duration::ZERO, 1400);
    assert!(matches!(d, Decision::Never { .. }));
    assert!(d.to_string().starts_with("never: aborted"));
    // Aborted before phase 1's gate: it never opens.
    let e = eval_c(&reps, &ctl(&[(ControlAction::Abort, 1060)]), 1400);
    assert_eq!(e.open, 1);
    let yanked = ctl(&[(ControlAction::Yank, 1200)]);
    let e = eval_c(&reps, &yanked, 1400);
    assert_eq!(e.halted, Some(Halt::Yanked { at: 1200 }));
    assert!(e.control.yanked);
    // A yank outranks a failure halt as the reason shown.
    let failing = [r(0, 1, Failed, 1010)];
    let e = eval_c(&failing, &yanked, 1400);
    assert!(matches!(e.halted, Some(Halt::Yanked { .. })));
}

#[test]
fn advance_force_opens_phases() {
    let adv = ctl(&[(ControlAction::Advance { to_phase: 2 }, 1020)]);
    let e = eval_c(&[], &adv, 1019);
    assert_eq!(e.open, 1, "not before the message's time");
    let e = eval_c(&[], &adv, 1020);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1020), Some(1020)]);
    // Two advances: each phase opens at the earliest message covering it.
    let two = ctl(&[
        (ControlAction::Advance { to_phase: 1 }, 1010),
        (ControlAction::Advance { to_phase: 2 }, 1030),
    ]);
    let e = eval_c(&[], &two, 2000);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1010), Some(1030)]);
    // A gate that opens earlier by itself keeps its time.
    let late = ctl(&[(ControlAction::Advance { to_phase: 2 }, 1500)]);
    let e = eval_c(&canaries_ok(), &late, 2000);
    assert_eq!(e.opened_at, vec![Some(1000), Some(1100), Some(1500)]);
    // An advance index beyond the plan opens everything.
    let far = ctl(&[(ControlAction::Advance { to_phase: 9 }, 1020)]);
    assert!(eval_c(&[], &far, 1020).complete());
    // Advance during a pause takes effect at the resume.
    let paused = ctl(&[
        (ControlAction::Pause, 1010),
        (ControlAction::Advance { to_phase: 1 }, 1020),
        (ControlAction::Resume, 1040),
    ]);
    assert_eq!(eval_c(&[], &paused, 2000).opened_at[1], Some(1040));
}

#[test]
fn advance_does_not_undo_a_halt_and_a_later_halt_does_not_undo_an_advance() {
    let failing = [r(0, 1, Failed, 1010)];
    let adv = ctl(&[(ControlAction::Advance { to_phase: 2 }, 1050)]);
    let e = eval_c(&failing, &adv, 2000);
    assert!(e.halted.is_some());
    assert_eq!(e.open, 1, "the halt at 1010 came first");
    // Advanced at 1020, failure at 1030: the phases opened by the advance stay open, so
    // nodes that installed then are not flagged out of cohort.
    let adv = ctl(&[(ControlAction::Advance { to_phase: 2 }, 1020)]);
    let reps = [r(2, 40, Healthy, 1025), r(0, 1, Failed, 1030)];
    let e = eval_c(&reps, &adv, 2000);
    assert!(matches!(e.halted, Some(Halt::Failures { at: 1030, .. })));
    assert_eq!(e.opened_at, vec![Some(1000), Some(1020), Some(1020)]);
    assert!(e.out_of_cohort.is_empty());
}

#[test]
fn decisions_inside_an_open_phase_respect_the_delay() {
    let e = eval(&[], 1000);
    assert_eq!(
        decide(&e, 0, Duration::from_secs(30), 1010),
        Decision::Wait {
            until: Some(1030),
            reason: WaitReason::Spread {
                phase: 0,
                opened_at: 1000
            }
        }
    );
    assert_eq!(
        decide(&e, 0, Duration::from_secs(30), 1030),
        Decision::Install
    );
    assert_eq!(
        decide(&e, 1, Duration::ZERO, 1030),
        Decision::Wait {
            until: None,
            reason: WaitReason::PhaseNotOpen { phase: 1, open: 1 }
        }
    );
    // The gate is scheduled (reports in, soak running): the wait has an end.
    let e = eval(&canaries_ok(), 1060);
    assert_eq!(
        decide(&e, 1, Duration::from_secs(7), 1060),
        Decision::Wait {
            until: Some(1107),
            reason: WaitReason::PhaseNotOpen { phase: 1, open: 1 }
        }
    );
    // Phase 2 is two gates away: no end known.
    assert!(matches!(
        decide(&e, 2, Duration::ZERO, 1060),
        Decision::Wait { until: None, .. }
    ));
}

#[test]
fn default_plans() {
    let ev = |ty, sec, reps: Vec<RankedReport>, known: &[usize], now| {
        evaluate_ranked(
            &RolloutPlan::default_for(ty, sec),
            START,
            reps,
            &ControlState::default(),
            known,
            now,
            0,
        )
    };
    // Hotfix and security-critical: everyone at the start.
    for (ty, sec) in [(UpdateType::Hotfix, false), (UpdateType::Major, true)] {
        let e = ev(ty, sec, vec![], &[100], START);
        assert!(e.complete(), "{ty} {sec}");
    }
    // Minor: 5 / 25 / 50 / 100, one-hour soaks, 20 reports, halt above 10 %.
    let known = [50, 200, 250, 500];
    let e = ev(UpdateType::Minor, false, vec![], &known, START + 10 * 3600);
    assert_eq!(e.open, 1, "20 canary reports are needed");
    let canaries: Vec<RankedReport> = (0..20)
        .map(|i| r(0, i, Healthy, START + 60 + u64::from(i)))
        .collect();
    let e = ev(
        UpdateType::Minor,
        false,
        canaries.clone(),
        &known,
        START + 3599,
    );
    assert_eq!(e.open, 1);
    let e = ev(
        UpdateType::Minor,
        false,
        canaries.clone(),
        &known,
        START + 3600,
    );
    assert_eq!(e.open, 2);
    // Two failures among 20 is exactly 10 %: allowed. Three: halt.
    let mut two = canaries.clone();
    two[0].status = Failed;
    two[1].status = Failed;
    assert!(
        ev(UpdateType::Minor, false, two.clone(), &known, START + 3600)
            .halted
            .is_none()
    );
    two[2].status = Failed;
    let e = ev(UpdateType::Minor, false, two, &known, START + 3600);
    assert!(matches!(
        e.halted,
        Some(Halt::Failures {
            phase: 0,
            failures: 3,
            ..
        })
    ));
    // The first three reports failing halt at the third (3 × 10000 > 1000 × 20).
    let bad: Vec<RankedReport> = (0..3)
        .map(|i| r(0, i, Failed, START + 60 + u64::from(i)))
        .collect();
    let e = ev(UpdateType::Minor, false, bad, &known, START + 3600);
    assert!(
        matches!(e.halted, Some(Halt::Failures { at: 1062, .. })),
        "{e:?}"
    );
    // Eight known nodes, one of them the canary by promotion (the usual case for 5 % of
    // 8: the cohort rule draws sizes like these): its report and the soak open phase 1,
    // whose 2 known nodes must then both report.
    let canary = vec![r(0, 1, Healthy, START + 60)];
    let e = ev(
        UpdateType::Minor,
        false,
        canary.clone(),
        &[1, 2, 2, 3],
        START + 3600,
    );
    assert_eq!(e.open, 2);
    assert_eq!(e.waiting.unwrap().reports_needed, 2);
    // Patch: 10 / 50 / 100, half-hour soaks; two empty phases after a reporting canary.
    let e = ev(UpdateType::Patch, false, canary, &[1, 0, 10], START + 3600);
    assert_eq!(e.opened_at, vec![Some(1000), Some(2800), Some(4600)]);
}

#[test]
fn reports_for_other_releases_are_ignored() {
    use upswarm_proto::PublicKey;
    let mk = |release, status, at| HealthReport {
        v: 1,
        node: PublicKey([1; 32]),
        release,
        status,
        running: semver_version(),
        at,
        detail: String::new(),
    };
    let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
    let all = [mk(a, Healthy, 10), mk(b, Failed, 11), mk(a, Installed, 5)];
    let mine = reports_for(&a, &all);
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|r| r.node == PublicKey([1; 32]).key_id()));
}

fn semver_version() -> semver::Version {
    semver::Version::new(1, 0, 0)
}

#[test]
fn the_timeline_is_incremental() {
    // Feeding batches one by one gives the same result as the one-shot evaluation.
    let reps = [
        r(0, 1, Healthy, 1040),
        r(0, 2, Healthy, 1050),
        r(1, 20, Healthy, 1150),
        r(1, 21, Failed, 1160),
        r(1, 22, Healthy, 1170),
    ];
    let mut tl: RolloutTimeline<KeyId> =
        RolloutTimeline::new(&plan(), START, ControlState::default(), &KNOWN);
    for x in &reps {
        tl.ingest(x.at, &[(x.node, x.phase, x.status)]);
        assert!(tl.open_phases() >= 1);
    }
    tl.settle(5000);
    let e = tl.evaluation(5000, 5000);
    assert_eq!(
        e,
        evaluate_ranked(
            &plan(),
            START,
            reps.to_vec(),
            &ControlState::default(),
            &KNOWN,
            5000,
            0
        )
    );
    assert!(matches!(
        e.halted,
        Some(Halt::Failures {
            phase: 1,
            at: 1160,
            ..
        })
    ));
    // A batch dated before the previous one is taken as dated like it, never panics.
    tl.ingest(10, &[(node(99), 5, Failed), (node(98), 0, Healthy)]);
}
