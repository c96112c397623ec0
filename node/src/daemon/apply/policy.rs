//! Operator policy: may this node install that release now? A pure function of the policy,
//! the release (with the phased rollout's decision for this node), what is installed, and
//! the clock.
//!
//! When several things hold a release back, [`may_auto_apply`] names **one**: the first
//! that applies in this order (final reasons first, then the operator's choices, then
//! waits that end by themselves):
//!
//! 1. [`Hold::Running`]: this node runs that very release.
//! 2. [`Hold::NotNewer`], [`Hold::UpgradePath`]: it cannot be applied over what runs.
//! 3. [`Hold::Stopped`]: the rollout stopped for the whole fleet (yanked, aborted, or
//!    halted by failures); no node installs it, whatever it did before.
//! 4. [`Hold::FailedBefore`]: it failed on this node (only `apply --force` retries it).
//! 5. [`Hold::Pinned`], [`Hold::Manual`], [`Hold::Deferred`]: the operator's choices.
//! 6. [`Hold::Rollout`]: the phased rollout does not let this node install yet (paused,
//!    its phase is not open, or its install delay inside the phase).
//! 7. [`Hold::Delay`]: the policy's `delay_after_release`.
//! 8. [`Hold::OutsideWindow`]: everything else is ready; the next maintenance window
//!    installs it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

pub use crate::api::Hold;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
use upswarm_proto::UpdateType;
use upswarm_rollout::{Decision, Halt, Time};

/// The `[policy]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Update types applied automatically; the others wait for `upswarm apply`.
    /// Default: hotfix, patch, minor, config.
    #[serde(default = "default_auto")]
    pub auto: BTreeSet<UpdateType>,
    /// Maintenance windows; empty: any time.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// Security-critical releases may be applied outside the windows. Default true.
    #[serde(default = "yes")]
    pub security_overrides_windows: bool,
    /// Wait this long after first hearing of a release. Default 0.
    #[serde(default, with = "humantime_serde")]
    pub delay_after_release: Duration,
    /// How long one `upswarm defer` postpones an update. Default 24h.
    #[serde(default = "default_defer", with = "humantime_serde")]
    pub defer_period: Duration,
    /// How many times one release may be deferred. Default 3.
    #[serde(default = "default_max_defers")]
    pub max_defers: u32,
    /// Skip the data backup before applying (faster, but a rollback cannot restore data).
    #[serde(default)]
    pub skip_backup: bool,
}

fn default_auto() -> BTreeSet<UpdateType> {
    [
        UpdateType::Hotfix,
        UpdateType::Patch,
        UpdateType::Minor,
        UpdateType::Config,
    ]
    .into_iter()
    .collect()
}
fn yes() -> bool {
    true
}
fn default_defer() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_defers() -> u32 {
    3
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            auto: default_auto(),
            windows: Vec::new(),
            security_overrides_windows: true,
            delay_after_release: Duration::ZERO,
            defer_period: default_defer(),
            max_defers: default_max_defers(),
            skip_backup: false,
        }
    }
}

/// A weekly maintenance window, e.g. Tuesdays and Thursdays 02:00–04:00 Europe/Berlin.
/// A window whose end is before its start runs past midnight.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Days the window opens: `mon` … `sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
    /// IANA time zone name. Default `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

impl Window {
    /// Checks the window's fields; returns a message naming the bad one.
    pub fn check(&self) -> Result<(), String> {
        self.parsed().map(|_| ())
    }

    fn parsed(&self) -> Result<(Vec<Weekday>, NaiveTime, NaiveTime, chrono_tz::Tz), String> {
        let days = self
            .days
            .iter()
            .map(|d| {
                d.parse::<Weekday>()
                    .map_err(|_| format!("window day {d:?} is not mon … sun"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let time = |s: &str, what| {
            NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| format!("window {what} {s:?} is not HH:MM"))
        };
        let tz: chrono_tz::Tz = self.timezone.parse().map_err(|_| {
            format!(
                "window timezone {:?} is not an IANA zone name",
                self.timezone
            )
        })?;
        Ok((
            days,
            time(&self.start, "start")?,
            time(&self.end, "end")?,
            tz,
        ))
    }

    /// Whether `now` falls in this window.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let Ok((days, start, end, tz)) = self.parsed() else {
            return false;
        };
        let local = tz.from_utc_datetime(&now.naive_utc());
        let t = local.time();
        let day_ok = |d: Weekday| days.is_empty() || days.contains(&d);
        if start <= end {
            day_ok(local.weekday()) && t >= start && t < end
        } else {
            // Past midnight: the evening part belongs to today, the morning part to yesterday.
            (t >= start && day_ok(local.weekday())) || (t < end && day_ok(local.weekday().pred()))
        }
    }
}

/// What is known about a candidate release, for the policy.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: semver::Version,
    pub update_type: UpdateType,
    pub security_critical: bool,
    pub rollback: bool,
    pub min_version: Option<semver::Version>,
    /// Unix seconds when this node first heard of it.
    pub first_seen: u64,
    pub already_failed: bool,
    /// Unix seconds until which the operator deferred it.
    pub deferred_until: Option<u64>,
    /// The phased rollout's decision for this node (`None`: not known; nothing holds).
    pub rollout: Option<Decision>,
}

