//! Table tests of the socket unit's life cycle: each row drives the machine
//! through events from `inactive (dead)` and checks where it ends up and
//! what the last event asked for.

use super::*;
use Action as A;
use Event as E;

const T: Duration = Duration::from_secs(90);

fn spec(commands: [usize; 4]) -> Spec {
    Spec {
        commands,
        accept: false,
        max_connections: 64,
        max_per_source: 64,
        timeout: Some(T),
        remove_on_stop: false,
        trigger_limit: (Duration::from_secs(2), 20),
    }
}

fn accept(max: u32, per_source: u32) -> Spec {
    Spec {
        accept: true,
        max_connections: max,
        max_per_source: per_source,
        ..spec([0; 4])
    }
}

/// Runs `events` from the default state; the final state and the actions
/// of the last event.
fn run(spec: &Spec, events: &[Event]) -> (State, Vec<Action>) {
    let mut st = State::default();
    let mut last = Vec::new();
    for e in events {
        let (s, a) = next(spec, &st, e.clone())
            .unwrap_or_else(|r| panic!("{e:?} refused in {:?}: {r}", st.sub));
        st = s;
        last = a;
    }
    (st, last)
}

const TRAFFIC: Event = E::Traffic {
    now: Duration::ZERO,
};
const OK: Event = E::ControlExited { success: true };
const FAIL: Event = E::ControlExited { success: false };

fn spawn(phase: Phase, index: usize) -> Action {
    A::Spawn { phase, index }
}

struct Row {
    name: &'static str,
    spec: Spec,
    events: Vec<Event>,
    sub: Sub,
    result: SocketResult,
    last: Vec<Action>,
}

