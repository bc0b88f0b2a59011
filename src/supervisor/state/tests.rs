//! Table tests of the lifecycle: each row drives the machine through a list of
//! events from `inactive (dead)` and checks where it ends up and what it asked for.

use super::*;
use Event as E;
use ServiceResult as R;

const MAIN: Pid = 100;
const CTL: Pid = 200;

fn spec(readiness: Readiness) -> Spec {
    let mut s = Spec {
        readiness,
        ..Spec::default()
    };
    s.cmds[Cmd::Start as usize] = vec![false];
    s
}

fn with(mut s: Spec, cmd: Cmd, n: usize) -> Spec {
    s.cmds[cmd as usize] = vec![false; n];
    s
}

/// Runs `events` from the default state; returns the final state and the
/// actions of the last event.
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

fn spawned(cmd: Cmd, pid: Pid) -> Event {
    E::Spawned { cmd, pid }
}

fn ctl_exit(code: i32) -> Event {
    E::ControlExited {
        exit: Exit::Code(code),
        ignore: false,
    }
}

fn killed(sig: i32) -> Exit {
    Exit::Signal { sig, core: false }
}

struct Row {
    name: &'static str,
    spec: Spec,
    events: Vec<Event>,
    sub: Sub,
    result: R,
    /// Actions that the last event must have produced.
    last: Vec<Action>,
}

