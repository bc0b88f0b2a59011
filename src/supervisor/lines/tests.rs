use super::*;
use crate::journal::catalog::{self, message_id};
use crate::supervisor::state::RestartPolicy;

const WEB: Named<'static> = Named {
    unit: "memcached@11212.service",
    description: Some("Memcached"),
};

#[test]
fn lines_are_worded_prioritised_and_numbered_as_systemd() {
    use priority::*;
    let killed = Exit::Signal {
        sig: libc::SIGKILL,
        core: false,
    };
    let u = "memcached@11212.service";
    let cases: Vec<(Line, String, u8, Option<&str>)> = vec![
        (
            Line::Starting,
            "Starting memcached@11212.service - Memcached...".into(),
            INFO,
            Some(catalog::UNIT_STARTING),
        ),
        (
            Line::Started,
            "Started memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_STARTED),
        ),
        (
            Line::Finished,
            "Finished memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_STARTED),
        ),
        (
            Line::FailedToStart,
            "Failed to start memcached@11212.service - Memcached.".into(),
            ERR,
            Some(catalog::UNIT_FAILED),
        ),
        (
            Line::Stopping,
            "Stopping memcached@11212.service - Memcached...".into(),
            INFO,
            Some(catalog::UNIT_STOPPING),
        ),
        (
            Line::Stopped,
            "Stopped memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_STOPPED),
        ),
        (
            Line::Reloading,
            "Reloading memcached@11212.service - Memcached...".into(),
            INFO,
            Some(catalog::UNIT_RELOADING),
        ),
        (
            Line::Reloaded,
            "Reloaded memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_RELOADED),
        ),
        (
            Line::ReloadFailed,
            "Reload failed for memcached@11212.service - Memcached.".into(),
            ERR,
            Some(catalog::UNIT_RELOADED),
        ),
        (
            Line::ReachedTarget,
            "Reached target memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_STARTED),
        ),
        (
            Line::StoppedTarget,
            "Stopped target memcached@11212.service - Memcached.".into(),
            INFO,
            Some(catalog::UNIT_STOPPED),
        ),
        (
            Line::DependencyFailed,
            "Dependency failed for memcached@11212.service - Memcached.".into(),
            WARNING,
            Some(catalog::UNIT_FAILED),
        ),
        (
            Line::AssertionFailed,
            "Assertion failed for memcached@11212.service - Memcached.".into(),
            WARNING,
            Some(catalog::UNIT_FAILED),
        ),
        (
            Line::ConditionSkipped("ConditionPathExists=/nope".into()),
            "memcached@11212.service - Memcached was skipped because of an unmet condition check (ConditionPathExists=/nope).".into(),
            INFO,
            None,
        ),
        (
            Line::MainExited(killed),
            format!("{u}: Main process exited, code=killed, status=9/KILL"),
            WARNING,
            Some(catalog::UNIT_PROCESS_EXIT),
        ),
        (
            Line::MainExited(Exit::Code(1)),
            format!("{u}: Main process exited, code=exited, status=1/FAILURE"),
            NOTICE,
            Some(catalog::UNIT_PROCESS_EXIT),
        ),
        (
            Line::ControlExited(Exit::Code(42)),
            format!("{u}: Control process exited, code=exited, status=42/n/a"),
            NOTICE,
            Some(catalog::UNIT_PROCESS_EXIT),
        ),
        (
            Line::FailedWithResult(ServiceResult::Signal),
            format!("{u}: Failed with result 'signal'."),
            WARNING,
            Some(catalog::UNIT_FAILURE_RESULT),
        ),
        (
            Line::Deactivated,
            format!("{u}: Deactivated successfully."),
            INFO,
            Some(catalog::UNIT_SUCCESS),
        ),
        (
            Line::Skipped(ServiceResult::ExecCondition),
            format!("{u}: Skipped due to 'exec-condition'."),
            INFO,
            Some(catalog::UNIT_SKIPPED),
        ),
        (
            Line::RestartScheduled(3),
            format!("{u}: Scheduled restart job, restart counter is at 3."),
            INFO,
            Some(catalog::UNIT_RESTART_SCHEDULED),
        ),
        (
            Line::StartLimitHit,
            format!("{u}: Start request repeated too quickly."),
            WARNING,
            None,
        ),
        (
            Line::Consumed(1_234_567),
            format!("{u}: Consumed 1.234s CPU time."),
            INFO,
            Some(catalog::UNIT_RESOURCES),
        ),
        (
            Line::Note(WARNING, "x.service:3: warning: Foo=: unknown".into()),
            format!("{u}: x.service:3: warning: Foo=: unknown"),
            WARNING,
            None,
        ),
    ];
    for (line, text, prio, id) in cases {
        assert_eq!(line.text(WEB), text, "{line:?}");
        assert_eq!(line.priority(), prio, "{line:?}");
        assert_eq!(line.message_id(), id, "{line:?}");
        // Stores before format v3 have no MESSAGE_ID column: their manager lines
        // get the id from the wording, which must agree.
        assert_eq!(message_id(text.as_bytes()), id, "{line:?}");
    }
}