#[test]
fn transitions() {
    let rows = vec![
        Row {
            name: "start without commands binds",
            spec: spec([0; 4]),
            events: vec![E::Start],
            sub: Sub::StartPost,
            result: SocketResult::Success,
            last: vec![A::Bind],
        },
        Row {
            name: "bound: listening and armed",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::Arm],
        },
        Row {
            name: "ExecStartPre runs before the bind, each with the timeout",
            spec: spec([2, 0, 0, 0]),
            events: vec![E::Start, OK],
            sub: Sub::StartPre,
            result: SocketResult::Success,
            last: vec![A::ArmTimer(T), spawn(Phase::StartPre, 1)],
        },
        Row {
            name: "the last ExecStartPre done: bind",
            spec: spec([2, 0, 0, 0]),
            events: vec![E::Start, OK, OK],
            sub: Sub::StartPost,
            result: SocketResult::Success,
            last: vec![A::CancelTimer, A::Bind],
        },
        Row {
            name: "ExecStartPost after the bind, then listening",
            spec: spec([0, 1, 0, 0]),
            events: vec![E::Start, E::Bound, OK],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::CancelTimer, A::Arm],
        },
        Row {
            name: "a failed ExecStartPre fails the unit without binding",
            spec: spec([1, 0, 0, 1]),
            events: vec![E::Start, FAIL],
            sub: Sub::Failed,
            result: SocketResult::ExitCode,
            last: vec![A::CancelTimer],
        },
        Row {
            name: "a failed bind runs the stop commands and fails",
            spec: spec([0, 0, 1, 1]),
            events: vec![E::Start, E::BindFailed],
            sub: Sub::StopPre,
            result: SocketResult::Resources,
            last: vec![A::ArmTimer(T), spawn(Phase::StopPre, 0)],
        },
        Row {
            name: "... ExecStopPost after closing the fds",
            spec: spec([0, 0, 1, 1]),
            events: vec![E::Start, E::BindFailed, OK],
            sub: Sub::StopPost,
            result: SocketResult::Resources,
            last: vec![
                A::CancelTimer,
                A::Close { remove: false },
                A::ArmTimer(T),
                spawn(Phase::StopPost, 0),
            ],
        },
        Row {
            name: "... and ends failed",
            spec: spec([0, 0, 1, 1]),
            events: vec![E::Start, E::BindFailed, OK, OK],
            sub: Sub::Failed,
            result: SocketResult::Resources,
            last: vec![A::CancelTimer],
        },
        Row {
            name: "a failed ExecStartPost stops the socket",
            spec: spec([0, 1, 0, 0]),
            events: vec![E::Start, E::Bound, FAIL],
            sub: Sub::Failed,
            result: SocketResult::ExitCode,
            last: vec![A::CancelTimer, A::Close { remove: false }],
        },
        Row {
            name: "traffic starts the service and hands it the fds",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound, TRAFFIC],
            sub: Sub::Running,
            result: SocketResult::Success,
            last: vec![A::Disarm, A::StartService],
        },
        Row {
            name: "the service gone: listening again, re-armed",
            spec: spec([0; 4]),
            events: vec![
                E::Start,
                E::Bound,
                TRAFFIC,
                E::ServiceInactive {
                    start_limit_hit: false,
                },
            ],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::Arm],
        },
        Row {
            name: "the service started by hand: running, not watched",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound, E::ServiceActive],
            sub: Sub::Running,
            result: SocketResult::Success,
            last: vec![A::Disarm],
        },
        Row {
            name: "the service hit its start limit: the socket fails",
            spec: spec([0; 4]),
            events: vec![
                E::Start,
                E::Bound,
                TRAFFIC,
                E::ServiceInactive {
                    start_limit_hit: true,
                },
            ],
            sub: Sub::Failed,
            result: SocketResult::ServiceStartLimitHit,
            last: vec![A::Close { remove: false }],
        },
        Row {
            name: "stop while listening: disarm, close (RemoveOnStop), dead",
            spec: Spec {
                remove_on_stop: true,
                ..spec([0; 4])
            },
            events: vec![E::Start, E::Bound, E::Stop],
            sub: Sub::Dead,
            result: SocketResult::Success,
            last: vec![A::Disarm, A::Close { remove: true }],
        },
        Row {
            name: "stop while the service runs: the service is left alone",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound, TRAFFIC, E::Stop],
            sub: Sub::Dead,
            result: SocketResult::Success,
            last: vec![A::Close { remove: false }],
        },
        Row {
            name: "stop during ExecStartPre: SIGTERM to it",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, E::Stop],
            sub: Sub::StopPreSigterm,
            result: SocketResult::Success,
            last: vec![A::Kill(Signal::Term), A::ArmTimer(T)],
        },
        Row {
            name: "... it dies of it: closed and failed (killed is not clean)",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, E::Stop, FAIL],
            sub: Sub::Failed,
            result: SocketResult::ExitCode,
            last: vec![A::CancelTimer, A::Close { remove: false }],
        },
        Row {
            name: "ExecStartPre timed out: final SIGTERM",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, E::Timeout],
            sub: Sub::FinalSigterm,
            result: SocketResult::Timeout,
            last: vec![A::Kill(Signal::Term), A::ArmTimer(T)],
        },
        Row {
            name: "... ignored SIGTERM: SIGKILL",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, E::Timeout, E::Timeout],
            sub: Sub::FinalSigkill,
            result: SocketResult::Timeout,
            last: vec![A::Kill(Signal::Kill), A::ArmTimer(T)],
        },
        Row {
            name: "... gone: failed with timeout",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, E::Timeout, E::Timeout, FAIL],
            sub: Sub::Failed,
            result: SocketResult::Timeout,
            last: vec![A::CancelTimer],
        },
        Row {
            name: "ExecStopPre timed out: SIGTERM, SIGKILL, then stop-post",
            spec: spec([0, 0, 1, 1]),
            events: vec![
                E::Start,
                E::Bound,
                E::Stop,
                E::Timeout,
                E::Timeout,
                E::Timeout,
            ],
            sub: Sub::StopPost,
            result: SocketResult::Timeout,
            last: vec![
                A::Close { remove: false },
                A::ArmTimer(T),
                spawn(Phase::StopPost, 0),
            ],
        },
        Row {
            name: "Accept=yes: traffic asks for an accept, stays listening",
            spec: accept(2, 1),
            events: vec![E::Start, E::Bound, TRAFFIC],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::Accept],
        },
        Row {
            name: "Accept=yes: one instance per connection, numbered",
            spec: accept(2, 1),
            events: vec![
                E::Start,
                E::Bound,
                E::Accepted { source: "a".into() },
                E::Accepted { source: "b".into() },
            ],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::StartInstance { nr: 1 }],
        },
        Row {
            name: "Accept=yes: over MaxConnectionsPerSource= is refused",
            spec: accept(2, 1),
            events: vec![
                E::Start,
                E::Bound,
                E::Accepted { source: "a".into() },
                E::Accepted { source: "a".into() },
            ],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::Refuse],
        },
        Row {
            name: "Accept=yes: over MaxConnections= is refused",
            spec: accept(2, 2),
            events: vec![
                E::Start,
                E::Bound,
                E::Accepted { source: "a".into() },
                E::Accepted { source: "b".into() },
                E::Accepted { source: "c".into() },
            ],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::Refuse],
        },
        Row {
            name: "Accept=yes: a gone instance frees its place",
            spec: accept(2, 1),
            events: vec![
                E::Start,
                E::Bound,
                E::Accepted { source: "a".into() },
                E::InstanceGone { source: "a".into() },
                E::Accepted { source: "a".into() },
            ],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![A::StartInstance { nr: 1 }],
        },
        Row {
            name: "Accept=yes: a service event does not make it running",
            spec: accept(2, 1),
            events: vec![E::Start, E::Bound, E::ServiceActive],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![],
        },
        Row {
            name: "a start while listening changes nothing",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound, E::Start],
            sub: Sub::Listening,
            result: SocketResult::Success,
            last: vec![],
        },
        Row {
            name: "a start from failed starts afresh",
            spec: spec([1, 0, 0, 0]),
            events: vec![E::Start, FAIL, E::Start],
            sub: Sub::StartPre,
            result: SocketResult::Success,
            last: vec![A::ArmTimer(T), spawn(Phase::StartPre, 0)],
        },
        Row {
            name: "late events after the stop change nothing",
            spec: spec([0; 4]),
            events: vec![E::Start, E::Bound, E::Stop, TRAFFIC, E::Timeout, OK],
            sub: Sub::Dead,
            result: SocketResult::Success,
            last: vec![],
        },
    ];
    for r in rows {
        let (st, last) = run(&r.spec, &r.events);
        assert_eq!(
            (st.sub, st.result, &last),
            (r.sub, r.result, &r.last),
            "{}",
            r.name
        );
    }
}

