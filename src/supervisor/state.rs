//! The lifecycle of one service unit as a pure function:
//! [`next`]`(spec, state, event) -> (state, actions)`.
//!
//! Nothing here touches the system. The manager executes the [`Action`]s
//! (spawning, signalling, timers, cgroups) and feeds what happens back as
//! [`Event`]s, so every transition can be table-tested without processes.
//! The states and results follow systemd's service states, because users
//! read them in `status` next to what they know from `systemctl`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A process id as the kernel gives it.
pub type Pid = i32;

/// How the manager decides that the unit has started (`Type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Readiness {
    /// Started as soon as the main process is spawned.
    Simple,
    /// Started once the main process has exec'd its program.
    Exec,
    /// ExecStart forks and exits; the main PID comes from PIDFile or the cgroup.
    Forking,
    /// ExecStart lines run to completion one after the other.
    Oneshot,
    /// Started when the service sends `READY=1` on NOTIFY_SOCKET.
    Notify,
    /// As simple (systemd delays it until the queue is idle; a user manager has no boot queue).
    Idle,
    /// Started when `BusName=` has an owner on the bus; stopped when it loses it.
    Dbus,
}

/// When a unit whose processes ended on their own is started again (`Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never.
    No,
    /// After a clean exit.
    OnSuccess,
    /// After an unclean exit code, an unclean signal, or a timeout.
    OnFailure,
    /// After an unclean signal or a timeout.
    OnAbnormal,
    /// After an unclean signal.
    OnAbort,
    /// Whatever the result.
    Always,
}

/// Which processes the stop signals reach (`KillMode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillMode {
    /// Every process of the unit's cgroup.
    ControlGroup,
    /// KillSignal to the main process, SIGKILL to the whole cgroup.
    Mixed,
    /// Only the main process; the rest is left behind (and listed).
    Process,
}

/// The command lists of a service, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cmd {
    /// `ExecStartPre=`.
    StartPre,
    /// `ExecStart=`.
    Start,
    /// `ExecStartPost=`.
    StartPost,
    /// `ExecReload=`.
    Reload,
    /// `ExecStop=`.
    Stop,
    /// `ExecStopPost=`.
    StopPost,
    /// `ExecCondition=`.
    Condition,
}

impl Cmd {
    /// The directive name, for messages.
    pub fn directive(self) -> &'static str {
        match self {
            Cmd::StartPre => "ExecStartPre",
            Cmd::Start => "ExecStart",
            Cmd::StartPost => "ExecStartPost",
            Cmd::Reload => "ExecReload",
            Cmd::Stop => "ExecStop",
            Cmd::StopPost => "ExecStopPost",
            Cmd::Condition => "ExecCondition",
        }
    }
}

/// How a process ended, as waitpid reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// It called exit(code).
    Code(i32),
    /// A signal ended it; `core` when it dumped core.
    Signal {
        /// The signal number.
        sig: i32,
        /// Whether a core was dumped.
        core: bool,
    },
    /// It ended while it was not the manager's child (re-adopted after a
    /// manager's crash): the kernel gives its status only to its parent.
    Unknown,
}

impl Exit {
    /// `$EXIT_CODE` as systemd sets it: exited, killed or dumped.
    pub fn code_word(self) -> &'static str {
        match self {
            Exit::Code(_) => "exited",
            Exit::Signal { core: false, .. } => "killed",
            Exit::Signal { core: true, .. } => "dumped",
            Exit::Unknown => "unknown",
        }
    }

    /// `$EXIT_STATUS`: the exit code, or the signal name without "SIG".
    pub fn status_word(self) -> String {
        match self {
            Exit::Code(c) => c.to_string(),
            Exit::Signal { sig, .. } => signal_name(sig),
            Exit::Unknown => "unknown".to_string(),
        }
    }
}

/// The short name of a signal ("TERM"), or its number when unknown.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => sig.to_string(),
    }
}

/// Exit codes and signals listed by SuccessExitStatus= and friends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitSet {
    /// Exit codes.
    pub codes: Vec<i32>,
    /// Signal numbers.
    pub signals: Vec<i32>,
}

impl ExitSet {
    /// Whether `exit` is listed.
    pub fn contains(&self, exit: Exit) -> bool {
        match exit {
            Exit::Code(c) => self.codes.contains(&c),
            Exit::Signal { sig, .. } => self.signals.contains(&sig),
            Exit::Unknown => false,
        }
    }
}

/// Why a unit ended up where it is, as `status` shows in "Result:".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceResult {
    /// Nothing went wrong.
    Success,
    /// The manager could not set up the invocation (cgroup, spawn).
    Resources,
    /// The service broke the protocol of its Type= (exited before READY=1,
    /// a forking service's PIDFile names no process of it and none is left).
    Protocol,
    /// A timeout expired.
    Timeout,
    /// A process exited with an unclean code.
    ExitCode,
    /// A process was killed by an unclean signal.
    Signal,
    /// A process dumped core.
    CoreDump,
    /// StartLimitBurst starts within StartLimitIntervalSec.
    StartLimitHit,
    /// A `Condition*=` was false: the start was skipped (the unit stays inactive).
    Condition,
    /// An `Assert*=` was false: the start failed before anything ran.
    Assert,
    /// A unit it requires (Requires=, BindsTo=, Requisite=) failed to start.
    Dependency,
    /// An `ExecCondition=` command exited 1–254: the start was skipped (the unit stays inactive).
    ExecCondition,
    /// A socket: the service it triggers hit its start limit.
    ServiceStartLimitHit,
    /// A socket: activated more often than its trigger limit allows.
    TriggerLimitHit,
}

impl ServiceResult {
    /// The word systemd uses (`$SERVICE_RESULT`, "Result:").
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceResult::Success => "success",
            ServiceResult::Resources => "resources",
            ServiceResult::Protocol => "protocol",
            ServiceResult::Timeout => "timeout",
            ServiceResult::ExitCode => "exit-code",
            ServiceResult::Signal => "signal",
            ServiceResult::CoreDump => "core-dump",
            ServiceResult::StartLimitHit => "start-limit-hit",
            ServiceResult::Condition => "condition",
            ServiceResult::Assert => "assert",
            ServiceResult::Dependency => "dependency",
            ServiceResult::ExecCondition => "exec-condition",
            ServiceResult::ServiceStartLimitHit => "service-start-limit-hit",
            ServiceResult::TriggerLimitHit => "trigger-limit-hit",
        }
    }
}

