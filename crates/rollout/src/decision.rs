//! May this node install the release now — and if not, why (`upswarm explain`).
//!
//! The decision, for a node of phase `k` with install delay `d`, from an [`Evaluation`] at
//! `now`, first match wins:
//!
//! 1. The rollout halted (failures, abort or yank): **never**. This includes nodes of open
//!    phases still waiting out their delay. After a yank, nodes that installed the release
//!    roll back ([`Explanation::roll_back`]).
//! 2. Paused: **wait**, with no end known (until a resume).
//! 3. Phase `k` opened at `o`: **install** once `now ≥ o + d`, else **wait until** `o + d`.
//! 4. Phase `k` is not open: **wait**; until `g + d` when it is the next phase and its gate
//!    is scheduled at `g` (the reports are in, the soak is running), else with no end known.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use upswarm_proto::KeyId;

use crate::cohort::{Bp, Cohort};
use crate::gate::{Evaluation, Halt, PhaseGate, PhaseStats};

/// The last second RFC 3339 can show: 9999-12-31T23:59:59Z.
const LAST_RFC3339: u64 = 253_402_300_799;

/// Unix seconds as an RFC 3339 time (`2026-12-02T13:00:00Z`), the form every text an
/// operator reads uses; times past year 9999 are shown as such, never a panic.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub u64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > LAST_RFC3339 {
            return write!(f, "after 9999-12-31T23:59:59Z ({} unix seconds)", self.0);
        }
        let t = std::time::UNIX_EPOCH + Duration::from_secs(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

/// Phases `0..open` in words: `phase 0 is open`, `phases 0 to 2 are open`.
#[derive(Debug, Clone, Copy)]
pub struct OpenPhases(pub usize);

impl fmt::Display for OpenPhases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("no phase is open yet"),
            1 => f.write_str("only phase 0 is open"),
            2 => f.write_str("phases 0 and 1 are open"),
            n => write!(f, "phases 0 to {} are open", n - 1),
        }
    }
}

/// The answer for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Its phase is open and its install delay has passed.
    Install,
    /// Not yet: until `until` (unix seconds) when that is known.
    Wait {
        until: Option<u64>,
        reason: WaitReason,
    },
    /// The rollout stopped: this node never installs the release.
    Never { reason: Halt },
}

/// Why a node waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WaitReason {
    /// Its phase opened at `opened_at`; installs are spread inside the phase.
    Spread { phase: usize, opened_at: u64 },
    /// Its phase is not open yet; phases `0..open` are.
    PhaseNotOpen { phase: usize, open: usize },
    /// Paused by the control role since `since`.
    Paused { since: u64 },
}

impl Decision {
    /// Whether the node may install now.
    pub fn is_install(&self) -> bool {
        matches!(self, Decision::Install)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Install => f.write_str("install now"),
            Decision::Wait { until, reason } => {
                match until {
                    Some(t) => write!(f, "wait until {}: ", Time(*t))?,
                    None => f.write_str("wait: ")?,
                }
                write!(f, "{reason}")
            }
            Decision::Never { reason } => write!(f, "never: {reason}"),
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Spread { phase, opened_at } => write!(
                f,
                "phase {phase} opened at {}; installs are spread inside the phase",
                Time(*opened_at)
            ),
            WaitReason::PhaseNotOpen { phase, open } => {
                write!(f, "this node is in phase {phase}; {}", OpenPhases(*open))
            }
            WaitReason::Paused { since } => {
                write!(
                    f,
                    "the rollout is paused by the control role (since {})",
                    Time(*since)
                )
            }
        }
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::Failures {
                phase,
                at,
                failures,
                reports,
                max_failure_bp,
            } => write!(
                f,
                "halted at {}: phase {phase} had {failures} failure(s) in {reports} report(s), over the {} allowed",
                Time(*at),
                Bp(*max_failure_bp)
            ),
            Halt::Aborted { at } => {
                write!(f, "aborted by the control role (at {})", Time(*at))
            }
            Halt::Yanked { at } => write!(
                f,
                "yanked by the control role (at {}); nodes that installed it roll back",
                Time(*at)
            ),
        }
    }
}

