//! Phase gates: when each phase opens, and whether the rollout halted.
//!
//! # The rule
//!
//! Inputs: a plan with phases `0..n` (phase `k` reaches `until_bp[k]` of the fleet and has
//! `min_soak_secs[k]`, `max_failure_bp[k]`, `min_reports[k]`), the time the rollout starts
//! (`start`: the manifest's `created_at`), the health reports seen for this release, the
//! control messages for it ([`ControlState`]), the **known nodes** and the phase of each
//! (drawn by the rule of [`crate::cohort`]: by rank, the canary never empty), `now` and a
//! clock-skew allowance `skew`. All times are unix seconds.
//!
//! 1. **Which reports.** Reports dated after `now + skew` are ignored (they do not exist
//!    yet). Each remaining report belongs to the phase of its node. Reports are
//!    taken in order of their dates; all reports dated the same second form one batch, in
//!    which a node's worst status counts (`rolled_back` > `failed` > `healthy` >
//!    `installed`). A node's **latest** report is its status. Exact duplicates are one
//!    report; the order in which reports arrived never matters.
//! 2. **Phase 0** opens at `start` (at the end of a pause if `start` falls in one).
//! 3. **Quorum.** `needed[k] = min(min_reports[k], ⌈¾ × known nodes in phase k⌉)`
//!    ([`quorum`]). A report is
//!    **in cohort** when its node's phase was open at the report's date (`opened_at ≤ at`).
//!    Phase `k`'s quorum is reached at `quorum_at[k]`: the date of the report that makes
//!    `needed[k]` distinct nodes of phase `k` have sent an in-cohort *final* report
//!    (`healthy`, `failed` or `rolled_back`; `installed` is pending). With `needed[k] = 0`
//!    the quorum is reached when the phase opens.
//! 4. **A first report.** `first_at[k]` is the date of the first in-cohort final report
//!    from any node of phases `0..=k`. Until it exists phase `k + 1` does not open, whatever
//!    the quorums and soaks say: **no phase opens on zero reports from the phases before
//!    it** (an empty phase `k` — no known node — needs no report of its own, but some
//!    earlier phase must have reported). Only an `advance` opens a phase without it.
//! 5. **Gate.** Phase `k + 1` opens at
//!    `g = max(opened_at[k] + min_soak_secs[k], quorum_at[k], first_at[k])`, or at the
//!    issue time of an `advance` covering it if that is earlier (but not before phase `k`
//!    opened); a `g` that falls in a pause moves to the resume. It opens only if `g ≤ now`
//!    and the rollout has not halted at or before `g`.
//! 6. **Halt.** Whenever the status of some node changes (each batch) and whenever a phase
//!    opens, every open phase `j` is checked with the latest status of each of its nodes:
//!    `failed × 10000 > max_failure_bp[j] × max(healthy + failed, needed[j], 1)`. The first
//!    time this holds the rollout **halts** for good, at that date: no phase opens at or
//!    after it and nobody installs any more (including nodes of open phases still waiting
//!    out their install delay). Up to `needed[j]` reports the denominator is `needed[j]`:
//!    the phase halts as soon as the failures seen would exceed the limit even if every
//!    missing report were healthy. The failure rate is exactly allowed at the limit.
//! 7. **Control.** Abort and yank stop the rollout (halt) at their issue time; pause defers
//!    openings; advance force-opens; see [`crate::control`].
//!
//! **Out of cohort.** A report dated before its node's phase opened (or while it is still
//! closed) comes from a node that installed too early — a misbehaving node, or one whose
//! view placed it in an earlier phase because it did not know a lower-ranked node yet
//! (see [`crate::cohort`], "Views that differ"): its node id is listed in
//! [`Evaluation::out_of_cohort`] and the report never counts toward a quorum nor as a
//! first report, so nobody can rush a rollout by reporting early. Its status *does* count
//! in its phase's failure rate once the phase is open: evidence that the release breaks
//! nodes is kept whenever it was gathered. This choice is what makes the halt **monotone**:
//! for a given set of known nodes, adding failure reports can only make phases open
//! earlier (more in-cohort final reports) or halt earlier, and every open phase's failure
//! rate at every moment only goes up — so more failures never reopen a halted rollout.
//! (If early reports were dropped from the rate, a late failure report that makes a phase
//! open earlier could turn someone's early *healthy* report into an in-cohort one and
//! dilute a rate that had halted.)
//!
//! **Small fleets.** The cohort rule puts at least one known node in phase 0 (and at least
//! `k + 1` in phases `0..=k`), and rule 4 makes every gate wait for a report: a three-node
//! fleet with a 34 % canary phase that no rank falls in still has a one-node canary, and
//! a broken release halts there. Quorums are capped at three quarters (rounded up) of the
//! phase's known nodes: a phase with 1 known node needs its report, with 3 needs 3, with
//! 10 needs 8, not 20. The cap below "all of them" keeps one node that is offline for good
//! from stalling a cohort of a few dozen, while a release that silences most of a cohort
//! (no report at all) still stalls it. A quorum or a first report that never comes stalls
//! the rollout until the control role advances it.
//!
//! **Known nodes and agreement.** Everything is integer arithmetic on values every node
//! has, so nodes that have seen the same reports, control messages and known nodes compute
//! the same [`Evaluation`] (up to `now`). For every node to agree, callers pass the same
//! known nodes: [`evaluate`] takes the nodes it is given plus every node that reported
//! about this release. Known nodes only ever grow, and the promises above (monotone halt,
//! reports never rushing a gate) are for a fixed set of known nodes. A newly known node
//! re-draws the cohorts: the quorum of the phase it falls in can grow (the cap counts
//! known nodes); nodes ranked after it can move one phase later (never earlier), so a
//! report that was in cohort can become out of cohort and stop counting toward a quorum;
//! and a phase whose only node was promoted can become empty (that node moves on), so the
//! next gate no longer waits for that node's report. Phases can therefore open later *or*
//! earlier in a better informed view. A halt can be lifted too, when it rested on a small
//! fleet's judgement: one failure among one known canary is over any limit below 100 %,
//! the same failure among twenty known nodes of a larger phase may not be (already so
//! with the quorum cap alone). What holds for every set of known nodes: the canary phase
//! is never empty while a node is known, the cohort of phases `0..=k` never shrinks as
//! nodes become known, and no phase opens without an in-cohort final report from an
//! earlier phase unless advanced.
//!
//! The same [`RolloutTimeline`] drives the simulator.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{Hash32, HealthReport, HealthStatus, KeyId, Phase, RolloutPlan};

