//! The core's decisions about applying, without I/O: given what the node knows (its
//! releases, the rollout book), what its managed program runs and the time, which release
//! the node applies by itself, what holds each one back, where a yank rolls back to, and
//! which halts are news. The actor ([`super::Core`]) gathers the facts, calls these and
//! carries out what they return (offers to the apply actor, webhooks, logs); nothing here
//! reads a clock, a file or the network, so these are tested here without processes.

use std::collections::BTreeSet;
use std::time::Duration;

use upswarm_proto::{Hash32, KeyId, Manifest};

use super::super::apply::policy::{self, Candidate, Hold, Policy};
use super::super::apply::{Installed, VersionRef};
use super::super::rollout::RolloutBook;

/// This node's rules for applying: its policy, its place in rollouts, its clock's skew.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules<'a> {
    pub policy: &'a Policy,
    /// Installs inside an open phase are spread over this long.
    pub spread: Duration,
    /// The clock skew tolerated, in seconds.
    pub skew: u64,
    /// This node's key id (its rank in every rollout).
    pub me: KeyId,
}

/// A release this node knows, as the decisions see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Release<'a> {
    pub id: Hash32,
    pub manifest: &'a Manifest,
    /// Unix seconds when this node first heard of it.
    pub first_seen: u64,
}

/// What the policy knows of release `r` on this node.
pub(super) fn candidate(r: Release<'_>, installed: &Installed) -> Candidate {
    let m = r.manifest;
    Candidate {
        version: m.version.clone(),
        update_type: m.update_type,
        security_critical: m.security_critical,
        rollback: m.rollback,
        min_version: m.min_version.clone(),
        first_seen: r.first_seen,
        already_failed: installed.failed.contains(&r.id),
        deferred_until: installed.deferrals.get(&r.id).map(|d| d.until),
        rollout: None,
    }
}

/// What is installed, as the policy sees it.
pub(super) fn policy_installed(installed: &Installed) -> policy::Installed {
    policy::Installed {
        current: installed.current.as_ref().map(|v| v.version.clone()),
        pinned: installed.pinned.clone(),
    }
}

/// The one most important thing that keeps `r` from being applied at `now` (unix
/// seconds), from the local policy and this node's rollout decision together (the order is
/// in [`policy`]'s module docs); `None`: it may be applied now.
pub(super) fn hold(
    book: &RolloutBook,
    rules: Rules<'_>,
    r: Release<'_>,
    installed: &Installed,
    now: u64,
) -> Option<Hold> {
    let mut c = candidate(r, installed);
    let (_, d) = book.decide(&r.id, r.manifest, &rules.me, rules.spread, now, rules.skew);
    c.rollout = Some(d);
    policy::may_auto_apply(rules.policy, &c, &policy_installed(installed), utc(now)).err()
}

/// The release to apply by itself at `now`: the newest of `installable` (complete releases
/// of the managed product, newest first) that nothing holds back.
pub(super) fn auto_apply<'a>(
    book: &RolloutBook,
    rules: Rules<'_>,
    installable: impl IntoIterator<Item = Release<'a>>,
    installed: &Installed,
    now: u64,
) -> Option<VersionRef> {
    installable.into_iter().find_map(|r| {
        hold(book, rules, r, installed, now)
            .is_none()
            .then(|| VersionRef {
                version: r.manifest.version.clone(),
                release: r.id,
            })
    })
}

/// The last known-good version to roll back to: the newest earlier version that did not
/// fail here, was not yanked, and is still `kept` on disk.
pub(super) fn last_good(
    book: &RolloutBook,
    installed: &Installed,
    kept: impl Fn(&semver::Version) -> bool,
) -> Option<VersionRef> {
    installed
        .previous
        .iter()
        .find(|p| {
            !installed.failed.contains(&p.release) && !book.yanked(&p.release) && kept(&p.version)
        })
        .cloned()
}

/// What a yank of the running release makes this node do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum YankAction {
    /// Roll back to `to`, marking the yanked release failed (so that it is never applied
    /// again and a failed yank rollback does not loop).
    RollBack {
        to: VersionRef,
        yanked: VersionRef,
        note: String,
    },
    /// The running release is yanked, but no earlier version is there to go back to.
    Stuck { yanked: VersionRef },
}