/// The high-level state (systemd's ActiveState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActiveState {
    /// Not running, nothing went wrong.
    Inactive,
    /// Being started (or waiting to be restarted).
    Activating,
    /// Running, or done with RemainAfterExit.
    Active,
    /// Running its reload.
    Reloading,
    /// Being stopped.
    Deactivating,
    /// Not running, something went wrong.
    Failed,
}

impl ActiveState {
    /// The word `is-active` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Inactive => "inactive",
            ActiveState::Activating => "activating",
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Failed => "failed",
        }
    }
}

/// The detailed state (systemd's SubState of a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sub {
    /// Never started, or stopped cleanly.
    Dead,
    /// Running ExecStartPre.
    StartPre,
    /// Running ExecStart until the Type= says "started".
    Start,
    /// Running ExecStartPost.
    StartPost,
    /// The main process (or, for forking without one, the cgroup) is alive.
    Running,
    /// Everything exited cleanly and RemainAfterExit=yes.
    Exited,
    /// Running ExecReload, or between RELOADING=1 and READY=1.
    Reload,
    /// Running ExecStop, or after STOPPING=1.
    Stop,
    /// KillSignal sent, waiting for the processes to go.
    StopSigterm,
    /// SIGKILL sent, waiting for the processes to go.
    StopSigkill,
    /// Running ExecStopPost.
    StopPost,
    /// KillSignal sent to what ExecStopPost left.
    FinalSigterm,
    /// SIGKILL sent to what ExecStopPost left.
    FinalSigkill,
    /// Stopped with a result other than success.
    Failed,
    /// Waiting RestartSec before starting again.
    AutoRestart,
    /// Running ExecCondition.
    Condition,
}

impl Sub {
    /// The ActiveState this sub-state belongs to.
    pub fn active(self) -> ActiveState {
        match self {
            Sub::Dead => ActiveState::Inactive,
            Sub::Condition | Sub::StartPre | Sub::Start | Sub::StartPost | Sub::AutoRestart => {
                ActiveState::Activating
            }
            Sub::Running | Sub::Exited => ActiveState::Active,
            Sub::Reload => ActiveState::Reloading,
            Sub::Stop
            | Sub::StopSigterm
            | Sub::StopSigkill
            | Sub::StopPost
            | Sub::FinalSigterm
            | Sub::FinalSigkill => ActiveState::Deactivating,
            Sub::Failed => ActiveState::Failed,
        }
    }

    /// The word `status` prints in parentheses.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::Dead => "dead",
            Sub::Condition => "condition",
            Sub::StartPre => "start-pre",
            Sub::Start => "start",
            Sub::StartPost => "start-post",
            Sub::Running => "running",
            Sub::Exited => "exited",
            Sub::Reload => "reload",
            Sub::Stop => "stop",
            Sub::StopSigterm => "stop-sigterm",
            Sub::StopSigkill => "stop-sigkill",
            Sub::StopPost => "stop-post",
            Sub::FinalSigterm => "final-sigterm",
            Sub::FinalSigkill => "final-sigkill",
            Sub::Failed => "failed",
            Sub::AutoRestart => "auto-restart",
        }
    }

    /// Whether no invocation is under way (the unit may be started afresh).
    pub fn is_down(self) -> bool {
        matches!(self, Sub::Dead | Sub::Failed | Sub::AutoRestart)
    }
}

/// Which process a signal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Whom {
    /// The main process.
    Main,
    /// The running control process (ExecStartPre, ExecStop, ...).
    Control,
    /// Every process in the invocation's cgroup.
    All,
}

/// The timers a unit may have armed; arming one replaces the previous of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// TimeoutStartSec / TimeoutStopSec of the current phase.
    Phase,
    /// RuntimeMaxSec since the unit became active.
    RuntimeMax,
    /// RestartSec before an automatic restart.
    Restart,
}

/// What the manager must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Begin a new invocation: fresh invocation id and a freshly created cgroup.
    NewInvocation,
    /// Spawn command `index` of the list `cmd` in the invocation's cgroup; answer
    /// with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn {
        /// The list.
        cmd: Cmd,
        /// The position in it.
        index: usize,
    },
    /// Find the main PID of a forking service (PIDFile, else the only process);
    /// answer with [`Event::MainPid`] or [`Event::MainPidRejected`].
    FindMainPid,
    /// Send `sig` to `whom`.
    Signal {
        /// The target.
        whom: Whom,
        /// The signal number.
        sig: i32,
    },
    /// Write 1 to the invocation's `cgroup.kill`.
    CgroupKill,
    /// Arm (or re-arm) a timer; it answers with [`Event::Timeout`].
    Arm(Timer, Duration),
    /// Cancel a timer.
    Disarm(Timer),
    /// The invocation is over: remove its cgroup (unless processes were left
    /// behind on purpose), close its pipes.
    EndInvocation,
    /// Start the unit again (an explicit restart, or RestartSec elapsed); the
    /// manager applies the start limit and answers with [`Event::Start`] or
    /// [`Event::StartLimitHit`].
    StartAgain,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `corral start` (or an automatic restart that passed the start limit).
    Start,
    /// A start was refused by StartLimitIntervalSec/Burst.
    StartLimitHit,
    /// `corral stop`.
    Stop,
    /// `corral restart`: stop if running, then start.
    Restart,
    /// `corral reload`.
    Reload,
    /// The invocation could not be set up (cgroup creation failed).
    InvocationFailed,
    /// A [`Action::Spawn`] succeeded.
    Spawned {
        /// The list it came from.
        cmd: Cmd,
        /// The new process.
        pid: Pid,
    },
    /// A [`Action::Spawn`] failed (no such program, bad credentials, ...).
    SpawnFailed {
        /// The list it came from.
        cmd: Cmd,
        /// systemd's exit status for the failed step (203 EXEC, 200 CHDIR, ...).
        status: i32,
    },
    /// The main process was reaped.
    MainExited(Exit),
    /// The control process was reaped; `ignore` when its command had the `-` prefix.
    ControlExited {
        /// How it ended.
        exit: Exit,
        /// Whether a failure is to be ignored (`-` prefix).
        ignore: bool,
    },
    /// The main PID is known: from PIDFile, the cgroup, or `MAINPID=`; or it
    /// moved (the old main process exited and PIDFile names another one).
    MainPid(Pid),
    /// A forking service left no usable main PID: fatal when it has a
    /// PIDFile= that names no process of the unit and the unit has no
    /// process left to write it, not fatal when the cgroup alone stands for
    /// the service.
    MainPidRejected {
        /// Whether this is a failure (result `protocol`, as systemd).
        fatal: bool,
    },
    /// The invocation's cgroup has no process left.
    CgroupEmpty,
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// A timer expired.
    Timeout(Timer),
    /// Type=dbus: `BusName=` has an owner on the bus (it appeared, or was already there).
    BusNameAcquired,
    /// An event of a timer's own machine (`timer::machine::Event`); a
    /// service ignores it.
    TimerUnit(super::timer::machine::Event),
    /// Type=dbus: `BusName=` has no owner on the bus.
    BusNameLost,
    /// Type=dbus: the bus cannot be reached (no bus, or the connection broke),
    /// so the name can never be seen: a start fails with result resources.
    BusUnavailable,
    /// `reset-failed`: a failed unit becomes inactive and its result is forgotten.
    ResetFailed,
    /// A `Condition*=` was false when a start was due: the start is skipped
    /// (inactive, result condition; not a failure).
    ConditionFalse {
        /// The condition, for the log and `status`.
        reason: String,
    },
    /// An `Assert*=` was false when a start was due: the start fails before
    /// anything runs (failed, result assert).
    AssertFalse {
        /// The assertion, for the log and `status`.
        reason: String,
    },
    /// A unit this one requires failed to start, so its pending start will
    /// not happen (failed, result dependency).
    DependencyFailed {
        /// The unit that failed.
        dep: String,
    },
    /// A restart was due but the unit can no longer be loaded (its file went
    /// away or was masked and daemon-reload saw it): the restart fails.
    LoadFailed {
        /// Why it cannot be loaded.
        reason: String,
    },
    /// An event of a socket unit's own machine (`socket::machine`); a
    /// service takes none of them.
    Socket(super::socket::machine::Event),
}

