//! What the node knows about rollouts: verified health reports and control messages per
//! release, and the nodes it has heard from. Owned by the core.
//!
//! The **known nodes** are every node whose verified health report (about any release) this
//! node has seen, and this node itself when it manages a program. Every decision —
//! [`RolloutBook::evaluate`], [`RolloutBook::decide`] and `upswarm explain`
//! ([`RolloutBook::view`]) — draws the cohorts from that one set plus the reporters of the
//! release ([`Cohorts`]), so what `explain` shows is what the node acts on.
//!
//! Bounded against a flood of validly signed reports (anyone can make node keys, and a key
//! holder can sign any number of reports): per release it keeps at most
//! [`MAX_REPORTS_PER_NODE`] reports of one node and reports of at most
//! [`MAX_REPORTING_NODES`] nodes, and it knows at most [`MAX_KNOWN_NODES`] nodes; what is
//! beyond is not kept, and the core neither stores nor spreads it ([`Added::Full`]).
//!
//! It keeps everything in memory and reads no clock (callers pass `now` and a `TimeCheck`); it must
//! not re-implement the phase rules (`upswarm_rollout` decides) nor persist anything (the core
//! stores the envelopes in `signed`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

pub use crate::api::{FLEET_CAP, RolloutView};
use upswarm_proto::Message as _;
use upswarm_proto::{
    Context, ControlAction, ControlMessage, Hash32, HealthReport, HealthStatus, KeyId, Manifest,
    Role, SignedEnvelope, TrustRoot,
};
use upswarm_rollout::{
    Cohorts, ControlState, Decision, Evaluation, Report, control_state, decide, evaluate_cohorts,
};
use upswarm_trust::{TimeCheck, count_signatures};

/// Why a health report or a control message does not verify.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not a well-formed message of its kind.
    #[error(transparent)]
    Malformed(#[from] upswarm_proto::ProtoError),
    /// Its signatures or its time are refused.
    #[error(transparent)]
    Untrusted(#[from] upswarm_trust::TrustError),
    /// A control message, but the trust root names no control role.
    #[error("the trust root has no control role")]
    NoControlRole,
}

/// Checks a health report: well-formed and signed by the node it names.
pub fn verify_health(
    bytes: &[u8],
    time: TimeCheck,
) -> Result<(SignedEnvelope, HealthReport), CheckError> {
    let env = SignedEnvelope::decode::<HealthReport>(bytes)?;
    let report: HealthReport = env.open()?;
    let role = Role {
        keys: vec![report.node],
        threshold: 1,
    };
    count_signatures("node", &role, Context::Health, &env).require()?;
    time.not_in_future(HealthReport::WHAT, "at", report.at)?;
    Ok((env, report))
}

/// Checks a control message against the control role of `root`, and that it was not
/// issued in the future.
pub fn verify_control(
    root: &TrustRoot,
    bytes: &[u8],
    time: TimeCheck,
) -> Result<(SignedEnvelope, ControlMessage), CheckError> {
    let env = SignedEnvelope::decode::<ControlMessage>(bytes)?;
    let msg: ControlMessage = env.open()?;
    let role = root
        .roles
        .control
        .as_ref()
        .ok_or(CheckError::NoControlRole)?;
    count_signatures("control", role, Context::Control, &env).require()?;
    time.not_in_future(ControlMessage::WHAT, "issued_at", msg.issued_at)?;
    Ok((env, msg))
}

/// Reports one node sends about one release in a real rollout: installed, then healthy or
/// failed, then perhaps rolled back (a yank), and again after a forced re-apply. More from
/// the same node about the same release are not kept.
pub const MAX_REPORTS_PER_NODE: usize = 6;

/// Nodes whose reports about one release are kept (a fleet larger than this still rolls
/// out: the gates count the first this many reporters).
pub const MAX_REPORTING_NODES: usize = 50_000;

/// Nodes known to exist (the cohorts' population; see the module docs).
pub const MAX_KNOWN_NODES: usize = 50_000;

/// What [`RolloutBook::add_health`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Kept: new here.
    New,
    /// Already kept.
    Duplicate,
    /// Not kept: its node sent [`MAX_REPORTS_PER_NODE`] about the release already, or
    /// [`MAX_REPORTING_NODES`] others did.
    Full,
}

