//! The rollout simulator's acceptance figures (BENCHMARKS.md, "Rollout simulator").
//!
//! ```text
//! cargo run --release -p upswarm-rollout --example rollout_sim [NODES=100000] [SEEDS=10]
//! ```
//!
//! Common parameters: view lag exponential with mean 5 s, 5 % of reports lost, install →
//! report 120 s, installs spread over 300 s inside a phase, horizon 90 days.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use upswarm_proto::{RolloutPlan, UpdateType};
use upswarm_rollout::sim::{self, LagDistribution, ScalingTable, SimParams, SimResult};

fn base(nodes: usize, ty: UpdateType, failure_prob: f64, seed: u64) -> SimParams {
    SimParams {
        nodes,
        plan: RolloutPlan::default_for(ty, false),
        seed,
        gossip_delay_secs: 5.0,
        report_loss: 0.05,
        failure_prob,
        install_secs: 120,
        spread_secs: 300,
        horizon_secs: 90 * 24 * 3600,
    }
}

fn timed(p: &SimParams, lag: LagDistribution) -> (SimResult, f64) {
    let t = Instant::now();
    let r = sim::run_with(p, lag);
    (r, t.elapsed().as_secs_f64())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seeds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    println!("## Bad release: exposure (target ≤ canary share + 1 point)\n");
    println!(
        "| plan | failure | lag | spread | nodes | canary | installed (worst of {seeds} seeds) | mean | halted in | wall (one run) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let exp = LagDistribution::Exponential;
    let scenarios = [
        (UpdateType::Minor, 1.0, exp, 5.0, 300),
        (UpdateType::Minor, 0.5, exp, 5.0, 300),
        (UpdateType::Minor, 0.2, exp, 5.0, 300),
        (UpdateType::Minor, 1.0, exp, 60.0, 300),
        (UpdateType::Minor, 1.0, LagDistribution::Uniform, 30.0, 300),
        (UpdateType::Minor, 1.0, exp, 600.0, 300),
        (UpdateType::Minor, 1.0, exp, 5.0, 60),
        (UpdateType::Minor, 1.0, exp, 5.0, 3600),
        (UpdateType::Patch, 1.0, exp, 5.0, 300),
        (UpdateType::Major, 1.0, exp, 5.0, 300),
    ];
    for (ty, failure, lag, mean, spread) in scenarios {
        let mut worst = 0.0f64;
        let mut sum = 0.0;
        let mut canary = 0.0;
        let mut phases = std::collections::BTreeSet::new();
        let mut wall = 0.0;
        for seed in 1..=seeds {
            let p = SimParams {
                gossip_delay_secs: mean,
                spread_secs: spread,
                ..base(nodes, ty, failure, seed)
            };
            let (r, w) = timed(&p, lag);
            wall = w;
            worst = worst.max(r.exposure);
            sum += r.exposure;
            canary = r.canary_share;
            phases.insert(match &r.halted {
                Some(upswarm_rollout::Halt::Failures { phase, .. }) => phase.to_string(),
                _ => "not halted".to_string(),
            });
        }
        println!(
            "| {ty} | {failure} | {lag} {mean} s | {spread} s | {nodes} | {:.2} % | **{:.2} %** | {:.2} % | {} | {:.2} s |",
            canary * 100.0,
            worst * 100.0,
            sum / seeds as f64 * 100.0,
            phases.into_iter().collect::<Vec<_>>().join(", "),
            wall
        );
    }

    println!("\n## Good release: time to full rollout vs fleet size (minor plan)\n");
    for ty in [UpdateType::Minor, UpdateType::Patch, UpdateType::Major] {
        let t = Instant::now();
        let results = sim::scaling(&base(0, ty, 0.0, 1), &[1_000, 10_000, 100_000]);
        println!("{ty}:\n```\n{}\n```", ScalingTable(&results));
        println!(
            "(all three sizes: {:.2} s wall)\n",
            t.elapsed().as_secs_f64()
        );
    }

    // Without soaks, the time a phase takes is the time its quorum takes to arrive, which
    // depends on the cohort's size.
    let fast = RolloutPlan {
        phases: RolloutPlan::default_for(UpdateType::Minor, false)
            .phases
            .into_iter()
            .map(|p| upswarm_proto::Phase {
                min_soak_secs: 0,
                ..p
            })
            .collect(),
    };
    let results = sim::scaling(
        &SimParams {
            plan: fast,
            ..base(0, UpdateType::Minor, 0.0, 1)
        },
        &[100, 1_000, 10_000, 100_000],
    );
    println!(
        "minor plan without soaks (gates wait for 20 reports only):\n```\n{}\n```\n",
        ScalingTable(&results)
    );

    println!("## False halts: a release with a true failure rate under the 10 % limit\n");
    println!("| true failure rate | nodes | runs | halted | median time to full |");
    println!("|---|---|---|---|---|");
    for failure in [0.01, 0.02, 0.05] {
        let mut halted = 0;
        let mut times = Vec::new();
        for seed in 1..=seeds {
            let r = sim::run(&base(nodes, UpdateType::Minor, failure, seed));
            if r.halted.is_some() {
                halted += 1;
            }
            times.extend(r.time_to_full);
        }
        times.sort_unstable();
        let median = times
            .get(times.len() / 2)
            .map_or_else(|| "-".to_string(), |t| format!("{t} s"));
        println!("| {failure} | {nodes} | {seeds} | {halted} | {median} |");
    }

    println!("\n## One run in full (bad release, minor plan, seed 1)\n");
    println!(
        "```\n{}\n```",
        sim::run(&base(nodes, UpdateType::Minor, 1.0, 1))
    );
}
