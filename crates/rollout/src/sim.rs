//! A deterministic rollout simulator: the real phase gates ([`RolloutTimeline`], the engine
//! behind [`crate::evaluate`]) over many simulated nodes.
//!
//! It answers two questions about a plan: how long a good release takes to reach everyone,
//! and what fraction of the fleet installs a bad release before the network halts it
//! (**exposure**; SPEC §11 wants ≤ canary share + 1 point).
//!
//! # Model (assumptions)
//!
//! - `nodes` nodes with ids `blake3(seed ‖ i)`, a release id `blake3(seed)`; ranks, phases
//!   and install delays are the real ones ([`crate::cohort`]: the cohorts are drawn over the
//!   whole fleet, so a small fleet still has a canary), installs spread over
//!   `spread_secs`. Every node knows every node (known nodes per phase = the true cohort
//!   sizes). Clocks agree (no skew); time is in whole seconds from the release's start.
//! - A node that installs reports `install_secs` later: `failed` with probability
//!   `failure_prob` (independently per node), else `healthy`. (`installed` reports are not
//!   simulated: they never count.) Each report is lost for everyone with probability
//!   `report_loss`; the others reach every node.
//! - **Gossip / view lag**: node `i` sees the network with a fixed lag `L_i` drawn from a
//!   [`LagDistribution`] with mean `gossip_delay_secs`: at time `t` it has seen exactly the
//!   delivered reports dated `≤ t − L_i`. Because gates depend on report *dates* only, its
//!   view at `t` is the global timeline computed from those reports — so one
//!   [`RolloutTimeline`] fed the global report stream in date order serves every node:
//!   - the opening of phase `k` at `G_k` is decided by a report dated `D_k` (the later of
//!     the one that completed the previous phase's quorum and the first report of the
//!     phases before it; for phase 0, `D_0 = 0`); node `i` of phase
//!     `k` learns of it at `D_k + L_i` and installs at `max(G_k + delay_i, D_k + L_i)`;
//!   - a halt decided by the report dated `H` reaches node `i` at `H + L_i`; the node
//!     installs only if its install time is before that. Nodes that had learnt of a
//!     scheduled opening (soak still running) before the halt reached them may install at
//!     `G_k` even if the network halted before `G_k`: that is counted as exposure.
//! - Nodes evaluate continuously, are online throughout, and the download takes no time
//!   (fold it into `install_secs`). No control messages.
//!
//! Cost: one report per node through a binary heap and the incremental gate — O(N log N);
//! 100 000 nodes take well under a second in a release build.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use upswarm_proto::{Hash32, HealthStatus, KeyId, RolloutPlan};

use crate::cohort::{Rank, install_delay, phase_at, phase_of, rank};
use crate::control::ControlState;
use crate::gate::{Halt, RankedReport, RolloutTimeline};

/// Most simulated nodes.
pub const MAX_SIM_NODES: usize = 10_000_000;

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    pub plan: RolloutPlan,
    /// Seeds node ids, the release id and every random draw: same seed, same result.
    pub seed: u64,
    /// Mean of each node's view lag, seconds (shape: [`LagDistribution`], exponential
    /// with [`run`]).
    pub gossip_delay_secs: f64,
    /// Probability that a report never reaches anyone.
    pub report_loss: f64,
    /// Probability that an install fails (0: a good release; 1: a bad one).
    pub failure_prob: f64,
    /// Seconds from install to the node's health report.
    pub install_secs: u64,
    /// Install delays inside a phase are spread over this many seconds.
    pub spread_secs: u64,
    /// Give up this many seconds after the start.
    pub horizon_secs: u64,
}

/// Parameters the simulator cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("{field} is {value}; a probability must be between 0 and 1")]
    Probability { field: &'static str, value: f64 },
    #[error("gossip delay {0} s is not a finite, non-negative number of seconds")]
    GossipDelay(f64),
    #[error("{0} nodes is more than the simulator's limit of {MAX_SIM_NODES}")]
    TooManyNodes(usize),
    #[error("the rollout plan has no phases")]
    EmptyPlan,
}

