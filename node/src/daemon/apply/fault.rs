//! Crash points for the crash tests: the daemon SIGKILLs itself at a chosen point of a
//! chosen apply step.
//!
//! Compiled in only with the `fault-injection` cargo feature (which `scripts/test.sh`
//! enables for the tests); in a normal build [`crash_point`] is an empty function and
//! nothing reads the variable below. There is no configuration key for it.
//!
//! `UPSWARM_FAULT_APPLY=POINT[,POINT…]`, each `POINT` being `[KIND/]WHEN:STEP[@VERSION]`:
//! `KIND` is `apply` or `rollback` (default: either); `WHEN` is `entry` (right after the
//! step is journaled, before it is carried out) or `done` (right after it was carried out,
//! before the next step is journaled; for `commit`, after the installed state is saved and
//! before the history entry is written); `STEP` a step name (`prechecks` … `rb_commit`);
//! `VERSION` the version the transition goes to (default: any). A point fires only in a
//! transition's first run, never in one resumed after a restart, so one setting can stay
//! in place for a whole crash test.

use super::record::{Journal, Step};

/// Where in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    Entry,
    Done,
}

/// Kills this process (SIGKILL: no cleanup, as a power cut or the OOM killer would) if a
/// crash point names this place.
#[cfg(feature = "fault-injection")]
pub(super) fn crash_point(when: When, step: Step, j: &Journal) {
    if j.restarts > 0 {
        return;
    }
    let Ok(spec) = std::env::var("UPSWARM_FAULT_APPLY") else {
        return;
    };
    let version = j.to.version.to_string();
    let hit = spec.split(',').map(str::trim).any(|point| {
        let (kind, rest) = match point.split_once('/') {
            Some((k, r)) => (Some(k), r),
            None => (None, point),
        };
        let (at, only) = rest
            .split_once('@')
            .map_or((rest, None), |(a, v)| (a, Some(v)));
        let Some((w, s)) = at.split_once(':') else {
            return false;
        };
        let kind_ok = match kind {
            None => true,
            Some("apply") => j.kind == super::record::Kind::Apply,
            Some("rollback") => j.kind == super::record::Kind::Rollback,
            Some(_) => false,
        };
        let when_ok = match w {
            "entry" => when == When::Entry,
            "done" => when == When::Done,
            _ => false,
        };
        kind_ok && when_ok && s == step.name() && only.is_none_or(|v| v == version)
    });
    if hit {
        tracing::warn!(step = step.name(), ?when, to = %version, "fault injection: SIGKILL now");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// No fault injection in this build.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn crash_point(_when: When, _step: Step, _j: &Journal) {}