/// Decides for a node of phase `phase` with install delay `delay` (see the module docs).
pub fn decide(eval: &Evaluation, phase: usize, delay: Duration, now: u64) -> Decision {
    if let Some(h) = &eval.halted {
        return Decision::Never { reason: h.clone() };
    }
    if let Some(since) = eval.paused_since {
        return Decision::Wait {
            until: None,
            reason: WaitReason::Paused { since },
        };
    }
    let delay = delay.as_secs();
    match eval.opened_at.get(phase).copied().flatten() {
        Some(opened_at) => {
            let at = opened_at.saturating_add(delay);
            if now >= at {
                Decision::Install
            } else {
                Decision::Wait {
                    until: Some(at),
                    reason: WaitReason::Spread { phase, opened_at },
                }
            }
        }
        None => Decision::Wait {
            until: eval
                .waiting
                .as_ref()
                .filter(|w| w.phase == phase)
                .and_then(|w| w.opens_at)
                .map(|t| t.saturating_add(delay)),
            reason: WaitReason::PhaseNotOpen {
                phase,
                open: eval.open,
            },
        },
    }
}

/// [`decide`] for a node's [`Cohort`].
pub fn may_install(eval: &Evaluation, cohort: &Cohort, now: u64) -> Decision {
    decide(
        eval,
        cohort.phase,
        Duration::from_secs(cohort.delay_secs),
        now,
    )
}

/// Where a rollout stands as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RolloutStatus {
    /// No phase is open yet (the release's start is in the future, or it was paused).
    NotStarted { start_at: Option<u64> },
    /// Phases `0..open` of `phases` are open.
    Rolling { open: usize, phases: usize },
    /// Every phase is open.
    Complete,
    /// Paused by the control role since `since`.
    Paused { since: u64, open: usize },
    /// Stopped for good.
    Halted { halt: Halt },
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutStatus::NotStarted { start_at: Some(t) } => {
                write!(f, "not started: phase 0 opens at {}", Time(*t))
            }
            RolloutStatus::NotStarted { start_at: None } => f.write_str("not started"),
            RolloutStatus::Rolling { open, phases } => {
                write!(f, "rolling out: {open} of {phases} phase(s) open")
            }
            RolloutStatus::Complete => f.write_str("complete: every phase is open"),
            RolloutStatus::Paused { since, open } => write!(
                f,
                "paused by the control role since {} ({open} phase(s) open)",
                Time(*since)
            ),
            RolloutStatus::Halted { halt } => write!(f, "{halt}"),
        }
    }
}

/// Everything `upswarm explain` says about one release on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub now: u64,
    pub cohort: Cohort,
    pub status: RolloutStatus,
    /// Per phase: opening time, counts, quorum.
    pub phases: Vec<PhaseStats>,
    /// What the next phase waits for (`None` when all are open or the rollout stopped).
    pub next_gate: Option<PhaseGate>,
    pub out_of_cohort: Vec<KeyId>,
    pub decision: Decision,
    /// The release was yanked: a node that installed it rolls back to its last good version.
    pub roll_back: bool,
}

/// Explains the evaluation to the node of `cohort`.
pub fn explain(eval: &Evaluation, cohort: &Cohort, now: u64) -> Explanation {
    let status = if let Some(h) = &eval.halted {
        RolloutStatus::Halted { halt: h.clone() }
    } else if let Some(since) = eval.paused_since {
        RolloutStatus::Paused {
            since,
            open: eval.open,
        }
    } else if eval.open == 0 {
        RolloutStatus::NotStarted {
            start_at: eval.waiting.as_ref().and_then(|w| w.opens_at),
        }
    } else if eval.complete() {
        RolloutStatus::Complete
    } else {
        RolloutStatus::Rolling {
            open: eval.open,
            phases: eval.opened_at.len(),
        }
    };
    Explanation {
        now,
        cohort: *cohort,
        status,
        phases: eval.stats.clone(),
        next_gate: eval.waiting.clone(),
        out_of_cohort: eval.out_of_cohort.clone(),
        decision: may_install(eval, cohort, now),
        roll_back: eval.control.yanked,
    }
}