use crate::cohort::Cohorts;
use crate::control::ControlState;

/// A verified health report about this release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Report {
    pub node: KeyId,
    pub status: HealthStatus,
    pub at: u64,
}

impl Report {
    /// The parts of a health report the gates use.
    pub fn from_health(r: &HealthReport) -> Report {
        Report {
            node: r.node.key_id(),
            status: r.status,
            at: r.at,
        }
    }
}

/// The reports about `release` among `reports` (reports about other releases are ignored).
pub fn reports_for<'a>(
    release: &Hash32,
    reports: impl IntoIterator<Item = &'a HealthReport>,
) -> Vec<Report> {
    reports
        .into_iter()
        .filter(|r| r.release == *release)
        .map(Report::from_health)
        .collect()
}

/// A report with its node's phase already computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RankedReport {
    pub at: u64,
    pub phase: usize,
    pub node: KeyId,
    pub status: HealthStatus,
}

/// Why the rollout stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Halt {
    /// Phase `phase` went over its failure rate at `at`.
    Failures {
        phase: usize,
        at: u64,
        failures: u32,
        /// Final reports (healthy + failed) of the phase at that moment.
        reports: u32,
        max_failure_bp: u16,
    },
    /// Aborted by the control role (issued at `at`).
    Aborted { at: u64 },
    /// Yanked by the control role (stopped at `at`): installed nodes roll back.
    Yanked { at: u64 },
}

impl Halt {
    /// When the rollout stopped.
    pub fn at(&self) -> u64 {
        match self {
            Halt::Failures { at, .. } | Halt::Aborted { at } | Halt::Yanked { at } => *at,
        }
    }
}

/// One phase as seen from the reports: counts use each node's latest report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseStats {
    /// Known nodes whose rank falls in this phase.
    pub known_nodes: usize,
    /// Nodes whose latest status is `installed` (pending).
    pub installed: u32,
    pub healthy: u32,
    /// `failed` or `rolled_back`.
    pub failed: u32,
    /// `failed × 10000 / (healthy + failed)`, 0 without final reports (display only; the
    /// halt rule is in the module docs).
    pub failure_rate_bp: u16,
    pub max_failure_bp: u16,
    /// Distinct nodes with an in-cohort final report: the quorum count.
    pub reports: u32,
    /// Final reports needed before the next phase may open.
    pub reports_needed: u32,
    /// When the quorum was reached.
    pub quorum_at: Option<u64>,
    /// Nodes of this phase that reported before it opened.
    pub out_of_cohort: u32,
    pub opened_at: Option<u64>,
}

