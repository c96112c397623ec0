//! The state that signed control messages put a rollout in.
//!
//! The caller verifies control messages (control-role threshold, `upswarm-trust`) and passes
//! the ones for this release. Their effect depends only on the set of messages, never on the
//! order in which they arrived:
//!
//! - **Pause / resume**: at time `t` the rollout is paused when the latest pause issued at
//!   or before `t` is at least as late as the latest resume issued at or before `t` (the
//!   later `issued_at` wins; a tie pauses). While paused, nobody starts an install and no
//!   phase opens: a gate that would open a phase during a pause opens it at the resume.
//! - **Abort** and **yank** are final: no phase opens after the earliest of them, and nobody
//!   installs from the moment a node sees one, whatever its date (a stop order is never
//!   postponed). A yank also tells nodes that installed the release to roll back.
//! - **Advance { to_phase }** issued at `t` opens phases `1..=to_phase` at `t` (at the end
//!   of the pause if `t` falls in one) unless they opened earlier by their gates. It does not
//!   undo a halt (failures, abort, yank) that happened at or before `t`.
//!
//! Pause, resume and advance messages dated later than `now + skew` are not in force yet
//! ([`ControlState::in_force`]).

use std::collections::BTreeSet;

use serde::Serialize;
use upswarm_proto::{ControlAction, ControlMessage, Hash32};

/// What the (verified) control messages for one release say, together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ControlState {
    /// Issue times of pause messages, ascending, distinct.
    pub pauses: Vec<u64>,
    /// Issue times of resume messages, ascending, distinct.
    pub resumes: Vec<u64>,
    /// `(to_phase, issued_at)` of advance messages, ascending, distinct.
    pub advances: Vec<(usize, u64)>,
    /// An abort or a yank was seen: nobody installs the release any more.
    pub aborted: bool,
    /// A yank was seen: nodes that installed the release roll back.
    pub yanked: bool,
    /// Earliest `issued_at` of an abort or yank: no phase opens from then on.
    pub stopped_at: Option<u64>,
}

/// Folds control messages `(action, issued_at)` for one release. Order of arrival and
/// duplicates do not matter.
pub fn control_state(messages: &[(ControlAction, u64)]) -> ControlState {
    let mut pauses = BTreeSet::new();
    let mut resumes = BTreeSet::new();
    let mut advances = BTreeSet::new();
    let mut s = ControlState::default();
    for &(action, at) in messages {
        match action {
            ControlAction::Pause => {
                pauses.insert(at);
            }
            ControlAction::Resume => {
                resumes.insert(at);
            }
            ControlAction::Abort | ControlAction::Yank => {
                s.aborted = true;
                s.yanked |= action == ControlAction::Yank;
                s.stopped_at = Some(s.stopped_at.map_or(at, |t| t.min(at)));
            }
            ControlAction::Advance { to_phase } => {
                advances.insert((usize::try_from(to_phase).unwrap_or(usize::MAX), at));
            }
        }
    }
    s.pauses = pauses.into_iter().collect();
    s.resumes = resumes.into_iter().collect();
    s.advances = advances.into_iter().collect();
    s
}

impl ControlState {
    /// The state from verified control messages; messages about other releases are ignored.
    pub fn from_messages<'a>(
        release: &Hash32,
        messages: impl IntoIterator<Item = &'a ControlMessage>,
    ) -> ControlState {
        let list: Vec<(ControlAction, u64)> = messages
            .into_iter()
            .filter(|m| m.release == *release)
            .map(|m| (m.action, m.issued_at))
            .collect();
        control_state(&list)
    }

    /// The messages in force at `horizon` (= `now + skew`): pause, resume and advance
    /// messages issued after it are dropped. Abort and yank are always in force.
    pub fn in_force(&self, horizon: u64) -> ControlState {
        ControlState {
            pauses: self
                .pauses
                .iter()
                .copied()
                .filter(|t| *t <= horizon)
                .collect(),
            resumes: self
                .resumes
                .iter()
                .copied()
                .filter(|t| *t <= horizon)
                .collect(),
            advances: self
                .advances
                .iter()
                .copied()
                .filter(|(_, t)| *t <= horizon)
                .collect(),
            ..self.clone()
        }
    }

    /// Whether the rollout is paused at time `t`.
    pub fn paused_at(&self, t: u64) -> bool {
        self.paused_since(t).is_some()
    }

    /// When the pause in force at `t` began (the pause message that put it in force), or
    /// `None` when not paused at `t`.
    pub fn paused_since(&self, t: u64) -> Option<u64> {
        let p = latest_at_or_before(&self.pauses, t)?;
        if latest_at_or_before(&self.resumes, t).is_some_and(|r| r > p) {
            return None;
        }
        // Paused since the first pause after the last resume that took effect (a resume
        // tied with a pause never took effect).
        let last_effective = self
            .resumes
            .iter()
            .copied()
            .filter(|r| *r <= t && self.pauses.binary_search(r).is_err())
            .max();
        match last_effective {
            Some(r) => self.pauses.iter().copied().find(|x| *x > r),
            None => self.pauses.first().copied(),
        }
    }

    /// The first time at or after `t` that is not paused: `t` itself, or the resume that
    /// ends the pause `t` falls in. `None` when that pause has not been resumed.
    pub fn unpaused_from(&self, t: u64) -> Option<u64> {
        if !self.paused_at(t) {
            return Some(t);
        }
        // A resume at `r` ends the pause unless a pause carries the same time (a tie pauses).
        self.resumes
            .iter()
            .copied()
            .find(|r| *r > t && self.pauses.binary_search(r).is_err())
    }

    /// The earliest time an advance message force-opens phase `phase`.
    pub fn advance_time(&self, phase: usize) -> Option<u64> {
        self.advances
            .iter()
            .filter(|(to, _)| *to >= phase)
            .map(|(_, at)| *at)
            .min()
    }
}