impl Event {
    /// Whether this is one of the verdicts the manager reaches about a unit
    /// that is not running (reset-failed, a false condition or assert, a
    /// failed dependency, a failed load), and that applies to a unit of any
    /// kind in ActiveState `active` (`down`: no start under way, see
    /// [`Sub::is_down`]). They change nothing in any other state: a unit
    /// under way is no longer "about to start".
    pub fn verdict_applies(&self, active: ActiveState, down: bool) -> Option<bool> {
        let applies = match self {
            Event::ResetFailed => active == ActiveState::Failed,
            Event::ConditionFalse { .. } | Event::AssertFalse { .. } | Event::LoadFailed { .. } => {
                down
            }
            Event::DependencyFailed { .. } => {
                matches!(active, ActiveState::Inactive | ActiveState::Failed)
            }
            _ => return None,
        };
        Some(applies)
    }
}

/// The static description of a service that the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Type=: when the service counts as started.
    pub readiness: Readiness,
    /// RemainAfterExit=.
    pub remain_after_exit: bool,
    /// For each command list, the `-` (ignore failure) flag of each command;
    /// the length is the number of commands.
    pub cmds: [Vec<bool>; 7],
    /// Restart=.
    pub restart: RestartPolicy,
    /// RestartSec=.
    pub restart_sec: Duration,
    /// TimeoutStartSec= (None: infinity).
    pub timeout_start: Option<Duration>,
    /// TimeoutStopSec= (None: infinity).
    pub timeout_stop: Option<Duration>,
    /// RuntimeMaxSec= (None: infinity).
    pub runtime_max: Option<Duration>,
    /// KillMode=.
    pub kill_mode: KillMode,
    /// KillSignal=.
    pub kill_signal: i32,
    /// FinalKillSignal= (SIGKILL), written through cgroup.kill for cgroup modes.
    pub send_sigkill: bool,
    /// SendSIGHUP=: SIGHUP right after KillSignal, to whom KillSignal went.
    pub send_sighup: bool,
    /// SuccessExitStatus=.
    pub success: ExitSet,
    /// RestartPreventExitStatus=.
    pub restart_prevent: ExitSet,
    /// RestartForceExitStatus=.
    pub restart_force: ExitSet,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            readiness: Readiness::Simple,
            remain_after_exit: false,
            cmds: Default::default(),
            restart: RestartPolicy::No,
            restart_sec: Duration::from_millis(100),
            timeout_start: Some(Duration::from_secs(90)),
            timeout_stop: Some(Duration::from_secs(90)),
            runtime_max: None,
            kill_mode: KillMode::ControlGroup,
            kill_signal: libc::SIGTERM,
            send_sigkill: true,
            send_sighup: false,
            success: ExitSet::default(),
            restart_prevent: ExitSet::default(),
            restart_force: ExitSet::default(),
        }
    }
}

impl Spec {
    fn count(&self, cmd: Cmd) -> usize {
        self.cmds[cmd as usize].len()
    }

    fn ignores(&self, cmd: Cmd, index: usize) -> bool {
        self.cmds[cmd as usize].get(index).copied().unwrap_or(false)
    }

    /// Whether a main process exit counts as clean (exit 0, HUP/INT/TERM/PIPE, SuccessExitStatus=).
    pub fn clean(&self, exit: Exit) -> bool {
        match exit {
            Exit::Code(0) => true,
            Exit::Signal { sig, .. }
                if [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&sig) =>
            {
                true
            }
            other => self.success.contains(other),
        }
    }

    /// Whether Restart= asks for a restart after `result` (with the main exit, if any).
    pub fn wants_restart(&self, result: ServiceResult, exit: Option<Exit>) -> bool {
        if let Some(e) = exit {
            if self.restart_prevent.contains(e) {
                return false;
            }
            if self.restart_force.contains(e) {
                return true;
            }
        }
        use ServiceResult as R;
        // A skipped start is no reason to start again (systemd: not even Restart=always).
        if result == R::ExecCondition {
            return false;
        }
        match self.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => result != R::StartLimitHit,
            RestartPolicy::OnSuccess => result == R::Success,
            RestartPolicy::OnFailure => !matches!(result, R::Success | R::StartLimitHit),
            RestartPolicy::OnAbnormal => {
                matches!(result, R::Signal | R::CoreDump | R::Timeout)
            }
            RestartPolicy::OnAbort => matches!(result, R::Signal | R::CoreDump),
        }
    }
}

