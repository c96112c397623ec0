//! A deterministic rollout simulator running the real gate logic ([`evaluate_ranked`])
//! over many simulated nodes.
//!
//! Model (documented assumptions):
//! - Every node knows every other node (`known_per_phase` = the true cohort sizes).
//! - Each node `i` sees the network with a lag `g_i`, drawn from an exponential
//!   distribution with mean `gossip_delay_secs`: it learns that a phase opened (or that the
//!   rollout halted) `g_i` seconds after the time the gate rule gives. The gate rule itself
//!   is evaluated on report timestamps, so every node computes the same opening times.
//! - A node of an open phase installs at `open + g_i + delay_i` (its deterministic install
//!   delay within `spread_secs`) unless it has learnt of a halt by then; it reports
//!   (failed with probability `failure_prob`, else healthy) `install_secs` later. Each report
//!   is lost for everyone with probability `report_loss`.
//! - Time is in whole seconds from the release's start.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use upswarm_proto::{Hash32, HealthStatus, KeyId, RolloutPlan};

use crate::cohort::{install_delay, phase_of, rank};
use crate::control::ControlState;
use crate::gate::{Halt, RankedReport, evaluate_ranked};

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub nodes: usize,
    pub plan: RolloutPlan,
    pub seed: u64,
    /// Mean of each node's view lag, seconds.
    pub gossip_delay_secs: f64,
    /// Probability that a report never reaches anyone.
    pub report_loss: f64,
    /// Probability that an install fails.
    pub failure_prob: f64,
    /// Seconds from install to the node's health report.
    pub install_secs: u64,
    /// Install delays inside a phase are spread over this many seconds.
    pub spread_secs: u64,
    /// Give up after this many seconds.
    pub horizon_secs: u64,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub nodes: usize,
    pub installed: usize,
    /// Fraction of all nodes that installed the release.
    pub exposure: f64,
    /// Seconds until the last node installed, when every node did.
    pub time_to_full: Option<u64>,
    pub halted: Option<Halt>,
    pub phase_open: Vec<Option<u64>>,
    /// Share of the fleet in the first phase.
    pub canary_share: f64,
}

impl fmt::Display for SimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "nodes:            {}", self.nodes)?;
        writeln!(
            f,
            "canary cohort:    {:.2} % of nodes",
            self.canary_share * 100.0
        )?;
        writeln!(
            f,
            "installed:        {} ({:.2} % of nodes)",
            self.installed,
            self.exposure * 100.0
        )?;
        match self.time_to_full {
            Some(t) => writeln!(f, "full rollout in:  {} ({t} s)", humanize(t))?,
            None => writeln!(f, "full rollout:     not reached")?,
        }
        if let Some(h) = &self.halted {
            writeln!(f, "halted:           {h}")?;
        }
        let opens: Vec<String> = self
            .phase_open
            .iter()
            .map(|o| o.map_or_else(|| "-".to_string(), |t| format!("{t}s")))
            .collect();
        write!(f, "phases opened at: [{}]", opens.join(", "))
    }
}

