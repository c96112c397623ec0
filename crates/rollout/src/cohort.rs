//! Ranks and cohorts: which phase of a release's rollout a node belongs to, and when inside
//! that phase it installs.
//!
//! # The rule
//!
//! Inputs: the release id, the plan's phases `0..n` (phase `k` reaches `until_bp[k]` of the
//! fleet), and the **known nodes**: the node ids the caller knows to exist (see "Known
//! nodes" below). All arithmetic is on integers.
//!
//! 1. **Rank.** `rank(release, node)` = the first 8 bytes, big-endian, of
//!    `blake3(release id bytes ‖ node id bytes)`, read as a fraction of 2^64 in [0, 1).
//! 2. **Phase by rank.** The first phase whose cumulative share `until_bp` *exceeds* the
//!    rank: `rank < until_bp × 2^64 / 10000`, compared in `u128` integer arithmetic, so every
//!    implementation agrees on every node, including nodes exactly on a boundary
//!    ([`phase_of`]; a malformed plan that stops short of 100 %: its last phase).
//! 3. **Install order and position.** The known nodes sorted by `(rank, node id bytes)`,
//!    ascending, are the release's *install order*. A node's **position** is the number of
//!    known nodes that come before it in that order (a known node at the head of the order
//!    has position 0). For a node that is not among the known nodes the position is
//!    computed the same way — where it would stand if it were added — so a node's own
//!    phase does not depend on whether it counts itself.
//! 4. **Phase.** A node's phase is `min(phase by rank, position)` ([`phase_at`]): the node
//!    at position `p` is in phase `p` at the latest. So phases `0..=k` together hold at
//!    least `min(k + 1, N)` of `N` known nodes — **the canary phase is never empty while any
//!    node is known**, and each later phase adds at least one node until every node is
//!    reached. A node placed in an earlier phase than its rank's is *promoted*.
//! 5. **Install delay** inside the phase:
//!    `first 8 bytes of blake3(release ‖ node ‖ "delay") × spread / 2^64`, in `[0, spread)`
//!    ([`install_delay`]).
//!
//! Anyone who knows a release id, a node id and the known nodes can recompute all of it, so
//! a node that installs before its phase opened can be recognised by everyone who knows the
//! same nodes ([`Cohorts`]; `upswarm release inspect --nodes` shows it before publication).
//!
//! # Consequences
//!
//! - **Large fleets are not affected.** Rule 4 changes a phase only when fewer than `k + 1`
//!   known nodes rank into phases `0..=k`. With a 5 % canary phase 0 is empty by rank in
//!   36 % of 20-node fleets, 0.6 % of 100-node fleets and practically never above 200
//!   nodes; with a 1 % canary in 37 % of 100-node fleets. A node's phase is never *later*
//!   than its rank's.
//! - **Phases are contiguous in rank order**: both the phase by rank and the position grow
//!   along the install order, so each cohort is a run of consecutive known nodes, and the
//!   cumulative cohort of phase `k` is the longer of "every node ranked into phases
//!   `0..=k`" and "the first `k + 1` nodes of the install order".
//! - **Cohorts depend on the known nodes.** Nodes that know the same nodes compute the same
//!   cohorts. Known nodes only ever grow; adding a node never moves any other node to an
//!   *earlier* phase (positions only grow), it may move nodes ranked after it one phase
//!   later (at most: their position grows by one), and the cumulative cohort of every
//!   phase never shrinks.
//! - **Views that differ.** A node that does not (yet) know a lower-ranked node may place
//!   itself in an earlier phase than a node that knows it — e.g. the canary of its own
//!   view, promoted, while the better informed place it in phase 1. It installs as its
//!   view allows; in the other views its report predates its phase and is **out of
//!   cohort** ([`crate::gate`]): it never counts toward a quorum, and its status counts in
//!   its phase's failure rate once that phase opens. The extra exposure is bounded by the
//!   nodes whose views lag (each installs as the canary of a smaller fleet), and it ends
//!   once health reports have spread.
//! - **A fleet where nobody knows anybody** (the first release ever): every node is at
//!   position 0 of its own view and installs at once. Operators ship the first release as
//!   one that may reach everyone (a hotfix, or a plan of one phase).
//!
//! # Known nodes
//!
//! The daemon knows a node once it has verified a signed health report from it (about any
//! release), and knows itself when it manages a program (a node that installs nothing —
//! a publisher, a seed — would otherwise take a place in the order that nobody fills).
//! Every node that reported anything is known everywhere once gossip has spread it.
//! [`crate::gate::evaluate`] adds every node that reported about the release to the known
//! nodes it is given.

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