#[test]
fn a_start_while_stopping_waits() {
    let s = spec([0, 0, 1, 0]);
    let (st, _) = run(&s, &[E::Start, E::Bound, E::Stop]);
    assert_eq!(st.sub, Sub::StopPre);
    assert_eq!(next(&s, &st, E::Start), Err(Refused::Stopping));
}

#[test]
fn accept_counts_connections_per_source_and_refusals() {
    let s = accept(3, 2);
    let (st, _) = run(
        &s,
        &[
            E::Start,
            E::Bound,
            E::Accepted { source: "a".into() },
            E::Accepted { source: "a".into() },
            E::Accepted { source: "a".into() },
            E::Accepted { source: "b".into() },
            E::Accepted { source: "c".into() },
            E::InstanceGone { source: "a".into() },
        ],
    );
    assert_eq!(st.n_accepted, 3);
    assert_eq!(st.n_refused, 2);
    assert_eq!(st.n_connections, 2);
    assert_eq!(
        st.per_source,
        BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1)])
    );
    // An accept that lands while stopping is closed.
    let (st, _) = run(&s, &[E::Start, E::Bound]);
    let (st, _) = next(&spec([0, 0, 1, 0]), &st, E::Stop).unwrap();
    assert_eq!(
        next(&s, &st, E::Accepted { source: "a".into() }).unwrap().1,
        vec![A::Refuse]
    );
}

#[test]
fn spec_from_a_socket_section() {
    let n = crate::unit::UnitName::parse_strict("x.socket").unwrap();
    let u = crate::unit::loader::from_text(
        &n,
        std::path::Path::new("x.socket"),
        "[Socket]\nListenStream=/run/x\nAccept=yes\nMaxConnections=5\nRemoveOnStop=yes\nExecStartPost=/bin/true\nExecStopPost=/bin/true\nExecStopPost=/bin/true\nTimeoutSec=infinity\n",
        &crate::unit::SpecifierContext::example(),
    );
    let s = Spec::from_section(u.socket.as_ref().unwrap());
    assert_eq!(
        s,
        Spec {
            commands: [0, 1, 0, 2],
            accept: true,
            max_connections: 5,
            max_per_source: 5,
            timeout: None,
            remove_on_stop: true,
            trigger_limit: (Duration::from_secs(2), 200),
        }
    );
    assert_eq!(Sub::Listening.active_word(), "active");
    assert_eq!(Sub::StopPreSigterm.word(), "stop-pre-sigterm");
}

#[test]
fn the_trigger_limit_fails_a_socket_that_activates_too_often() {
    let mut s = spec([0; 4]);
    s.trigger_limit = (Duration::from_secs(2), 3);
    let at = |ms| E::Traffic {
        now: Duration::from_millis(ms),
    };
    let gone = E::ServiceInactive {
        start_limit_hit: false,
    };
    // Three activations in the window start the service; the fourth fails the socket.
    let mut events = vec![E::Start, E::Bound];
    for ms in [0, 10, 20] {
        events.extend([at(ms), gone.clone()]);
    }
    let (st, last) = run(&s, &events);
    assert_eq!((st.sub, last), (Sub::Listening, vec![A::Arm]));
    let (st, _) = next(&s, &st, at(30)).unwrap();
    assert_eq!(
        (st.sub, st.result),
        (Sub::Failed, SocketResult::TriggerLimitHit)
    );
    // Past the window, the count starts again.
    let (st, last) = run(&s, &[events, vec![at(2500)]].concat());
    assert_eq!(
        (st.sub, last),
        (Sub::Running, vec![A::Disarm, A::StartService])
    );
    // Accept=yes counts each connection; a zero burst turns the limit off.
    let mut a = accept(64, 64);
    a.trigger_limit = (Duration::from_secs(2), 0);
    let (st, last) = run(&a, &[E::Start, E::Bound, at(0), at(0), at(0)]);
    assert_eq!((st.sub, last), (Sub::Listening, vec![A::Accept]));
}

#[test]
fn a_service_that_cannot_be_started_fails_the_socket() {
    let s = spec([0, 0, 0, 1]);
    let (st, last) = run(&s, &[E::Start, E::Bound, TRAFFIC, E::TriggerFailed]);
    assert_eq!(
        (st.sub, st.result, last),
        (
            Sub::StopPost,
            SocketResult::Resources,
            vec![
                A::Close { remove: false },
                A::ArmTimer(T),
                spawn(Phase::StopPost, 0)
            ]
        )
    );
}