/// Whether the running release is yanked and what to do about it. Nothing while a
/// transition runs (`idle` false), and nothing once the yanked release is marked failed
/// (the yank rollback was tried).
pub(super) fn yank(
    book: &RolloutBook,
    installed: &Installed,
    idle: bool,
    kept: impl Fn(&semver::Version) -> bool,
) -> Option<YankAction> {
    let current = installed.current.clone()?;
    if !book.yanked(&current.release) || !idle || installed.failed.contains(&current.release) {
        return None;
    }
    let Some(to) = last_good(book, installed, kept) else {
        return Some(YankAction::Stuck { yanked: current });
    };
    let note = match book.yank_reason(&current.release) {
        Some(why) => format!("yanked by the control role: {why}"),
        None => "yanked by the control role".to_string(),
    };
    Some(YankAction::RollBack {
        to,
        yanked: current,
        note,
    })
}

/// The yanked releases among `known`.
pub(super) fn yanked(
    book: &RolloutBook,
    known: impl IntoIterator<Item = Hash32>,
) -> BTreeSet<Hash32> {
    known.into_iter().filter(|id| book.yanked(id)).collect()
}

/// A rollout halted network-wide, to be announced once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Halted {
    pub release: Hash32,
    pub version: semver::Version,
    pub reason: String,
}

/// The rollouts of `followed` that have halted at `now` and are not in `seen` (announced
/// before).
pub(super) fn new_halts<'a>(
    book: &RolloutBook,
    followed: impl IntoIterator<Item = Release<'a>>,
    seen: &BTreeSet<Hash32>,
    now: u64,
    skew: u64,
) -> Vec<Halted> {
    followed
        .into_iter()
        .filter(|r| !seen.contains(&r.id))
        .filter_map(|r| {
            let e = book.evaluate(&r.id, r.manifest, now, skew);
            e.halted.map(|h| Halted {
                release: r.id,
                version: r.manifest.version.clone(),
                reason: h.to_string(),
            })
        })
        .collect()
}

