//! The lifecycle of a target unit as a pure function, as
//! [`state::next`](super::state::next) is for a service.
//!
//! A target groups other units and has no processes: its start job makes it
//! active as soon as the job driver hands the job out (after the jobs
//! ordered before it), its stop job inactive. It asks the manager for
//! nothing, so its machine answers with a state alone.

use super::state::{ActiveState, Event, ServiceResult};

/// Where a target is (systemd's target sub-states, and failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sub {
    /// Not reached, or stopped.
    #[default]
    Dead,
    /// Reached.
    Active,
    /// Its start failed (a required unit failed, an assertion was false).
    Failed,
}

impl Sub {
    /// The ActiveState this sub-state belongs to.
    pub fn active(self) -> ActiveState {
        match self {
            Sub::Dead => ActiveState::Inactive,
            Sub::Active => ActiveState::Active,
            Sub::Failed => ActiveState::Failed,
        }
    }
}

/// The dynamic state of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Reached or not.
    pub sub: Sub,
    /// Why it ended up there: `dependency`, `assert`, `condition`, or success.
    pub result: ServiceResult,
}

impl Default for State {
    fn default() -> Self {
        State {
            sub: Sub::Dead,
            result: ServiceResult::Success,
        }
    }
}

/// Computes a target's next state.
pub fn next(state: State, event: &Event) -> State {
    let active = state.sub.active();
    let (sub, result) = match event {
        Event::Start | Event::Restart => (Sub::Active, ServiceResult::Success),
        Event::Stop => (Sub::Dead, ServiceResult::Success),
        v if v.verdict_applies(active, active != ActiveState::Active) == Some(true) => {
            match super::state::verdict_outcome(v, state.result) {
                (ActiveState::Failed, r) => (Sub::Failed, r),
                (_, r) => (Sub::Dead, r),
            }
        }
        // Process, timer and bus events concern services only.
        _ => return state,
    };
    State { sub, result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::state::Timer;

    #[test]
    fn transitions() {
        use ServiceResult as R;
        let dep = || Event::DependencyFailed {
            dep: "db.service".into(),
        };
        let cond = || Event::ConditionFalse {
            reason: "ConditionPathExists=/nope".into(),
        };
        let assert = || Event::AssertFalse {
            reason: "AssertPathExists=/nope".into(),
        };
        // (from, event, to, result)
        let rows = [
            (Sub::Dead, Event::Start, Sub::Active, R::Success),
            (Sub::Active, Event::Start, Sub::Active, R::Success),
            (Sub::Failed, Event::Start, Sub::Active, R::Success),
            (Sub::Active, Event::Stop, Sub::Dead, R::Success),
            (Sub::Dead, Event::Stop, Sub::Dead, R::Success),
            (Sub::Dead, Event::Restart, Sub::Active, R::Success),
            (Sub::Dead, dep(), Sub::Failed, R::Dependency),
            // Reached already: a failed dependency is no news to it.
            (Sub::Active, dep(), Sub::Active, R::Success),
            (Sub::Dead, cond(), Sub::Dead, R::Condition),
            (Sub::Active, cond(), Sub::Active, R::Success),
            (Sub::Dead, assert(), Sub::Failed, R::Assert),
            (Sub::Failed, Event::ResetFailed, Sub::Dead, R::Success),
            (Sub::Active, Event::ResetFailed, Sub::Active, R::Success),
            (Sub::Dead, Event::ResetFailed, Sub::Dead, R::Success),
            (Sub::Active, Event::CgroupEmpty, Sub::Active, R::Success),
            (
                Sub::Active,
                Event::Timeout(Timer::Phase),
                Sub::Active,
                R::Success,
            ),
        ];
        for (from, event, to, result) in rows {
            let st = State {
                sub: from,
                result: if from == Sub::Failed {
                    R::Dependency
                } else {
                    R::Success
                },
            };
            let got = next(st, &event);
            assert_eq!((got.sub, got.result), (to, result), "{event:?} in {from:?}");
        }
    }
}