impl SimParams {
    /// Checks the parameters ([`run`] itself clamps what is out of range).
    pub fn validate(&self) -> Result<(), SimError> {
        for (field, value) in [
            ("report_loss", self.report_loss),
            ("failure_prob", self.failure_prob),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::Probability { field, value });
            }
        }
        if !self.gossip_delay_secs.is_finite() || self.gossip_delay_secs < 0.0 {
            return Err(SimError::GossipDelay(self.gossip_delay_secs));
        }
        if self.nodes > MAX_SIM_NODES {
            return Err(SimError::TooManyNodes(self.nodes));
        }
        if self.plan.phases.is_empty() {
            return Err(SimError::EmptyPlan);
        }
        Ok(())
    }
}

/// Shape of the per-node view lag; its mean is [`SimParams::gossip_delay_secs`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LagDistribution {
    /// Every node lags exactly the mean.
    Fixed,
    /// Uniform in `[0, 2 × mean]`.
    Uniform,
    /// Exponential with that mean (a long tail of slow nodes).
    #[default]
    Exponential,
}

impl LagDistribution {
    fn sample(self, rng: &mut Xoshiro256PlusPlus, mean: f64) -> u64 {
        let mean = if mean.is_finite() { mean.max(0.0) } else { 0.0 };
        let u: f64 = rng.random();
        let x = match self {
            LagDistribution::Fixed => mean,
            LagDistribution::Uniform => u * 2.0 * mean,
            LagDistribution::Exponential => -(1.0 - u).ln() * mean,
        };
        // `as` saturates; NaN becomes 0.
        x.round() as u64
    }
}

impl fmt::Display for LagDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LagDistribution::Fixed => "fixed",
            LagDistribution::Uniform => "uniform",
            LagDistribution::Exponential => "exponential",
        })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    pub nodes: usize,
    /// Nodes that installed the release (before the halt reached them, within the horizon).
    pub installed: usize,
    /// `installed / nodes`.
    pub exposure: f64,
    /// Seconds until the last node installed, when every node did.
    pub time_to_full: Option<u64>,
    /// The failure halt, if the rollout halted.
    pub halted: Option<Halt>,
    /// When each phase opened (global timeline).
    pub phase_open: Vec<Option<u64>>,
    /// Share of the fleet in the first phase.
    pub canary_share: f64,
    /// Nodes per phase.
    pub cohort_sizes: Vec<usize>,
    /// Nodes per phase that installed.
    pub installed_per_phase: Vec<usize>,
    /// Reports that reached the network (before the halt, or all of them).
    pub reports_delivered: usize,
    /// View lag: distribution, mean and largest drawn, seconds.
    pub lag: LagDistribution,
    pub lag_mean_secs: f64,
    pub lag_max_secs: u64,
}

impl fmt::Display for SimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: usize| 100.0 * x as f64 / self.nodes.max(1) as f64;
        writeln!(f, "nodes:            {}", self.nodes)?;
        let cohorts: Vec<String> = self
            .cohort_sizes
            .iter()
            .map(|c| format!("{:.2} %", pct(*c)))
            .collect();
        let sizes: Vec<String> = self.cohort_sizes.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "cohorts:          {} ({} nodes)",
            cohorts.join(" / "),
            sizes.join(" / ")
        )?;
        writeln!(
            f,
            "view lag:         {} (mean {:.1} s, max {} s)",
            self.lag, self.lag_mean_secs, self.lag_max_secs
        )?;
        writeln!(
            f,
            "installed:        {} ({:.2} % of nodes; canary cohort {:.2} %)",
            self.installed,
            self.exposure * 100.0,
            self.canary_share * 100.0
        )?;
        let per: Vec<String> = self
            .installed_per_phase
            .iter()
            .zip(&self.cohort_sizes)
            .map(|(i, c)| format!("{i}/{c}"))
            .collect();
        writeln!(f, "  per phase:      {}", per.join(", "))?;
        match self.time_to_full {
            Some(t) => writeln!(f, "full rollout in:  {} ({t} s)", humanize(t))?,
            None => writeln!(f, "full rollout:     not reached")?,
        }
        if let Some(h) = &self.halted {
            writeln!(f, "halted:           {h}")?;
        }
        writeln!(f, "reports:          {} delivered", self.reports_delivered)?;
        let opens: Vec<String> = self
            .phase_open
            .iter()
            .map(|o| o.map_or_else(|| "-".to_string(), |t| format!("{t}s")))
            .collect();
        write!(f, "phases opened at: [{}]", opens.join(", "))
    }
}