/// The running control process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Its list.
    pub cmd: Cmd,
    /// Its position in the list.
    pub index: usize,
    /// Its PID, once spawned.
    pub pid: Option<Pid>,
}

/// The dynamic state of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where in the lifecycle the unit is.
    pub sub: Sub,
    /// The result of the last (or current) invocation; first failure wins.
    pub result: ServiceResult,
    /// The main process, while alive.
    pub main: Option<Pid>,
    /// Whether the main process was spawned in this invocation and not yet reaped
    /// (the index of the oneshot command it runs).
    pub main_index: usize,
    /// How the main process ended, for $EXIT_CODE / $EXIT_STATUS and Restart*ExitStatus.
    pub main_exit: Option<Exit>,
    /// The control process, while one runs.
    pub control: Option<Control>,
    /// Whether the invocation's cgroup has processes (refreshed by the manager).
    pub populated: bool,
    /// The stop was asked for (no automatic restart after it).
    pub stop_requested: bool,
    /// Start again once stopped (`restart`, or `start` while deactivating).
    pub start_after_stop: bool,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Type=dbus: whether `BusName=` has an owner, as last reported in this invocation.
    pub bus_name_good: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            sub: Sub::Dead,
            result: ServiceResult::Success,
            main: None,
            main_index: 0,
            main_exit: None,
            control: None,
            populated: false,
            stop_requested: false,
            start_after_stop: false,
            restarts: 0,
            bus_name_good: false,
        }
    }
}

/// A request the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Reload of a unit that is not active.
    #[error("unit is not active ({0}), cannot reload")]
    NotActive(&'static str),
    /// Reload of a unit without ExecReload= (and not Type=notify).
    #[error("unit has no ExecReload=, reload is not applicable")]
    CannotReload,
    /// A socket unit refused the event (a start while it stops).
    #[error(transparent)]
    Socket(#[from] super::socket::machine::Refused),
}

/// Computes the next state and what to do from the current state and an event.
///
/// Requests that the state does not allow are refused; events that no longer
/// concern the state (a stale timer, an exit already accounted for) leave it
/// unchanged with no actions.
pub fn next(spec: &Spec, state: &State, event: Event) -> Result<(State, Vec<Action>), Refused> {
    let mut m = Machine {
        spec,
        s: state.clone(),
        out: Vec::new(),
    };
    m.handle(event)?;
    Ok((m.s, dedup_disarms(m.out)))
}

/// Drops a Disarm that repeats one already issued with no Arm of that timer in between.
fn dedup_disarms(actions: Vec<Action>) -> Vec<Action> {
    let mut disarmed: Vec<Timer> = Vec::new();
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        match a {
            Action::Disarm(t) if disarmed.contains(&t) => continue,
            Action::Disarm(t) => disarmed.push(t),
            Action::Arm(t, _) => disarmed.retain(|&d| d != t),
            _ => {}
        }
        out.push(a);
    }
    out
}

struct Machine<'a> {
    spec: &'a Spec,
    s: State,
    out: Vec<Action>,
}

