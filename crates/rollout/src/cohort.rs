//! Ranks and cohorts: which phase of a release's rollout a node belongs to, and when inside
//! that phase it installs.
//!
//! - `rank(release, node)` = the first 8 bytes, big-endian, of
//!   `blake3(release id bytes ‖ node id bytes)`, read as a fraction of 2^64 in [0, 1).
//! - A node's phase is the first phase whose cumulative share `until_bp` *exceeds* its rank:
//!   `rank < until_bp × 2^64 / 10000`, compared in `u128` integer arithmetic, so every
//!   implementation agrees on every node, including nodes exactly on a boundary.
//! - Its install delay inside the phase is
//!   `first 8 bytes of blake3(release ‖ node ‖ "delay") × spread / 2^64`, in `[0, spread)`.
//!
//! Anyone who knows a release id and a node id can recompute all three, so a node that
//! installs before its phase opened can be recognised by everyone.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use upswarm_proto::manifest::BP_ALL;
use upswarm_proto::{Hash32, KeyId, RolloutPlan};

/// A node's position in a release's rollout: a fraction of 2^64 (0 = first to install).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rank(pub u64);

impl Rank {
    /// The rank as a fraction in [0, 1), for display only (decisions use integers).
    pub fn fraction(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4} %", self.fraction() * 100.0)
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

/// Whether `rank` is below `bp` basis points of the whole range: `rank < bp × 2^64 / 10000`
/// (exact, in `u128`). `bp` above 10 000 counts as 10 000.
pub fn below(rank: Rank, bp: u16) -> bool {
    let bp = bp.min(BP_ALL);
    let limit = (u128::from(bp) << 64) / u128::from(BP_ALL);
    u128::from(rank.0) < limit
}

/// Index of the first phase whose cumulative share exceeds `rank`. The last phase of a valid
/// plan reaches 100 %, so every rank has a phase (for a malformed plan that stops short, the
/// last index; for an empty plan, 0).
pub fn phase_of(plan: &RolloutPlan, rank: Rank) -> usize {
    plan.phases
        .iter()
        .position(|p| below(rank, p.until_bp))
        .unwrap_or(plan.phases.len().saturating_sub(1))
}

/// A node's install delay inside its phase: `blake3(release ‖ node ‖ "delay")` as a fraction
/// of `spread`, so always `< spread` (zero when `spread` is zero). Spreads the installs of
/// one cohort so that they do not all restart (and all fetch) at once.
pub fn install_delay(release: &Hash32, node: &KeyId, spread: Duration) -> Duration {
    let mut h = blake3::Hasher::new();
    h.update(&release.0);
    h.update(&node.0);
    h.update(b"delay");
    let x = u128::from(first_u64(h.finalize().as_bytes()));
    // x × spread / 2^64 without overflow: spread in nanoseconds is below 2^96, so split it
    // into a high part (< 2^32) and a low part (< 2^64).
    let spread = spread.as_nanos();
    let (hi, lo) = (spread >> 64, spread & u128::from(u64::MAX));
    let nanos = x * hi + ((x * lo) >> 64);
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Where one node stands in one release's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cohort {
    pub rank: Rank,
    /// Index of the node's phase in the plan.
    pub phase: usize,
    /// The phase covers ranks from this share (inclusive) …
    pub from_bp: u16,
    /// … to this share (exclusive), in basis points.
    pub until_bp: u16,
    /// Install delay after the phase opened, whole seconds (rounded down).
    pub delay_secs: u64,
}

impl Cohort {
    /// The cohort of `node` for `release` under `plan`, with installs spread over `spread`.
    pub fn of(plan: &RolloutPlan, release: &Hash32, node: &KeyId, spread: Duration) -> Cohort {
        let rank = rank(release, node);
        let phase = phase_of(plan, rank);
        let until_bp = plan.phases.get(phase).map_or(BP_ALL, |p| p.until_bp);
        let from_bp = phase
            .checked_sub(1)
            .and_then(|i| plan.phases.get(i))
            .map_or(0, |p| p.until_bp);
        Cohort {
            rank,
            phase,
            from_bp,
            until_bp,
            delay_secs: install_delay(release, node, spread).as_secs(),
        }
    }
}

impl fmt::Display for Cohort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rank {} → phase {} ({}–{} of nodes), install delay {} s",
            self.rank,
            self.phase,
            Bp(self.from_bp),
            Bp(self.until_bp),
            self.delay_secs
        )
    }
}

/// Basis points shown as a percentage (`2500` → `25 %`, `125` → `1.25 %`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bp(pub(crate) u16);