/// The reports about one release: in arrival order, with an index for duplicates and a
/// count per node for the bounds.
#[derive(Debug, Default)]
struct ReleaseReports {
    list: Vec<Report>,
    seen: HashSet<Report>,
    per_node: HashMap<KeyId, usize>,
}

/// Health reports and control messages per release.
#[derive(Debug, Default)]
pub struct RolloutBook {
    health: HashMap<Hash32, ReleaseReports>,
    controls: HashMap<Hash32, Vec<(ControlAction, u64)>>,
    /// The reason of the earliest yank of a release, when its signers gave one.
    yank_reasons: HashMap<Hash32, (u64, String)>,
    known: BTreeSet<KeyId>,
    /// The fleet inventory: each node's latest report, at most `cap` nodes.
    fleet: HashMap<KeyId, FleetEntry>,
    /// The inventory's nodes by the time of their report, oldest first (who is forgotten
    /// first, found without a scan).
    fleet_order: BTreeSet<(u64, KeyId)>,
    /// The inventory's bound (0: [`FLEET_CAP`]).
    cap: usize,
}

/// A node's latest verified health report, as the fleet inventory keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEntry {
    pub running: semver::Version,
    pub status: HealthStatus,
    pub release: Hash32,
    pub at: u64,
}

/// The order of a node's reports about one update, for reports of the same second.
fn stage(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Installed => 0,
        HealthStatus::Healthy | HealthStatus::Failed => 1,
        HealthStatus::RolledBack => 2,
    }
}

impl RolloutBook {
    /// A book whose fleet inventory keeps at most `cap` nodes.
    #[cfg(test)]
    fn with_cap(cap: usize) -> Self {
        RolloutBook {
            cap,
            ..RolloutBook::default()
        }
    }

    /// The fleet inventory: each known node's latest report (see [`FLEET_CAP`]).
    pub fn fleet(&self) -> impl Iterator<Item = (&KeyId, &FleetEntry)> {
        self.fleet.iter()
    }

    /// Keeps `r` as its node's latest report if it is not older than the one held; a new
    /// node beyond the cap makes room by forgetting the node with the oldest report.
    fn note_in_fleet(&mut self, r: &HealthReport) {
        let node = r.node.key_id();
        let entry = FleetEntry {
            running: r.running.clone(),
            status: r.status,
            release: r.release,
            at: r.at,
        };
        if let Some(held) = self.fleet.get_mut(&node) {
            // Two reports of one second: the later stage wins (installed, then healthy or
            // failed, then rolled back), whichever arrived first.
            if (r.at, stage(r.status)) >= (held.at, stage(held.status)) {
                self.fleet_order.remove(&(held.at, node));
                self.fleet_order.insert((entry.at, node));
                *held = entry;
            }
            return;
        }
        let cap = if self.cap == 0 { FLEET_CAP } else { self.cap };
        if self.fleet.len() >= cap {
            match self.fleet_order.first().copied() {
                Some((at, oldest)) if at <= r.at => {
                    self.fleet_order.remove(&(at, oldest));
                    self.fleet.remove(&oldest);
                }
                // Older than everything kept: this report is the one forgotten.
                _ => return,
            }
        }
        self.fleet_order.insert((entry.at, node));
        self.fleet.insert(node, entry);
    }

    /// Takes a verified health report into the book (see [`Added`] and the bounds in the
    /// module docs).
    pub fn add_health(&mut self, r: &HealthReport) -> Added {
        let node = r.node.key_id();
        let entry = Report {
            node,
            status: r.status,
            at: r.at,
        };
        let reports = self.health.entry(r.release).or_default();
        if reports.seen.contains(&entry) {
            return Added::Duplicate;
        }
        let sent = reports.per_node.get(&node).copied();
        if sent.is_some_and(|n| n >= MAX_REPORTS_PER_NODE)
            || (sent.is_none() && reports.per_node.len() >= MAX_REPORTING_NODES)
        {
            return Added::Full;
        }
        *reports.per_node.entry(node).or_default() += 1;
        reports.seen.insert(entry);
        reports.list.push(entry);
        if self.known.len() < MAX_KNOWN_NODES {
            self.known.insert(node);
        }
        self.note_in_fleet(r);
        Added::New
    }