fn rows() -> Vec<Row> {
    let simple = spec(Readiness::Simple);
    let mut restart_always = spec(Readiness::Simple);
    restart_always.restart = RestartPolicy::Always;
    restart_always.restart_sec = Duration::ZERO;
    let mut on_failure = spec(Readiness::Simple);
    on_failure.restart = RestartPolicy::OnFailure;
    let mut prevent = on_failure.clone();
    prevent.restart_prevent.codes = vec![3];
    let mut force = spec(Readiness::Simple);
    force.restart = RestartPolicy::No;
    force.restart_force.codes = vec![0];
    let mut success_status = on_failure.clone();
    success_status.success.codes = vec![42];
    let mut oneshot = with(spec(Readiness::Oneshot), Cmd::Start, 2);
    oneshot.remain_after_exit = true;
    let oneshot_plain = with(spec(Readiness::Oneshot), Cmd::Start, 1);
    let mut process_mode = spec(Readiness::Simple);
    process_mode.kill_mode = KillMode::Process;
    let mut mixed = spec(Readiness::Simple);
    mixed.kill_mode = KillMode::Mixed;
    let mut mixed_no_sigkill = mixed.clone();
    mixed_no_sigkill.send_sigkill = false;
    let mut runtime = spec(Readiness::Simple);
    runtime.runtime_max = Some(Duration::from_secs(5));
    let mut no_sigkill = spec(Readiness::Simple);
    no_sigkill.send_sigkill = false;
    let mut hup = spec(Readiness::Simple);
    hup.send_sighup = true;
    let mut hup_mixed = hup.clone();
    hup_mixed.kill_mode = KillMode::Mixed;
    let mut hup_is_kill_signal = hup.clone();
    hup_is_kill_signal.kill_signal = libc::SIGHUP;
    let mut ignore_pre = with(spec(Readiness::Simple), Cmd::StartPre, 1);
    ignore_pre.cmds[Cmd::StartPre as usize] = vec![true];

    vec![
        Row {
            name: "simple: start spawns and is running at once",
            spec: simple.clone(),
            events: vec![E::Start, spawned(Cmd::Start, MAIN)],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "simple: start creates an invocation before spawning",
            spec: simple.clone(),
            events: vec![E::Start],
            sub: Sub::Start,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Restart),
                Action::NewInvocation,
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::Start,
                    index: 0,
                },
            ],
        },
        Row {
            name: "simple: stop sends SIGTERM and SIGCONT to the cgroup",
            spec: simple.clone(),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "simple: stop ends when the cgroup is empty, then the cgroup goes",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "simple: main exit alone does not end the stop while the cgroup is populated",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "empty cgroup before the main exit is reaped: wait for the exit",
            spec: simple.clone(),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop, E::CgroupEmpty],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "the reaped main exit then ends the stop (ExecStopPost sees it)",
            spec: with(spec(Readiness::Simple), Cmd::StopPost, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::CgroupEmpty,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::StopPost,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::StopPost,
                    index: 0,
                },
            ],
        },
        Row {
            name: "stop timeout: SIGKILL through cgroup.kill, result timeout",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::StopSigkill,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::CgroupKill,
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "stop timeout with SendSIGKILL=no goes to stop-post, then dead-failed",
            spec: no_sigkill,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::Timeout(Timer::Phase),
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::Failed,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "exit 1 with Restart=no: failed (exit-code), no restart",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(1)),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "main exit with an empty cgroup goes straight to dead",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::CgroupEmpty,
                E::MainExited(Exit::Code(0)),
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "Restart=always after kill -9: auto-restart armed with RestartSec",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(killed(libc::SIGKILL)),
                E::CgroupEmpty,
            ],
            sub: Sub::AutoRestart,
            result: R::Signal,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Restart, Duration::ZERO),
            ],
        },
        Row {
            name: "auto-restart timer asks for a start (through the start limit)",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(killed(libc::SIGKILL)),
                E::CgroupEmpty,
                E::Timeout(Timer::Restart),
            ],
            sub: Sub::AutoRestart,
            result: R::Signal,
            last: vec![Action::StartAgain],
        },
        Row {
            name: "auto-restart start counts restarts and clears the result",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(killed(libc::SIGKILL)),
                E::CgroupEmpty,
                E::Timeout(Timer::Restart),
                E::Start,
                spawned(Cmd::Start, MAIN + 1),
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "start limit hit: failed with start-limit-hit",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(killed(libc::SIGKILL)),
                E::CgroupEmpty,
                E::StartLimitHit,
            ],
            sub: Sub::Failed,
            result: R::StartLimitHit,
            last: vec![Action::Disarm(Timer::Restart)],
        },
        Row {
            name: "Restart=always but an explicit stop does not restart",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "stop during auto-restart cancels it",
            spec: restart_always.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(1)),
                E::CgroupEmpty,
                E::Stop,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Restart), Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "Restart=on-failure: clean exit does not restart",
            spec: on_failure.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "RestartPreventExitStatus wins over on-failure",
            spec: prevent,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(3)),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "RestartForceExitStatus restarts even with Restart=no",
            spec: force,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                E::CgroupEmpty,
            ],
            sub: Sub::AutoRestart,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Restart, Duration::from_millis(100)),
            ],
        },
        Row {
            name: "SuccessExitStatus makes exit 42 clean",
            spec: success_status,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(42)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "spawn failure is status 203: failed exit-code",
            spec: simple.clone(),
            events: vec![
                E::Start,
                E::SpawnFailed {
                    cmd: Cmd::Start,
                    status: 203,
                },
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "cgroup creation failure: failed (resources)",
            spec: simple.clone(),
            events: vec![E::Start, E::InvocationFailed],
            sub: Sub::Failed,
            result: R::Resources,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "ExecStartPre failure kills the rest and fails",
            spec: with(spec(Readiness::Simple), Cmd::StartPre, 2),
            events: vec![E::Start, spawned(Cmd::StartPre, CTL), ctl_exit(1)],
            sub: Sub::StopSigterm,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "ExecStartPre with '-' ignores its failure and runs ExecStart",
            spec: ignore_pre,
            events: vec![
                E::Start,
                spawned(Cmd::StartPre, CTL),
                E::ControlExited {
                    exit: Exit::Code(1),
                    ignore: true,
                },
            ],
            sub: Sub::Start,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::Start,
                    index: 0,
                },
            ],
        },
        Row {
            name: "two ExecStartPre run in order",
            spec: with(spec(Readiness::Simple), Cmd::StartPre, 2),
            events: vec![E::Start, spawned(Cmd::StartPre, CTL), ctl_exit(0)],
            sub: Sub::StartPre,
            result: R::Success,
            last: vec![Action::Spawn {
                cmd: Cmd::StartPre,
                index: 1,
            }],
        },
        Row {
            name: "forking: parent exit asks for the main PID",
            spec: spec(Readiness::Forking),
            events: vec![E::Start, spawned(Cmd::Start, CTL), ctl_exit(0)],
            sub: Sub::Start,
            result: R::Success,
            last: vec![Action::FindMainPid],
        },
        Row {
            name: "forking: main PID found → running",
            spec: spec(Readiness::Forking),
            events: vec![
                E::Start,
                spawned(Cmd::Start, CTL),
                ctl_exit(0),
                E::MainPid(MAIN),
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "forking: PIDFile outside the cgroup fails the start (resources)",
            spec: spec(Readiness::Forking),
            events: vec![
                E::Start,
                spawned(Cmd::Start, CTL),
                ctl_exit(0),
                E::MainPidRejected { fatal: true },
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::Resources,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "forking without a main PID runs while the cgroup is populated",
            spec: spec(Readiness::Forking),
            events: vec![
                E::Start,
                spawned(Cmd::Start, CTL),
                ctl_exit(0),
                E::MainPidRejected { fatal: false },
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "forking without a main PID stops when the cgroup empties",
            spec: spec(Readiness::Forking),
            events: vec![
                E::Start,
                spawned(Cmd::Start, CTL),
                ctl_exit(0),
                E::MainPidRejected { fatal: false },
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "forking: parent failing fails the start",
            spec: spec(Readiness::Forking),
            events: vec![E::Start, spawned(Cmd::Start, CTL), ctl_exit(2)],
            sub: Sub::StopSigterm,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "notify: spawned is still activating",
            spec: spec(Readiness::Notify),
            events: vec![E::Start, spawned(Cmd::Start, MAIN)],
            sub: Sub::Start,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "notify: READY=1 → running",
            spec: spec(Readiness::Notify),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Ready],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "notify: clean exit before READY=1 is a protocol failure",
            spec: spec(Readiness::Notify),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::Protocol,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "notify: RELOADING=1 then READY=1 returns to running",
            spec: spec(Readiness::Notify),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Ready,
                E::Reloading,
                E::Ready,
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "notify: STOPPING=1 waits for the main process without a signal",
            spec: spec(Readiness::Notify),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Ready, E::Stopping],
            sub: Sub::Stop,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "notify: start timeout fails with timeout",
            spec: spec(Readiness::Notify),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::StopSigterm,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "dbus: spawned is still activating (waits for the name)",
            spec: spec(Readiness::Dbus),
            events: vec![E::Start, spawned(Cmd::Start, MAIN)],
            sub: Sub::Start,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "dbus: the name getting an owner completes the start",
            spec: spec(Readiness::Dbus),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::BusNameAcquired],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "dbus: ExecStartPost runs once the name has an owner",
            spec: with(spec(Readiness::Dbus), Cmd::StartPost, 1),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::BusNameAcquired],
            sub: Sub::StartPost,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::StartPost,
                    index: 0,
                },
            ],
        },
        Row {
            name: "dbus: a name already owned when ExecStart is spawned completes the start",
            spec: with(spec(Readiness::Dbus), Cmd::StartPre, 1),
            events: vec![
                E::Start,
                spawned(Cmd::StartPre, CTL),
                E::BusNameAcquired,
                ctl_exit(0),
                spawned(Cmd::Start, MAIN),
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "dbus: an owner reported again while running changes nothing",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::BusNameAcquired,
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "dbus: the name losing its owner while running stops the service",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::BusNameLost,
            ],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "dbus: a lost name runs ExecStop, and the stop ends clean",
            spec: with(spec(Readiness::Dbus), Cmd::Stop, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::BusNameLost,
                spawned(Cmd::Stop, CTL),
                ctl_exit(0),
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "dbus: a lost name with RemainAfterExit=yes leaves it exited",
            spec: Spec {
                remain_after_exit: true,
                ..spec(Readiness::Dbus)
            },
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::BusNameLost,
            ],
            sub: Sub::Exited,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "dbus: a name lost during ExecStartPost stops the service when it ends",
            spec: with(spec(Readiness::Dbus), Cmd::StartPost, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                spawned(Cmd::StartPost, CTL),
                E::BusNameLost,
                ctl_exit(0),
            ],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "dbus: a name lost before the start completes only keeps it waiting",
            spec: spec(Readiness::Dbus),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::BusNameLost],
            sub: Sub::Start,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "dbus: no owner within TimeoutStartSec fails with timeout",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Timeout(Timer::Phase),
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "dbus: an unclean exit before the name appears fails the start",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(1)),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "dbus: a clean exit before the name appears stops it, as systemd (not a failure)",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "dbus: no bus refuses the start before anything runs",
            spec: spec(Readiness::Dbus),
            events: vec![E::BusUnavailable],
            sub: Sub::Failed,
            result: R::Resources,
            last: vec![Action::Disarm(Timer::Restart)],
        },
        Row {
            name: "dbus: the bus connection breaking while waiting for the name fails the start",
            spec: spec(Readiness::Dbus),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::BusUnavailable],
            sub: Sub::StopSigterm,
            result: R::Resources,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "dbus: the bus connection breaking while running leaves it running",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::BusUnavailable,
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "dbus: a restart waits for the name again",
            spec: spec(Readiness::Dbus),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameAcquired,
                E::Restart,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
                E::Start,
                spawned(Cmd::Start, MAIN + 1),
            ],
            sub: Sub::Start,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "simple: a bus report never fails it",
            spec: simple.clone(),
            events: vec![E::BusUnavailable],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "simple: bus name events are not its business",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::BusNameLost,
                E::BusUnavailable,
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "oneshot: second ExecStart after the first",
            spec: oneshot.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
            ],
            sub: Sub::Start,
            result: R::Success,
            last: vec![Action::Spawn {
                cmd: Cmd::Start,
                index: 1,
            }],
        },
        Row {
            name: "oneshot + RemainAfterExit: active (exited)",
            spec: oneshot.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                spawned(Cmd::Start, MAIN + 1),
                E::MainExited(Exit::Code(0)),
            ],
            sub: Sub::Exited,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "oneshot without RemainAfterExit ends dead",
            spec: oneshot_plain,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::CgroupEmpty,
                E::MainExited(Exit::Code(0)),
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "oneshot exited: stop runs ExecStop",
            spec: with(oneshot.clone(), Cmd::Stop, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::MainExited(Exit::Code(0)),
                spawned(Cmd::Start, MAIN + 1),
                E::MainExited(Exit::Code(0)),
                E::CgroupEmpty,
                E::Stop,
            ],
            sub: Sub::Stop,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::Stop,
                    index: 0,
                },
            ],
        },
        Row {
            name: "ExecStopPost runs after the kill phase",
            spec: with(spec(Readiness::Simple), Cmd::StopPost, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::StopPost,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::StopPost,
                    index: 0,
                },
            ],
        },
        Row {
            name: "ExecStopPost failure does not change the result",
            spec: with(spec(Readiness::Simple), Cmd::StopPost, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
                spawned(Cmd::StopPost, CTL),
                E::CgroupEmpty,
                ctl_exit(1),
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "ExecCondition=: exit 0 goes on to ExecStart",
            spec: with(spec(Readiness::Simple), Cmd::Condition, 1),
            events: vec![E::Start, spawned(Cmd::Condition, CTL), ctl_exit(0)],
            sub: Sub::Start,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::Start,
                    index: 0,
                },
            ],
        },
        Row {
            name: "ExecCondition=: exit 1 skips the start, not even Restart=always restarts it",
            spec: with(restart_always.clone(), Cmd::Condition, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Condition, CTL),
                ctl_exit(1),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::ExecCondition,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "ExecCondition=: exit 255 fails the start",
            spec: with(spec(Readiness::Simple), Cmd::Condition, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Condition, CTL),
                ctl_exit(255),
                E::CgroupEmpty,
            ],
            sub: Sub::Failed,
            result: R::ExitCode,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "KillMode=mixed: the rest of the cgroup gets SIGKILL once the main process is gone",
            spec: mixed.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::FinalSigkill,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::CgroupKill,
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "KillMode=mixed: dead once the killed rest has left the cgroup",
            spec: mixed.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "KillMode=mixed: ExecStopPost runs before the rest is killed",
            spec: with(mixed.clone(), Cmd::StopPost, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::StopPost,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::Phase),
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
                Action::Spawn {
                    cmd: Cmd::StopPost,
                    index: 0,
                },
            ],
        },
        Row {
            name: "KillMode=mixed, SendSIGKILL=no: the rest is left running",
            spec: mixed_no_sigkill,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "KillMode=mixed: SIGTERM to the main process only",
            spec: mixed,
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::Main,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::Main,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "SendSIGHUP=yes: SIGHUP to the cgroup right after SIGTERM and SIGCONT",
            spec: hup.clone(),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGHUP,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "SendSIGHUP=yes: not after SIGKILL",
            spec: hup.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::StopSigkill,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::CgroupKill,
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "SendSIGHUP=yes, KillMode=mixed: SIGHUP to the main and control processes",
            spec: with(hup_mixed, Cmd::Stop, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                spawned(Cmd::Stop, CTL),
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::StopSigterm,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::Main,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::Main,
                    sig: libc::SIGCONT,
                },
                Action::Signal {
                    whom: Whom::Main,
                    sig: libc::SIGHUP,
                },
                Action::Signal {
                    whom: Whom::Control,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::Control,
                    sig: libc::SIGCONT,
                },
                Action::Signal {
                    whom: Whom::Control,
                    sig: libc::SIGHUP,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "SendSIGHUP=yes with KillSignal=SIGHUP: sent once",
            spec: hup_is_kill_signal,
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop],
            sub: Sub::StopSigterm,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGHUP,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "KillMode=process: done when the main process is gone, populated or not",
            spec: process_mode,
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::MainExited(killed(libc::SIGTERM)),
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
            ],
        },
        Row {
            name: "RuntimeMaxSec armed on running, expiry stops with timeout",
            spec: runtime.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Timeout(Timer::RuntimeMax),
            ],
            sub: Sub::StopSigterm,
            result: R::Timeout,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::Disarm(Timer::Phase),
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGTERM,
                },
                Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGCONT,
                },
                Action::Arm(Timer::Phase, Duration::from_secs(90)),
            ],
        },
        Row {
            name: "reload runs ExecReload and returns to running",
            spec: with(spec(Readiness::Simple), Cmd::Reload, 1),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Reload,
                spawned(Cmd::Reload, CTL),
                ctl_exit(0),
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![Action::Disarm(Timer::Phase)],
        },
        Row {
            name: "restart of a running unit stops then asks for a start",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Restart,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
                Action::StartAgain,
            ],
        },
        Row {
            name: "start while deactivating starts after the stop",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Stop,
                E::Start,
                E::MainExited(killed(libc::SIGTERM)),
                E::CgroupEmpty,
            ],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![
                Action::Disarm(Timer::RuntimeMax),
                Action::EndInvocation,
                Action::Disarm(Timer::Phase),
                Action::StartAgain,
            ],
        },
        Row {
            name: "start of a running unit does nothing",
            spec: simple.clone(),
            events: vec![E::Start, spawned(Cmd::Start, MAIN), E::Start],
            sub: Sub::Running,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "stale phase timer in running is ignored",
            spec: simple.clone(),
            events: vec![
                E::Start,
                spawned(Cmd::Start, MAIN),
                E::Timeout(Timer::Phase),
            ],
            sub: Sub::Running,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "stop of a dead unit does nothing",
            spec: simple.clone(),
            events: vec![E::Stop],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![],
        },
        Row {
            name: "exit of an unknown main process in dead is ignored",
            spec: simple,
            events: vec![E::MainExited(Exit::Code(1))],
            sub: Sub::Dead,
            result: R::Success,
            last: vec![],
        },
    ]
}