/// The gate of the next phase that is not open yet: what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseGate {
    /// The phase that is not open yet.
    pub phase: usize,
    /// The previous phase's soak ends then (for phase 0: the rollout's start).
    pub soak_until: u64,
    /// Quorum of the previous phase: in-cohort final reports so far, and how many needed.
    pub reports: u32,
    pub reports_needed: u32,
    /// Distinct nodes of all earlier phases with an in-cohort final report: the phase never
    /// opens while this is 0, unless advanced (rule 4).
    pub earlier_reports: u32,
    /// Failures and failure rate of the previous phase, and its limit.
    pub failures: u32,
    pub failure_rate_bp: u16,
    pub max_failure_bp: u16,
    /// When the phase opens if nothing else happens (quorum and a first report met, or
    /// forced by an advance; the soak, a pause's end, or — when later than now — simply
    /// that moment). `None`: it waits for reports, or for a resume.
    pub opens_at: Option<u64>,
    /// The rollout is paused now.
    pub paused: bool,
}

/// What the next phase waits for (the name the control API's JSON has always used).
pub type GateWait = PhaseGate;

/// The state of a rollout as seen from a set of reports and control messages at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The time this evaluation is for.
    pub now: u64,
    /// Phases `0..open` are open.
    pub open: usize,
    /// When each phase opened.
    pub opened_at: Vec<Option<u64>>,
    /// Why the rollout stopped: yank, else abort, else the first failure halt.
    pub halted: Option<Halt>,
    pub stats: Vec<PhaseStats>,
    /// Nodes that reported before their phase opened (misbehaviour), ascending.
    pub out_of_cohort: Vec<KeyId>,
    /// The next phase's gate, when a further phase exists, is not open and nothing halted.
    pub waiting: Option<PhaseGate>,
    /// Paused now (at `now + skew`), since then.
    pub paused_since: Option<u64>,
    /// The control messages in force.
    pub control: ControlState,
}

impl Evaluation {
    /// Whether every phase is open (and nothing halted): everyone may install.
    pub fn complete(&self) -> bool {
        self.halted.is_none() && self.open == self.opened_at.len() && self.open > 0
    }
}

/// Evaluates a rollout from reports about this release (see the module docs for the rule).
/// The known nodes are `known_nodes` plus every node that sent a report; their cohorts are
/// drawn by the rule of [`crate::cohort`].
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
    let cohorts = Cohorts::new(
        plan,
        release,
        known_nodes
            .iter()
            .chain(reports.iter().map(|r| &r.node))
            .copied(),
    );
    evaluate_cohorts(plan, start, reports, control, &cohorts, now, skew)
}

/// [`evaluate`] with the cohorts already drawn (so that the caller can place itself in the
/// same ones). `cohorts` should know every node that sent one of `reports` — [`evaluate`]
/// sees to it —: a reporter it does not know is placed where it would stand, but not
/// counted among the known nodes.
pub fn evaluate_cohorts(
    plan: &RolloutPlan,
    start: u64,
    reports: &[Report],
    control: &ControlState,
    cohorts: &Cohorts,
    now: u64,
    skew: u64,
) -> Evaluation {
    let mut phases: HashMap<KeyId, usize> = HashMap::new();
    let ranked: Vec<RankedReport> = reports
        .iter()
        .map(|r| RankedReport {
            at: r.at,
            phase: *phases
                .entry(r.node)
                .or_insert_with(|| cohorts.phase(&r.node)),
            node: r.node,
            status: r.status,
        })
        .collect();
    evaluate_ranked(plan, start, ranked, control, &cohorts.sizes(), now, skew)
}

/// [`evaluate`] with phases precomputed: `known_per_phase[k]` known nodes rank into phase
/// `k` (missing entries count as 0). Reports of a phase outside the plan are ignored.
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
    let control = control.in_force(horizon);
    reports.retain(|r| r.at <= horizon && r.phase < n);
    reports.sort_unstable();
    reports.dedup();

    let mut timeline = RolloutTimeline::new(plan, start, control, known_per_phase);
    timeline.set_open_limit(now);
    let mut batch = Vec::new();
    for same in reports.chunk_by(|a, b| a.at == b.at) {
        batch.clear();
        batch.extend(same.iter().map(|r| (r.node, r.phase, r.status)));
        timeline.ingest(same[0].at, &batch);
    }
    timeline.settle(now);
    timeline.evaluation(now, horizon)
}

