//! `upswarm sim`: the rollout simulator.
//!
//! It must not import daemon internals, touch the network or write files: it runs
//! `upswarm_rollout::sim` in memory and prints the result.

use std::time::Duration;

use upswarm_proto::{RolloutPlan, UpdateType};
use upswarm_rollout::sim::{self, SimParams};

use crate::parse;

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// Update type whose default plan is used.
    #[arg(long = "type", default_value = "minor")]
    update_type: UpdateType,
    /// Custom plan instead: PERCENT[:SOAK[:MAXFAIL%[:MINREPORTS]]], repeatable.
    #[arg(long = "phase", value_parser = parse::phase)]
    phases: Vec<upswarm_proto::Phase>,
    /// Mean gossip delay (each node's view lag), exponential.
    #[arg(long, value_parser = parse::duration, default_value = "5s")]
    gossip_delay: Duration,
    /// Probability that a health report is lost.
    #[arg(long, default_value_t = 0.05)]
    report_loss: f64,
    /// Probability that an install fails (1.0: a bad release).
    #[arg(long, default_value_t = 0.0)]
    failure: f64,
    /// Time from install to the health report.
    #[arg(long, value_parser = parse::duration, default_value = "2m")]
    install: Duration,
    /// Install spread inside a phase.
    #[arg(long, value_parser = parse::duration, default_value = "5m")]
    spread: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run at 1 000, 10 000 and 100 000 nodes and print how time to full rollout scales.
    #[arg(long)]
    scaling: bool,
}

pub(super) fn run(a: &SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.failure),
        "--failure must be between 0 and 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.report_loss),
        "--report-loss must be between 0 and 1"
    );
    let plan = if a.phases.is_empty() {
        RolloutPlan::default_for(a.update_type, false)
    } else {
        RolloutPlan {
            phases: a.phases.clone(),
        }
    };
    let p = SimParams {
        nodes: a.nodes,
        plan,
        seed: a.seed,
        gossip_delay_secs: a.gossip_delay.as_secs_f64(),
        report_loss: a.report_loss,
        failure_prob: a.failure,
        install_secs: a.install.as_secs(),
        spread_secs: a.spread.as_secs(),
        horizon_secs: 90 * 24 * 3600,
    };
    println!("{}", sim::run(&p));
    if a.scaling {
        println!("\nnodes      installed   time to full rollout");
        for r in sim::scaling(&p, &[1_000, 10_000, 100_000]) {
            let t = r
                .time_to_full
                .map_or_else(|| "not reached".to_string(), |t| format!("{t} s"));
            println!("{:>7}   {:>8.2} %   {t}", r.nodes, r.exposure * 100.0);
        }
    }
    Ok(())
}