#[test]
fn transitions() {
    let mut failures = Vec::new();
    for row in rows() {
        let (st, last) = run(&row.spec, &row.events);
        if st.sub != row.sub || st.result != row.result || last != row.last {
            failures.push(format!(
                "{}:\n  got {:?}/{:?} {:?}\n want {:?}/{:?} {:?}",
                row.name, st.sub, st.result, last, row.sub, row.result, row.last
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn refused_requests() {
    let simple = spec(Readiness::Simple);
    let reloadable = with(spec(Readiness::Simple), Cmd::Reload, 1);
    let cases: Vec<(&str, &Spec, Vec<Event>, Refused)> = vec![
        (
            "reload of an inactive unit",
            &reloadable,
            vec![],
            Refused::NotActive("inactive"),
        ),
        (
            "reload while activating",
            &reloadable,
            vec![E::Start],
            Refused::NotActive("activating"),
        ),
        (
            "reload without ExecReload",
            &simple,
            vec![E::Start, spawned(Cmd::Start, MAIN)],
            Refused::CannotReload,
        ),
        (
            "reload while deactivating",
            &reloadable,
            vec![E::Start, spawned(Cmd::Start, MAIN), E::Stop],
            Refused::NotActive("deactivating"),
        ),
    ];
    for (name, spec, events, want) in cases {
        let (st, _) = run(spec, &events);
        assert_eq!(next(spec, &st, E::Reload), Err(want), "{name}");
    }
}

#[test]
fn every_sub_state_maps_to_its_active_state() {
    use ActiveState as A;
    let table = [
        (Sub::Dead, A::Inactive),
        (Sub::StartPre, A::Activating),
        (Sub::Start, A::Activating),
        (Sub::StartPost, A::Activating),
        (Sub::AutoRestart, A::Activating),
        (Sub::Running, A::Active),
        (Sub::Exited, A::Active),
        (Sub::Reload, A::Reloading),
        (Sub::Stop, A::Deactivating),
        (Sub::StopSigterm, A::Deactivating),
        (Sub::StopSigkill, A::Deactivating),
        (Sub::StopPost, A::Deactivating),
        (Sub::FinalSigterm, A::Deactivating),
        (Sub::FinalSigkill, A::Deactivating),
        (Sub::Failed, A::Failed),
    ];
    for (sub, active) in table {
        assert_eq!(sub.active(), active, "{sub:?}");
    }
}

#[test]
fn clean_exits_and_restart_policies() {
    let s = spec(Readiness::Simple);
    assert!(s.clean(Exit::Code(0)));
    assert!(!s.clean(Exit::Code(1)));
    assert!(s.clean(killed(libc::SIGTERM)));
    assert!(!s.clean(killed(libc::SIGKILL)));
    let table = [
        (RestartPolicy::No, R::ExitCode, false),
        (RestartPolicy::Always, R::Success, true),
        (RestartPolicy::Always, R::StartLimitHit, false),
        (RestartPolicy::OnSuccess, R::Success, true),
        (RestartPolicy::OnSuccess, R::ExitCode, false),
        (RestartPolicy::OnFailure, R::ExitCode, true),
        (RestartPolicy::OnFailure, R::Timeout, true),
        (RestartPolicy::OnFailure, R::Success, false),
        (RestartPolicy::OnAbnormal, R::Signal, true),
        (RestartPolicy::OnAbnormal, R::ExitCode, false),
        (RestartPolicy::OnAbort, R::CoreDump, true),
        (RestartPolicy::OnAbort, R::Timeout, false),
    ];
    for (policy, result, want) in table {
        let s = Spec {
            restart: policy,
            ..spec(Readiness::Simple)
        };
        assert_eq!(s.wants_restart(result, None), want, "{policy:?} {result:?}");
    }
}

#[test]
fn start_limit_admits_burst_per_interval() {
    let mut l = StartLimit::new(Duration::from_secs(10), 3);
    let at = Duration::from_secs;
    assert!(l.admit(at(0)));
    assert!(l.admit(at(1)));
    assert!(l.admit(at(2)));
    assert!(!l.admit(at(3)), "fourth start within 10 s");
    assert!(l.admit(at(10)), "the first start left the window");
    l.reset();
    assert!(l.admit(at(11)));
    let mut off = StartLimit::new(Duration::ZERO, 1);
    assert!((0..100).all(|i| off.admit(at(i))));
}

#[test]
fn exit_words_for_the_environment() {
    assert_eq!(Exit::Code(3).code_word(), "exited");
    assert_eq!(Exit::Code(3).status_word(), "3");
    assert_eq!(killed(libc::SIGKILL).code_word(), "killed");
    assert_eq!(killed(libc::SIGKILL).status_word(), "KILL");
    let dumped = Exit::Signal {
        sig: libc::SIGSEGV,
        core: true,
    };
    assert_eq!(dumped.code_word(), "dumped");
}

#[test]
fn verdicts_apply_only_to_a_unit_that_is_down() {
    let simple = spec(Readiness::Simple);
    let cond = || E::ConditionFalse {
        reason: "ConditionPathExists=/x".into(),
    };
    let assert = || E::AssertFalse {
        reason: "AssertPathExists=/x".into(),
    };
    let dep = || E::DependencyFailed {
        dep: "db.service".into(),
    };
    let gone = || E::LoadFailed {
        reason: "Unit a.service is masked.".into(),
    };
    let failed = vec![
        E::Start,
        spawned(Cmd::Start, MAIN),
        E::MainExited(Exit::Code(1)),
        E::CgroupEmpty,
    ];
    let running = vec![E::Start, spawned(Cmd::Start, MAIN)];
    let mut restarting = spec(Readiness::Simple);
    restarting.restart = RestartPolicy::Always;
    let auto = failed.clone();
    // (from, spec, verdict, sub, result)
    let cases: Vec<(Vec<Event>, &Spec, Event, Sub, R)> = vec![
        (vec![], &simple, E::ResetFailed, Sub::Dead, R::Success),
        (
            failed.clone(),
            &simple,
            E::ResetFailed,
            Sub::Dead,
            R::Success,
        ),
        (
            running.clone(),
            &simple,
            E::ResetFailed,
            Sub::Running,
            R::Success,
        ),
        (vec![], &simple, cond(), Sub::Dead, R::Condition),
        (failed.clone(), &simple, cond(), Sub::Dead, R::Condition),
        (auto.clone(), &restarting, cond(), Sub::Dead, R::Condition),
        (running.clone(), &simple, cond(), Sub::Running, R::Success),
        (vec![], &simple, assert(), Sub::Failed, R::Assert),
        (auto.clone(), &restarting, assert(), Sub::Failed, R::Assert),
        (running.clone(), &simple, assert(), Sub::Running, R::Success),
        (vec![], &simple, dep(), Sub::Failed, R::Dependency),
        (failed.clone(), &simple, dep(), Sub::Failed, R::Dependency),
        // A unit waiting to restart has a job of its own under way.
        (
            auto.clone(),
            &restarting,
            dep(),
            Sub::AutoRestart,
            R::ExitCode,
        ),
        (running.clone(), &simple, dep(), Sub::Running, R::Success),
        (failed.clone(), &simple, gone(), Sub::Failed, R::ExitCode),
        (auto.clone(), &restarting, gone(), Sub::Failed, R::ExitCode),
        (running.clone(), &simple, gone(), Sub::Running, R::Success),
    ];
    for (from, spec, verdict, sub, result) in cases {
        let (st, _) = run(spec, &from);
        let before = st.sub;
        assert!(
            before.is_down() || before == Sub::Running,
            "{from:?} ends in {before:?}"
        );
        let (after, actions) = next(spec, &st, verdict.clone()).unwrap();
        assert_eq!(
            (after.sub, after.result),
            (sub, result),
            "{verdict:?} in {before:?}"
        );
        // The restart that was due is called off; nothing else is done.
        let want: Vec<Action> = if before == Sub::AutoRestart && after.sub != before {
            vec![Action::Disarm(Timer::Restart)]
        } else {
            Vec::new()
        };
        assert_eq!(actions, want, "{verdict:?} in {before:?}");
    }
    assert_eq!(E::Start.verdict_applies(ActiveState::Inactive, true), None);
}