#[test]
fn a_unit_without_description_is_named_by_its_id() {
    let n = Named {
        unit: "a.service",
        description: None,
    };
    assert_eq!(Line::Started.text(n), "Started a.service.");
    let same = Named {
        unit: "a.service",
        description: Some("a.service"),
    };
    assert_eq!(Line::Stopping.text(same), "Stopping a.service...");
}

#[test]
fn cpu_time_as_systemd_formats_it() {
    for (usec, want) in [
        (0, "0"),
        (500, "500us"),
        (345_000, "345ms"),
        (1_000_000, "1s"),
        (1_234_567, "1.234s"),
        (62_345_000, "1min 2.345s"),
        (3_723_000_000, "1h 2min 3s"),
    ] {
        assert_eq!(format_timespan_ms(usec), want, "{usec}");
    }
}

fn st(sub: Sub) -> State {
    State {
        sub,
        ..State::default()
    }
}

#[test]
fn service_transitions() {
    use Line as L;
    let simple = Spec::default();
    let oneshot = Spec {
        readiness: Readiness::Oneshot,
        ..Spec::default()
    };
    let notify = Spec {
        readiness: Readiness::Notify,
        ..Spec::default()
    };
    let failed = |sub, r| State {
        result: r,
        ..st(sub)
    };
    let stopping = |sub| State {
        stop_requested: true,
        ..st(sub)
    };
    let restarting = |sub| State {
        stop_requested: true,
        start_after_stop: true,
        ..st(sub)
    };
    let restart_n = |sub, n| State {
        restarts: n,
        ..st(sub)
    };
    let exit1 = Event::ControlExited {
        exit: Exit::Code(1),
        ignore: false,
    };
    let ok = Event::ControlExited {
        exit: Exit::Code(0),
        ignore: false,
    };
    // (spec, before, after, event, lines)
    let rows: Vec<(&Spec, State, State, Event, Vec<Line>)> = vec![
        // A simple service is started by its spawn: no "Starting".
        (&simple, st(Sub::Dead), st(Sub::Start), Event::Start, vec![]),
        (
            &simple,
            st(Sub::Start),
            st(Sub::Running),
            ok.clone(),
            vec![L::Started],
        ),
        // With ExecStartPre=, or waiting for READY=1, the start is under way first.
        (
            &simple,
            st(Sub::Dead),
            st(Sub::StartPre),
            Event::Start,
            vec![L::Starting],
        ),
        (
            &notify,
            st(Sub::Failed),
            st(Sub::Start),
            Event::Start,
            vec![L::Starting],
        ),
        (
            &oneshot,
            st(Sub::Dead),
            st(Sub::Start),
            Event::Start,
            vec![L::Starting],
        ),
        (
            &oneshot,
            st(Sub::Start),
            st(Sub::Exited),
            ok.clone(),
            vec![L::Finished],
        ),
        (
            &oneshot,
            st(Sub::Start),
            st(Sub::Dead),
            ok.clone(),
            vec![L::Deactivated, L::Consumed(0), L::Finished],
        ),
        (
            &oneshot,
            st(Sub::Start),
            failed(Sub::Failed, ServiceResult::ExitCode),
            exit1.clone(),
            vec![
                L::FailedWithResult(ServiceResult::ExitCode),
                L::Consumed(0),
                L::FailedToStart,
            ],
        ),
        // A stop asked for.
        (
            &simple,
            st(Sub::Running),
            stopping(Sub::StopSigterm),
            Event::Stop,
            vec![L::Stopping],
        ),
        (
            &simple,
            stopping(Sub::StopSigterm),
            stopping(Sub::Dead),
            Event::CgroupEmpty,
            vec![L::Deactivated, L::Consumed(0), L::Stopped],
        ),
        (
            &simple,
            stopping(Sub::FinalSigterm),
            State {
                result: ServiceResult::Timeout,
                ..stopping(Sub::Failed)
            },
            Event::CgroupEmpty,
            vec![
                L::FailedWithResult(ServiceResult::Timeout),
                L::Consumed(0),
                L::Stopped,
            ],
        ),
        // Nothing to stop (a oneshot's exited state): done in one step.
        (
            &oneshot,
            st(Sub::Exited),
            stopping(Sub::Dead),
            Event::Stop,
            vec![L::Deactivated, L::Consumed(0), L::Stopped],
        ),
        // A restart: the stop's end, then a start.
        (
            &simple,
            restarting(Sub::StopSigterm),
            st(Sub::Dead),
            Event::CgroupEmpty,
            vec![L::Deactivated, L::Consumed(0), L::Stopped],
        ),
        // The main process died on its own: no job, no job line.
        (
            &simple,
            st(Sub::Running),
            failed(Sub::Failed, ServiceResult::Signal),
            Event::CgroupEmpty,
            vec![L::FailedWithResult(ServiceResult::Signal), L::Consumed(0)],
        ),
        (
            &simple,
            st(Sub::Running),
            failed(Sub::AutoRestart, ServiceResult::Signal),
            Event::CgroupEmpty,
            vec![L::FailedWithResult(ServiceResult::Signal), L::Consumed(0)],
        ),
        (
            &simple,
            st(Sub::Running),
            st(Sub::StopPost),
            Event::MainExited(Exit::Code(0)),
            vec![],
        ),
        // The restart timer: systemd's restart job stops, then starts.
        (
            &simple,
            st(Sub::AutoRestart),
            restart_n(Sub::Start, 2),
            Event::Start,
            vec![L::RestartScheduled(2), L::Stopped],
        ),
        (
            &notify,
            st(Sub::AutoRestart),
            restart_n(Sub::Start, 1),
            Event::Start,
            vec![L::RestartScheduled(1), L::Stopped, L::Starting],
        ),
        (
            &simple,
            st(Sub::AutoRestart),
            stopping(Sub::Dead),
            Event::Stop,
            vec![L::Stopped],
        ),
        (
            &simple,
            st(Sub::AutoRestart),
            failed(Sub::Failed, ServiceResult::StartLimitHit),
            Event::StartLimitHit,
            vec![
                L::StartLimitHit,
                L::FailedWithResult(ServiceResult::StartLimitHit),
                L::FailedToStart,
            ],
        ),
        // A reload is not a start.
        (
            &simple,
            st(Sub::Running),
            st(Sub::Reload),
            Event::Reload,
            vec![L::Reloading],
        ),
        (
            &simple,
            st(Sub::Reload),
            st(Sub::Running),
            ok.clone(),
            vec![L::Reloaded],
        ),
        (
            &simple,
            st(Sub::Reload),
            st(Sub::Running),
            exit1,
            vec![L::ReloadFailed],
        ),
        (
            &notify,
            st(Sub::Reload),
            st(Sub::Running),
            Event::Ready,
            vec![L::Reloaded],
        ),
        (&simple, st(Sub::Running), st(Sub::Running), ok, vec![]),
    ];
    for (spec, before, after, event, want) in rows {
        assert_eq!(
            service_lines(spec, &before, &after, &event),
            want,
            "{:?} → {:?} on {event:?} ({:?})",
            before.sub,
            after.sub,
            spec.readiness
        );
    }
    // Restart= does not change the words.
    let always = Spec {
        restart: RestartPolicy::Always,
        ..Spec::default()
    };
    assert_eq!(
        service_lines(&always, &st(Sub::Start), &st(Sub::Running), &Event::Start),
        vec![L::Started]
    );
}

#[test]
fn target_transitions() {
    let st = |sub| target::State {
        sub,
        result: ServiceResult::Success,
    };
    use target::Sub as T;
    assert_eq!(
        target_lines(st(T::Dead), st(T::Active)),
        vec![Line::ReachedTarget]
    );
    assert_eq!(
        target_lines(st(T::Active), st(T::Dead)),
        vec![Line::StoppedTarget]
    );
    assert_eq!(target_lines(st(T::Dead), st(T::Failed)), vec![]);
    assert_eq!(target_lines(st(T::Active), st(T::Active)), vec![]);
}