/// Counts of one phase.
#[derive(Debug, Clone, Default)]
struct Counts {
    installed: u32,
    healthy: u32,
    failed: u32,
    reporters: u32,
    quorum_at: Option<u64>,
    /// Date of the phase's first in-cohort final report.
    first_at: Option<u64>,
    out_of_cohort: u32,
}

impl Counts {
    fn slot(&mut self, s: HealthStatus) -> &mut u32 {
        match s {
            HealthStatus::Installed => &mut self.installed,
            HealthStatus::Healthy => &mut self.healthy,
            HealthStatus::Failed | HealthStatus::RolledBack => &mut self.failed,
        }
    }

    fn finals(&self) -> u32 {
        self.healthy.saturating_add(self.failed)
    }

    fn rate_bp(&self) -> u16 {
        let finals = u64::from(self.finals());
        if finals == 0 {
            return 0;
        }
        u16::try_from(u64::from(self.failed) * u64::from(BP_ALL) / finals).unwrap_or(BP_ALL)
    }
}

/// The phase gates as an incremental state machine: feed it report batches in date order
/// ([`ingest`](Self::ingest)), let time pass ([`settle`](Self::settle)), read the phase
/// timeline. [`evaluate_ranked`] sorts the reports and feeds them all; the simulator feeds
/// its report stream as it generates it. `N` identifies a node (a [`KeyId`], or an index).
#[derive(Debug, Clone)]
pub struct RolloutTimeline<N> {
    phases: Vec<Phase>,
    start: u64,
    control: ControlState,
    known: Vec<usize>,
    needed: Vec<u32>,
    open_limit: u64,
    opened_at: Vec<Option<u64>>,
    open: usize,
    clock: Option<u64>,
    failure_halt: Option<Halt>,
    latest: HashMap<N, (usize, HealthStatus)>,
    counted: HashSet<N>,
    counts: Vec<Counts>,
    out_of_cohort: BTreeSet<N>,
}

/// Share of a phase's known nodes that a quorum is capped at: three quarters.
pub const QUORUM_OF_KNOWN: (u64, u64) = (3, 4);

/// Reports needed from a phase with `known` known nodes:
/// `min(min_reports, ceil(known × 3 / 4))`.
pub fn quorum(min_reports: u32, known: usize) -> u32 {
    let (num, den) = QUORUM_OF_KNOWN;
    let known = u64::try_from(known).unwrap_or(u64::MAX);
    let cap = known.saturating_mul(num).div_ceil(den);
    min_reports.min(u32::try_from(cap).unwrap_or(u32::MAX))
}

fn is_final(s: HealthStatus) -> bool {
    !matches!(s, HealthStatus::Installed)
}

impl<N: Copy + Eq + Hash + Ord> RolloutTimeline<N> {
    /// A rollout of `plan` starting at `start`, before any report. `control` should already
    /// be [`ControlState::in_force`] for the time of evaluation.
    pub fn new(
        plan: &RolloutPlan,
        start: u64,
        control: ControlState,
        known_per_phase: &[usize],
    ) -> Self {
        let n = plan.phases.len();
        let known: Vec<usize> = (0..n)
            .map(|k| known_per_phase.get(k).copied().unwrap_or(0))
            .collect();
        let needed = plan
            .phases
            .iter()
            .zip(&known)
            .map(|(p, k)| quorum(p.min_reports, *k))
            .collect();
        RolloutTimeline {
            phases: plan.phases.clone(),
            start,
            control,
            known,
            needed,
            open_limit: u64::MAX,
            opened_at: vec![None; n],
            open: 0,
            clock: None,
            failure_halt: None,
            latest: HashMap::new(),
            counted: HashSet::new(),
            counts: vec![Counts::default(); n],
            out_of_cohort: BTreeSet::new(),
        }
    }

    /// No phase opens after `limit` (an evaluation at `now` sets `now`).
    pub fn set_open_limit(&mut self, limit: u64) {
        self.open_limit = limit;
    }