/// A node's phase from its phase by rank and its position in the install order (rule 4):
/// `min(rank_phase, position)`.
pub fn phase_at(rank_phase: usize, position: usize) -> usize {
    rank_phase.min(position)
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

/// The cohorts of one release over a set of known nodes (rules 1–4 of the module docs):
/// the install order, and each node's phase in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohorts {
    plan: RolloutPlan,
    release: Hash32,
    /// The known nodes in install order: `(rank, id)` ascending, no duplicates.
    order: Vec<(Rank, KeyId)>,
}

/// Where one known node stands in the install order of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub node: KeyId,
    pub rank: Rank,
    /// Known nodes before it in the install order.
    pub position: usize,
    /// Its phase by rank alone (rule 2).
    pub rank_phase: usize,
    /// Its phase (rule 4): `min(rank_phase, position)`.
    pub phase: usize,
}

impl Placement {
    /// Placed in an earlier phase than its rank's.
    pub fn promoted(&self) -> bool {
        self.phase < self.rank_phase
    }
}

impl Cohorts {
    /// The cohorts of `release` under `plan` over the `known` nodes (duplicates count once;
    /// the order they come in does not matter).
    pub fn new(
        plan: &RolloutPlan,
        release: &Hash32,
        known: impl IntoIterator<Item = KeyId>,
    ) -> Self {
        let mut order: Vec<(Rank, KeyId)> =
            known.into_iter().map(|n| (rank(release, &n), n)).collect();
        order.sort_unstable();
        order.dedup();
        Cohorts {
            plan: plan.clone(),
            release: *release,
            order,
        }
    }

    /// Number of known nodes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// No node is known.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `node` is one of the known nodes.
    pub fn knows(&self, node: &KeyId) -> bool {
        self.order
            .binary_search(&(rank(&self.release, node), *node))
            .is_ok()
    }

    /// Known nodes before `node` in the install order: its index if it is known, else where
    /// it would stand if it were added (rule 3).
    pub fn position(&self, node: &KeyId) -> usize {
        let key = (rank(&self.release, node), *node);
        self.order.partition_point(|x| *x < key)
    }

    /// The phase of `node` (rule 4), known or not.
    pub fn phase(&self, node: &KeyId) -> usize {
        self.placement(node).phase
    }

    /// Where `node` stands (known or not).
    pub fn placement(&self, node: &KeyId) -> Placement {
        let rank = rank(&self.release, node);
        let position = self.position(node);
        let rank_phase = phase_of(&self.plan, rank);
        Placement {
            node: *node,
            rank,
            position,
            rank_phase,
            phase: phase_at(rank_phase, position),
        }
    }