/// Several results side by side (e.g. from [`scaling`]).
#[derive(Debug, Clone, Copy)]
pub struct ScalingTable<'a>(pub &'a [SimResult]);

impl fmt::Display for ScalingTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9}  {:>10}  {:>22}  halted",
            "nodes", "installed", "time to full rollout"
        )?;
        for r in self.0 {
            let t = r.time_to_full.map_or_else(
                || "not reached".to_string(),
                |t| format!("{t} s ({})", humanize(t)),
            );
            let h = r
                .halted
                .as_ref()
                .map_or_else(String::new, |h| format!("phase {}", halt_phase(h)));
            write!(
                f,
                "\n{:>9}  {:>8.2} %  {:>22}  {h}",
                r.nodes,
                r.exposure * 100.0,
                t
            )?;
        }
        Ok(())
    }
}

fn halt_phase(h: &Halt) -> String {
    match h {
        Halt::Failures { phase, .. } => phase.to_string(),
        Halt::Aborted { .. } => "aborted".to_string(),
        Halt::Yanked { .. } => "yanked".to_string(),
    }
}

fn humanize(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Runs one simulation with exponentially distributed view lags.
pub fn run(p: &SimParams) -> SimResult {
    run_with(p, LagDistribution::Exponential)
}

/// Runs one simulation with the given shape of view lags.
pub fn run_with(p: &SimParams, lag: LagDistribution) -> SimResult {
    simulate(p, lag, false).0
}

/// Runs the same scenario at several fleet sizes.
pub fn scaling(p: &SimParams, sizes: &[usize]) -> Vec<SimResult> {
    sizes
        .iter()
        .map(|&n| {
            run(&SimParams {
                nodes: n,
                ..p.clone()
            })
        })
        .collect()
}

const NEVER: u64 = u64::MAX;

/// Each node's phase by the cohort rule over the whole fleet (what [`crate::Cohorts`]
/// computes, without a copy of every id per node).
fn phases(plan: &RolloutPlan, release: &Hash32, ids: &[KeyId]) -> Vec<usize> {
    let ranks: Vec<Rank> = ids.iter().map(|id| rank(release, id)).collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_unstable_by(|&a, &b| (ranks[a], ids[a]).cmp(&(ranks[b], ids[b])));
    let mut phase = vec![0usize; ids.len()];
    for (position, &i) in order.iter().enumerate() {
        phase[i] = phase_at(phase_of(plan, ranks[i]), position);
    }
    phase
}

/// The simulation; with `keep`, also the delivered reports (to check the timeline against
/// [`crate::evaluate_ranked`]).
fn simulate(
    p: &SimParams,
    lag_shape: LagDistribution,
    keep: bool,
) -> (SimResult, Vec<RankedReport>) {
    let nodes = p.nodes.min(MAX_SIM_NODES);
    let n_phases = p.plan.phases.len();
    let failure_prob = p.failure_prob.clamp(0.0, 1.0);
    let report_loss = p.report_loss.clamp(0.0, 1.0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed);
    let release = Hash32(*blake3::hash(&p.seed.to_le_bytes()).as_bytes());
    let spread = Duration::from_secs(p.spread_secs);

    let ids: Vec<KeyId> = (0..nodes)
        .map(|i| {
            let mut h = blake3::Hasher::new();
            h.update(&p.seed.to_le_bytes());
            h.update(&(i as u64).to_le_bytes());
            KeyId(*h.finalize().as_bytes())
        })
        .collect();
    let phase = phases(&p.plan, &release, &ids);
    let delay: Vec<u64> = ids
        .iter()
        .map(|id| install_delay(&release, id, spread).as_secs())
        .collect();
    let mut lag = Vec::with_capacity(nodes);
    let mut fails = Vec::with_capacity(nodes);
    let mut lost = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        lag.push(lag_shape.sample(&mut rng, p.gossip_delay_secs));
        fails.push(rng.random::<f64>() < failure_prob);
        lost.push(rng.random::<f64>() < report_loss);
    }
    let mut by_phase: Vec<Vec<u32>> = vec![Vec::new(); n_phases];
    for (i, k) in phase.iter().enumerate() {
        if let (Some(list), Ok(i)) = (by_phase.get_mut(*k), u32::try_from(i)) {
            list.push(i);
        }
    }
    let known: Vec<usize> = by_phase.iter().map(Vec::len).collect();

    let mut tl: RolloutTimeline<u32> =
        RolloutTimeline::new(&p.plan, 0, ControlState::default(), &known);
    tl.settle(0);
    // Per phase: the date of the report that decided its opening, and the opening time
    // every view that has seen that report believes in.
    let mut decided: Vec<Option<u64>> = vec![None; n_phases];
    let mut install_at = vec![NEVER; nodes];
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut batch: Vec<(u32, usize, HealthStatus)> = Vec::new();
    let mut kept = Vec::new();
    let mut delivered = 0usize;
    loop {
        // Schedule the installs of every phase whose opening is now decided.
        for k in 0..n_phases {
            if decided[k].is_some() {
                continue;
            }
            let believed = tl.opened_at()[k]
                .or_else(|| tl.next_opening().filter(|(j, _)| *j == k).map(|(_, t)| t));
            let Some(g) = believed else { break };
            let d = match k.checked_sub(1) {
                None => 0,
                Some(prev) => {
                    let before = decided[prev].unwrap_or(0);
                    let quorum = if tl.reports_needed(prev) > 0 {
                        tl.quorum_at(prev).unwrap_or(before)
                    } else {
                        before
                    };
                    let first = tl.first_report_at(prev).unwrap_or(before);
                    before.max(quorum).max(first)
                }
            };
            decided[k] = Some(d);
            for &i in &by_phase[k] {
                let i_us = i as usize;
                let at = g
                    .saturating_add(delay[i_us])
                    .max(d.saturating_add(lag[i_us]));
                install_at[i_us] = at;
                if !lost[i_us] {
                    heap.push(Reverse((at.saturating_add(p.install_secs), i)));
                }
            }
        }
        if tl.halted_at().is_some() {
            break;
        }
        let next_report = heap.peek().map(|Reverse((t, _))| *t);
        let next_gate = tl.next_opening().map(|(_, t)| t);
        match (next_report, next_gate) {
            (None, None) => break,
            (r, Some(g)) if r.is_none_or(|r| g < r) => {
                if g > p.horizon_secs {
                    break;
                }
                tl.settle(g);
            }
            (Some(t), _) => {
                if t > p.horizon_secs {
                    break;
                }
                batch.clear();
                while let Some(Reverse((x, i))) = heap.peek().copied() {
                    if x != t {
                        break;
                    }
                    heap.pop();
                    let i_us = i as usize;
                    let status = if fails[i_us] {
                        HealthStatus::Failed
                    } else {
                        HealthStatus::Healthy
                    };
                    batch.push((i, phase[i_us], status));
                    if keep {
                        kept.push(RankedReport {
                            at: t,
                            phase: phase[i_us],
                            node: ids[i_us],
                            status,
                        });
                    }
                }
                delivered += batch.len();
                tl.ingest(t, &batch);
            }
            (None, Some(_)) => break, // unreachable: covered by the arm above
        }
    }

    let halt_at = tl.halted_at();
    let mut installed = 0usize;
    let mut installed_per_phase = vec![0usize; n_phases];
    let mut last = 0u64;
    for i in 0..nodes {
        let at = install_at[i];
        if at == NEVER || at > p.horizon_secs {
            continue;
        }
        if halt_at.is_some_and(|h| at >= h.saturating_add(lag[i])) {
            continue;
        }
        installed += 1;
        installed_per_phase[phase[i]] += 1;
        last = last.max(at);
    }
    let lag_max_secs = lag.iter().copied().max().unwrap_or(0);
    let lag_mean_secs = lag.iter().map(|x| *x as f64).sum::<f64>() / nodes.max(1) as f64;
    let result = SimResult {
        nodes,
        installed,
        exposure: installed as f64 / nodes.max(1) as f64,
        time_to_full: (installed == nodes && nodes > 0).then_some(last),
        halted: tl.failure_halt().cloned(),
        phase_open: tl.opened_at().to_vec(),
        canary_share: known.first().copied().unwrap_or(0) as f64 / nodes.max(1) as f64,
        cohort_sizes: known,
        installed_per_phase,
        reports_delivered: delivered,
        lag: lag_shape,
        lag_mean_secs,
        lag_max_secs,
    };
    (result, kept)
}

