//! The state that signed control messages put a rollout in.

use serde::Serialize;
use upswarm_proto::ControlAction;

/// What the (verified) control messages for one release say, together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ControlState {
    /// No new installs (and no new phases) until resumed.
    pub paused: bool,
    /// Stopped for good.
    pub aborted: bool,
    /// Stopped for good, and nodes that installed it roll back.
    pub yanked: bool,
    /// Phases up to and including this index are open regardless of gates, from the time
    /// of the message.
    pub advanced_to: Option<(usize, u64)>,
}

/// Folds control messages `(action, issued_at)` for one release. Order of arrival does not
/// matter: between pause and resume the later `issued_at` wins (a tie: pause wins); abort
/// and yank are final; the highest advance wins (earliest time for that index).
pub fn control_state(messages: &[(ControlAction, u64)]) -> ControlState {
    let mut s = ControlState::default();
    let mut last_pause: Option<u64> = None;
    let mut last_resume: Option<u64> = None;
    for &(action, at) in messages {
        match action {
            ControlAction::Pause => last_pause = last_pause.max(Some(at)),
            ControlAction::Resume => last_resume = last_resume.max(Some(at)),
            ControlAction::Abort => s.aborted = true,
            ControlAction::Yank => {
                s.aborted = true;
                s.yanked = true;
            }
            ControlAction::Advance { to_phase } => {
                let to = to_phase as usize;
                s.advanced_to = match s.advanced_to {
                    Some((k, t)) if k > to || (k == to && t <= at) => Some((k, t)),
                    _ => Some((to, at)),
                };
            }
        }
    }
    s.paused = match (last_pause, last_resume) {
        (Some(p), Some(r)) => p >= r,
        (Some(_), None) => true,
        _ => false,
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_resume_ordering_is_by_issue_time_not_arrival() {
        use ControlAction::*;
        assert!(control_state(&[(Pause, 10)]).paused);
        assert!(!control_state(&[(Pause, 10), (Resume, 11)]).paused);
        assert!(
            !control_state(&[(Resume, 11), (Pause, 10)]).paused,
            "arrival order does not matter"
        );
        assert!(control_state(&[(Resume, 11), (Pause, 12)]).paused);
        assert!(
            control_state(&[(Resume, 10), (Pause, 10)]).paused,
            "a tie pauses"
        );
        assert!(!control_state(&[(Resume, 10)]).paused);
    }

    #[test]
    fn abort_and_yank_are_final_advance_takes_the_highest() {
        use ControlAction::*;
        let s = control_state(&[(Abort, 5), (Resume, 9)]);
        assert!(s.aborted && !s.yanked);
        let s = control_state(&[(Yank, 5)]);
        assert!(s.aborted && s.yanked);
        let s = control_state(&[
            (Advance { to_phase: 1 }, 5),
            (Advance { to_phase: 2 }, 9),
            (Advance { to_phase: 2 }, 7),
        ]);
        assert_eq!(s.advanced_to, Some((2, 7)));
    }
}