    /// Every known node in install order.
    pub fn placements(&self) -> impl Iterator<Item = Placement> + '_ {
        self.order
            .iter()
            .enumerate()
            .map(|(position, &(rank, node))| {
                let rank_phase = phase_of(&self.plan, rank);
                Placement {
                    node,
                    rank,
                    position,
                    rank_phase,
                    phase: phase_at(rank_phase, position),
                }
            })
    }

    /// Known nodes per phase (one entry per phase of the plan).
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0usize; self.plan.phases.len()];
        for p in self.placements() {
            if let Some(s) = sizes.get_mut(p.phase) {
                *s += 1;
            }
        }
        sizes
    }

    /// The [`Cohort`] of `node` (known or not), with installs spread over `spread`.
    pub fn cohort(&self, node: &KeyId, spread: Duration) -> Cohort {
        let p = self.placement(node);
        let share = |k: usize| self.plan.phases.get(k).map_or(BP_ALL, |p| p.until_bp);
        let from = |k: usize| k.checked_sub(1).map_or(0, share);
        Cohort {
            rank: p.rank,
            phase: p.phase,
            from_bp: from(p.rank_phase),
            until_bp: share(p.rank_phase),
            rank_phase: p.rank_phase,
            position: p.position,
            known_nodes: self.len(),
            delay_secs: install_delay(&self.release, node, spread).as_secs(),
        }
    }
}

/// Where one node stands in one release's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cohort {
    pub rank: Rank,
    /// Index of the node's phase in the plan (rule 4).
    pub phase: usize,
    /// Its phase by rank covers ranks from this share (inclusive) …
    pub from_bp: u16,
    /// … to this share (exclusive), in basis points.
    pub until_bp: u16,
    /// Its phase by rank alone (rule 2); later than `phase` when the node was promoted.
    pub rank_phase: usize,
    /// Known nodes before it in the install order (rule 3).
    pub position: usize,
    /// Known nodes the cohorts were drawn from.
    pub known_nodes: usize,
    /// Install delay after the phase opened, whole seconds (rounded down).
    pub delay_secs: u64,
}

impl Cohort {
    /// Placed in an earlier phase than its rank's (rule 4).
    pub fn promoted(&self) -> bool {
        self.phase < self.rank_phase
    }
}