/// A time relative to now: `in 5m00s`, `12s ago`, `now`.
struct Rel {
    t: u64,
    now: u64,
}

impl fmt::Display for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |s: u64| {
            if s >= 3600 {
                format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
            } else if s >= 60 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        };
        match self.t.cmp(&self.now) {
            std::cmp::Ordering::Greater => {
                write!(f, "{} (in {})", Time(self.t), d(self.t - self.now))
            }
            std::cmp::Ordering::Less => {
                write!(f, "{} ({} ago)", Time(self.t), d(self.now - self.t))
            }
            std::cmp::Ordering::Equal => write!(f, "{} (now)", Time(self.t)),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.now;
        writeln!(f, "node      {}", self.cohort)?;
        writeln!(f, "rollout   {}", self.status)?;
        for (k, s) in self.phases.iter().enumerate() {
            let opened = match s.opened_at {
                Some(t) => format!("opened at {}", Rel { t, now }),
                None => "not open".to_string(),
            };
            write!(
                f,
                "phase {k:<3} {opened}; {} known node(s): {} healthy, {} failed, {} installing; failure rate {} (max {})",
                s.known_nodes,
                s.healthy,
                s.failed,
                s.installed,
                Bp(s.failure_rate_bp),
                Bp(s.max_failure_bp)
            )?;
            if k + 1 < self.phases.len() {
                write!(f, "; reports {}/{}", s.reports, s.reports_needed)?;
            }
            if s.out_of_cohort > 0 {
                write!(f, "; {} out of cohort", s.out_of_cohort)?;
            }
            writeln!(f)?;
        }
        if let Some(g) = &self.next_gate {
            write!(f, "gate      phase {} ", g.phase)?;
            if g.phase == 0 {
                write!(
                    f,
                    "opens at the release's start {}",
                    Rel {
                        t: g.soak_until,
                        now
                    }
                )?;
            } else {
                write!(
                    f,
                    "waits for: soak until {}, reports {}/{} from phase {}, failure rate {} ≤ {}",
                    Rel {
                        t: g.soak_until,
                        now
                    },
                    g.reports,
                    g.reports_needed,
                    g.phase - 1,
                    Bp(g.failure_rate_bp),
                    Bp(g.max_failure_bp)
                )?;
            }
            match g.opens_at {
                _ if g.paused => writeln!(f, "; paused")?,
                Some(t) => writeln!(f, "; opens at {}", Rel { t, now })?,
                None if g.reports < g.reports_needed => writeln!(
                    f,
                    "; {} more report(s) needed",
                    g.reports_needed - g.reports
                )?,
                None if g.phase > 0 && g.earlier_reports == 0 => writeln!(
                    f,
                    "; no phase opens before a first health report from phase{}",
                    match g.phase - 1 {
                        0 => " 0".to_string(),
                        last => format!("s 0..={last}"),
                    }
                )?,
                None => writeln!(f)?,
            }
        }
        if !self.out_of_cohort.is_empty() {
            let ids: Vec<String> = self.out_of_cohort.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "out of cohort (reported before their phase opened): {}",
                ids.join(", ")
            )?;
        }
        if self.roll_back {
            writeln!(
                f,
                "yanked    nodes that installed this release roll back to their last good version"
            )?;
        }
        write!(f, "decision  {}", self.decision)
    }
}

#[cfg(test)]
mod tests {
    use upswarm_proto::{ControlAction, Hash32, HealthStatus, Phase, RolloutPlan};

    use super::*;
    use crate::control::{ControlState, control_state};
    use crate::gate::{RankedReport, evaluate_ranked};

    fn plan() -> RolloutPlan {
        let p = |until_bp, soak| Phase {
            until_bp,
            min_soak_secs: soak,
            max_failure_bp: 2000,
            min_reports: 2,
        };
        RolloutPlan {
            phases: vec![p(1000, 600), p(5000, 600), p(10_000, 0)],
        }
    }

    fn report(phase: usize, i: u8, status: HealthStatus, at: u64) -> RankedReport {
        RankedReport {
            at,
            phase,
            node: KeyId([i; 32]),
            status,
        }
    }

