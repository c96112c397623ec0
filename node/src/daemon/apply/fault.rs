//! Crash points for the crash tests: the daemon SIGKILLs itself at a chosen point of a
//! chosen apply step.
//!
//! Compiled in only with the `fault-injection` cargo feature (which `scripts/test.sh`
//! enables for the tests); in a normal build [`crash_point`] is an empty function and
//! nothing reads the variable below. There is no configuration key for it.
//!
//! `UPSWARM_FAULT_APPLY=WHEN:STEP[@VERSION]`, where `WHEN` is `entry` (right after the step
//! is journaled, before it is carried out) or `done` (right after it was carried out,
//! before the next step is journaled; for `commit`, after the installed state is saved and
//! before the history entry is written), `STEP` a step name (`prechecks` … `rb_commit`),
//! and `VERSION` the version being installed (default: any).

use super::record::Step;

/// Where in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    Entry,
    Done,
}

/// Kills this process (SIGKILL: no cleanup, as a power cut or the OOM killer would) if the
/// crash point names this place.
#[cfg(feature = "fault-injection")]
pub(super) fn crash_point(when: When, step: Step, version: &semver::Version) {
    let Ok(spec) = std::env::var("UPSWARM_FAULT_APPLY") else {
        return;
    };
    let (at, only) = spec
        .split_once('@')
        .map_or((spec.as_str(), None), |(a, v)| (a, Some(v)));
    let Some((w, s)) = at.split_once(':') else {
        return;
    };
    let when_ok = match w {
        "entry" => when == When::Entry,
        "done" => when == When::Done,
        _ => false,
    };
    if when_ok && s == step.name() && only.is_none_or(|v| v == version.to_string()) {
        tracing::warn!(step = step.name(), ?when, "fault injection: SIGKILL now");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// No fault injection in this build.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(super) fn crash_point(_when: When, _step: Step, _version: &semver::Version) {}