#[cfg(test)]
mod tests {
    use upswarm_proto::{Phase, UpdateType};

    use super::*;
    use crate::gate::evaluate_ranked;

    fn params(nodes: usize, failure_prob: f64) -> SimParams {
        SimParams {
            nodes,
            plan: RolloutPlan::default_for(UpdateType::Minor, false),
            seed: 7,
            gossip_delay_secs: 5.0,
            report_loss: 0.05,
            failure_prob,
            install_secs: 120,
            spread_secs: 300,
            horizon_secs: 30 * 24 * 3600,
        }
    }

    #[test]
    fn a_good_release_reaches_everyone() {
        let r = run(&params(5_000, 0.0));
        assert_eq!(r.installed, 5_000, "{r}");
        assert!(r.halted.is_none());
        let t = r.time_to_full.unwrap();
        // Soak-bound: three one-hour soaks, then the last phase's spread.
        assert!(t >= 3 * 3600, "{r}");
        assert!(t <= 3 * 3600 + 300 + 600, "{r}");
        assert!(r.phase_open.iter().all(Option::is_some));
    }

    #[test]
    fn a_bad_release_stops_at_the_canaries() {
        for failure in [1.0, 0.5] {
            let r = run(&params(5_000, failure));
            assert!(
                matches!(r.halted, Some(Halt::Failures { phase: 0, .. })),
                "{r}"
            );
            assert!(r.exposure <= r.canary_share + 0.01, "{r}");
            assert_eq!(r.phase_open[1], None);
            assert_eq!(r.installed_per_phase[1..].iter().sum::<usize>(), 0, "{r}");
        }
    }

