//! The lifecycle of a target unit as a pure function, as
//! [`state::next`](super::state::next) is for a service.
//!
//! A target groups other units and has no processes: its start job makes it
//! active as soon as the job driver hands the job out (after the jobs
//! ordered before it), its stop job inactive. It keeps the service's
//! [`State`] so that `status` and the job driver read every unit alike:
//! active is `Sub::Exited` (shown "active"), inactive `Sub::Dead`.

use super::state::{Event, ServiceResult, State, Sub};

/// Computes a target's next state; a target asks the manager for nothing.
pub fn next(state: &State, event: &Event) -> State {
    let mut s = state.clone();
    let (sub, result) = match event {
        Event::Start | Event::Restart => (Sub::Exited, ServiceResult::Success),
        Event::Stop => (Sub::Dead, ServiceResult::Success),
        v if v.verdict_applies(s.sub) == Some(true) => super::state::verdict_outcome(v, s.result),
        // Process, timer and bus events concern services only.
        _ => return s,
    };
    s.sub = sub;
    s.result = result;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use ServiceResult as R;
        let dep = || Event::DependencyFailed {
            dep: "db.service".into(),
        };
        // (from, event, to, result)
        let rows = [
            (Sub::Dead, Event::Start, Sub::Exited, R::Success),
            (Sub::Exited, Event::Start, Sub::Exited, R::Success),
            (Sub::Failed, Event::Start, Sub::Exited, R::Success),
            (Sub::Exited, Event::Stop, Sub::Dead, R::Success),
            (Sub::Dead, Event::Stop, Sub::Dead, R::Success),
            (Sub::Dead, Event::Restart, Sub::Exited, R::Success),
            (Sub::Dead, dep(), Sub::Failed, R::Dependency),
            // Reached already: a failed dependency is no news to it.
            (Sub::Exited, dep(), Sub::Exited, R::Success),
            (Sub::Failed, Event::ResetFailed, Sub::Dead, R::Success),
            (Sub::Exited, Event::ResetFailed, Sub::Exited, R::Success),
            (Sub::Exited, Event::CgroupEmpty, Sub::Exited, R::Success),
            (
                Sub::Exited,
                Event::Timeout(super::super::state::Timer::Phase),
                Sub::Exited,
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
                ..State::default()
            };
            let got = next(&st, &event);
            assert_eq!((got.sub, got.result), (to, result), "{event:?} in {from:?}");
        }
    }
}