    pub fn add_control(&mut self, m: &ControlMessage) {
        if m.action == ControlAction::Yank && !m.reason.is_empty() {
            let earliest = self
                .yank_reasons
                .get(&m.release)
                .is_none_or(|(at, _)| m.issued_at < *at);
            if earliest {
                self.yank_reasons
                    .insert(m.release, (m.issued_at, m.reason.clone()));
            }
        }
        let list = self.controls.entry(m.release).or_default();
        if !list.contains(&(m.action, m.issued_at)) {
            list.push((m.action, m.issued_at));
        }
    }

    /// Notes a node as part of the fleet (this node itself, when it installs releases:
    /// always, whatever the bound).
    pub fn know(&mut self, node: KeyId) {
        self.known.insert(node);
    }

    pub fn known_nodes(&self) -> usize {
        self.known.len()
    }

    fn reports(&self, release: &Hash32) -> &[Report] {
        self.health.get(release).map_or(&[], |r| r.list.as_slice())
    }

    fn control(&self, release: &Hash32) -> ControlState {
        control_state(self.controls.get(release).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// The cohorts of `release`: over the known nodes and every node that reported about it.
    pub fn cohorts(&self, release: &Hash32, m: &Manifest) -> Cohorts {
        Cohorts::new(
            &m.effective_plan(),
            release,
            self.known
                .iter()
                .copied()
                .chain(self.reports(release).iter().map(|r| r.node)),
        )
    }

    fn evaluate_in(
        &self,
        cohorts: &Cohorts,
        release: &Hash32,
        m: &Manifest,
        now: u64,
        skew: u64,
    ) -> Evaluation {
        evaluate_cohorts(
            &m.effective_plan(),
            m.created_at,
            self.reports(release),
            &self.control(release),
            cohorts,
            now,
            skew,
        )
    }

    /// Why the control role yanked this release, if its signers said.
    pub fn yank_reason(&self, release: &Hash32) -> Option<&str> {
        self.yank_reasons.get(release).map(|(_, why)| why.as_str())
    }

    /// Whether the control role yanked this release.
    pub fn yanked(&self, release: &Hash32) -> bool {
        self.controls
            .get(release)
            .is_some_and(|c| control_state(c).yanked)
    }

    /// The rollout as this node sees it.
    pub fn evaluate(&self, release: &Hash32, m: &Manifest, now: u64, skew: u64) -> Evaluation {
        self.evaluate_in(&self.cohorts(release, m), release, m, now, skew)
    }

    /// May node `me` install `release` now?
    pub fn decide(
        &self,
        release: &Hash32,
        m: &Manifest,
        me: &KeyId,
        spread: Duration,
        now: u64,
        skew: u64,
    ) -> (Evaluation, Decision) {
        let cohorts = self.cohorts(release, m);
        let e = self.evaluate_in(&cohorts, release, m, now, skew);
        let c = cohorts.cohort(me, spread);
        let d = decide(&e, c.phase, Duration::from_secs(c.delay_secs), now);
        (e, d)
    }

    /// The explanation of `release` for node `me`.
    pub fn view(
        &self,
        release: &Hash32,
        m: &Manifest,
        me: &KeyId,
        spread: Duration,
        now: u64,
        skew: u64,
    ) -> RolloutView {
        let plan = m.effective_plan();
        let cohorts = self.cohorts(release, m);
        let e = self.evaluate_in(&cohorts, release, m, now, skew);
        let c = cohorts.cohort(me, spread);
        let d = decide(&e, c.phase, Duration::from_secs(c.delay_secs), now);
        RolloutView {
            rank: c.rank.fraction(),
            phase: c.phase,
            phase_until_percent: plan
                .phases
                .get(c.phase)
                .map_or(100.0, |p| f64::from(p.until_bp) / 100.0),
            rank_phase: c.rank_phase,
            position: c.position,
            cohort_nodes: c.known_nodes,
            cohort: c.to_string(),
            install_delay_secs: c.delay_secs,
            evaluation: serde_json::to_value(&e).unwrap_or_default(),
            may_install: d == Decision::Install,
            decision: d.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use upswarm_proto::{Changelog, Phase, Protocols, PublicKey, RolloutPlan, UpdateType};
    use upswarm_rollout::{phase_of, rank};

    use super::*;

    const START: u64 = 1_000_000;

    fn manifest(plan: RolloutPlan) -> Manifest {
        Manifest {
            v: 1,
            name: "demo".into(),
            version: semver::Version::new(1, 1, 0),
            channel: "stable".into(),
            update_type: UpdateType::Minor,
            security_critical: false,
            rollback: false,
            min_version: None,
            protocols: Protocols::default(),
            created_at: START,
            expires_at: START + 1_000_000,
            changelog: Changelog::default(),
            rollout: Some(plan),
            artifacts: Vec::new(),
            mirrors: None,
        }
    }

    fn report(node: u8, release: Hash32, status: HealthStatus, at: u64) -> HealthReport {
        HealthReport {
            v: 1,
            node: PublicKey([node; 32]),
            release,
            status,
            running: semver::Version::new(1, 0, 0),
            at,
            detail: String::new(),
        }
    }

    /// Three nodes that reported about an earlier release, a 34 % canary phase that none of
    /// their ranks falls in: the book places the lowest-ranked as the canary, and its
    /// decision, its evaluation and `explain` agree on it.
    #[test]
    fn a_three_node_fleet_has_a_canary_in_every_view() {
        let p = |until_bp| Phase {
            until_bp,
            min_soak_secs: 30,
            max_failure_bp: 1000,
            min_reports: 1,
        };
        let plan = RolloutPlan {
            phases: vec![p(3400), p(10_000)],
        };
        let m = manifest(plan.clone());
        let nodes: Vec<KeyId> = (1..=3u8).map(|i| PublicKey([i; 32]).key_id()).collect();
        let release = (0..1000u32)
            .map(|i| Hash32::of(&i.to_le_bytes()))
            .find(|r| nodes.iter().all(|n| phase_of(&plan, rank(r, n)) == 1))
            .unwrap();
        let earlier = Hash32([0xee; 32]);
        let mut book = RolloutBook::default();
        for i in 1..=3 {
            book.add_health(&report(i, earlier, HealthStatus::Healthy, START - 100));
        }
        assert_eq!(book.known_nodes(), 3);
        let cohorts = book.cohorts(&release, &m);
        let order: Vec<KeyId> = cohorts.placements().map(|p| p.node).collect();
        let spread = Duration::ZERO;
        let now = START + 60;

        let canary = book.view(&release, &m, &order[0], spread, now, 0);
        assert_eq!(
            (canary.phase, canary.rank_phase, canary.position),
            (0, 1, 0)
        );
        assert_eq!(canary.cohort_nodes, 3);
        assert!(canary.may_install, "{}", canary.decision);
        assert!(
            canary.cohort.contains("promoted from phase 1"),
            "{}",
            canary.cohort
        );
        assert_eq!(canary.evaluation["stats"][0]["known_nodes"], 1);
        assert_eq!(canary.evaluation["stats"][1]["known_nodes"], 2);
        for n in &order[1..] {
            let v = book.view(&release, &m, n, spread, now, 0);
            assert_eq!(v.phase, 1);
            assert!(!v.may_install, "{}", v.decision);
            let (_, d) = book.decide(&release, &m, n, spread, now, 0);
            assert!(!d.is_install(), "soak over, but no report: {d}");
        }

        // The canary fails: nobody else ever installs.
        let canary_key = (1..=3u8)
            .find(|i| PublicKey([*i; 32]).key_id() == order[0])
            .unwrap();
        book.add_health(&report(
            canary_key,
            release,
            HealthStatus::RolledBack,
            START + 20,
        ));
        for n in &order {
            let (e, d) = book.decide(&release, &m, n, spread, now, 0);
            assert!(e.halted.is_some());
            assert!(matches!(d, Decision::Never { .. }), "{d}");
        }

        // A node that manages nothing and does not count itself sees the same cohorts.
        let mut observer = RolloutBook::default();
        for i in 1..=3 {
            observer.add_health(&report(i, earlier, HealthStatus::Healthy, START - 100));
        }
        assert_eq!(observer.cohorts(&release, &m), cohorts);
    }

    /// The inventory keeps each node's latest report; past the cap the node heard from
    /// longest ago is forgotten, and a report older than all kept does not get in.
    #[test]
    fn the_fleet_inventory_keeps_the_latest_report_of_at_most_cap_nodes() {
        let r1 = Hash32([1; 32]);
        let r2 = Hash32([2; 32]);
        let mut book = RolloutBook::with_cap(2);
        book.add_health(&report(1, r1, HealthStatus::Installed, START));
        book.add_health(&report(1, r1, HealthStatus::Healthy, START + 10));
        // An older report arriving late does not replace the newer one.
        book.add_health(&report(1, r2, HealthStatus::Failed, START + 5));
        book.add_health(&report(2, r1, HealthStatus::Healthy, START + 20));
        // Of two reports in one second, the later stage stands, in either arrival order.
        book.add_health(&report(2, r2, HealthStatus::RolledBack, START + 21));
        book.add_health(&report(2, r2, HealthStatus::Installed, START + 21));
        let node = |i: u8| PublicKey([i; 32]).key_id();
        let get = |b: &RolloutBook, i: u8| {
            b.fleet()
                .find(|(k, _)| **k == node(i))
                .map(|(_, e)| e.clone())
        };
        let e1 = get(&book, 1).unwrap();
        assert_eq!(
            (e1.status, e1.release, e1.at),
            (HealthStatus::Healthy, r1, START + 10)
        );
        // A third node: node 1 (oldest report) is forgotten.
        book.add_health(&report(3, r2, HealthStatus::RolledBack, START + 30));
        assert_eq!(book.fleet().count(), 2);
        assert!(get(&book, 1).is_none());
        assert_eq!(get(&book, 2).unwrap().status, HealthStatus::RolledBack);
        assert!(get(&book, 3).is_some());
        // A report older than all kept is not taken in.
        book.add_health(&report(4, r2, HealthStatus::Healthy, START));
        assert!(get(&book, 4).is_none());
    }

    /// A flood of validly signed reports cannot grow the book without bound: one node's
    /// reports about a release stop at the cap, and new reporters past the node cap are not
    /// kept (nor known) — while reports about another release still are.
    #[test]
    fn a_flood_of_reports_is_bounded() {
        let r1 = Hash32([1; 32]);
        let mut book = RolloutBook::default();
        let added: Vec<Added> = (0..10)
            .map(|i| book.add_health(&report(1, r1, HealthStatus::Installed, START + i)))
            .collect();
        assert_eq!(
            added.iter().filter(|a| **a == Added::New).count(),
            MAX_REPORTS_PER_NODE
        );
        assert_eq!(added[MAX_REPORTS_PER_NODE], Added::Full);
        assert_eq!(
            book.add_health(&report(1, r1, HealthStatus::Installed, START)),
            Added::Duplicate
        );
        assert_eq!(book.reports(&r1).len(), MAX_REPORTS_PER_NODE);

        let key = |i: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[31] = 0xff;
            PublicKey(b)
        };
        let r2 = Hash32([2; 32]);
        let mut full = 0;
        for i in 0..=u32::try_from(MAX_REPORTING_NODES).unwrap() {
            let mut r = report(0, r2, HealthStatus::Healthy, START);
            r.node = key(i);
            if book.add_health(&r) == Added::Full {
                full += 1;
            }
        }
        // Node 1 reported about r1 only; the r2 flood fills the rest of the node cap.
        assert_eq!(full, 1);
        assert_eq!(book.reports(&r2).len(), MAX_REPORTING_NODES);
        assert_eq!(book.known_nodes(), MAX_KNOWN_NODES);
        let mut late = report(0, r1, HealthStatus::Healthy, START);
        late.node = key(u32::MAX);
        assert_eq!(
            book.add_health(&late),
            Added::New,
            "another release has room"
        );
        assert_eq!(
            book.known_nodes(),
            MAX_KNOWN_NODES,
            "but the known set is full"
        );
    }
}
