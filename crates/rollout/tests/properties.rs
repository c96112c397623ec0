//! Properties of the phase gates, checked on random inputs:
//!
//! - the incremental engine computes exactly the rule of the `gate` module docs, written
//!   here a second time as a plain second-by-second loop (the *reference*);
//! - the order in which reports arrive, and duplicates, never change the result;
//! - more failure reports never reopen a halted rollout (nor make it halt later);
//! - time only moves forward: what was open stays open.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{ControlAction, HealthStatus, KeyId, Phase, RolloutPlan};
use upswarm_rollout::{
    ControlState, Decision, Evaluation, Halt, RankedReport, control_state, decide, evaluate_ranked,
};

const START: u64 = 1000;
const NODES: u8 = 24;

/// Node `i` is in phase `i % 3`.
fn phase_of_node(i: u8) -> usize {
    usize::from(i % 3)
}

fn node(i: u8) -> KeyId {
    KeyId([i; 32])
}

#[derive(Debug, Clone)]
struct Case {
    plan: RolloutPlan,
    known: Vec<usize>,
    reports: Vec<RankedReport>,
    control: Vec<(ControlAction, u64)>,
    now: u64,
    skew: u64,
}

fn status() -> impl Strategy<Value = HealthStatus> {
    prop_oneof![
        2 => Just(HealthStatus::Installed),
        6 => Just(HealthStatus::Healthy),
        2 => Just(HealthStatus::Failed),
        1 => Just(HealthStatus::RolledBack),
    ]
}

fn reports(max: usize) -> impl Strategy<Value = Vec<RankedReport>> {
    proptest::collection::vec((0..NODES, status(), 990u64..1400), 0..max).prop_map(|v| {
        v.into_iter()
            .map(|(i, status, at)| RankedReport {
                at,
                phase: phase_of_node(i),
                node: node(i),
                status,
            })
            .collect()
    })
}

fn plan() -> impl Strategy<Value = RolloutPlan> {
    let phase = |until_bp: u16| {
        (
            0u64..150,
            prop_oneof![Just(0u16), Just(1000), Just(2000), Just(5000), Just(BP_ALL)],
            0u32..5,
        )
            .prop_map(move |(soak, max_failure_bp, min_reports)| Phase {
                until_bp,
                min_soak_secs: soak,
                max_failure_bp,
                min_reports,
            })
    };
    (phase(1000), phase(5000), phase(BP_ALL)).prop_map(|(a, b, c)| RolloutPlan {
        phases: vec![a, b, c],
    })
}

fn controls(stops: bool) -> impl Strategy<Value = Vec<(ControlAction, u64)>> {
    let action = if stops {
        prop_oneof![
            3 => Just(ControlAction::Pause),
            3 => Just(ControlAction::Resume),
            2 => (0u32..4).prop_map(|to_phase| ControlAction::Advance { to_phase }),
            1 => Just(ControlAction::Abort),
            1 => Just(ControlAction::Yank),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => Just(ControlAction::Pause),
            3 => Just(ControlAction::Resume),
            2 => (0u32..4).prop_map(|to_phase| ControlAction::Advance { to_phase }),
        ]
        .boxed()
    };
    prop_oneof![
        3 => Just(vec![]),
        2 => proptest::collection::vec((action, 990u64..1450), 1..4),
    ]
}

fn case(stops: bool) -> impl Strategy<Value = Case> {
    (
        plan(),
        proptest::collection::vec(0usize..10, 3),
        reports(40),
        controls(stops),
        1000u64..1500,
        0u64..40,
    )
        .prop_map(|(plan, known, reports, control, now, skew)| Case {
            plan,
            known,
            reports,
            control,
            now,
            skew,
        })
}

fn eval(c: &Case, reports: Vec<RankedReport>) -> Evaluation {
    evaluate_ranked(
        &c.plan,
        START,
        reports,
        &control_state(&c.control),
        &c.known,
        c.now,
        c.skew,
    )
}

/// What the reference computes.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    opened_at: Vec<Option<u64>>,
    failure_halt: Option<(usize, u64)>,
    out_of_cohort: Vec<KeyId>,
    quorum: Vec<u32>,
}