    /// When each phase opened.
    pub fn opened_at(&self) -> &[Option<u64>] {
        &self.opened_at
    }

    /// Phases `0..open_phases()` are open.
    pub fn open_phases(&self) -> usize {
        self.open
    }

    /// Reports needed from phase `k` before phase `k + 1` may open.
    pub fn reports_needed(&self, k: usize) -> u32 {
        self.needed.get(k).copied().unwrap_or(0)
    }

    /// When phase `k`'s quorum was reached.
    pub fn quorum_at(&self, k: usize) -> Option<u64> {
        self.counts.get(k).and_then(|c| c.quorum_at)
    }

    /// Date of the first in-cohort final report from any node of phases `0..=k` (rule 4):
    /// phase `k + 1` never opens before it, unless advanced.
    pub fn first_report_at(&self, k: usize) -> Option<u64> {
        self.counts
            .iter()
            .take(k.saturating_add(1))
            .filter_map(|c| c.first_at)
            .min()
    }

    /// Distinct nodes of phases `0..=k` with an in-cohort final report.
    pub fn earlier_reports(&self, k: usize) -> u32 {
        self.counts
            .iter()
            .take(k.saturating_add(1))
            .fold(0u32, |n, c| n.saturating_add(c.reporters))
    }

    /// The first failure halt, if any.
    pub fn failure_halt(&self) -> Option<&Halt> {
        self.failure_halt.as_ref()
    }