impl Machine<'_> {
    fn handle(&mut self, event: Event) -> Result<(), Refused> {
        let sub = self.s.sub;
        match event {
            Event::Start => match sub {
                Sub::Dead | Sub::Failed | Sub::AutoRestart => self.begin(),
                Sub::Stop
                | Sub::StopSigterm
                | Sub::StopSigkill
                | Sub::StopPost
                | Sub::FinalSigterm
                | Sub::FinalSigkill => self.s.start_after_stop = true,
                // Already starting or started: the request joins the current job.
                _ => {}
            },
            Event::StartLimitHit => {
                self.s.result = ServiceResult::StartLimitHit;
                self.s.start_after_stop = false;
                self.out.push(Action::Disarm(Timer::Restart));
                self.s.sub = Sub::Failed;
            }
            Event::Stop => {
                self.s.stop_requested = true;
                self.s.start_after_stop = false;
                self.request_stop();
            }
            Event::Restart => {
                if sub.is_down() {
                    self.s.restarts = 0;
                    self.begin();
                } else {
                    self.s.stop_requested = true;
                    self.s.start_after_stop = true;
                    self.request_stop();
                }
            }
            Event::Reload => match sub {
                Sub::Running | Sub::Exited if self.spec.count(Cmd::Reload) > 0 => {
                    self.set(Sub::Reload);
                    self.spawn_control(Cmd::Reload, 0);
                }
                Sub::Running | Sub::Exited => return Err(Refused::CannotReload),
                // A reload asked while one runs joins it.
                Sub::Reload => {}
                other => return Err(Refused::NotActive(other.active().as_str())),
            },
            Event::InvocationFailed => {
                if matches!(sub, Sub::Condition | Sub::StartPre | Sub::Start) {
                    self.fail(ServiceResult::Resources);
                    self.enter_dead();
                }
            }
            Event::Spawned { cmd, pid } => self.spawned(cmd, pid),
            Event::SpawnFailed { cmd, status } => {
                // A program that cannot be executed ends like one that exited with
                // systemd's status for the failed step (status=203/EXEC).
                if self.is_main_cmd(cmd) {
                    self.main_exited(Exit::Code(status));
                } else if self.s.control.is_some_and(|c| c.cmd == cmd) {
                    self.control_exited(Exit::Code(status), self.control_ignores());
                }
            }
            Event::MainExited(exit) => {
                if self.s.main.is_some() {
                    self.main_exited(exit);
                }
            }
            Event::ControlExited { exit, ignore } => {
                if self.s.control.is_some_and(|c| c.pid.is_some()) {
                    self.control_exited(exit, ignore);
                }
            }
            Event::MainPid(pid) => {
                self.s.main = Some(pid);
                if sub == Sub::Start
                    && self.spec.readiness == Readiness::Forking
                    && self.s.control.is_none()
                {
                    self.enter_start_post();
                }
            }
            Event::MainPidRejected { fatal } => {
                if sub == Sub::Start && self.spec.readiness == Readiness::Forking {
                    if fatal {
                        // systemd's result when the PIDFile never names a process of the unit.
                        self.fail(ServiceResult::Protocol);
                        self.enter_signal(Sub::StopSigterm);
                    } else {
                        self.enter_start_post();
                    }
                }
            }
            Event::CgroupEmpty => {
                self.s.populated = false;
                self.cgroup_empty();
            }
            Event::Ready => match sub {
                Sub::Start if self.spec.readiness == Readiness::Notify => self.enter_start_post(),
                Sub::Reload if self.s.control.is_none() => self.enter_running(),
                _ => {}
            },
            Event::Reloading => {
                if sub == Sub::Running {
                    self.set(Sub::Reload);
                }
            }
            Event::Stopping => {
                if matches!(sub, Sub::Running | Sub::Reload) {
                    // The service stops itself: wait for its main process, send nothing yet.
                    self.s.control = None;
                    self.set(Sub::Stop);
                    self.arm_phase(self.spec.timeout_stop);
                }
            }
            Event::Timeout(timer) => self.timeout(timer),
            // A timer's own events never reach a service's machine.
            Event::TimerUnit(_) => {}
            Event::BusNameAcquired => {
                self.s.bus_name_good = true;
                // As systemd's service_bus_name_owner_change(): the start is
                // complete once the name has an owner.
                if sub == Sub::Start
                    && self.spec.readiness == Readiness::Dbus
                    && self.s.main.is_some()
                {
                    self.enter_start_post();
                }
            }
            Event::BusNameLost => {
                self.s.bus_name_good = false;
                if sub == Sub::Running && self.spec.readiness == Readiness::Dbus {
                    // enter_running sees the name gone and stops the service.
                    self.enter_running();
                }
            }
            Event::ResetFailed
            | Event::ConditionFalse { .. }
            | Event::AssertFalse { .. }
            | Event::DependencyFailed { .. }
            | Event::LoadFailed { .. } => self.verdict(&event),
            Event::BusUnavailable if self.spec.readiness != Readiness::Dbus => {}
            Event::BusUnavailable => match sub {
                // The start was refused before anything ran.
                Sub::Dead | Sub::Failed | Sub::AutoRestart => {
                    self.s.result = ServiceResult::Resources;
                    self.s.start_after_stop = false;
                    self.out.push(Action::Disarm(Timer::Restart));
                    self.s.sub = Sub::Failed;
                }
                Sub::Condition | Sub::StartPre | Sub::Start if !self.s.bus_name_good => {
                    self.fail(ServiceResult::Resources);
                    self.enter_signal(Sub::StopSigterm);
                }
                // Started already: it runs on, as under systemd when its bus goes.
                _ => {}
            },
            // A socket's events reach socket units only.
            Event::Socket(_) => {}
        }
        Ok(())
    }

    /// A verdict about a unit that is down (see [`Event::verdict_applies`]).
    fn verdict(&mut self, event: &Event) {
        if event.verdict_applies(self.s.sub.active(), self.s.sub.is_down()) != Some(true) {
            return;
        }
        let (sub, result) = match verdict_outcome(event, self.s.result) {
            (ActiveState::Failed, r) => (Sub::Failed, r),
            (_, r) => (Sub::Dead, r),
        };
        // A restart that was due will not happen now.
        if self.s.sub == Sub::AutoRestart {
            self.out.push(Action::Disarm(Timer::Restart));
        }
        self.s.result = result;
        self.s.sub = sub;
    }

    fn set(&mut self, sub: Sub) {
        if self.s.sub != sub {
            self.out.push(Action::Disarm(Timer::Phase));
        }
        self.s.sub = sub;
    }

    fn arm_phase(&mut self, t: Option<Duration>) {
        if let Some(t) = t {
            self.out.push(Action::Arm(Timer::Phase, t));
        }
    }

    fn fail(&mut self, r: ServiceResult) {
        if self.s.result == ServiceResult::Success {
            self.s.result = r;
        }
    }

    fn result_of(&self, exit: Exit) -> ServiceResult {
        match exit {
            _ if self.spec.clean(exit) => ServiceResult::Success,
            Exit::Code(_) => ServiceResult::ExitCode,
            Exit::Signal { core: true, .. } => ServiceResult::CoreDump,
            Exit::Signal { .. } => ServiceResult::Signal,
            // As systemd counts a status it could not learn: not a success.
            Exit::Unknown => ServiceResult::ExitCode,
        }
    }

    fn is_main_cmd(&self, cmd: Cmd) -> bool {
        cmd == Cmd::Start && self.spec.readiness != Readiness::Forking
    }

    fn control_ignores(&self) -> bool {
        self.s
            .control
            .is_some_and(|c| self.spec.ignores(c.cmd, c.index))
    }

    /// A fresh invocation from a stopped unit.
    fn begin(&mut self) {
        let restarts = if self.s.sub == Sub::AutoRestart {
            self.s.restarts + 1
        } else {
            0
        };
        self.out.push(Action::Disarm(Timer::Restart));
        self.s = State {
            restarts,
            ..State::default()
        };
        self.out.push(Action::NewInvocation);
        if self.spec.count(Cmd::Condition) > 0 {
            self.set(Sub::Condition);
            self.arm_phase(self.spec.timeout_start);
            self.spawn_control(Cmd::Condition, 0);
        } else {
            self.enter_start_pre();
        }
    }

    fn enter_start_pre(&mut self) {
        if self.spec.count(Cmd::StartPre) > 0 {
            self.set(Sub::StartPre);
            self.arm_phase(self.spec.timeout_start);
            self.spawn_control(Cmd::StartPre, 0);
        } else {
            self.enter_start();
        }
    }

    fn spawn_control(&mut self, cmd: Cmd, index: usize) {
        self.s.control = Some(Control {
            cmd,
            index,
            pid: None,
        });
        self.s.populated = true;
        self.out.push(Action::Spawn { cmd, index });
    }

    fn enter_start(&mut self) {
        self.set(Sub::Start);
        if self.spec.count(Cmd::Start) == 0 {
            // Only oneshot units may have no ExecStart (the loader enforces it).
            self.enter_start_post();
            return;
        }
        self.arm_phase(self.spec.timeout_start);
        if self.spec.readiness == Readiness::Forking {
            self.spawn_control(Cmd::Start, 0);
        } else {
            self.s.main_index = 0;
            self.s.populated = true;
            self.out.push(Action::Spawn {
                cmd: Cmd::Start,
                index: 0,
            });
        }
    }

    fn spawned(&mut self, cmd: Cmd, pid: Pid) {
        if self.is_main_cmd(cmd) {
            self.s.main = Some(pid);
            self.s.populated = true;
            let started = match self.spec.readiness {
                Readiness::Simple | Readiness::Exec | Readiness::Idle => true,
                // The name may have an owner already (a leftover): then it is started.
                Readiness::Dbus => self.s.bus_name_good,
                _ => false,
            };
            if self.s.sub == Sub::Start && started {
                self.enter_start_post();
            }
        } else if let Some(c) = self.s.control.as_mut()
            && c.cmd == cmd
        {
            c.pid = Some(pid);
            self.s.populated = true;
        }
    }

    fn enter_start_post(&mut self) {
        if self.spec.count(Cmd::StartPost) > 0 {
            self.set(Sub::StartPost);
            self.arm_phase(self.spec.timeout_start);
            self.spawn_control(Cmd::StartPost, 0);
        } else {
            self.enter_running();
        }
    }

    fn enter_running(&mut self) {
        self.s.control = None;
        if self.spec.readiness == Readiness::Oneshot {
            if self.spec.remain_after_exit {
                self.set(Sub::Exited);
            } else {
                self.enter_stop();
            }
            return;
        }
        if self.spec.readiness == Readiness::Dbus && !self.s.bus_name_good {
            // systemd's service_good(): a Type=dbus service whose name has no
            // owner is not running, whatever its processes do.
            if self.spec.remain_after_exit {
                self.set(Sub::Exited);
            } else {
                self.enter_stop();
            }
            return;
        }
        if self.s.main.is_some() {
            let was_active = matches!(self.s.sub, Sub::Running | Sub::Reload);
            self.set(Sub::Running);
            if !was_active && let Some(t) = self.spec.runtime_max {
                self.out.push(Action::Arm(Timer::RuntimeMax, t));
            }
        } else if let Some(exit) = self.s.main_exit {
            // The main process ended while ExecStartPost ran.
            self.after_main_exit(exit);
        } else if self.s.populated {
            // Forking without a main PID: the cgroup stands for the service.
            self.set(Sub::Running);
            if let Some(t) = self.spec.runtime_max {
                self.out.push(Action::Arm(Timer::RuntimeMax, t));
            }
        } else if self.spec.remain_after_exit {
            self.set(Sub::Exited);
        } else {
            self.enter_stop();
        }
    }

    fn main_exited(&mut self, exit: Exit) {
        self.s.main = None;
        self.s.main_exit = Some(exit);
        let clean = self.spec.clean(exit);
        match self.s.sub {
            Sub::Start if self.spec.readiness == Readiness::Oneshot => {
                if !clean {
                    self.fail(self.result_of(exit));
                    self.enter_signal(Sub::StopSigterm);
                } else if self.s.main_index + 1 < self.spec.count(Cmd::Start) {
                    self.s.main_index += 1;
                    self.out.push(Action::Spawn {
                        cmd: Cmd::Start,
                        index: self.s.main_index,
                    });
                } else {
                    self.enter_start_post();
                }
            }
            Sub::Start if self.spec.readiness == Readiness::Dbus => {
                // Before the name appeared: as systemd, a clean exit stops the
                // unit (or leaves it exited with RemainAfterExit=), an unclean
                // one fails it.
                if clean {
                    self.after_main_exit(exit);
                } else {
                    self.fail(self.result_of(exit));
                    self.enter_signal(Sub::StopSigterm);
                }
            }
            Sub::Start => {
                // Notify before READY=1 (exec/simple reach Start only before Spawned).
                if clean {
                    self.fail(ServiceResult::Protocol);
                } else {
                    self.fail(self.result_of(exit));
                }
                self.enter_signal(Sub::StopSigterm);
            }
            Sub::Running | Sub::Reload if self.s.control.is_none() => self.after_main_exit(exit),
            // ExecReload still runs; its end decides.
            Sub::Reload if !clean => self.fail(self.result_of(exit)),
            Sub::Stop if self.s.control.is_none() => {
                // After STOPPING=1: the service went; kill what it left.
                if !clean {
                    self.fail(self.result_of(exit));
                }
                self.enter_signal(Sub::StopSigterm);
            }
            Sub::StopSigterm | Sub::StopSigkill | Sub::FinalSigterm | Sub::FinalSigkill => {
                self.kill_phase_done_if_gone();
            }
            // StartPost and the other stop phases record the exit; their own end moves on.
            _ => {}
        }
    }

    /// The main process of a running service ended on its own.
    fn after_main_exit(&mut self, exit: Exit) {
        let clean = self.spec.clean(exit);
        if !clean {
            self.fail(self.result_of(exit));
        }
        if clean && self.spec.remain_after_exit {
            self.set(Sub::Exited);
        } else {
            self.enter_stop();
        }
    }

    fn control_exited(&mut self, exit: Exit, ignore: bool) {
        let Some(c) = self.s.control else { return };
        let ok = exit == Exit::Code(0) || ignore;
        self.s.control = None;
        let more = c.index + 1 < self.spec.count(c.cmd);
        match (self.s.sub, c.cmd) {
            (Sub::Condition, Cmd::Condition) => {
                // As systemd: exit 1-254 skips the start (not a failure); 255,
                // a signal or a timeout fails it. SuccessExitStatus= does not apply.
                let skip = matches!(exit, Exit::Code(1..=254));
                if ok && more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else if ok {
                    self.enter_start_pre();
                } else if skip {
                    self.fail(ServiceResult::ExecCondition);
                    self.enter_signal(Sub::StopSigterm);
                } else {
                    self.fail(self.result_of(exit));
                    self.enter_signal(Sub::StopSigterm);
                }
            }
            (Sub::StartPre, Cmd::StartPre) => {
                if !ok {
                    self.fail(self.result_of(exit));
                    self.enter_signal(Sub::StopSigterm);
                } else if more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else {
                    self.enter_start();
                }
            }
            (Sub::Start, Cmd::Start) => {
                // The forking parent.
                if !ok {
                    self.fail(self.result_of(exit));
                    self.enter_signal(Sub::StopSigterm);
                } else if self.s.main.is_some() {
                    self.enter_start_post();
                } else {
                    self.out.push(Action::FindMainPid);
                }
            }
            (Sub::StartPost, Cmd::StartPost) => {
                if !ok {
                    self.fail(self.result_of(exit));
                    self.enter_stop();
                } else if more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else {
                    self.enter_running();
                }
            }
            (Sub::Reload, Cmd::Reload) => {
                if ok && more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else {
                    // A failed reload leaves the service running, as systemd does.
                    self.enter_running();
                }
            }
            (Sub::Stop, Cmd::Stop) => {
                if ok && more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else {
                    self.enter_signal(Sub::StopSigterm);
                }
            }
            (Sub::StopPost, Cmd::StopPost) => {
                if more {
                    self.spawn_control(c.cmd, c.index + 1);
                } else {
                    self.enter_signal(Sub::FinalSigterm);
                }
            }
            (Sub::StopSigterm | Sub::StopSigkill | Sub::FinalSigterm | Sub::FinalSigkill, _) => {
                self.kill_phase_done_if_gone();
            }
            _ => {}
        }
    }

    /// A stop asked for by the user.
    fn request_stop(&mut self) {
        match self.s.sub {
            Sub::Dead | Sub::Failed => {}
            Sub::AutoRestart => {
                self.out.push(Action::Disarm(Timer::Restart));
                self.s.result = ServiceResult::Success;
                self.set(Sub::Dead);
                if self.s.start_after_stop {
                    self.s.start_after_stop = false;
                    self.out.push(Action::StartAgain);
                }
            }
            Sub::Condition | Sub::StartPre | Sub::Start | Sub::StartPost => {
                self.enter_signal(Sub::StopSigterm)
            }
            Sub::Running | Sub::Exited | Sub::Reload => self.enter_stop(),
            // Already stopping.
            _ => {}
        }
    }

    fn enter_stop(&mut self) {
        self.out.push(Action::Disarm(Timer::RuntimeMax));
        if self.spec.count(Cmd::Stop) > 0 && self.s.sub != Sub::Stop {
            self.set(Sub::Stop);
            self.arm_phase(self.spec.timeout_stop);
            self.spawn_control(Cmd::Stop, 0);
        } else {
            self.enter_signal(Sub::StopSigterm);
        }
    }

    /// Whether the kill phase `sub` has something left to wait for: the main
    /// and control processes until they are reaped (ExecStopPost and Restart=
    /// need to see how they ended), and the rest of the cgroup when that phase
    /// signals it: always for KillMode=control-group, only in the SIGKILL
    /// phases for KillMode=mixed (which never sends the rest KillSignal=).
    fn something_left(&self, sub: Sub) -> bool {
        let ours = self.s.main.is_some() || self.s.control.is_some_and(|c| c.pid.is_some());
        let whole_group = match self.spec.kill_mode {
            KillMode::ControlGroup => true,
            KillMode::Mixed => is_sigkill_phase(sub),
            KillMode::Process => false,
        };
        ours || (whole_group && self.s.populated)
    }

    fn enter_signal(&mut self, sub: Sub) {
        self.out.push(Action::Disarm(Timer::RuntimeMax));
        if !self.something_left(sub) {
            self.s.control = None;
            // As systemd: a SIGTERM phase with nothing to wait for goes on to
            // its SIGKILL phase when that one has something to kill, which is
            // how KillMode=mixed ends the rest of the cgroup right after the
            // main process has exited.
            let kill_phase = match sub {
                Sub::StopSigterm => Some(Sub::StopSigkill),
                Sub::FinalSigterm => Some(Sub::FinalSigkill),
                _ => None,
            };
            return match kill_phase {
                Some(k) if self.spec.send_sigkill && self.something_left(k) => self.enter_signal(k),
                _ => self.after_signal_phase(sub),
            };
        }
        self.set(sub);
        let sig = if is_sigkill_phase(sub) {
            libc::SIGKILL
        } else {
            self.spec.kill_signal
        };
        let kill = sig == libc::SIGKILL;
        // SendSIGHUP=: as systemd, only after KillSignal (not SIGKILL), and not twice.
        let hup = self.spec.send_sighup && !kill && sig != libc::SIGHUP;
        match self.spec.kill_mode {
            KillMode::ControlGroup => self.kill_all(sig, hup),
            // The rest of the cgroup gets SIGKILL, never KillSignal= (even when
            // that is SIGKILL: the SIGTERM phases are for the main process).
            KillMode::Mixed if is_sigkill_phase(sub) => self.kill_all(sig, false),
            KillMode::Mixed | KillMode::Process => {
                if self.s.main.is_some() {
                    self.out.push(Action::Signal {
                        whom: Whom::Main,
                        sig,
                    });
                    if !kill {
                        self.out.push(Action::Signal {
                            whom: Whom::Main,
                            sig: libc::SIGCONT,
                        });
                    }
                    if hup {
                        self.out.push(Action::Signal {
                            whom: Whom::Main,
                            sig: libc::SIGHUP,
                        });
                    }
                }
                if self.s.control.is_some_and(|c| c.pid.is_some()) {
                    self.out.push(Action::Signal {
                        whom: Whom::Control,
                        sig,
                    });
                    if !kill {
                        self.out.push(Action::Signal {
                            whom: Whom::Control,
                            sig: libc::SIGCONT,
                        });
                    }
                    if hup {
                        self.out.push(Action::Signal {
                            whom: Whom::Control,
                            sig: libc::SIGHUP,
                        });
                    }
                }
            }
        }
        self.arm_phase(self.spec.timeout_stop);
    }

    /// `sig` to the whole cgroup (SIGKILL through cgroup.kill), then SIGHUP when `hup`.
    fn kill_all(&mut self, sig: i32, hup: bool) {
        if sig == libc::SIGKILL {
            self.out.push(Action::CgroupKill);
        } else {
            self.out.push(Action::Signal {
                whom: Whom::All,
                sig,
            });
            self.out.push(Action::Signal {
                whom: Whom::All,
                sig: libc::SIGCONT,
            });
            if hup {
                self.out.push(Action::Signal {
                    whom: Whom::All,
                    sig: libc::SIGHUP,
                });
            }
        }
    }

    /// Leaves a kill phase whose processes are gone (or that timed out).
    fn after_signal_phase(&mut self, sub: Sub) {
        match sub {
            Sub::StopSigterm | Sub::StopSigkill => self.enter_stop_post(),
            _ => self.enter_dead(),
        }
    }

    fn kill_phase_done_if_gone(&mut self) {
        if !self.something_left(self.s.sub) {
            let sub = self.s.sub;
            self.s.control = None;
            self.after_signal_phase(sub);
        }
    }

    fn enter_stop_post(&mut self) {
        self.s.main = None;
        if self.spec.count(Cmd::StopPost) > 0 {
            self.set(Sub::StopPost);
            self.arm_phase(self.spec.timeout_stop);
            self.spawn_control(Cmd::StopPost, 0);
        } else {
            self.enter_signal(Sub::FinalSigterm);
        }
    }

    fn enter_dead(&mut self) {
        self.s.main = None;
        self.s.control = None;
        self.out.push(Action::Disarm(Timer::RuntimeMax));
        self.out.push(Action::EndInvocation);
        // A start skipped by ExecCondition= ends inactive, as one skipped by Condition*=.
        let failed = !matches!(
            self.s.result,
            ServiceResult::Success | ServiceResult::ExecCondition
        );
        self.set(if failed { Sub::Failed } else { Sub::Dead });
        if self.s.start_after_stop {
            self.s.start_after_stop = false;
            self.s.stop_requested = false;
            self.out.push(Action::StartAgain);
        } else if !self.s.stop_requested && self.spec.wants_restart(self.s.result, self.s.main_exit)
        {
            self.set(Sub::AutoRestart);
            self.out
                .push(Action::Arm(Timer::Restart, self.spec.restart_sec));
        }
    }

    fn cgroup_empty(&mut self) {
        match self.s.sub {
            Sub::StopSigterm | Sub::StopSigkill | Sub::FinalSigterm | Sub::FinalSigkill
                if self.spec.kill_mode != KillMode::Process =>
            {
                self.kill_phase_done_if_gone();
            }
            Sub::Running if self.s.main.is_none() && self.spec.readiness == Readiness::Forking => {
                // A forking service without a main PID ends with its cgroup.
                self.enter_stop();
            }
            _ => {}
        }
    }

    fn timeout(&mut self, timer: Timer) {
        let sub = self.s.sub;
        match timer {
            Timer::Restart => {
                if sub == Sub::AutoRestart {
                    self.out.push(Action::StartAgain);
                }
            }
            Timer::RuntimeMax => {
                if matches!(sub, Sub::Running | Sub::Reload | Sub::Exited) {
                    self.fail(ServiceResult::Timeout);
                    self.enter_stop();
                }
            }
            Timer::Phase => match sub {
                Sub::Condition | Sub::StartPre | Sub::Start | Sub::StartPost => {
                    self.fail(ServiceResult::Timeout);
                    self.enter_signal(Sub::StopSigterm);
                }
                Sub::Reload => {
                    // A reload that hangs is killed; the service itself stays.
                    if self.s.control.is_some_and(|c| c.pid.is_some()) {
                        self.out.push(Action::Signal {
                            whom: Whom::Control,
                            sig: libc::SIGKILL,
                        });
                    }
                    self.enter_running();
                }
                Sub::Stop => {
                    self.fail(ServiceResult::Timeout);
                    self.enter_signal(Sub::StopSigterm);
                }
                Sub::StopSigterm => {
                    self.fail(ServiceResult::Timeout);
                    if self.spec.send_sigkill {
                        self.enter_signal(Sub::StopSigkill);
                    } else {
                        self.enter_stop_post();
                    }
                }
                Sub::StopSigkill => self.enter_stop_post(),
                Sub::StopPost => {
                    self.fail(ServiceResult::Timeout);
                    self.enter_signal(Sub::FinalSigterm);
                }
                Sub::FinalSigterm => {
                    self.fail(ServiceResult::Timeout);
                    if self.spec.send_sigkill {
                        self.enter_signal(Sub::FinalSigkill);
                    } else {
                        self.enter_dead();
                    }
                }
                Sub::FinalSigkill => self.enter_dead(),
                _ => {}
            },
        }
    }
}