impl fmt::Display for Bp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        if frac == 0 {
            write!(f, "{whole} %")
        } else if frac % 10 == 0 {
            write!(f, "{whole}.{} %", frac / 10)
        } else {
            write!(f, "{whole}.{frac:02} %")
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};
    use upswarm_proto::{Phase, UpdateType};

    use super::*;

    fn node(i: u32) -> KeyId {
        KeyId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn rank_is_the_first_eight_bytes_of_blake3_big_endian() {
        let (release, n) = (Hash32([1; 32]), KeyId([2; 32]));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[1; 32]);
        bytes.extend_from_slice(&[2; 32]);
        let h = blake3::hash(&bytes);
        let expected = u64::from_be_bytes(h.as_bytes()[..8].try_into().unwrap());
        assert_eq!(rank(&release, &n), Rank(expected));
    }

    #[test]
    fn boundaries_are_exact() {
        assert!(below(Rank(0), 1));
        assert!(!below(Rank(0), 0), "nothing is below 0 %");
        assert!(below(Rank(u64::MAX), BP_ALL), "everything is below 100 %");
        let half = Rank(1 << 63);
        assert!(!below(half, 5000), "exactly 50 % is not below 50 %");
        assert!(below(Rank((1 << 63) - 1), 5000));
        // 1 bp = 2^64 / 10000 = 1844674407370955.1616 → limit 1844674407370955.
        assert!(below(Rank(1_844_674_407_370_954), 1));
        assert!(!below(Rank(1_844_674_407_370_955), 1));
        assert!(
            below(Rank(u64::MAX), u16::MAX),
            "over 100 % clamps to 100 %"
        );
    }

    #[test]
    fn a_rank_exactly_on_a_phase_boundary_belongs_to_the_next_phase() {
        let plan = RolloutPlan::default_for(UpdateType::Minor, false); // 5 / 25 / 50 / 100
        let limit_25 = u64::try_from((2500u128 << 64) / 10_000).unwrap();
        assert_eq!(phase_of(&plan, Rank(limit_25 - 1)), 1);
        assert_eq!(phase_of(&plan, Rank(limit_25)), 2);
        assert_eq!(phase_of(&plan, Rank(0)), 0);
        assert_eq!(phase_of(&plan, Rank(u64::MAX)), 3);
    }

    /// 10 000 random node ids: each phase of every default plan gets its share within
    /// 4.5 standard deviations of a binomial draw (and in absolute terms within 2 points).
    #[test]
    fn cohorts_have_the_planned_shares() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
        let release = Hash32(rng.random());
        let nodes: Vec<KeyId> = (0..10_000).map(|_| KeyId(rng.random())).collect();
        for ty in UpdateType::ALL {
            let plan = RolloutPlan::default_for(ty, false);
            let mut counts = vec![0usize; plan.phases.len()];
            for n in &nodes {
                counts[phase_of(&plan, rank(&release, n))] += 1;
            }
            let mut prev = 0u16;
            for (k, p) in plan.phases.iter().enumerate() {
                let share = f64::from(p.until_bp - prev) / 10_000.0;
                prev = p.until_bp;
                let n = nodes.len() as f64;
                let sd = (n * share * (1.0 - share)).sqrt();
                let dev = (counts[k] as f64 - n * share).abs();
                assert!(
                    dev <= 4.5 * sd.max(1.0) && dev / n < 0.02,
                    "{ty}: phase {k} has {} of {n} nodes, expected {:.0} ± {sd:.1}",
                    counts[k],
                    n * share
                );
            }
        }
    }

    #[test]
    fn rank_is_deterministic_and_depends_on_both_ids() {
        let (r1, r2) = (Hash32([1; 32]), Hash32([2; 32]));
        assert_eq!(rank(&r1, &node(1)), rank(&r1, &node(1)));
        assert_ne!(rank(&r1, &node(1)), rank(&r2, &node(1)));
        assert_ne!(rank(&r1, &node(1)), rank(&r1, &node(2)));
    }

    #[test]
    fn a_node_is_a_canary_of_some_releases_only() {
        // Cohorts are drawn afresh per release: the same nodes are not always the canaries.
        let plan = RolloutPlan::default_for(UpdateType::Minor, false);
        let canary_count = (0..1000u32)
            .filter(|r| phase_of(&plan, rank(&Hash32::of(&r.to_le_bytes()), &node(7))) == 0)
            .count();
        assert!((20..=85).contains(&canary_count), "{canary_count}");
    }

    #[test]
    fn delays_fall_inside_the_spread_and_cover_it() {
        let spread = Duration::from_secs(60);
        let mut buckets = [0usize; 6];
        for i in 0..6000 {
            let d = install_delay(&Hash32([3; 32]), &node(i), spread);
            assert!(d < spread);
            buckets[(d.as_secs() / 10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (850..=1150).contains(b)),
            "{buckets:?}"
        );
        assert_eq!(
            install_delay(&Hash32([3; 32]), &node(1), Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            install_delay(&Hash32([3; 32]), &node(1), spread),
            install_delay(&Hash32([3; 32]), &node(1), spread),
        );
        assert!(install_delay(&Hash32([3; 32]), &node(1), Duration::MAX) < Duration::MAX);
    }

    #[test]
    fn single_phase_and_malformed_plans() {
        let one = |until_bp| RolloutPlan {
            phases: vec![Phase {
                until_bp,
                min_soak_secs: 0,
                max_failure_bp: 0,
                min_reports: 0,
            }],
        };
        assert_eq!(phase_of(&one(BP_ALL), Rank(u64::MAX)), 0);
        assert_eq!(
            phase_of(&one(10), Rank(u64::MAX)),
            0,
            "short plan: last phase"
        );
        assert_eq!(phase_of(&RolloutPlan { phases: vec![] }, Rank(5)), 0);
    }

    #[test]
    fn cohort_describes_the_phase() {
        let plan = RolloutPlan::default_for(UpdateType::Minor, false);
        let release = Hash32([5; 32]);
        for i in 0..200 {
            let c = Cohort::of(&plan, &release, &node(i), Duration::from_secs(100));
            assert!(below(c.rank, c.until_bp));
            assert!(!below(c.rank, c.from_bp));
            assert!(c.delay_secs < 100);
            assert!(c.to_string().contains(&format!("phase {}", c.phase)));
        }
        assert_eq!(Bp(500).to_string(), "5 %");
        assert_eq!(Bp(125).to_string(), "1.25 %");
        assert_eq!(Bp(2550).to_string(), "25.5 %");
    }
}
