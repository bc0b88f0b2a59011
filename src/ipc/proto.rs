//! The messages of the control protocol: one [`Request`] per frame from the
//! client, answered by one or more [`Response`] frames.
//!
//! Both enums are encoded with postcard, which writes an enum's variant as its
//! index: variants are only ever appended (never reordered or removed), so an
//! older peer still decodes everything it knows, and
//! [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) is bumped when the meaning
//! of an existing variant changes. docs/PROTOCOL.md ("Messages") is the reference.
//!
//! The unit states ([`ActiveState`], [`SubState`], [`UnitResult`]) are the
//! protocol's own words, not the manager's enums: the manager converts its
//! state at one place (`supervisor::wire`), so its state machines can change
//! without changing what a client decodes.

use serde::{Deserialize, Serialize};

/// The state of a unit as systemctl names it (ActiveState): the same six
/// words for every kind of unit.
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
    /// The word `is-active` and `status` print.
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

/// The detailed state of a unit (SubState), in the words of its kind: each
/// kind of unit has its own set. Kinds still to come (socket, timer) are
/// appended as new variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubState {
    /// A `.service`.
    Service(ServiceSub),
    /// A `.target`.
    Target(TargetSub),
    /// A `.timer`.
    Timer(TimerSub),
    /// A `.socket`.
    Socket(SocketSub),
}

impl SubState {
    /// The word `status`, `show` and `list` print.
    pub fn as_str(self) -> &'static str {
        match self {
            SubState::Service(s) => s.as_str(),
            SubState::Target(t) => t.as_str(),
            SubState::Timer(t) => t.as_str(),
            SubState::Socket(s) => s.as_str(),
        }
    }
}

/// The sub-states of a service, as systemd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceSub {
    /// Never started, or stopped cleanly.
    Dead,
    /// Running ExecCondition.
    Condition,
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
}

impl ServiceSub {
    /// systemd's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceSub::Dead => "dead",
            ServiceSub::Condition => "condition",
            ServiceSub::StartPre => "start-pre",
            ServiceSub::Start => "start",
            ServiceSub::StartPost => "start-post",
            ServiceSub::Running => "running",
            ServiceSub::Exited => "exited",
            ServiceSub::Reload => "reload",
            ServiceSub::Stop => "stop",
            ServiceSub::StopSigterm => "stop-sigterm",
            ServiceSub::StopSigkill => "stop-sigkill",
            ServiceSub::StopPost => "stop-post",
            ServiceSub::FinalSigterm => "final-sigterm",
            ServiceSub::FinalSigkill => "final-sigkill",
            ServiceSub::Failed => "failed",
            ServiceSub::AutoRestart => "auto-restart",
        }
    }
}

/// The sub-states of a target: it has no processes, so it is only reached or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetSub {
    /// Not reached (stopped, or never started).
    Dead,
    /// Reached.
    Active,
}

impl TargetSub {
    /// systemd's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSub::Dead => "dead",
            TargetSub::Active => "active",
        }
    }
}

/// The sub-states of a timer, as systemd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerSub {
    /// Stopped.
    Dead,
    /// Armed, waiting for its next elapse.
    Waiting,
    /// Elapsed; the unit it triggered has not stopped yet.
    Running,
    /// No elapse left; kept active (`RemainAfterElapse=yes`).
    Elapsed,
    /// The unit it triggers could not be started.
    Failed,
}

impl TimerSub {
    /// systemd's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerSub::Dead => "dead",
            TimerSub::Waiting => "waiting",
            TimerSub::Running => "running",
            TimerSub::Elapsed => "elapsed",
            TimerSub::Failed => "failed",
        }
    }
}

/// The sub-states of a socket, as systemd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketSub {
    /// Not started; no fds.
    Dead,
    /// `ExecStartPre=` running.
    StartPre,
    /// Bound; `ExecStartPost=` running.
    StartPost,
    /// Bound and watched: traffic starts the service.
    Listening,
    /// The service has the fds.
    Running,
    /// `ExecStopPre=` running.
    StopPre,
    /// SIGTERM sent to a command of the stop.
    StopPreSigterm,
    /// SIGKILL sent to it.
    StopPreSigkill,
    /// fds closed; `ExecStopPost=` running.
    StopPost,
    /// SIGTERM sent to what is left.
    FinalSigterm,
    /// SIGKILL sent to what is left.
    FinalSigkill,
    /// Stopped after a failure.
    Failed,
}