/// The rule of the `gate` module docs, one second at a time, recounting everything.
fn reference(c: &Case) -> Outcome {
    let n = c.plan.phases.len();
    let horizon = c.now + c.skew;
    let control: ControlState = control_state(&c.control).in_force(horizon);
    let needed: Vec<u32> = (0..n)
        .map(|k| {
            c.plan.phases[k]
                .min_reports
                .min((c.known[k] as u32 * 3).div_ceil(4))
        })
        .collect();
    let reps: Vec<RankedReport> = c
        .reports
        .iter()
        .copied()
        .filter(|r| r.at <= horizon)
        .collect();
    let t0 = reps.iter().map(|r| r.at).min().unwrap_or(START).min(START);
    let mut latest: BTreeMap<KeyId, (usize, HealthStatus)> = BTreeMap::new();
    let mut counted: BTreeSet<KeyId> = BTreeSet::new();
    let mut quorum = vec![0u32; n];
    let mut opened: Vec<Option<u64>> = vec![None; n];
    let mut halt: Option<(usize, u64)> = None;
    let mut out = BTreeSet::new();
    for t in t0..=horizon.max(c.now) {
        // This second's reports: the worst status per node.
        let mut batch: BTreeMap<KeyId, (usize, HealthStatus)> = BTreeMap::new();
        for r in reps.iter().filter(|r| r.at == t) {
            let e = batch.entry(r.node).or_insert((r.phase, r.status));
            if r.status > e.1 {
                *e = (r.phase, r.status);
            }
        }
        for (node, v) in &batch {
            latest.insert(*node, *v);
        }
        let mut done: BTreeSet<KeyId> = BTreeSet::new();
        loop {
            for (node, (phase, status)) in &batch {
                if opened[*phase].is_some_and(|o| o <= t)
                    && done.insert(*node)
                    && *status != HealthStatus::Installed
                    && counted.insert(*node)
                {
                    quorum[*phase] += 1;
                }
            }
            if halt.is_none() {
                for (j, o) in opened.iter().enumerate() {
                    if o.is_none() {
                        continue;
                    }
                    let mut failed = 0u64;
                    let mut finals = 0u64;
                    for (phase, s) in latest.values() {
                        if *phase == j && *s != HealthStatus::Installed {
                            finals += 1;
                            failed += u64::from(s.is_failure());
                        }
                    }
                    let denom = finals.max(u64::from(needed[j].max(1)));
                    if failed * 10_000 > u64::from(c.plan.phases[j].max_failure_bp) * denom {
                        halt = Some((j, t));
                        break;
                    }
                }
            }
            let k = opened.iter().take_while(|o| o.is_some()).count();
            let blocked = k >= n
                || t > c.now
                || halt.is_some_and(|(_, h)| h <= t)
                || control.stopped_at.is_some_and(|s| s <= t)
                || control.paused_at(t);
            if !blocked {
                let gate = if k == 0 {
                    t >= START
                } else {
                    let o = opened[k - 1].unwrap();
                    // Rules 3–5: the quorum, a first report from phases 0..k, the soak.
                    (quorum[k - 1] >= needed[k - 1]
                        && quorum[..k].iter().sum::<u32>() >= 1
                        && t >= o + c.plan.phases[k - 1].min_soak_secs)
                        || control.advance_time(k).is_some_and(|a| a <= t)
                };
                if gate {
                    opened[k] = Some(t);
                    continue;
                }
            }
            break;
        }
        for node in batch.keys() {
            if !done.contains(node) {
                out.insert(*node);
            }
        }
    }
    Outcome {
        opened_at: opened,
        failure_halt: halt,
        out_of_cohort: out.into_iter().collect(),
        quorum,
    }
}

fn failure_halt(e: &Evaluation) -> Option<(usize, u64)> {
    match e.halted {
        Some(Halt::Failures { phase, at, .. }) => Some((phase, at)),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_engine_computes_the_documented_rule(c in case(true)) {
        // (Run with PROPTEST_CASES=20000 for a deeper search; 400 cases take well under a
        // second.)
        let e = eval(&c, c.reports.clone());
        let r = reference(&c);
        let got = Outcome {
            opened_at: e.opened_at.clone(),
            failure_halt: if e.control.aborted { r.failure_halt } else { failure_halt(&e) },
            out_of_cohort: e.out_of_cohort.clone(),
            quorum: e.stats.iter().map(|s| s.reports).collect(),
        };
        prop_assert_eq!(got, r);
    }

    #[test]
    fn order_and_duplicates_never_change_the_result(
        c in case(true),
        shuffled in any::<u64>(),
        dups in 0usize..10,
    ) {
        let base = eval(&c, c.reports.clone());
        let mut reps = c.reports.clone();
        reps.extend(c.reports.iter().take(dups).copied());
        // Fisher–Yates with a proptest-provided seed.
        let mut s = shuffled | 1;
        for i in (1..reps.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            reps.swap(i, (s % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(eval(&c, reps), base);
    }

    #[test]
    fn more_failures_never_reopen_a_halted_rollout(
        c in case(false),
        extra in reports(20),
        rolled_back in any::<bool>(),
    ) {
        let e = eval(&c, c.reports.clone());
        if let Some((_, h)) = failure_halt(&e) {
            let mut more = c.reports.clone();
            more.extend(extra.into_iter().map(|mut x| {
                x.status = if rolled_back { HealthStatus::RolledBack } else { HealthStatus::Failed };
                x
            }));
            let e2 = eval(&c, more);
            let h2 = failure_halt(&e2);
            prop_assert!(h2.is_some_and(|(_, t)| t <= h), "halt at {} became {:?}", h, h2);
            for k in 0..e2.open {
                // Whatever is open with more failures opened before the (earlier) halt.
                prop_assert!(e2.opened_at[k].unwrap() <= h2.unwrap().1);
            }
        }
    }

    #[test]
    fn time_only_moves_forward(c in case(true), later in 0u64..300) {
        let a = eval(&c, c.reports.clone());
        let b = eval(&Case { now: c.now + later, ..c.clone() }, c.reports.clone());
        prop_assert!(b.open >= a.open);
        prop_assert_eq!(&b.opened_at[..a.open], &a.opened_at[..a.open]);
        prop_assert!(a.halted.is_none() || b.halted.is_some());
    }

    #[test]
    fn install_only_in_an_open_phase_after_the_delay(
        c in case(true),
        phase in 0usize..3,
        delay in 0u64..100,
    ) {
        let e = eval(&c, c.reports.clone());
        let d = decide(&e, phase, std::time::Duration::from_secs(delay), c.now);
        if d == Decision::Install {
            prop_assert!(e.halted.is_none() && e.paused_since.is_none());
            prop_assert!(e.opened_at[phase].is_some_and(|o| o + delay <= c.now));
        }
        if let Decision::Wait { until: Some(t), .. } = d {
            prop_assert!(t > c.now);
        }
    }
}