/// What is installed, for the policy.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub current: Option<semver::Version>,
    pub pinned: Option<semver::Version>,
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Running { version } => write!(f, "installed: this node runs {version}"),
            Hold::NotNewer { current } => write!(f, "not newer than the running version {current}"),
            Hold::UpgradePath {
                min_version,
                current,
            } => {
                write!(
                    f,
                    "may only be applied over {min_version} or later; this node runs {current}"
                )
            }
            Hold::Stopped { halt } => match halt {
                Halt::Yanked { at } => write!(
                    f,
                    "yanked by the control role at {}: no node installs it, and nodes that ran it rolled back",
                    Time(*at)
                ),
                Halt::Aborted { at } => write!(
                    f,
                    "the rollout was aborted by the control role at {}: no node installs it",
                    Time(*at)
                ),
                Halt::Failures { .. } => write!(f, "the rollout {halt}: no node installs it"),
            },
            Hold::FailedBefore => {
                f.write_str("failed on this node before; apply it by hand with --force")
            }
            Hold::Pinned { version } => write!(f, "the node is pinned to {version}"),
            Hold::Manual { update_type } => write!(
                f,
                "{update_type} updates are manual here: run `upswarm apply`"
            ),
            Hold::OutsideWindow => f.write_str("outside the maintenance windows"),
            Hold::Delay { until } => write!(
                f,
                "waiting until {} (the policy's delay after release)",
                Time(*until)
            ),
            Hold::Deferred { until } => {
                write!(f, "deferred by the operator until {}", Time(*until))
            }
            Hold::Rollout { decision } => write!(f, "rollout: {decision}"),
        }
    }
}