impl SocketSub {
    /// systemd's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketSub::Dead => "dead",
            SocketSub::StartPre => "start-pre",
            SocketSub::StartPost => "start-post",
            SocketSub::Listening => "listening",
            SocketSub::Running => "running",
            SocketSub::StopPre => "stop-pre",
            SocketSub::StopPreSigterm => "stop-pre-sigterm",
            SocketSub::StopPreSigkill => "stop-pre-sigkill",
            SocketSub::StopPost => "stop-post",
            SocketSub::FinalSigterm => "final-sigterm",
            SocketSub::FinalSigkill => "final-sigkill",
            SocketSub::Failed => "failed",
        }
    }
}

/// How the last run of a unit ended (systemd's Result). One set for every
/// kind; results that only a new kind can have are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitResult {
    /// Nothing went wrong.
    Success,
    /// The manager could not set up the invocation (cgroup, spawn, PIDFile outside the cgroup).
    Resources,
    /// The service broke the protocol of its Type= (exited before READY=1, ...).
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
    /// A `Condition*=` was false: the start was skipped.
    Condition,
    /// An `Assert*=` was false: the start failed before anything ran.
    Assert,
    /// A unit it requires failed to start.
    Dependency,
    /// An `ExecCondition=` command exited 1–254: the start was skipped.
    ExecCondition,
    /// A socket: the service it triggers hit its start limit.
    ServiceStartLimitHit,
    /// A socket: activated more often than `TriggerLimitBurst=` allows.
    TriggerLimitHit,
}

impl UnitResult {
    /// The word `status` and `show` print.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitResult::Success => "success",
            UnitResult::Resources => "resources",
            UnitResult::Protocol => "protocol",
            UnitResult::Timeout => "timeout",
            UnitResult::ExitCode => "exit-code",
            UnitResult::Signal => "signal",
            UnitResult::CoreDump => "core-dump",
            UnitResult::StartLimitHit => "start-limit-hit",
            UnitResult::Condition => "condition",
            UnitResult::Assert => "assert",
            UnitResult::Dependency => "dependency",
            UnitResult::ExecCondition => "exec-condition",
            UnitResult::ServiceStartLimitHit => "service-start-limit-hit",
            UnitResult::TriggerLimitHit => "trigger-limit-hit",
        }
    }
}

/// Which processes `kill` signals (`--kill-whom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillWhom {
    /// The main process only.
    Main,
    /// The control process (ExecStartPre, ExecReload, ...) only.
    Control,
    /// Every process in the unit's cgroup.
    All,
}