impl fmt::Display for Cohort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rank {} → phase {}", self.rank, self.phase)?;
        let range = format!("{}–{} of nodes", Bp(self.from_bp), Bp(self.until_bp));
        if self.promoted() {
            write!(
                f,
                ", promoted from phase {} ({range}): node {} of {} known in install order",
                self.rank_phase,
                self.position + 1,
                self.known_nodes
            )?;
        } else {
            write!(f, " ({range})")?;
        }
        write!(f, ", install delay {} s", self.delay_secs)
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
        let cohorts = Cohorts::new(&plan, &release, (0..200).map(node));
        assert_eq!(cohorts.len(), 200);
        for i in 0..200 {
            let c = cohorts.cohort(&node(i), Duration::from_secs(100));
            assert!(below(c.rank, c.until_bp));
            assert!(!below(c.rank, c.from_bp));
            assert!(c.delay_secs < 100);
            assert_eq!(c.known_nodes, 200);
            assert!(c.to_string().contains(&format!("phase {}", c.phase)));
            assert_eq!(c.promoted(), c.phase < c.rank_phase);
        }
        assert_eq!(Bp(500).to_string(), "5 %");
        assert_eq!(Bp(125).to_string(), "1.25 %");
        assert_eq!(Bp(2550).to_string(), "25.5 %");
    }

    fn two_phases(canary_bp: u16) -> RolloutPlan {
        let p = |until_bp| Phase {
            until_bp,
            min_soak_secs: 30,
            max_failure_bp: 1000,
            min_reports: 1,
        };
        RolloutPlan {
            phases: vec![p(canary_bp), p(BP_ALL)],
        }
    }

    /// The fleet: three nodes, a 34 % canary phase that no node's rank falls in.
    #[test]
    fn three_nodes_and_no_rank_in_the_canary_phase_still_have_a_canary() {
        let plan = two_phases(3400);
        let nodes: Vec<KeyId> = (0..3).map(node).collect();
        let release = (0..1000u32)
            .map(|i| Hash32::of(&i.to_le_bytes()))
            .find(|r| nodes.iter().all(|n| phase_of(&plan, rank(r, n)) == 1))
            .unwrap();
        let cohorts = Cohorts::new(&plan, &release, nodes.iter().copied());
        assert_eq!(cohorts.sizes(), vec![1, 2]);
        let order: Vec<Placement> = cohorts.placements().collect();
        assert_eq!(
            order.iter().map(|p| p.phase).collect::<Vec<_>>(),
            vec![0, 1, 1]
        );
        assert!(order[0].promoted() && !order[1].promoted());
        assert!(order.windows(2).all(|w| w[0].rank < w[1].rank));
        let c = cohorts.cohort(&order[0].node, Duration::from_secs(10));
        assert_eq!((c.phase, c.rank_phase, c.position), (0, 1, 0));
        let text = c.to_string();
        assert!(
            text.contains("phase 0, promoted from phase 1 (34 %–100 % of nodes): node 1 of 3 known in install order"),
            "{text}"
        );
        let c = cohorts.cohort(&order[2].node, Duration::from_secs(10));
        assert!(
            c.to_string().contains("phase 1 (34 %–100 % of nodes)"),
            "{c}"
        );
    }

    #[test]
    fn a_node_places_itself_where_it_would_stand_if_it_were_known() {
        let plan = RolloutPlan::default_for(UpdateType::Minor, false);
        let release = Hash32([6; 32]);
        let all: Vec<KeyId> = (0..12).map(node).collect();
        let full = Cohorts::new(&plan, &release, all.iter().copied());
        for n in &all {
            let others = Cohorts::new(&plan, &release, all.iter().copied().filter(|x| x != n));
            assert!(!others.knows(n) && full.knows(n));
            assert_eq!(others.placement(n), full.placement(n));
            // Everyone else moves by at most one phase, and never earlier.
            for m in all.iter().filter(|m| *m != n) {
                let (before, after) = (others.phase(m), full.phase(m));
                assert!(after == before || after == before + 1, "{before} → {after}");
            }
        }
        // No known node: everyone is the head of its own order.
        let none = Cohorts::new(&plan, &release, []);
        assert!(none.is_empty());
        assert!(all.iter().all(|n| none.phase(n) == 0));
        assert_eq!(none.sizes(), vec![0, 0, 0, 0]);
    }

    /// The test vector of docs/wire-format.md §7: another implementation must print the same.
    #[test]
    fn the_wire_format_test_vector() {
        let plan = two_phases(3400);
        let release = Hash32([0x03; 32]);
        let nodes: Vec<KeyId> = (1..=3u8).map(|i| KeyId([i; 32])).collect();
        let cohorts = Cohorts::new(&plan, &release, nodes.iter().rev().copied());
        let got: Vec<(KeyId, u64, usize, usize, usize, u64)> = cohorts
            .placements()
            .map(|p| {
                let delay = install_delay(&release, &p.node, Duration::from_secs(60));
                (
                    p.node,
                    p.rank.0,
                    p.position,
                    p.rank_phase,
                    p.phase,
                    delay.as_secs(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (nodes[0], 0x7d9e_ece5_7cb2_5a25, 0, 1, 0, 9),
                (nodes[1], 0x9355_3b12_250e_badf, 1, 1, 1, 31),
                (nodes[2], 0xdcf3_98ce_7370_2add, 2, 1, 1, 30),
            ]
        );
        assert!(!below(Rank(0x7d9e_ece5_7cb2_5a25), 3400));
        assert!(below(Rank(0x570a_3d70_a3d7_0a3c), 3400));
        assert!(!below(Rank(0x570a_3d70_a3d7_0a3d), 3400));
    }

    #[test]
    fn the_order_in_which_nodes_are_known_does_not_matter() {
        let plan = RolloutPlan::default_for(UpdateType::Major, false);
        let release = Hash32([7; 32]);
        let a = Cohorts::new(&plan, &release, (0..30).map(node));
        let b = Cohorts::new(&plan, &release, (0..30).rev().chain(0..10).map(node));
        assert_eq!(a, b);
        assert_eq!(a.sizes().iter().sum::<usize>(), 30);
    }
}