/// Whether the compatibility pre-checks pass (what even `--force` cannot skip: a release
/// that may not be applied over this version). Anti-rollback is here too, unless forced.
pub fn compatible(c: &Candidate, installed: &Installed, force: bool) -> Result<(), Hold> {
    if let Some(current) = &installed.current {
        // SemVer 2.0 §11 precedence: build metadata does not count.
        if c.version.cmp_precedence(current).is_le() && !c.rollback && !force {
            return Err(Hold::NotNewer {
                current: current.to_string(),
            });
        }
        if let Some(min) = &c.min_version
            && current.cmp_precedence(min).is_lt()
        {
            return Err(Hold::UpgradePath {
                min_version: min.to_string(),
                current: current.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether the node may apply `c` automatically at `now`; if not, the one most important
/// reason (in the order of the module docs).
pub fn may_auto_apply(
    policy: &Policy,
    c: &Candidate,
    installed: &Installed,
    now: DateTime<Utc>,
) -> Result<(), Hold> {
    if installed.current.as_ref() == Some(&c.version) {
        return Err(Hold::Running {
            version: c.version.to_string(),
        });
    }
    compatible(c, installed, false)?;
    if let Some(Decision::Never { reason }) = &c.rollout {
        return Err(Hold::Stopped {
            halt: reason.clone(),
        });
    }
    if c.already_failed {
        return Err(Hold::FailedBefore);
    }
    if let Some(pin) = &installed.pinned
        && *pin != c.version
    {
        return Err(Hold::Pinned {
            version: pin.to_string(),
        });
    }
    if !policy.auto.contains(&c.update_type) {
        return Err(Hold::Manual {
            update_type: c.update_type,
        });
    }
    let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
    if let Some(until) = c.deferred_until
        && now_secs < until
    {
        return Err(Hold::Deferred { until });
    }
    if let Some(d) = &c.rollout
        && !d.is_install()
    {
        return Err(Hold::Rollout {
            decision: d.to_string(),
        });
    }
    let ready_at = c
        .first_seen
        .saturating_add(policy.delay_after_release.as_secs());
    if now_secs < ready_at && !c.security_critical {
        return Err(Hold::Delay { until: ready_at });
    }
    let in_window = policy.windows.is_empty() || policy.windows.iter().any(|w| w.contains(now));
    let overrides = c.security_critical && policy.security_overrides_windows;
    if !(in_window || overrides) {
        return Err(Hold::OutsideWindow);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cand(v: &str, ty: UpdateType) -> Candidate {
        Candidate {
            version: v.parse().unwrap(),
            update_type: ty,
            security_critical: false,
            rollback: false,
            min_version: None,
            first_seen: 0,
            already_failed: false,
            deferred_until: None,
            rollout: None,
        }
    }

    fn installed(v: &str) -> Installed {
        Installed {
            current: Some(v.parse().unwrap()),
            pinned: None,
        }
    }

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> Window {
        Window {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
            timezone: tz.into(),
        }
    }

    #[test]
    fn build_metadata_does_not_count_for_precedence() {
        // SemVer 2.0 §10–11: 1.2.3+zzz has the same precedence as 1.2.3.
        let c = cand("1.2.3+zzz", UpdateType::Patch);
        assert!(matches!(
            compatible(&c, &installed("1.2.3"), false),
            Err(Hold::NotNewer { .. })
        ));
        let mut c = cand("1.3.0", UpdateType::Minor);
        c.min_version = Some("1.2.3+zzz".parse().unwrap());
        assert!(compatible(&c, &installed("1.2.3"), false).is_ok());
        assert!(compatible(&c, &installed("1.2.3+aaa"), false).is_ok());
    }

    #[test]
    fn windows_with_days_time_zones_and_midnight() {
        // 2026-11-24 is a Tuesday.
        let w = window(&["tue"], "02:00", "04:00", "UTC");
        assert!(w.contains(at("2026-11-24T02:00:00Z")));
        assert!(w.contains(at("2026-11-24T03:59:59Z")));
        assert!(!w.contains(at("2026-11-24T04:00:00Z")));
        assert!(!w.contains(at("2026-11-25T03:00:00Z")), "Wednesday");
        // Berlin is UTC+1 in November: 02:00 Berlin = 01:00 UTC.
        let berlin = window(&["tue"], "02:00", "04:00", "Europe/Berlin");
        assert!(berlin.contains(at("2026-11-24T01:30:00Z")));
        assert!(!berlin.contains(at("2026-11-24T03:30:00Z")));
        // 22:00–02:00 on Mondays includes Tuesday 01:00 but not Monday 01:00.
        let night = window(&["mon"], "22:00", "02:00", "UTC");
        assert!(night.contains(at("2026-11-23T23:00:00Z")));
        assert!(night.contains(at("2026-11-24T01:00:00Z")));
        assert!(!night.contains(at("2026-11-23T01:00:00Z")));
        assert!(
            window(&["funday"], "02:00", "04:00", "UTC")
                .check()
                .unwrap_err()
                .contains("funday")
        );
        assert!(
            window(&[], "25:00", "04:00", "UTC")
                .check()
                .unwrap_err()
                .contains("start")
        );
        assert!(
            window(&[], "02:00", "04:00", "Mars/Olympus")
                .check()
                .unwrap_err()
                .contains("timezone")
        );
    }

    #[test]
    fn maintenance_window_is_respected_with_an_injected_clock() {
        let policy = Policy {
            windows: vec![window(&[], "02:00", "04:00", "UTC")],
            ..Policy::default()
        };
        let c = cand("1.1.0", UpdateType::Patch);
        let i = installed("1.0.0");
        assert_eq!(
            may_auto_apply(&policy, &c, &i, at("2026-11-24T12:00:00Z")),
            Err(Hold::OutsideWindow)
        );
        assert_eq!(
            may_auto_apply(&policy, &c, &i, at("2026-11-24T02:30:00Z")),
            Ok(())
        );
        // Security-critical overrides (by default), unless the policy says otherwise.
        let sec = Candidate {
            security_critical: true,
            ..c.clone()
        };
        assert_eq!(
            may_auto_apply(&policy, &sec, &i, at("2026-11-24T12:00:00Z")),
            Ok(())
        );
        let strict = Policy {
            security_overrides_windows: false,
            ..policy
        };
        assert_eq!(
            may_auto_apply(&strict, &sec, &i, at("2026-11-24T12:00:00Z")),
            Err(Hold::OutsideWindow)
        );
    }

    /// One reason per hold, the most important one (see the module docs for the order).
    #[test]
    fn the_one_reason_follows_the_documented_order() {
        let policy = Policy {
            windows: vec![window(&[], "02:00", "04:00", "UTC")],
            ..Policy::default()
        };
        let outside = at("2026-11-24T12:00:00Z");
        let i = installed("1.0.0");
        let yanked = Decision::Never {
            reason: Halt::Yanked { at: 1_795_000_000 },
        };
        let halted = Decision::Never {
            reason: Halt::Failures {
                phase: 0,
                at: 1_795_000_000,
                failures: 1,
                reports: 1,
                max_failure_bp: 1000,
            },
        };
        // A yanked release this node rolled back from (marked failed): yanked, never --force.
        let c = Candidate {
            already_failed: true,
            rollout: Some(yanked.clone()),
            ..cand("1.1.0", UpdateType::Patch)
        };
        let h = may_auto_apply(&policy, &c, &i, outside).unwrap_err();
        assert!(matches!(h, Hold::Stopped { .. }), "{h:?}");
        let text = h.to_string();
        assert!(
            text.starts_with("yanked by the control role at 2026-11-18T"),
            "{text}"
        );
        assert!(!text.contains("--force") && !text.contains("failed on this node"));
        // Halted, outside the windows: halted.
        let c = Candidate {
            rollout: Some(halted),
            ..cand("1.1.0", UpdateType::Patch)
        };
        let text = may_auto_apply(&policy, &c, &i, outside)
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("the rollout halted at 2026-11-18T"),
            "{text}"
        );
        assert!(!text.contains("window"), "{text}");
        // The running release: installed, whatever the rollout says.
        let c = Candidate {
            rollout: Some(Decision::Install),
            ..cand("1.0.0", UpdateType::Patch)
        };
        assert_eq!(
            may_auto_apply(&policy, &c, &i, outside)
                .unwrap_err()
                .to_string(),
            "installed: this node runs 1.0.0"
        );
        // Its phase is not open, outside the windows: the rollout is what it waits for.
        let c = Candidate {
            rollout: Some(Decision::Wait {
                until: None,
                reason: upswarm_rollout::WaitReason::PhaseNotOpen { phase: 1, open: 1 },
            }),
            ..cand("1.1.0", UpdateType::Patch)
        };
        assert_eq!(
            may_auto_apply(&policy, &c, &i, outside)
                .unwrap_err()
                .to_string(),
            "rollout: wait: this node is in phase 1; only phase 0 is open"
        );
        // Everything ready but the window: the window.
        let c = Candidate {
            rollout: Some(Decision::Install),
            ..cand("1.1.0", UpdateType::Patch)
        };
        assert_eq!(
            may_auto_apply(&policy, &c, &i, outside),
            Err(Hold::OutsideWindow)
        );
        assert_eq!(
            may_auto_apply(&policy, &c, &i, at("2026-11-24T02:30:00Z")),
            Ok(())
        );
    }

    #[test]
    fn holds() {
        let p = Policy::default();
        let now = at("2026-11-24T12:00:00Z");
        let i = installed("1.0.0");
        assert!(matches!(
            may_auto_apply(&p, &cand("1.0.0", UpdateType::Patch), &i, now),
            Err(Hold::Running { .. })
        ));
        assert!(matches!(
            may_auto_apply(&p, &cand("0.9.0", UpdateType::Patch), &i, now),
            Err(Hold::NotNewer { .. })
        ));
        let rb = Candidate {
            rollback: true,
            ..cand("0.9.0", UpdateType::Patch)
        };
        assert_eq!(may_auto_apply(&p, &rb, &i, now), Ok(()));
        assert_eq!(
            may_auto_apply(&p, &cand("2.0.0", UpdateType::Major), &i, now),
            Err(Hold::Manual {
                update_type: UpdateType::Major
            })
        );
        let failed = Candidate {
            already_failed: true,
            ..cand("1.1.0", UpdateType::Patch)
        };
        assert_eq!(
            may_auto_apply(&p, &failed, &i, now),
            Err(Hold::FailedBefore)
        );
        let pinned = Installed {
            pinned: Some("1.0.5".parse().unwrap()),
            ..i.clone()
        };
        assert!(matches!(
            may_auto_apply(&p, &cand("1.1.0", UpdateType::Patch), &pinned, now),
            Err(Hold::Pinned { .. })
        ));
        let path = Candidate {
            min_version: Some("1.0.5".parse().unwrap()),
            ..cand("1.1.0", UpdateType::Patch)
        };
        assert!(matches!(
            may_auto_apply(&p, &path, &i, now),
            Err(Hold::UpgradePath { .. })
        ));
        assert!(
            matches!(compatible(&path, &i, true), Err(Hold::UpgradePath { .. })),
            "force cannot skip the upgrade path"
        );
        let delayed = Policy {
            delay_after_release: Duration::from_secs(3600),
            ..Policy::default()
        };
        let fresh = Candidate {
            first_seen: 1_795_000_000,
            ..cand("1.1.0", UpdateType::Patch)
        };
        let soon = DateTime::from_timestamp(1_795_000_100, 0).unwrap();
        assert_eq!(
            may_auto_apply(&delayed, &fresh, &i, soon),
            Err(Hold::Delay {
                until: 1_795_003_600
            })
        );
        let deferred = Candidate {
            deferred_until: Some(1_795_000_200),
            ..fresh.clone()
        };
        assert_eq!(
            may_auto_apply(&p, &deferred, &i, soon),
            Err(Hold::Deferred {
                until: 1_795_000_200
            })
        );
        // Nothing installed yet: anything compatible goes.
        assert_eq!(
            may_auto_apply(
                &p,
                &cand("1.0.0", UpdateType::Patch),
                &Installed::default(),
                now
            ),
            Ok(())
        );
    }
}