    fn cohort(phase: usize, delay_secs: u64) -> Cohort {
        Cohort {
            rank: crate::Rank(0),
            phase,
            from_bp: 0,
            until_bp: 1000,
            rank_phase: phase,
            position: 0,
            known_nodes: 50,
            delay_secs,
        }
    }

    fn eval(reports: Vec<RankedReport>, control: &ControlState, now: u64) -> Evaluation {
        evaluate_ranked(&plan(), 1000, reports, control, &[5, 20, 25], now, 30)
    }

    #[test]
    fn explanation_of_a_rolling_release() {
        let reps = vec![
            report(0, 1, HealthStatus::Healthy, 1100),
            report(2, 30, HealthStatus::Installed, 1150),
        ];
        let e = eval(reps, &ControlState::default(), 1200);
        let x = explain(&e, &cohort(1, 45), 1200);
        assert_eq!(x.status, RolloutStatus::Rolling { open: 1, phases: 3 });
        assert_eq!(
            x.decision,
            Decision::Wait {
                until: None,
                reason: WaitReason::PhaseNotOpen { phase: 1, open: 1 }
            }
        );
        assert!(!x.roll_back);
        let text = x.to_string();
        for needle in [
            "phase 1 (0 %–10 % of nodes)",
            "rolling out: 1 of 3 phase(s) open",
            "opened at 1970-01-01T00:16:40Z (3m20s ago)",
            "waits for: soak until 1970-01-01T00:26:40Z (in 6m40s), reports 1/2 from phase 0",
            "1 more report(s) needed",
            "out of cohort (reported before their phase opened): 1e1e1e1e1e1e1e1e",
            "decision  wait: this node is in phase 1; only phase 0 is open",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        let json = serde_json::to_value(&x).unwrap();
        assert_eq!(json["status"]["state"], "rolling");
        assert_eq!(json["decision"]["decision"], "wait");
        assert_eq!(json["decision"]["reason"]["kind"], "phase_not_open");
        assert_eq!(json["next_gate"]["reports_needed"], 2);
        assert_eq!(json["cohort"]["phase"], 1);
        assert_eq!(json["out_of_cohort"][0], KeyId([30; 32]).to_hex());
    }

    #[test]
    fn explanation_of_a_scheduled_gate_paused_halted_and_yanked_rollouts() {
        let ok = vec![
            report(0, 1, HealthStatus::Healthy, 1100),
            report(0, 2, HealthStatus::Healthy, 1110),
        ];
        let e = eval(ok.clone(), &ControlState::default(), 1200);
        let x = explain(&e, &cohort(1, 45), 1200);
        assert_eq!(
            x.decision,
            Decision::Wait {
                until: Some(1645),
                reason: WaitReason::PhaseNotOpen { phase: 1, open: 1 }
            }
        );
        assert!(
            x.to_string()
                .contains("opens at 1970-01-01T00:26:40Z (in 6m40s)"),
            "{x}"
        );
        assert!(
            x.to_string()
                .contains("decision  wait until 1970-01-01T00:27:25Z"),
            "{x}"
        );

        let paused = control_state(&[(ControlAction::Pause, 1150)]);
        let x = explain(&eval(ok.clone(), &paused, 1200), &cohort(0, 0), 1200);
        assert_eq!(
            x.status,
            RolloutStatus::Paused {
                since: 1150,
                open: 1
            }
        );
        assert!(
            x.to_string()
                .contains("paused by the control role since 1970-01-01T00:19:10Z")
        );

        let failed = vec![report(0, 1, HealthStatus::Failed, 1100)];
        let x = explain(
            &eval(failed, &ControlState::default(), 1200),
            &cohort(0, 0),
            1200,
        );
        assert!(matches!(x.status, RolloutStatus::Halted { .. }));
        assert!(matches!(x.decision, Decision::Never { .. }));
        assert!(x.next_gate.is_none());
        assert!(
            x.to_string().contains(
                "halted at 1970-01-01T00:18:20Z: phase 0 had 1 failure(s) in 1 report(s), over the 20 % allowed"
            ),
            "{x}"
        );
        let json = serde_json::to_value(&x).unwrap();
        assert_eq!(json["decision"]["reason"]["reason"], "failures");

        let yanked = control_state(&[(ControlAction::Yank, 1150)]);
        let x = explain(&eval(ok.clone(), &yanked, 1200), &cohort(0, 0), 1200);
        assert!(x.roll_back);
        assert!(x.to_string().contains("roll back"));
        assert_eq!(
            x.decision,
            Decision::Never {
                reason: Halt::Yanked { at: 1150 }
            }
        );

        let e = eval(vec![], &ControlState::default(), 900);
        let x = explain(&e, &cohort(0, 0), 900);
        assert_eq!(
            x.status,
            RolloutStatus::NotStarted {
                start_at: Some(1000)
            }
        );
        assert!(
            x.to_string()
                .contains("opens at the release's start 1970-01-01T00:16:40Z (in 1m40s)")
        );
    }

    #[test]
    fn explanation_of_a_gate_waiting_for_a_first_report_and_of_a_promoted_canary() {
        // No report from phase 0 (its quorum of 0 is met): phase 1 waits all the same.
        let e = evaluate_ranked(
            &plan(),
            1000,
            vec![],
            &ControlState::default(),
            &[0, 20, 25],
            5000,
            30,
        );
        let x = explain(&e, &cohort(1, 0), 5000);
        let text = x.to_string();
        assert!(
            text.contains("reports 0/0 from phase 0, failure rate 0 % ≤ 20 %; no phase opens before a first health report from phase 0"),
            "{text}"
        );
        assert_eq!(
            serde_json::to_value(&x).unwrap()["next_gate"]["earlier_reports"],
            0
        );
        let promoted = Cohort {
            rank: crate::Rank(1 << 63),
            phase: 0,
            from_bp: 1000,
            until_bp: 5000,
            rank_phase: 1,
            position: 0,
            known_nodes: 3,
            delay_secs: 4,
        };
        let x = explain(&e, &promoted, 5000);
        assert!(
            x.to_string().contains("node      rank 50.0000 % → phase 0, promoted from phase 1 (10 %–50 % of nodes): node 1 of 3 known in install order, install delay 4 s"),
            "{x}"
        );
        assert_eq!(serde_json::to_value(&x).unwrap()["cohort"]["rank_phase"], 1);
    }

    #[test]
    fn open_phases_and_times_read_as_words() {
        assert_eq!(OpenPhases(0).to_string(), "no phase is open yet");
        assert_eq!(OpenPhases(1).to_string(), "only phase 0 is open");
        assert_eq!(OpenPhases(2).to_string(), "phases 0 and 1 are open");
        assert_eq!(OpenPhases(4).to_string(), "phases 0 to 3 are open");
        assert_eq!(Time(0).to_string(), "1970-01-01T00:00:00Z");
        assert!(Time(u64::MAX).to_string().starts_with("after 9999"));
        let d = Decision::Wait {
            until: None,
            reason: WaitReason::PhaseNotOpen { phase: 1, open: 1 },
        };
        assert_eq!(
            d.to_string(),
            "wait: this node is in phase 1; only phase 0 is open"
        );
    }

    #[test]
    fn may_install_uses_the_cohort() {
        let release = Hash32([4; 32]);
        let node = KeyId([8; 32]);
        let plan = RolloutPlan {
            phases: vec![Phase {
                until_bp: 10_000,
                min_soak_secs: 0,
                max_failure_bp: 1000,
                min_reports: 1,
            }],
        };
        let c =
            crate::Cohorts::new(&plan, &release, [node]).cohort(&node, Duration::from_secs(100));
        let e = evaluate_ranked(&plan, 1000, vec![], &ControlState::default(), &[1], 1000, 0);
        assert!(explain(&e, &c, 1000).status == RolloutStatus::Complete);
        let at = 1000 + c.delay_secs;
        assert_eq!(may_install(&e, &c, at), Decision::Install);
        assert!(may_install(&e, &c, at).is_install());
        if c.delay_secs > 0 {
            assert!(matches!(
                may_install(&e, &c, at - 1),
                Decision::Wait { until: Some(t), .. } if t == at
            ));
        }
    }
}