/// Unix seconds as the policy's calendar time (maintenance windows are in UTC).
fn utc(now: u64) -> chrono::DateTime<chrono::Utc> {
    i64::try_from(now)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use upswarm_proto::fetch::SignedKind;
    use upswarm_proto::{
        Context, ControlAction, ControlMessage, HealthReport, HealthStatus, Phase, RolloutPlan,
        UpdateType,
    };
    use upswarm_rollout::Halt;
    use upswarm_trust::SecretKey;

    use super::super::judge::tests::{DAY, Keys, NOW, Node};
    use super::*;

    /// A two-phase plan: the canaries (a third of the fleet) must send one healthy report
    /// and soak an hour before the rest may install; one failure in five halts.
    fn plan() -> RolloutPlan {
        let p = |until_bp| Phase {
            until_bp,
            min_soak_secs: 3_600,
            max_failure_bp: 2_000,
            min_reports: 1,
        };
        RolloutPlan {
            phases: vec![p(3_400), p(10_000)],
        }
    }

    /// A fleet of three node keys known to the book, a release of `version` admitted through
    /// the judge (real signatures), and who is the canary.
    struct Fleet {
        keys: Keys,
        node: Node,
        nodes: Vec<SecretKey>,
        release: Hash32,
        manifest: Manifest,
    }

    impl Fleet {
        fn new(version: &str) -> Self {
            let keys = Keys::new();
            let mut node = Node::new(&keys);
            let nodes: Vec<SecretKey> = (0..3).map(node_key).collect();
            for n in &nodes {
                node.rollout.know(n.key_id());
            }
            let bytes = keys.manifest_with(version, Some(plan()), NOW);
            let super::super::judge::ManifestVerdict::Accept(v) = node.manifest(&bytes, NOW) else {
                panic!("a valid manifest is admitted")
            };
            Fleet {
                keys,
                node,
                nodes,
                release: v.release_id,
                manifest: v.manifest,
            }
        }

        fn release(&self) -> Release<'_> {
            Release {
                id: self.release,
                manifest: &self.manifest,
                first_seen: NOW - DAY,
            }
        }

        /// The node keys in install order: the canary first.
        fn order(&self) -> Vec<SecretKey> {
            let cohorts = self.node.rollout.cohorts(&self.release, &self.manifest);
            cohorts
                .placements()
                .map(|p| {
                    let i = self
                        .nodes
                        .iter()
                        .position(|n| n.key_id() == p.node)
                        .unwrap();
                    node_key(i)
                })
                .collect()
        }

        /// `from` reports `status` about the release at `at`, through the judge.
        fn report(&mut self, from: &SecretKey, status: HealthStatus, at: u64) {
            let r = HealthReport {
                v: upswarm_proto::health::HEALTH_VERSION,
                node: from.public(),
                release: self.release,
                status,
                running: self.manifest.version.clone(),
                at,
                detail: String::new(),
            };
            let bytes = self
                .keys
                .sign(&r, Context::Health, std::slice::from_ref(from));
            self.node.signed(SignedKind::Health, &bytes, at).unwrap();
        }

        fn control(&mut self, action: ControlAction, reason: &str, at: u64) {
            let c = ControlMessage {
                v: 1,
                release: self.release,
                action,
                issued_at: at,
                reason: reason.into(),
            };
            let bytes = self.keys.sign(&c, Context::Control, &self.keys.control);
            self.node.signed(SignedKind::Control, &bytes, at).unwrap();
        }
    }

    /// The key of fleet node `i`.
    fn node_key(i: usize) -> SecretKey {
        SecretKey::from_seed(&[40 + i as u8; 32])
    }

    fn rules<'a>(policy: &'a Policy, me: &SecretKey) -> Rules<'a> {
        Rules {
            policy,
            spread: Duration::ZERO,
            skew: 300,
            me: me.key_id(),
        }
    }

    fn on(version: &str, release: Hash32) -> Installed {
        Installed {
            current: Some(VersionRef {
                version: version.parse().unwrap(),
                release,
            }),
            ..Installed::default()
        }
    }

    #[test]
    fn later_cohorts_wait_for_the_canary_to_report_healthy_and_soak() {
        let mut f = Fleet::new("1.1.0");
        let policy = Policy::default();
        let installed = on("1.0.0", Hash32([9; 32]));
        let order = f.order();
        let (canary, later) = (&order[0], &order[1]);
        let at = NOW + 60;
        // The canary may install at once; a later node waits for the canary phase.
        assert_eq!(
            hold(
                &f.node.rollout,
                rules(&policy, canary),
                f.release(),
                &installed,
                at
            ),
            None
        );
        let waits = hold(
            &f.node.rollout,
            rules(&policy, later),
            f.release(),
            &installed,
            at,
        );
        assert!(
            matches!(&waits, Some(Hold::Rollout { decision }) if decision.contains("this node is in phase 1")),
            "{waits:?}"
        );
        // The canary reports healthy: the gate still soaks for an hour after the phase
        // opened, then opens — the time passed in is the only clock.
        f.report(canary, HealthStatus::Healthy, at + 10);
        let early = hold(
            &f.node.rollout,
            rules(&policy, later),
            f.release(),
            &installed,
            at + 20,
        );
        assert!(early.is_some(), "the canary phase has not soaked yet");
        let after = NOW + 2 * 3_600;
        let pick = auto_apply(
            &f.node.rollout,
            rules(&policy, later),
            [f.release()],
            &installed,
            after,
        );
        assert_eq!(pick.map(|v| v.release), Some(f.release));
        // Once it runs it, nothing more to apply.
        let running = on("1.1.0", f.release);
        assert!(matches!(
            hold(
                &f.node.rollout,
                rules(&policy, later),
                f.release(),
                &running,
                after
            ),
            Some(Hold::Running { .. })
        ));
    }

    #[test]
    fn a_failing_canary_halts_the_rollout_for_everyone_and_the_halt_is_news_once() {
        let mut f = Fleet::new("1.1.0");
        let policy = Policy::default();
        let installed = on("1.0.0", Hash32([9; 32]));
        let order = f.order();
        let mut seen = BTreeSet::new();
        assert!(new_halts(&f.node.rollout, [f.release()], &seen, NOW + 60, 300).is_empty());
        f.report(&order[0], HealthStatus::RolledBack, NOW + 60);
        let later = NOW + 3 * 3_600;
        for n in &order {
            let h = hold(
                &f.node.rollout,
                rules(&policy, n),
                f.release(),
                &installed,
                later,
            );
            assert!(
                matches!(
                    h,
                    Some(Hold::Stopped {
                        halt: Halt::Failures { .. }
                    })
                ),
                "{h:?}"
            );
        }
        let halts = new_halts(&f.node.rollout, [f.release()], &seen, later, 300);
        assert_eq!(halts.len(), 1);
        assert_eq!(halts[0].release, f.release);
        assert!(halts[0].reason.contains("halted"), "{}", halts[0].reason);
        seen.insert(f.release);
        assert!(new_halts(&f.node.rollout, [f.release()], &seen, later, 300).is_empty());
    }

    #[test]
    fn the_policy_holds_what_the_rollout_allows() {
        let f = Fleet::new("1.1.0");
        let order = f.order();
        let canary = &order[0];
        let installed = on("1.0.0", Hash32([9; 32]));
        // Patch updates are manual here.
        let manual = Policy {
            auto: BTreeSet::new(),
            ..Policy::default()
        };
        assert!(matches!(
            hold(
                &f.node.rollout,
                rules(&manual, canary),
                f.release(),
                &installed,
                NOW
            ),
            Some(Hold::Manual {
                update_type: UpdateType::Patch
            })
        ));
        // A delay after release counts from when this node first heard of it.
        let delayed = Policy {
            delay_after_release: Duration::from_secs(2 * DAY),
            ..Policy::default()
        };
        assert!(matches!(
            hold(
                &f.node.rollout,
                rules(&delayed, canary),
                f.release(),
                &installed,
                NOW
            ),
            Some(Hold::Delay { .. })
        ));
        assert_eq!(
            hold(
                &f.node.rollout,
                rules(&delayed, canary),
                f.release(),
                &installed,
                NOW + DAY + 1
            ),
            None
        );
        // A release that failed here is never applied by itself again; a pin holds others.
        let mut failed = installed.clone();
        failed.failed.insert(f.release);
        assert_eq!(
            hold(
                &f.node.rollout,
                rules(&Policy::default(), canary),
                f.release(),
                &failed,
                NOW
            ),
            Some(Hold::FailedBefore)
        );
        let mut pinned = installed.clone();
        pinned.pinned = Some("1.0.0".parse().unwrap());
        assert!(matches!(
            hold(
                &f.node.rollout,
                rules(&Policy::default(), canary),
                f.release(),
                &pinned,
                NOW
            ),
            Some(Hold::Pinned { .. })
        ));
        // Not newer than what runs: held, unless the manifest allows a rollback.
        let newer = on("2.0.0", Hash32([8; 32]));
        assert!(matches!(
            hold(
                &f.node.rollout,
                rules(&Policy::default(), canary),
                f.release(),
                &newer,
                NOW
            ),
            Some(Hold::NotNewer { .. })
        ));
    }

    #[test]
    fn a_yank_of_the_running_release_rolls_back_to_the_last_good_kept_version_once() {
        let mut f = Fleet::new("1.1.0");
        let v = |s: &str, b: u8| VersionRef {
            version: s.parse().unwrap(),
            release: Hash32([b; 32]),
        };
        let mut installed = on("1.1.0", f.release);
        installed.previous = vec![v("1.0.2", 1), v("1.0.1", 2), v("1.0.0", 3)];
        installed.failed.insert(Hash32([1; 32]));
        let kept = |s: &semver::Version| s.to_string() != "1.0.1";
        // Not yanked: nothing to do.
        assert_eq!(yank(&f.node.rollout, &installed, true, kept), None);
        f.control(ControlAction::Yank, "corrupts data", NOW);
        assert_eq!(
            yanked(&f.node.rollout, [f.release, Hash32([3; 32])]),
            BTreeSet::from([f.release])
        );
        // 1.0.2 failed here, 1.0.1 is no longer on disk: back to 1.0.0.
        assert_eq!(
            yank(&f.node.rollout, &installed, true, kept),
            Some(YankAction::RollBack {
                to: v("1.0.0", 3),
                yanked: VersionRef {
                    version: "1.1.0".parse().unwrap(),
                    release: f.release
                },
                note: "yanked by the control role: corrupts data".into(),
            })
        );
        // Not while a transition runs, and not again once the yanked release is marked
        // failed (a yank rollback that failed does not loop).
        assert_eq!(yank(&f.node.rollout, &installed, false, kept), None);
        let mut tried = installed.clone();
        tried.failed.insert(f.release);
        assert_eq!(yank(&f.node.rollout, &tried, true, kept), None);
        // Nothing good left: stuck, said once by the caller.
        let nothing = |_: &semver::Version| false;
        assert!(matches!(
            yank(&f.node.rollout, &installed, true, nothing),
            Some(YankAction::Stuck { .. })
        ));
        // A yanked release is held for every node, with the control role's time.
        let h = hold(
            &f.node.rollout,
            rules(&Policy::default(), &f.nodes[0]),
            f.release(),
            &on("1.0.0", Hash32([3; 32])),
            NOW + 10,
        );
        assert!(
            matches!(
                h,
                Some(Hold::Stopped {
                    halt: Halt::Yanked { at: NOW }
                })
            ),
            "{h:?}"
        );
    }
}