fn humanize(secs: u64) -> String {
    format!("{}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

struct SimNode {
    phase: usize,
    lag: u64,
    delay: u64,
    fails: bool,
    lost: bool,
}

fn exp_sample(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    let u: f64 = rng.random::<f64>().max(1e-12);
    (-u.ln() * mean).round() as u64
}

/// Runs one simulation.
pub fn run(p: &SimParams) -> SimResult {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let release = Hash32(*blake3::hash(&p.seed.to_le_bytes()).as_bytes());
    let n_phases = p.plan.phases.len();
    let mut known = vec![0usize; n_phases];
    let ids: Vec<KeyId> = (0..p.nodes)
        .map(|i| {
            let mut h = blake3::Hasher::new();
            h.update(&p.seed.to_le_bytes());
            h.update(&(i as u64).to_le_bytes());
            KeyId(*h.finalize().as_bytes())
        })
        .collect();
    let nodes: Vec<SimNode> = ids
        .iter()
        .map(|id| {
            let id = *id;
            let phase = phase_of(&p.plan, rank(&release, &id));
            known[phase] += 1;
            SimNode {
                phase,
                lag: exp_sample(&mut rng, p.gossip_delay_secs),
                delay: install_delay(&release, &id, Duration::from_secs(p.spread_secs)).as_secs(),
                fails: rng.random::<f64>() < p.failure_prob,
                lost: rng.random::<f64>() < p.report_loss,
            }
        })
        .collect();

    let control = ControlState::default();
    let mut reports: Vec<RankedReport> = Vec::new();
    let mut install_at: Vec<Option<u64>> = vec![None; p.nodes];
    let mut scheduled = vec![false; n_phases];
    let mut opened: Vec<Option<u64>> = vec![None; n_phases];
    opened[0] = Some(0);
    let mut halt: Option<(Halt, u64)> = None;
    loop {
        // Nodes of phases that just opened install (a halt is handled below).
        for k in 0..n_phases {
            let (Some(t), false) = (opened[k], scheduled[k]) else {
                continue;
            };
            scheduled[k] = true;
            for (i, node) in nodes.iter().enumerate().filter(|(_, nd)| nd.phase == k) {
                let at = t + node.lag + node.delay;
                install_at[i] = Some(at);
                if !node.lost {
                    let status = if node.fails {
                        HealthStatus::Failed
                    } else {
                        HealthStatus::Healthy
                    };
                    reports.push(RankedReport {
                        at: at + p.install_secs,
                        phase: k,
                        node: ids[i],
                        status,
                    });
                }
            }
        }
        let open_now = opened.iter().take_while(|o| o.is_some()).count();
        if open_now == n_phases {
            // Everything open; a late halt can still stop nodes that had not installed yet.
            let e = evaluate_ranked(
                &p.plan,
                0,
                reports.clone(),
                &control,
                &known,
                p.horizon_secs,
                0,
            );
            if let Some(Halt::Failures { at, .. }) = &e.halted {
                halt = e.halted.clone().map(|h| (h, *at));
            }
            break;
        }
        // The first time at which another phase opens or the rollout halts.
        let pred = |t: u64| {
            let e = evaluate_ranked(&p.plan, 0, reports.clone(), &control, &known, t, 0);
            (e.open > open_now || e.halted.is_some(), e)
        };
        if !pred(p.horizon_secs).0 {
            break;
        }
        let (mut lo, mut hi) = (0u64, p.horizon_secs);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid).0 { hi = mid } else { lo = mid + 1 }
        }
        let (_, e_at) = pred(lo);
        if let Some(h) = e_at.halted.clone() {
            let at = match &h {
                Halt::Failures { at, .. } => *at,
                _ => lo,
            };
            halt = Some((h, at));
            break;
        }
        for (k, t) in e_at.opened_at.iter().enumerate() {
            if opened[k].is_none() {
                opened[k] = *t;
            }
        }
    }
    // Nodes that learnt of the halt before their install time did not install.
    let mut installed = 0usize;
    let mut last = 0u64;
    for (i, node) in nodes.iter().enumerate() {
        let Some(at) = install_at[i] else { continue };
        if let Some((_, h)) = &halt
            && at >= h + node.lag
        {
            continue;
        }
        installed += 1;
        last = last.max(at);
    }
    SimResult {
        nodes: p.nodes,
        installed,
        exposure: installed as f64 / p.nodes.max(1) as f64,
        time_to_full: (installed == p.nodes).then_some(last),
        halted: halt.map(|(h, _)| h),
        phase_open: opened,
        canary_share: known.first().copied().unwrap_or(0) as f64 / p.nodes.max(1) as f64,
    }
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

#[cfg(test)]
mod tests {
    use upswarm_proto::UpdateType;

    use super::*;

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
        assert!(r.time_to_full.is_some());
        assert!(r.halted.is_none());
        // Soak-bound: three one-hour soaks before the last phase.
        assert!(r.time_to_full.unwrap() >= 3 * 3600, "{r}");
    }

    #[test]
    fn a_bad_release_stops_at_the_canaries() {
        let r = run(&params(5_000, 1.0));
        assert!(
            matches!(r.halted, Some(Halt::Failures { phase: 0, .. })),
            "{r}"
        );
        assert!(r.exposure <= r.canary_share + 0.01, "{r}");
        assert_eq!(r.phase_open[1], None);
    }

    #[test]
    fn deterministic() {
        let a = run(&params(2_000, 0.3));
        let b = run(&params(2_000, 0.3));
        assert_eq!(
            (a.installed, a.time_to_full, a.phase_open),
            (b.installed, b.time_to_full, b.phase_open)
        );
    }
}