/// A request to the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Start units; answered when each is active or has failed.
    Start {
        /// Unit names as typed ("foo" means "foo.service").
        units: Vec<String>,
    },
    /// Stop units; answered when each one's cgroup is empty and removed.
    Stop {
        /// Unit names.
        units: Vec<String>,
    },
    /// Stop (if running) and start units.
    Restart {
        /// Unit names.
        units: Vec<String>,
    },
    /// Restart units that are running; leave the others alone.
    TryRestart {
        /// Unit names.
        units: Vec<String>,
    },
    /// Run ExecReload (or wait for RELOADING=1/READY=1) of active units.
    Reload {
        /// Unit names.
        units: Vec<String>,
    },
    /// Send a signal to the processes of units.
    Kill {
        /// Unit names.
        units: Vec<String>,
        /// The signal number.
        signal: i32,
        /// Which processes.
        whom: KillWhom,
    },
    /// The state of units; an empty list means the manager and all its units.
    Status {
        /// Unit names.
        units: Vec<String>,
    },
    /// Every known unit with its state.
    List,
    /// The properties of units, for scripts.
    Show {
        /// Unit names.
        units: Vec<String>,
    },
    /// The files that define units (fragment and drop-ins, or run scripts).
    Cat {
        /// Unit names.
        units: Vec<String>,
    },
    /// Read the unit files again.
    DaemonReload,
    /// Forget failed states and start-limit counters (all units when empty).
    ResetFailed {
        /// Unit names.
        units: Vec<String>,
    },
    /// The ActiveState of units (`is-active`, `is-failed`).
    ActiveStates {
        /// Unit names.
        units: Vec<String>,
    },
    /// Journal entries matching `query`, streamed as `Entries` batches and
    /// closed by the end frame; with `follow`, new entries keep coming until
    /// the client hangs up.
    Journal {
        /// What to select (units, time range, priorities, last N...); boxed, being
        /// far larger than any other request (the same bytes on the wire).
        query: Box<crate::journal::Query>,
        /// Keep streaming newly committed entries.
        follow: bool,
    },
    /// `list-dependencies`: the dependency tree of a unit, as text.
    ListDependencies {
        /// The unit name as typed.
        unit: String,
        /// Follow what pulls the unit in instead of what it pulls in.
        reverse: bool,
        /// Expand every unit, not only targets.
        all: bool,
    },
    /// `set-environment NAME=value...` on the manager's environment block.
    SetEnvironment {
        /// `NAME=value` assignments; one invalid entry rejects them all.
        assignments: Vec<String>,
    },
    /// `unset-environment NAME...` (`NAME=value` unsets only on a matching value).
    UnsetEnvironment {
        /// Names, or `NAME=value`.
        names: Vec<String>,
    },
    /// `import-environment`: pairs the CLI resolved against its own environment.
    ImportEnvironment {
        /// Name and value of each variable to set.
        pairs: Vec<(String, String)>,
    },
    /// `show-environment`: the block as `NAME=value` lines.
    ShowEnvironment,
    /// `journal --disk-usage`: how much the manager's journal store takes.
    JournalDiskUsage,
    /// `journal --vacuum-time/--vacuum-size` on the manager's journal store, which
    /// only its writer thread may change: entries older than `max_age_usec` go
    /// first, then the oldest until the file fits in `max_bytes`.
    JournalVacuum {
        /// `--vacuum-size`, in bytes.
        max_bytes: Option<u64>,
        /// `--vacuum-time`, in microseconds.
        max_age_usec: Option<u64>,
    },
    /// The unit search path and runit directories the manager loads units
    /// from, so that `enable`, `list-unit-files` & co. act on the same files.
    SearchPaths,
    /// `daemon-reexec`: the manager executes its binary again (the file on
    /// disk, upgraded or not), keeping every unit running and every output
    /// pipe; answered `Done` before it happens.
    DaemonReexec,
    /// `reload-or-restart`: reload the units that are active and can
    /// reload; restart (start, when not running) the others.
    ReloadOrRestart {
        /// Unit names.
        units: Vec<String>,
    },
    /// `try-reload-or-restart`: as `ReloadOrRestart`, leaving units that
    /// are not running alone.
    TryReloadOrRestart {
        /// Unit names.
        units: Vec<String>,
    },
}

/// What kind of thing went wrong, so the CLI can pick its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No unit of that name (exit 5).
    NotFound,
    /// The unit's definition could not be loaded (exit 1, as systemctl).
    BadUnit,
    /// The unit started and failed, or a job did not succeed (exit 1).
    Failed,
    /// The request does not apply to the unit's state or type (exit 1).
    Refused,
    /// The request itself was malformed, unauthorised or unsupported (exit 2).
    BadRequest,
    /// The manager hit an internal problem (exit 1).
    Internal,
}

/// An error with its kind and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its kind.
    pub kind: ErrorKind,
    /// What failed, on what, and what to do.
    pub message: String,
}

/// The outcome of a job (start, stop, ...) on one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The unit's full name.
    pub unit: String,
    /// Ok with notes (such as processes left behind by KillMode=process), or the failure.
    pub result: Result<Vec<String>, Failure>,
}