    #[test]
    fn deterministic() {
        let a = run(&params(2_000, 0.3));
        let b = run(&params(2_000, 0.3));
        assert_eq!(a, b);
        let c = run(&SimParams {
            seed: 8,
            ..params(2_000, 0.3)
        });
        assert_ne!(
            a.cohort_sizes, c.cohort_sizes,
            "another seed, other cohorts"
        );
    }

    /// The simulator's global timeline is exactly what `evaluate_ranked` computes from the
    /// reports the network saw.
    #[test]
    fn the_simulated_timeline_is_the_gate_function() {
        for failure in [0.0, 0.08, 1.0] {
            let p = params(3_000, failure);
            let (r, reports) = simulate(&p, LagDistribution::Exponential, true);
            let now = reports
                .last()
                .map_or(0, |x| x.at)
                .max(r.phase_open.iter().flatten().copied().max().unwrap_or(0));
            let e = evaluate_ranked(
                &p.plan,
                0,
                reports,
                &ControlState::default(),
                &r.cohort_sizes,
                now,
                0,
            );
            assert_eq!(e.opened_at, r.phase_open, "failure {failure}");
            assert_eq!(e.halted, r.halted, "failure {failure}");
            assert!(
                e.out_of_cohort.is_empty(),
                "honest nodes never report early"
            );
        }
    }

    /// The acceptance scenario at full size (≈ 1 s in a debug build): a bad release under
    /// the minor default plan reaches at most the canary share + 1 point of 100 000 nodes;
    /// a good one reaches everyone.
    #[test]
    fn a_hundred_thousand_nodes() {
        let bad = run(&params(100_000, 1.0));
        assert!(bad.exposure <= bad.canary_share + 0.01, "{bad}");
        assert!(
            bad.canary_share > 0.045 && bad.canary_share < 0.055,
            "{bad}"
        );
        let good = run(&params(100_000, 0.0));
        assert_eq!(good.installed, 100_000, "{good}");
    }

    #[test]
    fn lag_shapes_and_tiny_fleets() {
        for shape in [
            LagDistribution::Fixed,
            LagDistribution::Uniform,
            LagDistribution::Exponential,
        ] {
            let r = run_with(&params(1_000, 1.0), shape);
            assert!(r.halted.is_some(), "{shape}: {r}");
            assert!((r.lag_mean_secs - 5.0).abs() < 1.0, "{shape}: {r}");
        }
        // Eight nodes, minor plan: the canary cohort by rank is usually empty; the lowest
        // ranked node is the canary all the same, and the rollout completes.
        let r = run(&SimParams {
            report_loss: 0.0,
            ..params(8, 0.0)
        });
        assert_eq!(r.installed, 8, "{r}");
        assert!(r.cohort_sizes[0] >= 1, "{r}");
        let r = run(&params(0, 0.0));
        assert_eq!((r.installed, r.time_to_full), (0, None));
    }