fn latest_at_or_before(sorted: &[u64], t: u64) -> Option<u64> {
    let i = sorted.partition_point(|x| *x <= t);
    i.checked_sub(1).map(|i| sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ControlAction::*;

    #[test]
    fn pause_resume_ordering_is_by_issue_time_not_arrival() {
        let now = 100;
        assert!(control_state(&[(Pause, 10)]).paused_at(now));
        assert!(!control_state(&[(Pause, 10), (Resume, 11)]).paused_at(now));
        assert!(
            !control_state(&[(Resume, 11), (Pause, 10)]).paused_at(now),
            "arrival order does not matter"
        );
        assert!(control_state(&[(Resume, 11), (Pause, 12)]).paused_at(now));
        assert!(
            control_state(&[(Resume, 10), (Pause, 10)]).paused_at(now),
            "a tie pauses"
        );
        assert!(!control_state(&[(Resume, 10)]).paused_at(now));
        assert!(!control_state(&[]).paused_at(now));
    }

    #[test]
    fn the_pause_timeline() {
        // Paused 10..20, 30..∞ (a resume at 40 ties with a pause at 40).
        let s = control_state(&[
            (Pause, 10),
            (Pause, 15),
            (Resume, 20),
            (Pause, 30),
            (Resume, 40),
            (Pause, 40),
        ]);
        assert!(!s.paused_at(9));
        assert!(s.paused_at(10) && s.paused_at(19));
        assert!(!s.paused_at(20) && !s.paused_at(29));
        assert!(s.paused_at(30) && s.paused_at(40) && s.paused_at(1000));
        assert_eq!(s.paused_since(12), Some(10));
        assert_eq!(s.paused_since(20), None);
        assert_eq!(s.paused_since(35), Some(30));
        assert_eq!(s.paused_since(45), Some(30));
        assert_eq!(s.unpaused_from(5), Some(5));
        assert_eq!(s.unpaused_from(10), Some(20));
        assert_eq!(s.unpaused_from(25), Some(25));
        assert_eq!(
            s.unpaused_from(30),
            None,
            "the resume at 40 ties with a pause"
        );
        let s = control_state(&[(Pause, 10), (Resume, 20), (Resume, 30)]);
        assert_eq!(s.unpaused_from(12), Some(20));
        // A pause issued later than a resume, both before t.
        let s = control_state(&[(Resume, 5), (Pause, 8)]);
        assert_eq!(s.paused_since(9), Some(8));
    }

    #[test]
    fn abort_and_yank_are_final() {
        let s = control_state(&[(Abort, 5), (Resume, 9)]);
        assert!(s.aborted && !s.yanked);
        assert_eq!(s.stopped_at, Some(5));
        let s = control_state(&[(Yank, 7), (Abort, 9)]);
        assert!(s.aborted && s.yanked);
        assert_eq!(s.stopped_at, Some(7));
        let s = control_state(&[(Yank, 1000)]).in_force(10);
        assert!(
            s.aborted && s.yanked,
            "stop orders are in force whatever their date"
        );
    }

    #[test]
    fn advances_open_each_phase_at_the_earliest_message_covering_it() {
        let s = control_state(&[
            (Advance { to_phase: 1 }, 5),
            (Advance { to_phase: 3 }, 9),
            (Advance { to_phase: 2 }, 7),
            (Advance { to_phase: 2 }, 7),
        ]);
        assert_eq!(s.advances.len(), 3);
        assert_eq!(s.advance_time(0), Some(5));
        assert_eq!(s.advance_time(1), Some(5));
        assert_eq!(s.advance_time(2), Some(7));
        assert_eq!(s.advance_time(3), Some(9));
        assert_eq!(s.advance_time(4), None);
        assert_eq!(s.in_force(8).advance_time(3), None, "not in force yet");
    }

    #[test]
    fn messages_for_other_releases_are_ignored() {
        let msg = |release, action, issued_at| ControlMessage {
            v: 1,
            release,
            action,
            issued_at,
            reason: String::new(),
        };
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        let msgs = [msg(a, Pause, 10), msg(b, Yank, 11), msg(a, Resume, 12)];
        let s = ControlState::from_messages(&a, &msgs);
        assert!(!s.aborted && !s.paused_at(20));
        assert_eq!((s.pauses.len(), s.resumes.len()), (1, 1));
        assert!(ControlState::from_messages(&b, &msgs).yanked);
    }
}