/// Where a unit's definition was found and whether it loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadState {
    /// Loaded from its files.
    Loaded,
    /// The files exist but could not be parsed: the message names file, line, directive.
    Error(String),
    /// Masked (linked to /dev/null).
    Masked,
    /// No file: a unit that does not exist (`show`), or one still running
    /// after daemon-reload found its file gone.
    NotFound,
}

/// A process of a unit, as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Its PID.
    pub pid: i32,
    /// Its command line, arguments separated by spaces (the comm name in brackets for kernel-less argv).
    pub cmdline: String,
}

/// How the main process last ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MainExit {
    /// Its PID.
    pub pid: i32,
    /// exited, killed or dumped.
    pub code: String,
    /// The exit code or the signal name.
    pub status: String,
    /// "ExecStart=argv" when this process was spawned from ExecStart=
    /// (not for Type=forking's main process), empty otherwise.
    pub command: String,
}

/// Everything `status`, `show` and `list` print about one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// Full name (`memcached@11212.service`).
    pub name: String,
    /// Description=, or the name.
    pub description: String,
    /// Whether its definition loaded.
    pub load: LoadState,
    /// The main file (unit file, or the runit service directory).
    pub fragment: String,
    /// Drop-in files applied, in order.
    pub dropins: Vec<String>,
    /// Where the unit came from: "unit-file" or "runit".
    pub source: String,
    /// enabled, disabled, static, masked (as `list-unit-files`); empty when unknown.
    pub file_state: String,
    /// Type= as written (simple, forking, ...).
    pub kind: String,
    /// Restart= as written.
    pub restart: String,
    /// ActiveState.
    pub active: ActiveState,
    /// SubState, in the words of the unit's kind.
    pub sub: SubState,
    /// Result of the last invocation.
    pub result: UnitResult,
    /// When the unit entered its current ActiveState, µs since the epoch (0: never).
    pub since_usec: u64,
    /// The main process, if one is known.
    pub main_pid: Option<i32>,
    /// The control process, if one runs.
    pub control_pid: Option<i32>,
    /// How the main process last ended.
    pub main_exit: Option<MainExit>,
    /// The current (or last) invocation id, 32 hex digits.
    pub invocation: String,
    /// The invocation's cgroup, absolute path, while it exists.
    pub cgroup: Option<String>,
    /// The processes in that cgroup.
    pub processes: Vec<Process>,
    /// The last STATUS= text sent over NOTIFY_SOCKET.
    pub status_text: Option<String>,
    /// Automatic restarts since the last explicit start.
    pub restarts: u32,
    /// Plain notes for `status`: resource directives not applied, processes left behind.
    pub notes: Vec<String>,
    /// `Status` only: the unit's last journal lines, formatted as `corral journal` shows them.
    pub journal: Vec<String>,
    /// A timer: when it elapses next, µs since the epoch (None: not armed).
    pub next_elapse_usec: Option<u64>,
    /// A timer: when it last triggered its unit, µs since the epoch.
    pub last_trigger_usec: Option<u64>,
    /// A socket: its `Listen*=` entries as systemctl shows them
    /// (`ListenStream=/run/user/1000/bus`).
    pub listen: Vec<String>,
    /// The units this one starts (a timer's `Unit=`, a socket's service).
    pub triggers: Vec<String>,
    /// A socket with `Accept=yes`: connections accepted since its start,
    /// connected now (instances running), refused over a limit.
    pub connections: Option<(u64, u32, u64)>,
    /// The units that start this one (the timers whose `Unit=` it is, the
    /// sockets that trigger it).
    pub triggered_by: Vec<String>,
    /// A loaded timer: its `[Timer]` and state, for `show`.
    pub timer: Option<TimerStatus>,
    /// runit: the cgroup of the unit's `log/run` (which outlives each run
    /// of `run`), relative as `cgroup`, while it exists (since version 6).
    pub log_cgroup: Option<String>,
    /// The processes in that cgroup.
    pub log_processes: Vec<Process>,
}

