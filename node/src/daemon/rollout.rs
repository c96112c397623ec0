//! What the node knows about rollouts: verified health reports and control messages per
//! release, and the nodes it has heard from. Owned by the core.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upswarm_proto::Message as _;
use upswarm_proto::{
    Context, ControlAction, ControlMessage, Hash32, HealthReport, KeyId, Manifest, Role,
    SignedEnvelope, TrustRoot,
};
use upswarm_rollout::{
    Decision, Evaluation, Report, control_state, decide, evaluate, install_delay, phase_of, rank,
};
use upswarm_trust::{TimeCheck, count_signatures};

/// Checks a health report: well-formed and signed by the node it names.
pub fn verify_health(
    bytes: &[u8],
    time: TimeCheck,
) -> Result<(SignedEnvelope, HealthReport), String> {
    let env = SignedEnvelope::decode::<HealthReport>(bytes).map_err(|e| e.to_string())?;
    let report: HealthReport = env.open().map_err(|e| e.to_string())?;
    let role = Role {
        keys: vec![report.node],
        threshold: 1,
    };
    count_signatures("node", &role, Context::Health, &env)
        .require()
        .map_err(|e| e.to_string())?;
    time.not_in_future(HealthReport::WHAT, "at", report.at)
        .map_err(|e| e.to_string())?;
    Ok((env, report))
}

/// Checks a control message against the control role of `root`, and that it was not
/// issued in the future.
pub fn verify_control(
    root: &TrustRoot,
    bytes: &[u8],
    time: TimeCheck,
) -> Result<(SignedEnvelope, ControlMessage), String> {
    let env = SignedEnvelope::decode::<ControlMessage>(bytes).map_err(|e| e.to_string())?;
    let msg: ControlMessage = env.open().map_err(|e| e.to_string())?;
    let role = root
        .roles
        .control
        .as_ref()
        .ok_or("the trust root has no control role")?;
    count_signatures("control", role, Context::Control, &env)
        .require()
        .map_err(|e| e.to_string())?;
    time.not_in_future(ControlMessage::WHAT, "issued_at", msg.issued_at)
        .map_err(|e| e.to_string())?;
    Ok((env, msg))
}

/// Health reports and control messages per release.
#[derive(Debug, Default)]
pub struct RolloutBook {
    health: HashMap<Hash32, Vec<Report>>,
    controls: HashMap<Hash32, Vec<(ControlAction, u64)>>,
    known: BTreeSet<KeyId>,
}

/// Everything `upswarm explain` shows about one release on this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub rank: f64,
    pub phase: usize,
    pub phase_until_percent: f64,
    pub install_delay_secs: u64,
    pub evaluation: serde_json::Value,
    pub decision: String,
    pub may_install: bool,
}

impl RolloutBook {
    pub fn add_health(&mut self, r: &HealthReport) -> bool {
        self.known.insert(r.node.key_id());
        let entry = Report {
            node: r.node.key_id(),
            status: r.status,
            at: r.at,
        };
        let list = self.health.entry(r.release).or_default();
        if list.contains(&entry) {
            return false;
        }
        list.push(entry);
        true
    }

    pub fn add_control(&mut self, m: &ControlMessage) {
        let list = self.controls.entry(m.release).or_default();
        if !list.contains(&(m.action, m.issued_at)) {
            list.push((m.action, m.issued_at));
        }
    }

    /// Notes a node as part of the fleet (e.g. this node itself).
    pub fn know(&mut self, node: KeyId) {
        self.known.insert(node);
    }

    pub fn known_nodes(&self) -> usize {
        self.known.len()
    }

    /// Whether the control role yanked this release.
    pub fn yanked(&self, release: &Hash32) -> bool {
        self.controls
            .get(release)
            .is_some_and(|c| control_state(c).yanked)
    }

    /// The rollout as this node sees it.
    pub fn evaluate(&self, release: &Hash32, m: &Manifest, now: u64, skew: u64) -> Evaluation {
        let reports = self.health.get(release).map(Vec::as_slice).unwrap_or(&[]);
        let control = control_state(self.controls.get(release).map(Vec::as_slice).unwrap_or(&[]));
        evaluate(
            &m.effective_plan(),
            release,
            m.created_at,
            reports,
            &control,
            &self.known,
            now,
            skew,
        )
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
        let e = self.evaluate(release, m, now, skew);
        let phase = phase_of(&m.effective_plan(), rank(release, me));
        let d = decide(&e, phase, install_delay(release, me, spread), now);
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
        let r = rank(release, me);
        let phase = phase_of(&plan, r);
        let (e, d) = self.decide(release, m, me, spread, now, skew);
        RolloutView {
            rank: r.fraction(),
            phase,
            phase_until_percent: plan
                .phases
                .get(phase)
                .map_or(100.0, |p| f64::from(p.until_bp) / 100.0),
            install_delay_secs: install_delay(release, me, spread).as_secs(),
            evaluation: serde_json::to_value(&e).unwrap_or_default(),
            may_install: d == Decision::Install,
            decision: d.to_string(),
        }
    }
}