/// StartLimitIntervalSec= / StartLimitBurst=: at most `burst` starts within `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartLimit {
    /// The window (zero disables the limit).
    pub interval: Duration,
    /// Starts allowed within the window (zero disables the limit).
    pub burst: u32,
    /// When the recent starts happened, oldest first (time since an arbitrary origin).
    starts: std::collections::VecDeque<Duration>,
}

impl StartLimit {
    /// A limit of `burst` starts per `interval`.
    pub fn new(interval: Duration, burst: u32) -> Self {
        StartLimit {
            interval,
            burst,
            starts: Default::default(),
        }
    }

    /// Records a start at `now`; false when it exceeds the limit (and is not recorded).
    pub fn admit(&mut self, now: Duration) -> bool {
        if self.interval.is_zero() || self.burst == 0 {
            return true;
        }
        while let Some(&t) = self.starts.front() {
            if now.saturating_sub(t) >= self.interval {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if self.starts.len() >= self.burst as usize {
            return false;
        }
        self.starts.push_back(now);
        true
    }

    /// Forgets past starts (`reset-failed`).
    pub fn reset(&mut self) {
        self.starts.clear();
    }
}

/// Where a verdict that applies leaves a unit of any kind whose result was
/// `result`: inactive or failed, and the new result.
pub fn verdict_outcome(event: &Event, result: ServiceResult) -> (ActiveState, ServiceResult) {
    match event {
        Event::ResetFailed => (ActiveState::Inactive, ServiceResult::Success),
        Event::ConditionFalse { .. } => (ActiveState::Inactive, ServiceResult::Condition),
        Event::AssertFalse { .. } => (ActiveState::Failed, ServiceResult::Assert),
        Event::DependencyFailed { .. } => (ActiveState::Failed, ServiceResult::Dependency),
        // LoadFailed: the result of the run that asked for the restart stays.
        _ => (ActiveState::Failed, result),
    }
}

/// The kill phases that send SIGKILL whatever KillSignal= says.
fn is_sigkill_phase(sub: Sub) -> bool {
    matches!(sub, Sub::StopSigkill | Sub::FinalSigkill)
}

#[cfg(test)]
mod tests;