/// A timer's properties as systemd's `org.freedesktop.systemd1.Timer`
/// has them (times in µs; `None` where systemd has 0 or infinity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerStatus {
    /// `Unit`: what it triggers.
    pub unit: String,
    /// `TimersMonotonic`: (base, e.g. `OnBootUSec`; offset; next elapse on
    /// CLOCK_MONOTONIC), in the order written.
    pub monotonic: Vec<(String, u64, Option<u64>)>,
    /// `TimersCalendar`: (normalized expression; its next elapse, realtime).
    pub calendar: Vec<(String, Option<u64>)>,
    /// `NextElapseUSecRealtime`.
    pub next_realtime: Option<u64>,
    /// `NextElapseUSecMonotonic` (CLOCK_MONOTONIC).
    pub next_monotonic: Option<u64>,
    /// `LastTriggerUSec` (realtime).
    pub last_trigger: Option<u64>,
    /// `LastTriggerUSecMonotonic`.
    pub last_trigger_monotonic: Option<u64>,
    /// `AccuracyUSec`.
    pub accuracy: u64,
    /// `RandomizedDelayUSec`.
    pub randomized_delay: u64,
    /// `FixedRandomDelay`, `Persistent`, `WakeSystem`, `RemainAfterElapse`,
    /// `OnClockChange`, `OnTimezoneChange`, in that order.
    pub flags: [bool; 6],
}

/// The manager itself, for `corral status` without units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// Its PID.
    pub pid: i32,
    /// The uid it runs as.
    pub uid: u32,
    /// Its version.
    pub version: String,
    /// The cgroup root under which unit cgroups are created.
    pub cgroup_root: String,
    /// The manager's own cgroup.
    pub cgroup: String,
    /// When it started, µs since the epoch.
    pub since_usec: u64,
    /// Units that are running or failed.
    pub units: Vec<UnitStatus>,
    /// Units whose files failed to load, with the reason.
    pub load_errors: Vec<String>,
    /// What is wrong with the journal (writes blocked by a full disk); `None` when fine.
    pub journal: Option<String>,
}

/// A file shown by `cat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFile {
    /// Its path.
    pub path: String,
    /// Its content (lossy UTF-8).
    pub text: String,
}

/// The files of one unit for `cat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFiles {
    /// The unit.
    pub unit: String,
    /// Main file first, then drop-ins; or the failure (not found).
    pub files: Result<Vec<UnitFile>, Failure>,
}

