//! Properties of the phase gates, checked on random inputs:
//!
//! - the incremental engine computes exactly the rule of the `gate` module docs, written
//!   here a second time as a plain second-by-second loop (the *reference*);
//! - the order in which reports arrive, and duplicates, never change the result;
//! - more failure reports never reopen a halted rollout (nor make it halt later);
//! - time only moves forward: what was open stays open;
//! - cohorts (with real node ids): the canary phase is never empty while any node is known,
//!   phases `0..=k` hold at least `k + 1` known nodes, a node's phase is never later than
//!   its rank's, more known nodes never move a node earlier, and the cohorts are the same
//!   whatever the order in which nodes became known;
//! - no phase opens without an in-cohort final report from an earlier phase, unless an
//!   advance covers it; a canary cohort that fails halts the rollout before phase 1.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{ControlAction, Hash32, HealthStatus, KeyId, Phase, RolloutPlan};
use upswarm_rollout::{
    Cohorts, ControlState, Decision, Evaluation, Halt, RankedReport, Report, control_state, decide,
    evaluate, evaluate_ranked, phase_of, rank,
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

/// Any valid plan: 1..=6 phases, cumulative shares strictly increasing up to 100 %, small
/// canary shares often (1 basis point is one node in 10 000).
fn any_plan() -> impl Strategy<Value = RolloutPlan> {
    let share = prop_oneof![1u16..100, 1u16..BP_ALL];
    (
        proptest::collection::btree_set(share, 0..6),
        proptest::collection::vec((0u64..100, 0u16..=BP_ALL, 0u32..4), 6),
    )
        .prop_map(|(shares, params)| {
            let mut phases: Vec<Phase> = shares
                .into_iter()
                .chain(std::iter::once(BP_ALL))
                .zip(params)
                .map(|(until_bp, (soak, max_failure_bp, min_reports))| Phase {
                    until_bp,
                    min_soak_secs: soak,
                    max_failure_bp,
                    min_reports,
                })
                .collect();
            phases.dedup_by_key(|p| p.until_bp);
            RolloutPlan { phases }
        })
}

fn ids(max: usize) -> impl Strategy<Value = Vec<KeyId>> {
    proptest::collection::vec(any::<[u8; 32]>().prop_map(KeyId), 1..=max)
}

fn release() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

/// A case with real node ids: `known` are known to the evaluating node, reports come from
/// `reporters` (known or not).
#[derive(Debug, Clone)]
struct Fleet {
    plan: RolloutPlan,
    release: Hash32,
    known: BTreeSet<KeyId>,
    reports: Vec<Report>,
    control: Vec<(ControlAction, u64)>,
    now: u64,
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (
        any_plan(),
        release(),
        ids(12),
        ids(12),
        proptest::collection::vec((0usize..24, status(), 990u64..1400), 0..40),
        controls(false),
        1000u64..1500,
    )
        .prop_map(|(plan, release, known, others, reps, control, now)| {
            let all: Vec<KeyId> = known.iter().chain(&others).copied().collect();
            let reports = reps
                .into_iter()
                .map(|(i, status, at)| Report {
                    node: all[i % all.len()],
                    status,
                    at,
                })
                .collect();
            Fleet {
                plan,
                release,
                known: known.into_iter().collect(),
                reports,
                control,
                now,
            }
        })
}

fn eval_fleet(f: &Fleet, reports: &[Report], known: &BTreeSet<KeyId>) -> Evaluation {
    evaluate(
        &f.plan,
        &f.release,
        START,
        reports,
        &control_state(&f.control),
        known,
        f.now,
        0,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_canary_phase_is_never_empty(plan in any_plan(), release in release(), known in ids(40)) {
        let c = Cohorts::new(&plan, &release, known.iter().copied());
        let n = c.len();
        prop_assert!(n >= 1);
        let sizes = c.sizes();
        prop_assert_eq!(sizes.len(), plan.phases.len());
        prop_assert!(sizes[0] >= 1, "empty canary: {:?}", sizes);
        prop_assert_eq!(sizes.iter().sum::<usize>(), n);
        let mut cumulative = 0;
        for (k, size) in sizes.iter().enumerate() {
            cumulative += size;
            // The rule restated: phases 0..=k hold the longer of "every node ranked into
            // them" and "the first k + 1 nodes of the install order".
            let by_rank = known
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|id| phase_of(&plan, rank(&release, id)) <= k)
                .count();
            prop_assert_eq!(cumulative, by_rank.max((k + 1).min(n)));
        }
        let order: Vec<_> = c.placements().collect();
        for (i, p) in order.iter().enumerate() {
            prop_assert_eq!(p.position, i);
            prop_assert!(p.phase <= p.rank_phase, "never later than by rank");
            prop_assert!(p.phase <= i);
            prop_assert_eq!(c.placement(&p.node), *p);
            prop_assert_eq!(p.rank, rank(&release, &p.node));
        }
        for w in order.windows(2) {
            prop_assert!(w[0].rank <= w[1].rank && w[0].phase <= w[1].phase, "contiguous in rank order");
        }
    }

    #[test]
    fn more_known_nodes_never_move_a_node_earlier(
        plan in any_plan(),
        release in release(),
        known in ids(20),
        more in ids(10),
    ) {
        let small = Cohorts::new(&plan, &release, known.iter().copied());
        let big = Cohorts::new(&plan, &release, known.iter().chain(&more).copied());
        let added = big.len() - small.len();
        for n in known.iter().chain(&more) {
            let (a, b) = (small.phase(n), big.phase(n));
            // Each added node moves the others by at most one phase, never earlier; a node's
            // own place does not depend on whether it is known.
            prop_assert!(b >= a && b <= a + added, "{} → {}", a, b);
        }
        let (s, b) = (small.sizes(), big.sizes());
        let (mut cs, mut cb) = (0, 0);
        for k in 0..s.len() {
            cs += s[k];
            cb += b[k];
            prop_assert!(cb >= cs, "the cohort of phases 0..={} shrank", k);
        }
    }

    #[test]
    fn cohorts_are_deterministic(
        plan in any_plan(),
        release in release(),
        known in ids(30),
        seed in any::<u64>(),
    ) {
        let a = Cohorts::new(&plan, &release, known.iter().copied());
        let mut shuffled: Vec<KeyId> = known.iter().chain(known.iter().take(3)).copied().collect();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let b = Cohorts::new(&plan, &release, shuffled);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.sizes(), b.sizes());
    }

    #[test]
    fn evaluations_agree_for_the_same_known_nodes(f in fleet()) {
        // Whether a reporter was passed as known or learnt from its report does not matter,
        // nor does the order of reports.
        let mut with_reporters = f.known.clone();
        with_reporters.extend(f.reports.iter().map(|r| r.node));
        let a = eval_fleet(&f, &f.reports, &f.known);
        let b = eval_fleet(&f, &f.reports, &with_reporters);
        let mut rev = f.reports.clone();
        rev.reverse();
        let c = eval_fleet(&f, &rev, &with_reporters);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
        let cohorts = Cohorts::new(&f.plan, &f.release, with_reporters.iter().copied());
        for (k, s) in a.stats.iter().enumerate() {
            prop_assert_eq!(s.known_nodes, cohorts.sizes()[k]);
        }
        if !with_reporters.is_empty() {
            prop_assert!(a.stats[0].known_nodes >= 1, "a known node and no canary");
        }
    }

    #[test]
    fn no_phase_opens_without_a_report_unless_advanced(f in fleet()) {
        let e = eval_fleet(&f, &f.reports, &f.known);
        let mut known = f.known.clone();
        known.extend(f.reports.iter().map(|r| r.node));
        let cohorts = Cohorts::new(&f.plan, &f.release, known);
        let control = control_state(&f.control);
        for k in 1..e.open {
            let opened = e.opened_at[k].unwrap();
            let reported = f.reports.iter().any(|r| {
                let p = cohorts.phase(&r.node);
                p < k
                    && r.status != HealthStatus::Installed
                    && r.at <= opened
                    && e.opened_at[p].is_some_and(|o| o <= r.at)
            });
            let advanced = control.advance_time(k).is_some_and(|a| a <= opened);
            prop_assert!(
                reported || advanced,
                "phase {} opened at {} with no earlier in-cohort final report: {:?}",
                k, opened, e
            );
        }
    }

    #[test]
    fn a_failing_canary_cohort_halts_before_phase_one(
        plan in any_plan(),
        release in release(),
        known in ids(20),
        at in 1000u64..1200,
    ) {
        // Every canary reports a failure in the same second: whatever the plan's soaks and
        // quorums, no later phase opens (unless failures are allowed outright).
        let cohorts = Cohorts::new(&plan, &release, known.iter().copied());
        let reports: Vec<Report> = cohorts
            .placements()
            .filter(|p| p.phase == 0)
            .map(|p| Report { node: p.node, status: HealthStatus::Failed, at })
            .collect();
        let e = evaluate(
            &plan,
            &release,
            START,
            &reports,
            &ControlState::default(),
            &known.iter().copied().collect(),
            5000,
            0,
        );
        if plan.phases.len() > 1 && plan.phases[0].max_failure_bp < BP_ALL {
            prop_assert_eq!(e.open, 1, "{:?}", e);
            prop_assert!(matches!(e.halted, Some(Halt::Failures { phase: 0, .. })), "{:?}", e);
        }
    }
}