    /// When the rollout stopped (failures, abort or yank), if it did.
    pub fn halted_at(&self) -> Option<u64> {
        let f = self.failure_halt.as_ref().map(Halt::at);
        match (f, self.control.stopped_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next phase to open and when it opens if no further report arrives (ignores the
    /// open limit). `None`: every phase is open, the rollout halted, or the next gate waits
    /// for reports or for a resume.
    pub fn next_opening(&self) -> Option<(usize, u64)> {
        let k = self.open;
        if k >= self.phases.len() {
            return None;
        }
        let t = if k == 0 {
            self.start
        } else {
            let prev = k - 1;
            let o = self.opened_at[prev]?;
            let natural = self.counts[prev]
                .quorum_at
                .zip(self.first_report_at(prev))
                .map(|(q, f)| {
                    q.max(f)
                        .max(o.saturating_add(self.phases[prev].min_soak_secs))
                });
            let forced = self.control.advance_time(k).map(|a| a.max(o));
            match (natural, forced) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            }
        };
        let t = self.control.unpaused_from(t)?;
        if self.halted_at().is_some_and(|h| h <= t) {
            return None;
        }
        Some((k, t))
    }

    /// Lets time pass up to `t` with no new report: opens every phase whose gate time is
    /// at most `t` (and the open limit).
    pub fn settle(&mut self, t: u64) {
        let limit = t.min(self.open_limit);
        while let Some((k, g)) = self.next_opening() {
            if g > limit {
                break;
            }
            self.open_phase(k, g);
        }
    }

    fn open_phase(&mut self, k: usize, at: u64) {
        self.opened_at[k] = Some(at);
        self.open = k + 1;
        let c = &mut self.counts[k];
        if c.reporters >= self.needed[k] && c.quorum_at.is_none() {
            c.quorum_at = Some(at);
        }
        // The phase's nodes may have reported before it opened: they count in its rate.
        self.check_halt(at);
    }

    fn check_halt(&mut self, at: u64) {
        if self.failure_halt.is_some() {
            return;
        }
        for j in 0..self.open {
            let c = &self.counts[j];
            let p = &self.phases[j];
            let floor = u64::from(self.needed[j].max(1));
            let denom = u64::from(c.finals()).max(floor);
            if u64::from(c.failed) * u64::from(BP_ALL) > u64::from(p.max_failure_bp) * denom {
                self.failure_halt = Some(Halt::Failures {
                    phase: j,
                    at,
                    failures: c.failed,
                    reports: c.finals(),
                    max_failure_bp: p.max_failure_bp,
                });
                return;
            }
        }
    }

    /// Adds every report dated `at` (node, phase, status). Batches must come in increasing
    /// date order; a batch dated before the previous one is treated as dated like it.
    /// Reports of a phase outside the plan are ignored.
    pub fn ingest(&mut self, at: u64, batch: &[(N, usize, HealthStatus)]) {
        let at = self.clock.map_or(at, |c| at.max(c));
        if let Some(before) = at.checked_sub(1) {
            self.settle(before);
        }
        let n = self.phases.len();
        let mut items: Vec<(N, usize, HealthStatus)> =
            batch.iter().copied().filter(|(_, p, _)| *p < n).collect();
        // One status per node per second: the worst.
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(a.1.cmp(&b.1)));
        items.dedup_by_key(|x| x.0);
        for &(node, phase, status) in &items {
            if let Some((p, s)) = self.latest.insert(node, (phase, status)) {
                let slot = self.counts[p].slot(s);
                *slot = slot.saturating_sub(1);
            }
            let slot = self.counts[phase].slot(status);
            *slot = slot.saturating_add(1);
        }
        let mut done = vec![false; items.len()];
        loop {
            for (i, &(node, phase, status)) in items.iter().enumerate() {
                if done[i] || self.opened_at[phase].is_none_or(|o| o > at) {
                    continue;
                }
                done[i] = true;
                if is_final(status) && self.counted.insert(node) {
                    let c = &mut self.counts[phase];
                    c.reporters = c.reporters.saturating_add(1);
                    c.first_at.get_or_insert(at);
                    if c.reporters >= self.needed[phase] && c.quorum_at.is_none() {
                        c.quorum_at = Some(at);
                    }
                }
            }
            self.check_halt(at);
            match self.next_opening() {
                Some((k, g)) if g <= at.min(self.open_limit) => self.open_phase(k, g),
                _ => break,
            }
        }
        for (i, &(node, phase, _)) in items.iter().enumerate() {
            if !done[i] && self.out_of_cohort.insert(node) {
                let c = &mut self.counts[phase];
                c.out_of_cohort = c.out_of_cohort.saturating_add(1);
            }
        }
        self.clock = Some(at);
    }

    fn stats(&self) -> Vec<PhaseStats> {
        self.counts
            .iter()
            .enumerate()
            .map(|(k, c)| PhaseStats {
                known_nodes: self.known[k],
                installed: c.installed,
                healthy: c.healthy,
                failed: c.failed,
                failure_rate_bp: c.rate_bp(),
                max_failure_bp: self.phases[k].max_failure_bp,
                reports: c.reporters,
                reports_needed: self.needed[k],
                quorum_at: c.quorum_at,
                out_of_cohort: c.out_of_cohort,
                opened_at: self.opened_at[k],
            })
            .collect()
    }

    fn gate(&self, paused: bool) -> Option<PhaseGate> {
        let next = self.open;
        if next >= self.phases.len() || self.halted_at().is_some() {
            return None;
        }
        let opens_at = self.next_opening().map(|(_, t)| t);
        let Some(prev) = next.checked_sub(1) else {
            return Some(PhaseGate {
                phase: 0,
                soak_until: self.start,
                reports: 0,
                reports_needed: 0,
                earlier_reports: 0,
                failures: 0,
                failure_rate_bp: 0,
                max_failure_bp: 0,
                opens_at,
                paused,
            });
        };
        let c = &self.counts[prev];
        let p = &self.phases[prev];
        Some(PhaseGate {
            phase: next,
            soak_until: self.opened_at[prev]
                .unwrap_or(self.start)
                .saturating_add(p.min_soak_secs),
            reports: c.reporters,
            reports_needed: self.needed[prev],
            earlier_reports: self.earlier_reports(prev),
            failures: c.failed,
            failure_rate_bp: c.rate_bp(),
            max_failure_bp: p.max_failure_bp,
            opens_at,
            paused,
        })
    }
}

impl RolloutTimeline<KeyId> {
    /// The evaluation at `now`; `horizon` (= `now + skew`) judges whether it is paused.
    pub fn evaluation(&self, now: u64, horizon: u64) -> Evaluation {
        let halted = if self.control.yanked {
            Some(Halt::Yanked {
                at: self.control.stopped_at.unwrap_or(now),
            })
        } else if self.control.aborted {
            Some(Halt::Aborted {
                at: self.control.stopped_at.unwrap_or(now),
            })
        } else {
            self.failure_halt.clone()
        };
        let paused_since = self.control.paused_since(horizon);
        Evaluation {
            now,
            open: self.open,
            opened_at: self.opened_at.clone(),
            waiting: if halted.is_some() {
                None
            } else {
                self.gate(paused_since.is_some())
            },
            halted,
            stats: self.stats(),
            out_of_cohort: self.out_of_cohort.iter().copied().collect(),
            paused_since,
            control: self.control.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