    /// The fleet (`upswarm sim --nodes 3`): three nodes have a canary, a bad release
    /// halts there, a good one reaches everyone one phase after the other.
    #[test]
    fn three_nodes_have_a_canary() {
        for seed in 0..50 {
            let p = SimParams {
                seed,
                report_loss: 0.0,
                ..params(3, 1.0)
            };
            let bad = run(&p);
            assert!(bad.cohort_sizes[0] >= 1, "{bad}");
            assert!(
                matches!(bad.halted, Some(Halt::Failures { phase: 0, .. })),
                "{bad}"
            );
            // The first failure halts: a second canary still waiting out its delay never
            // installs.
            assert!(bad.installed >= 1, "{bad}");
            assert_eq!(bad.installed, bad.installed_per_phase[0], "{bad}");
            assert_eq!(bad.phase_open[1], None, "{bad}");
            let good = run(&SimParams {
                failure_prob: 0.0,
                ..p
            });
            assert_eq!(good.installed, 3, "{good}");
            // Phases 0..=k hold at least k + 1 nodes.
            let mut sum = 0;
            for (k, n) in good.cohort_sizes.iter().enumerate() {
                sum += n;
                assert!(sum >= (k + 1).min(3), "{good}");
            }
        }
    }

    #[test]
    fn the_simulated_cohorts_are_the_cohort_rule() {
        let p = params(500, 0.0);
        let release = Hash32(*blake3::hash(&p.seed.to_le_bytes()).as_bytes());
        let ids: Vec<KeyId> = (0..40u64)
            .map(|i| {
                let mut h = blake3::Hasher::new();
                h.update(&p.seed.to_le_bytes());
                h.update(&i.to_le_bytes());
                KeyId(*h.finalize().as_bytes())
            })
            .collect();
        let cohorts = crate::Cohorts::new(&p.plan, &release, ids.iter().copied());
        let phases = phases(&p.plan, &release, &ids);
        for (id, k) in ids.iter().zip(&phases) {
            assert_eq!(cohorts.phase(id), *k);
        }
        assert!(phases.contains(&0));
    }

    #[test]
    fn a_stalled_rollout_is_reported() {
        // Every report lost: phase 0's quorum never comes.
        let p = SimParams {
            report_loss: 1.0,
            ..params(1_000, 0.0)
        };
        let r = run(&p);
        assert_eq!(r.time_to_full, None);
        assert_eq!(r.installed, r.cohort_sizes[0], "{r}");
        assert_eq!(r.phase_open[1], None);
    }

    #[test]
    fn single_phase_plan_installs_everyone_at_once() {
        let p = SimParams {
            plan: RolloutPlan {
                phases: vec![Phase {
                    until_bp: 10_000,
                    min_soak_secs: 0,
                    max_failure_bp: 1000,
                    min_reports: 20,
                }],
            },
            ..params(2_000, 0.0)
        };
        let r = run(&p);
        assert_eq!(r.installed, 2_000);
        assert!(r.time_to_full.unwrap() <= 300 + r.lag_max_secs);
    }

    #[test]
    fn validation() {
        assert!(params(10, 0.0).validate().is_ok());
        assert!(matches!(
            params(10, 1.5).validate(),
            Err(SimError::Probability { .. })
        ));
        let p = SimParams {
            gossip_delay_secs: f64::NAN,
            ..params(10, 0.0)
        };
        assert!(matches!(p.validate(), Err(SimError::GossipDelay(_))));
        let p = SimParams {
            plan: RolloutPlan { phases: vec![] },
            ..params(10, 0.0)
        };
        assert_eq!(p.validate(), Err(SimError::EmptyPlan));
        // Out-of-range values do not panic.
        let r = run(&SimParams {
            failure_prob: 7.0,
            report_loss: -1.0,
            gossip_delay_secs: f64::INFINITY,
            ..params(50, 0.0)
        });
        assert_eq!(r.nodes, 50);
        assert_eq!(run(&p).installed, 0);
    }
}