/// A reply from the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request as a whole failed (malformed, unauthorised, internal).
    Error(Failure),
    /// One outcome per unit of a job request (start, stop, restart, try-restart,
    /// reload, kill, reset-failed), in the order asked.
    Jobs(Vec<JobOutcome>),
    /// Status of the units asked for (Status with units, Show, List).
    Units(Vec<Result<UnitStatus, Failure>>),
    /// `Status` without units.
    Manager(ManagerStatus),
    /// `Cat`.
    Files(Vec<UnitFiles>),
    /// `ActiveStates`: one per unit, `None` when not found.
    States(Vec<(String, Option<ActiveState>)>),
    /// A request that needs no data succeeded (DaemonReload): the notes say what changed.
    Done(Vec<String>),
    /// One batch of journal entries, oldest first (a stream item of `Journal`).
    Entries(Vec<crate::journal::Entry>),
    /// Text to print as it is (`ListDependencies`, `ShowEnvironment`).
    Text(String),
    /// `JournalDiskUsage`: the store file and its usage.
    JournalUsage {
        /// The store file (lossy UTF-8).
        path: String,
        /// Its usage.
        usage: crate::journal::DiskUsage,
    },
    /// `JournalVacuum`: the store file and what vacuuming it did.
    Vacuumed {
        /// The store file (lossy UTF-8).
        path: String,
        /// Entries removed, usage before and after.
        report: crate::journal::VacuumReport,
    },
    /// `SearchPaths`: where the manager loads units from.
    SearchPaths {
        /// The unit directories, highest priority first (symlinks of
        /// `enable` go into the first).
        units: Vec<String>,
        /// The directories holding runit service directories.
        runit: Vec<String>,
    },
    /// A stream item of `Journal`: a warning about the answer (damaged blocks
    /// skipped); the client says it on stderr and reads on.
    Warning(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding of existing variants is the protocol: appending a variant
    /// must never change these bytes.
    #[test]
    fn variant_indexes_are_stable() {
        let cases: Vec<(Request, u8)> = vec![
            (Request::Start { units: vec![] }, 0),
            (Request::Stop { units: vec![] }, 1),
            (Request::Restart { units: vec![] }, 2),
            (Request::TryRestart { units: vec![] }, 3),
            (Request::Reload { units: vec![] }, 4),
            (
                Request::Kill {
                    units: vec![],
                    signal: 15,
                    whom: KillWhom::All,
                },
                5,
            ),
            (Request::Status { units: vec![] }, 6),
            (Request::List, 7),
            (Request::Show { units: vec![] }, 8),
            (Request::Cat { units: vec![] }, 9),
            (Request::DaemonReload, 10),
            (Request::ResetFailed { units: vec![] }, 11),
            (Request::ActiveStates { units: vec![] }, 12),
            (
                Request::Journal {
                    query: Box::default(),
                    follow: false,
                },
                13,
            ),
            (
                Request::ListDependencies {
                    unit: String::new(),
                    reverse: false,
                    all: false,
                },
                14,
            ),
            (
                Request::SetEnvironment {
                    assignments: vec![],
                },
                15,
            ),
            (Request::UnsetEnvironment { names: vec![] }, 16),
            (Request::ImportEnvironment { pairs: vec![] }, 17),
            (Request::ShowEnvironment, 18),
            (Request::JournalDiskUsage, 19),
            (
                Request::JournalVacuum {
                    max_bytes: Some(1),
                    max_age_usec: None,
                },
                20,
            ),
            (Request::SearchPaths, 21),
            (Request::DaemonReexec, 22),
            (Request::ReloadOrRestart { units: vec![] }, 23),
            (Request::TryReloadOrRestart { units: vec![] }, 24),
        ];
        for (req, index) in cases {
            let bytes = postcard::to_allocvec(&req).unwrap();
            assert_eq!(bytes[0], index, "{req:?}");
            let back: Request = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, req);
        }
        let start = postcard::to_allocvec(&Request::Start {
            units: vec!["a".into()],
        })
        .unwrap();
        assert_eq!(start, [0, 1, 1, b'a']);
    }

    /// The unit states are the protocol's words: their bytes change only with
    /// PROTOCOL_VERSION (2 made the sub-state per kind).
    #[test]
    fn unit_states_are_pinned() {
        use ActiveState as A;
        for (i, a) in [
            A::Inactive,
            A::Activating,
            A::Active,
            A::Reloading,
            A::Deactivating,
            A::Failed,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(postcard::to_allocvec(&a).unwrap(), [i as u8], "{a:?}");
        }
        use ServiceSub as S;
        let service = [
            S::Dead,
            S::Condition,
            S::StartPre,
            S::Start,
            S::StartPost,
            S::Running,
            S::Exited,
            S::Reload,
            S::Stop,
            S::StopSigterm,
            S::StopSigkill,
            S::StopPost,
            S::FinalSigterm,
            S::FinalSigkill,
            S::Failed,
            S::AutoRestart,
        ];
        for (i, sub) in service.into_iter().enumerate() {
            let bytes = postcard::to_allocvec(&SubState::Service(sub)).unwrap();
            assert_eq!(bytes, [0, i as u8], "{sub:?}");
        }
        for (i, sub) in [TargetSub::Dead, TargetSub::Active].into_iter().enumerate() {
            let bytes = postcard::to_allocvec(&SubState::Target(sub)).unwrap();
            assert_eq!(bytes, [1, i as u8], "{sub:?}");
        }
        use UnitResult as R;
        for (i, r) in [
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
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(postcard::to_allocvec(&r).unwrap(), [i as u8], "{r:?}");
        }
    }

    /// The journal's records travel as they are (they are the journal
    /// library's public types, which the CLI also reads from a store
    /// directly): a change to their fields is a protocol change, caught here.
    #[test]
    fn journal_records_are_pinned() {
        use crate::journal::{DiskUsage, Entry, Query, Stream, VacuumReport};
        let entry = Entry {
            seq: 1,
            realtime: 2,
            monotonic: 3,
            boot_id: 4,
            uid: 5,
            unit: "u".into(),
            invocation: 6,
            pid: Some(7),
            stream: Stream::Stderr,
            priority: 3,
            identifier: "i".into(),
            message: b"m".to_vec(),
            flags: 0,
            comm: "c".into(),
            message_id: 8,
        };
        assert_eq!(
            postcard::to_allocvec(&entry).unwrap(),
            [
                1, 2, 3, 4, 5, 1, b'u', 6, 1, 7, 1, 3, 1, b'i', 1, b'm', 0, 1, b'c', 8
            ]
        );
        let query = Query {
            units: vec!["a".into()],
            since: Some(1),
            until: Some(2),
            priority: Some((0, 3)),
            grep: Some("g".into()),
            invocation: Some(4),
            latest_invocation: true,
            stream: Some(Stream::Stdout),
            cursor: Some("c".into()),
            after_cursor: Some("d".into()),
            lines: Some(5),
            reverse: true,
            identifiers: vec!["t".into()],
            exclude_identifiers: vec!["x".into()],
            field_matches: vec![vec!["F=v".into()]],
            boot_id: Some(6),
        };
        assert_eq!(
            postcard::to_allocvec(&query).unwrap(),
            [
                1, 1, b'a', 1, 1, 1, 2, 1, 0, 3, 1, 1, b'g', 1, 4, 1, 1, 0, 1, 1, b'c', 1, 1, b'd',
                1, 5, 1, 1, 1, b't', 1, 1, b'x', 1, 1, 3, b'F', b'=', b'v', 1, 6
            ]
        );
        let usage = DiskUsage {
            file_bytes: 4,
            stored_bytes: 3,
            entries: 2,
            blocks: 1,
        };
        let report = VacuumReport {
            removed: 2,
            before: usage.clone(),
            after: usage,
        };
        assert_eq!(
            postcard::to_allocvec(&report).unwrap(),
            [2, 4, 3, 2, 1, 4, 3, 2, 1]
        );
    }

    /// `LoadState::NotFound` was appended: the earlier states keep their bytes.
    #[test]
    fn load_state_indexes_are_stable() {
        for (state, index) in [
            (LoadState::Loaded, 0u8),
            (LoadState::Error(String::new()), 1),
            (LoadState::Masked, 2),
            (LoadState::NotFound, 3),
        ] {
            let bytes = postcard::to_allocvec(&state).unwrap();
            assert_eq!(bytes[0], index, "{state:?}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::Jobs(vec![JobOutcome {
            unit: "foo.service".into(),
            result: Err(Failure {
                kind: ErrorKind::NotFound,
                message: "Unit foo.service not found.".into(),
            }),
        }]);
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(bytes[0], 1);
        assert_eq!(postcard::from_bytes::<Response>(&bytes).unwrap(), r);
        let usage = crate::journal::DiskUsage {
            file_bytes: 4,
            stored_bytes: 3,
            entries: 2,
            blocks: 1,
        };
        let cases = [
            (
                Response::JournalUsage {
                    path: "/j/journal.redb".into(),
                    usage: usage.clone(),
                },
                9,
            ),
            (
                Response::Vacuumed {
                    path: "/j/journal.redb".into(),
                    report: crate::journal::VacuumReport {
                        removed: 2,
                        before: usage.clone(),
                        after: usage,
                    },
                },
                10,
            ),
            (
                Response::SearchPaths {
                    units: vec!["/u".into()],
                    runit: vec![],
                },
                11,
            ),
        ];
        for (r, index) in cases {
            let bytes = postcard::to_allocvec(&r).unwrap();
            assert_eq!(bytes[0], index, "{r:?}");
            assert_eq!(postcard::from_bytes::<Response>(&bytes).unwrap(), r);
        }
    }
}
