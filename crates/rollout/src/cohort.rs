//! Ranks and cohorts.

use std::time::Duration;

use serde::Serialize;
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{Hash32, KeyId, RolloutPlan};

/// A node's position in a release's rollout: a fraction of 2^64 (0 = first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rank(pub u64);

impl Rank {
    /// The rank as a fraction in [0, 1), for display.
    pub fn fraction(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }
}

/// `blake3(release id ‖ node id)`, first 8 bytes big-endian.
pub fn rank(release: &Hash32, node: &KeyId) -> Rank {
    let mut h = blake3::Hasher::new();
    h.update(&release.0);
    h.update(&node.0);
    Rank(first_u64(h.finalize().as_bytes()))
}

fn first_u64(b: &[u8; 32]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_be_bytes(x)
}

/// Whether `rank` is below `bp` basis points of the whole range: `rank < bp × 2^64 / 10000`.
pub fn below(rank: Rank, bp: u16) -> bool {
    let limit = (u128::from(bp) << 64) / u128::from(BP_ALL);
    u128::from(rank.0) < limit
}

/// Index of the first phase whose cumulative share exceeds `rank`. The last phase reaches
/// 100 %, so every rank has a phase (for a malformed plan, the last index).
pub fn phase_of(plan: &RolloutPlan, rank: Rank) -> usize {
    plan.phases
        .iter()
        .position(|p| below(rank, p.until_bp))
        .unwrap_or(plan.phases.len().saturating_sub(1))
}

/// A node's install delay inside its phase: `blake3(release ‖ node ‖ "delay")` as a fraction
/// of `spread`. Spreads the installs of one cohort so they do not all restart at once.
pub fn install_delay(release: &Hash32, node: &KeyId, spread: Duration) -> Duration {
    let mut h = blake3::Hasher::new();
    h.update(&release.0);
    h.update(&node.0);
    h.update(b"delay");
    let x = first_u64(h.finalize().as_bytes());
    let nanos = (u128::from(x) * spread.as_nanos()) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use upswarm_proto::{Phase, UpdateType};

    use super::*;

    fn node(i: u32) -> KeyId {
        KeyId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn boundaries_are_exact() {
        assert!(below(Rank(0), 1));
        assert!(!below(Rank(0), 0));
        assert!(below(Rank(u64::MAX), BP_ALL));
        let half = Rank(1 << 63);
        assert!(!below(half, 5000), "exactly 50 % is not below 50 %");
        assert!(below(Rank((1 << 63) - 1), 5000));
    }

    #[test]
    fn cohorts_have_the_planned_shares() {
        let plan = RolloutPlan::default_for(UpdateType::Minor, false); // 5 / 25 / 50 / 100
        let release = Hash32([7; 32]);
        let mut counts = [0usize; 4];
        let n = 20_000;
        for i in 0..n {
            counts[phase_of(&plan, rank(&release, &node(i)))] += 1;
        }
        let share = |c: usize| c as f64 / f64::from(n);
        assert!((share(counts[0]) - 0.05).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.20).abs() < 0.015, "{counts:?}");
        assert!((share(counts[2]) - 0.25).abs() < 0.015, "{counts:?}");
        assert!((share(counts[3]) - 0.50).abs() < 0.015, "{counts:?}");
    }

    #[test]
    fn rank_is_deterministic_and_depends_on_both_ids() {
        let (r1, r2) = (Hash32([1; 32]), Hash32([2; 32]));
        assert_eq!(rank(&r1, &node(1)), rank(&r1, &node(1)));
        assert_ne!(rank(&r1, &node(1)), rank(&r2, &node(1)));
        assert_ne!(rank(&r1, &node(1)), rank(&r1, &node(2)));
    }

    #[test]
    fn delays_fall_inside_the_spread() {
        let spread = Duration::from_secs(60);
        let mut max = Duration::ZERO;
        for i in 0..1000 {
            let d = install_delay(&Hash32([3; 32]), &node(i), spread);
            assert!(d < spread);
            max = max.max(d);
        }
        assert!(
            max > Duration::from_secs(50),
            "delays should cover the spread"
        );
        assert_eq!(
            install_delay(&Hash32([3; 32]), &node(1), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn single_phase_plan() {
        let plan = RolloutPlan {
            phases: vec![Phase {
                until_bp: BP_ALL,
                min_soak_secs: 0,
                max_failure_bp: 0,
                min_reports: 0,
            }],
        };
        assert_eq!(phase_of(&plan, Rank(u64::MAX)), 0);
    }
}
