//! The manager's unit states in the control protocol's words.
//!
//! The manager's enums ([`state::Sub`], [`state::ActiveState`],
//! [`state::ServiceResult`]) belong to its state machines and may change with
//! them; the protocol's ([`proto::SubState`], [`proto::ActiveState`],
//! [`proto::UnitResult`]) change only with `PROTOCOL_VERSION`. This file is the
//! one place where the first become the second, so a new state in a machine
//! is a compile error here instead of a silent change on the wire.

use crate::ipc::proto::{self, ServiceSub, SocketSub, SubState, TargetSub, TimerSub, UnitResult};

use super::state::{self, ServiceResult, Sub};
use super::{socket, target};

/// The protocol's ActiveState for the manager's.
pub fn active_state(a: state::ActiveState) -> proto::ActiveState {
    use proto::ActiveState as W;
    use state::ActiveState as A;
    match a {
        A::Inactive => W::Inactive,
        A::Activating => W::Activating,
        A::Active => W::Active,
        A::Reloading => W::Reloading,
        A::Deactivating => W::Deactivating,
        A::Failed => W::Failed,
    }
}

/// A service's sub-state.
pub fn service_sub(s: Sub) -> SubState {
    SubState::Service(match s {
        Sub::Dead => ServiceSub::Dead,
        Sub::Condition => ServiceSub::Condition,
        Sub::StartPre => ServiceSub::StartPre,
        Sub::Start => ServiceSub::Start,
        Sub::StartPost => ServiceSub::StartPost,
        Sub::Running => ServiceSub::Running,
        Sub::Exited => ServiceSub::Exited,
        Sub::Reload => ServiceSub::Reload,
        Sub::Stop => ServiceSub::Stop,
        Sub::StopSigterm => ServiceSub::StopSigterm,
        Sub::StopSigkill => ServiceSub::StopSigkill,
        Sub::StopPost => ServiceSub::StopPost,
        Sub::FinalSigterm => ServiceSub::FinalSigterm,
        Sub::FinalSigkill => ServiceSub::FinalSigkill,
        Sub::Failed => ServiceSub::Failed,
        Sub::AutoRestart => ServiceSub::AutoRestart,
    })
}

/// A target's sub-state: a target has no processes, so it is reached
/// (`active`) or `dead`; a failed one is `dead` too, as systemd says.
pub fn target_sub(s: target::Sub) -> SubState {
    SubState::Target(match s {
        target::Sub::Active => TargetSub::Active,
        target::Sub::Dead | target::Sub::Failed => TargetSub::Dead,
    })
}

/// A timer's sub-state.
pub fn timer_sub(s: super::timer::machine::TimerState) -> SubState {
    use super::timer::machine::TimerState as T;
    SubState::Timer(match s {
        T::Dead => TimerSub::Dead,
        T::Waiting => TimerSub::Waiting,
        T::Running => TimerSub::Running,
        T::Elapsed => TimerSub::Elapsed,
        T::Failed => TimerSub::Failed,
    })
}

/// A socket's sub-state.
pub fn socket_sub(s: socket::machine::Sub) -> SubState {
    use socket::machine::Sub as S;
    SubState::Socket(match s {
        S::Dead => SocketSub::Dead,
        S::StartPre => SocketSub::StartPre,
        S::StartPost => SocketSub::StartPost,
        S::Listening => SocketSub::Listening,
        S::Running => SocketSub::Running,
        S::StopPre => SocketSub::StopPre,
        S::StopPreSigterm => SocketSub::StopPreSigterm,
        S::StopPreSigkill => SocketSub::StopPreSigkill,
        S::StopPost => SocketSub::StopPost,
        S::FinalSigterm => SocketSub::FinalSigterm,
        S::FinalSigkill => SocketSub::FinalSigkill,
        S::Failed => SocketSub::Failed,
    })
}

/// The protocol's Result for the manager's.
pub fn result(r: ServiceResult) -> UnitResult {
    use ServiceResult as R;
    match r {
        R::Success => UnitResult::Success,
        R::Resources => UnitResult::Resources,
        R::Protocol => UnitResult::Protocol,
        R::Timeout => UnitResult::Timeout,
        R::ExitCode => UnitResult::ExitCode,
        R::Signal => UnitResult::Signal,
        R::CoreDump => UnitResult::CoreDump,
        R::StartLimitHit => UnitResult::StartLimitHit,
        R::Condition => UnitResult::Condition,
        R::Assert => UnitResult::Assert,
        R::Dependency => UnitResult::Dependency,
        R::ExecCondition => UnitResult::ExecCondition,
        R::ServiceStartLimitHit => UnitResult::ServiceStartLimitHit,
        R::TriggerLimitHit => UnitResult::TriggerLimitHit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBS: [Sub; 16] = [
        Sub::Dead,
        Sub::Condition,
        Sub::StartPre,
        Sub::Start,
        Sub::StartPost,
        Sub::Running,
        Sub::Exited,
        Sub::Reload,
        Sub::Stop,
        Sub::StopSigterm,
        Sub::StopSigkill,
        Sub::StopPost,
        Sub::FinalSigterm,
        Sub::FinalSigkill,
        Sub::Failed,
        Sub::AutoRestart,
    ];

    /// What the manager logs and what a client prints are the same words:
    /// each state maps to the protocol's state of the same name.
    #[test]
    fn every_state_keeps_its_word() {
        for s in SUBS {
            assert_eq!(service_sub(s).as_str(), s.as_str(), "{s:?}");
            assert_eq!(
                active_state(s.active()).as_str(),
                s.active().as_str(),
                "{s:?}"
            );
        }
        use ServiceResult as R;
        for r in [
            R::Success,
            R::Resources,
            R::Protocol,
            R::Timeout,
            R::ExitCode,
            R::Signal,
            R::CoreDump,
            R::StartLimitHit,
            R::Condition,
            R::Assert,
            R::Dependency,
            R::ExecCondition,
            R::ServiceStartLimitHit,
            R::TriggerLimitHit,
        ] {
            assert_eq!(result(r).as_str(), r.as_str(), "{r:?}");
        }
    }

    /// A target is `active` only while active; stopped or failed it is `dead`.
    #[test]
    fn a_target_is_active_or_dead() {
        use target::Sub as T;
        for (s, want) in [
            (T::Dead, "dead"),
            (T::Active, "active"),
            (T::Failed, "dead"),
        ] {
            assert_eq!(target_sub(s).as_str(), want, "{s:?}");
            assert!(matches!(target_sub(s), SubState::Target(_)));
        }
    }
}
