//! The manager: one thread that owns every unit's state.
//!
//! Event sources are tokio tasks (SIGCHLD reaper, NOTIFY_SOCKET reader,
//! cgroup.events watchers, timers, the control socket); each sends an
//! [`Input`] into one queue. The manager thread takes inputs one at a time,
//! feeds the unit's state machine and executes the actions it returns.
//! Because only this thread touches unit state there are no locks; because it
//! is not a runtime worker, the short blocking system calls it makes
//! (spawning up to exec, mkdir/rmdir in cgroupfs, reading /proc) never stall
//! the tasks that serve the socket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::cgroup::Cgroup;
use crate::cgroup::spawn::{Rlimit, SpawnSpec, Stdio, spawn};
use crate::ipc::proto::{
    self as proto, ErrorKind, Failure, KillWhom, LoadState, MainExit, ManagerStatus, Response,
    UnitFile, UnitFiles, UnitStatus,
};
use crate::unit::file::{UserFile, read_user_file};
use crate::unit::model::{NotifyAccess, StdOutput};
use crate::unit::{Loader, RunitService, Severity, SpecifierContext, UnitError, UnitName};

use super::control::Query;
use super::notify::{Message, NotifySocket};
use super::output::{Output, Source, Stream};
use super::service::{self, ServiceDef};
use super::state::{
    self, Action, ActiveState, Cmd, Event, Exit, Pid, Refused, ServiceResult, StartLimit, State,
    Sub, Timer, Whom,
};
use super::{Options, SupervisorError, control, procs, reaper, wire};

mod bus;
mod transaction;
mod watches;

/// What the manager thread reacts to.
#[derive(Debug)]
pub enum Input {
    /// A child was reaped.
    Reaped(Pid, Exit),
    /// A unit invocation's cgroup.events changed.
    CgroupChanged {
        /// The unit.
        unit: String,
        /// The invocation it was armed for.
        seq: u64,
    },
    /// The PIDFile's directory changed while a forking unit waits for it.
    PidFileChanged {
        /// The unit.
        unit: String,
        /// The invocation it was armed for.
        seq: u64,
    },
    /// A datagram on NOTIFY_SOCKET.
    Notify {
        /// The sender, as the kernel reports it.
        pid: Pid,
        /// The sender's cgroup, read when the datagram arrived.
        cgroup: Option<PathBuf>,
        /// What it said.
        msg: Message,
    },
    /// A timer expired.
    Timer {
        /// The unit.
        unit: String,
        /// Which timer.
        timer: Timer,
        /// Its generation: stale timers are ignored.
        generation: u64,
    },
    /// A job on one unit from the control socket.
    Job {
        /// The unit name as typed.
        unit: String,
        /// What to do.
        job: Job,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Vec<String>, Failure>>,
    },
    /// A request answered at once (status, list, ...).
    Query {
        /// The question.
        query: Query,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// What the session bus connection learnt (Type=dbus).
    Bus {
        /// The connection it came from: reports of an earlier one are ignored.
        generation: u64,
        /// What it says.
        report: super::dbus::Report,
    },
    /// SIGHUP: read the unit files again.
    ReloadUnits,
    /// SIGTERM/SIGINT: stop every unit, then end.
    Shutdown,
}

/// A job on one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
    /// Restart if running.
    TryRestart,
    /// Reload.
    Reload,
    /// Send a signal.
    Kill {
        /// The signal number.
        signal: i32,
        /// To whom.
        whom: KillWhom,
    },
    /// Forget a failed state.
    ResetFailed,
}

/// One invocation of a unit: from its start to the removal of its cgroup.
struct Invocation {
    /// INVOCATION_ID.
    id: String,
    /// Distinguishes this invocation's watcher inputs from older ones.
    seq: u64,
    /// The fresh cgroup (None when it could not be created).
    cgroup: Option<Cgroup>,
    /// The watch on its cgroup.events.
    watch: Option<watches::Watch>,
    /// The watch on the PIDFile's directory, while a forking unit waits for its PIDFile.
    pidfile_watch: Option<watches::Watch>,
    /// runit: the write end of the pipe to `log/run`, stdout of `run` and `finish`.
    log_pipe: Option<OwnedFd>,
    /// When the invocation began.
    started: Instant,
}

/// The cgroup of an ended invocation that processes still hold (KillMode=process
/// leaves them on purpose): its cgroup.events watcher keeps running, and the
/// cgroup is removed once the last of them is gone.
struct Leftover {
    /// The unit it belonged to.
    unit: String,
    cgroup: Cgroup,
    /// The invocation's cgroup.events watch.
    watch: watches::Watch,
    /// The processes it held when the invocation ended.
    pids: Vec<Pid>,
}

struct UnitEntry {
    /// Full name.
    name: String,
    /// The definition, or why it could not be loaded.
    def: Result<Arc<ServiceDef>, Failure>,
    /// A definition read by daemon-reload while an invocation ran; applied when it ends.
    pending: Option<Result<Arc<ServiceDef>, Failure>>,
    state: State,
    inv: Option<Invocation>,
    /// The last invocation id, kept for status after the invocation ended.
    last_invocation: String,
    start_limit: StartLimit,
    /// Armed timers: generation and task (none for a zero delay, already queued).
    timers: HashMap<Timer, (u64, Option<AbortHandle>)>,
    /// Reload jobs waiting for the reload to end (start and stop jobs live in transactions).
    reload_waiters: Vec<oneshot::Sender<Result<Vec<String>, Failure>>>,
    /// When the ActiveState last changed (µs since the epoch).
    since_usec: u64,
    status_text: Option<String>,
    /// The last main process and how it ended.
    main_exit: Option<(Pid, Exit)>,
    /// Why the last start failed, in words, when the state machine's result is not enough.
    failure_note: Option<String>,
    /// KillMode=process: PIDs left running by the last stop.
    left_behind: Vec<Pid>,
    /// enabled/disabled/static/masked, from the loader's listing.
    file_state: String,
    /// LogRateLimitIntervalSec=/LogRateLimitBurst=, shared by the unit's pipes.
    rate_limit: Option<Arc<crate::journal::ingest::RateLimiter>>,
}

impl UnitEntry {
    fn new(name: String, def: Result<Arc<ServiceDef>, Failure>) -> UnitEntry {
        let start_limit = match &def {
            Ok(d) => StartLimit::new(d.start_limit.0, d.start_limit.1),
            Err(_) => StartLimit::default(),
        };
        UnitEntry {
            name,
            def,
            pending: None,
            state: State::default(),
            inv: None,
            last_invocation: String::new(),
            start_limit,
            timers: HashMap::new(),
            reload_waiters: Vec::new(),
            since_usec: 0,
            status_text: None,
            main_exit: None,
            failure_note: None,
            left_behind: Vec::new(),
            file_state: String::new(),
            rate_limit: None,
        }
    }

    fn cgroup(&self) -> Option<&Cgroup> {
        self.inv.as_ref().and_then(|i| i.cgroup.as_ref())
    }
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn not_found(name: &str) -> Failure {
    Failure {
        kind: ErrorKind::NotFound,
        message: format!("Unit {name} not found."),
    }
}

/// 128 random bits as 32 hex digits (systemd's INVOCATION_ID format).
fn new_invocation_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most len bytes into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Without the random source, time and a counter still make ids unique here.
        let t = now_usec().to_le_bytes();
        b[..8].copy_from_slice(&t);
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The load state `status` and `show` report for a unit that failed to load.
fn load_state_of(f: &Failure) -> LoadState {
    if f.kind == ErrorKind::NotFound {
        LoadState::NotFound
    } else if f.message.ends_with("is masked.") {
        LoadState::Masked
    } else {
        LoadState::Error(f.message.clone())
    }
}

/// Paths for the protocol, which carries them as (lossy) UTF-8.
fn lossy(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// systemd refuses a template as a unit of its own (a job on `foo@.service`
/// would run with an empty `%i`): the answer for a job on one.
fn template_refusal(full: &str) -> Option<Failure> {
    UnitName::parse(full)
        .is_ok_and(|n| n.is_template())
        .then(|| Failure {
            kind: ErrorKind::Refused,
            message: format!("Unit name {full} is missing the instance name."),
        })
}

/// The full unit name for what a user typed: "foo" is "foo.service".
pub fn normalize(name: &str) -> String {
    UnitName::mangle(name)
}

fn to_cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte: {s:?}"))
}

fn nix_resource(raw: libc::__rlimit_resource_t) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    [
        R::RLIMIT_AS,
        R::RLIMIT_CORE,
        R::RLIMIT_CPU,
        R::RLIMIT_DATA,
        R::RLIMIT_FSIZE,
        R::RLIMIT_LOCKS,
        R::RLIMIT_MEMLOCK,
        R::RLIMIT_MSGQUEUE,
        R::RLIMIT_NICE,
        R::RLIMIT_NOFILE,
        R::RLIMIT_NPROC,
        R::RLIMIT_RSS,
        R::RLIMIT_RTPRIO,
        R::RLIMIT_RTTIME,
        R::RLIMIT_SIGPENDING,
        R::RLIMIT_STACK,
    ]
    .into_iter()
    .find(|r| *r as i64 == raw as i64)
}

/// The manager's state, owned by its thread.
pub struct Manager {
    tx: mpsc::UnboundedSender<Input>,
    rt: Handle,
    root: Cgroup,
    mount: PathBuf,
    loader: Loader,
    notify_path: PathBuf,
    units: BTreeMap<String, UnitEntry>,
    pids: HashMap<Pid, String>,
    load_errors: Vec<String>,
    /// HOME, USER, ... for every process.
    base_env: Vec<(String, String)>,
    seq: u64,
    timer_generation: u64,
    started_usec: u64,
    shutting_down: bool,
    /// Transactions, the environment block, skipped starts (transaction.rs).
    graph: transaction::Graph,
    /// Cgroups of ended invocations that still hold processes, by invocation seq.
    leftovers: HashMap<u64, Leftover>,
    /// The inotify instance behind every cgroup.events and PIDFile watch.
    watches: watches::Watches,
    /// Where the units' output and the manager's messages about them go.
    output: Output,
    /// The session bus connection of Type=dbus units, once one has started (bus.rs).
    bus: Option<bus::Bus>,
    /// Numbers the bus connections.
    bus_generation: u64,
}

impl Manager {
    /// A message of the manager about a unit: on stderr and in the unit's journal.
    fn log(&self, unit: &str, msg: &str) {
        eprintln!("corrald: {unit}: {msg}");
        if self.output.journal().is_some() {
            let inv = self
                .units
                .get(unit)
                .map(|e| {
                    e.inv
                        .as_ref()
                        .map_or(e.last_invocation.clone(), |i| i.id.clone())
                })
                .unwrap_or_default();
            self.output.manager_entry(unit, &inv, msg.to_string());
        }
    }

    /// How the output of a process of `name` is labelled in the journal.
    fn source(&self, name: &str, def: Option<&ServiceDef>, pid: Pid, stream: Stream) -> Source {
        let e = &self.units[name];
        let svc = def.and_then(|d| d.unit.service.as_ref());
        let identifier = svc
            .and_then(|s| s.syslog_identifier.clone())
            .or_else(|| {
                svc.and_then(|s| s.exec_start.first()).map(|c| {
                    c.program
                        .rsplit('/')
                        .next()
                        .unwrap_or(&c.program)
                        .to_string()
                })
            })
            .unwrap_or_else(|| name.trim_end_matches(".service").to_string());
        Source {
            unit: name.to_string(),
            invocation: e
                .inv
                .as_ref()
                .map_or(e.last_invocation.clone(), |i| i.id.clone()),
            pid,
            stream,
            priority: svc.map_or(6, |s| s.syslog_level),
            level_prefix: svc.is_none_or(|s| s.syslog_level_prefix),
            identifier,
            rate_limit: e.rate_limit.clone(),
        }
    }

    /// Runs the manager loop until a shutdown has stopped every unit.
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        while let Some(input) = rx.blocking_recv() {
            self.input(input);
            if self.shutting_down && self.units.values().all(|u| u.inv.is_none()) {
                break;
            }
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Reaped(pid, exit) => self.reaped(pid, exit),
            Input::CgroupChanged { seq, .. } if self.leftovers.contains_key(&seq) => {
                self.leftover_changed(seq);
            }
            Input::CgroupChanged { unit, seq } => {
                let Some(e) = self.units.get(&unit) else {
                    return;
                };
                if e.inv.as_ref().map(|i| i.seq) != Some(seq) {
                    return;
                }
                let populated = e.cgroup().map(|c| c.populated().unwrap_or(false));
                if populated == Some(false) && e.state.populated {
                    self.feed(&unit, Event::CgroupEmpty);
                }
            }
            Input::PidFileChanged { unit, seq } => {
                let waiting = self.units.get(&unit).is_some_and(|e| {
                    e.inv
                        .as_ref()
                        .is_some_and(|i| i.seq == seq && i.pidfile_watch.is_some())
                });
                if waiting {
                    let mut q = VecDeque::new();
                    self.find_main_pid(&unit, &mut q);
                    for ev in q {
                        self.feed(&unit, ev);
                    }
                }
            }
            Input::Notify { pid, cgroup, msg } => self.notified(pid, cgroup, msg),
            Input::Timer {
                unit,
                timer,
                generation,
            } => {
                let current = self
                    .units
                    .get(&unit)
                    .and_then(|e| e.timers.get(&timer))
                    .map(|(g, _)| *g);
                if current == Some(generation) {
                    if let Some(e) = self.units.get_mut(&unit) {
                        e.timers.remove(&timer);
                    }
                    self.feed(&unit, Event::Timeout(timer));
                }
            }
            Input::Job { unit, job, reply } => self.job(&unit, job, reply),
            Input::Bus { generation, report } => self.bus_report(generation, report),
            Input::Query { query, reply } => {
                let r = self.query(query);
                let _ = reply.send(r);
            }
            Input::ReloadUnits => {
                let notes = self.reload_units();
                for n in notes {
                    eprintln!("corrald: {n}");
                }
            }
            Input::Shutdown => {
                self.shutting_down = true;
                // Every unit stops, in the reverse of the start order (transaction.rs).
                self.shutdown_in_order();
            }
        }
    }

    // ---- loading -------------------------------------------------------

    fn load(&self, name: &UnitName) -> Result<Arc<ServiceDef>, Failure> {
        let unit = transaction::load_unit(&self.loader, name).map_err(|e| match e {
            UnitError::NotFound { .. } => not_found(name.as_str()),
            e => Failure {
                kind: ErrorKind::BadUnit,
                message: format!("Unit {name} failed to load: {e}"),
            },
        })?;
        if unit.masked {
            return Err(Failure {
                kind: ErrorKind::Refused,
                message: format!("Unit {name} is masked."),
            });
        }
        if let Err(e) = unit.ensure_valid() {
            return Err(Failure {
                kind: ErrorKind::BadUnit,
                message: format!("Unit {name} failed to load: {e}"),
            });
        }
        // As systemd 252: a bad assignment is dropped with a warning naming
        // file:line, and the unit loads without it.
        for d in unit.ignored_errors() {
            let mut w = d.clone();
            w.severity = Severity::Warning;
            self.log(name.as_str(), &w.to_string());
        }
        if super::graph::is_target(name.as_str()) {
            return Ok(Arc::new(transaction::target_def(unit)));
        }
        let enabled = self.root.subtree_control().unwrap_or_default();
        service::from_unit(unit, self.root.path(), &enabled)
            .map(Arc::new)
            .map_err(|message| Failure {
                kind: ErrorKind::BadUnit,
                message,
            })
    }

    /// Loads every unit the loader lists; returns their names.
    fn load_all(&mut self) -> Vec<String> {
        self.load_errors.clear();
        let mut names = Vec::new();
        for (name, _, file_state) in self.loader.list() {
            if name.is_template() {
                continue;
            }
            let def = self.load(&name);
            if let Err(f) = &def
                && f.kind != ErrorKind::NotFound
            {
                self.load_errors.push(f.message.clone());
            }
            let key = name.as_str().to_string();
            names.push(key.clone());
            match self.units.get_mut(&key) {
                Some(e) => {
                    e.file_state = file_state.to_string();
                    self.replace_def(&key, def);
                }
                None => {
                    let mut e = UnitEntry::new(key.clone(), def);
                    e.file_state = file_state.to_string();
                    self.units.insert(key, e);
                }
            }
        }
        names
    }

    /// Gives a loaded unit the definition daemon-reload read. While the unit
    /// is in use (an invocation, or up without processes: an exited
    /// oneshot, a target) a new definition that cannot run (not found,
    /// masked, broken) waits in `pending` until the unit is down, so that
    /// it can still be stopped; a runnable one waits only for the
    /// invocation to end.
    fn replace_def(&mut self, name: &str, def: Result<Arc<ServiceDef>, Failure>) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let in_use = !matches!(e.state.sub, Sub::Dead | Sub::Failed);
        if e.inv.is_some() || (in_use && def.is_err()) {
            e.pending = Some(def);
            return;
        }
        if let Ok(d) = &def {
            e.start_limit = StartLimit::new(d.start_limit.0, d.start_limit.1);
        }
        e.pending = None;
        e.def = def;
    }

    /// Applies a definition read by daemon-reload once the unit has no
    /// invocation left (one that cannot run: once it is also down).
    fn settle_pending(&mut self, name: &str) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let runnable = matches!(e.pending, Some(Ok(_)));
        if e.inv.is_some() || !(runnable || matches!(e.state.sub, Sub::Dead | Sub::Failed)) {
            return;
        }
        if let Some(p) = e.pending.take() {
            if let Ok(d) = &p {
                e.start_limit.interval = d.start_limit.0;
                e.start_limit.burst = d.start_limit.1;
            }
            e.def = p;
        }
    }

    /// Drops a unit whose file is gone once nothing holds it (inactive, no
    /// processes, no definition waiting), as systemd unloads not-found
    /// units: it is then "not found" again until a file appears. Returns
    /// whether it was dropped.
    fn forget_if_gone(&mut self, name: &str) -> bool {
        let gone = self.units.get(name).is_some_and(|e| {
            matches!(&e.def, Err(f) if f.kind == ErrorKind::NotFound)
                && e.pending.is_none()
                && e.inv.is_none()
                && e.state.sub == Sub::Dead
                && !self.leftovers.values().any(|l| l.unit == name)
        });
        if gone {
            self.units.remove(name);
        }
        gone
    }

    /// The load failure of a unit as it is now: what daemon-reload read for
    /// it (still pending while it runs), else its definition's.
    fn load_failure(&self, name: &str) -> Option<&Failure> {
        let e = self.units.get(name)?;
        match &e.pending {
            Some(Err(f)) => Some(f),
            Some(Ok(_)) => None,
            None => e.def.as_ref().err(),
        }
    }

    fn reload_units(&mut self) -> Vec<String> {
        let before = self.units.len();
        let listed = self.load_all();
        // Every other loaded unit is read again too: template instances (from
        // their template), targets without a file (default.target), and units
        // whose file is gone or was unmasked, which become not-found.
        let others: Vec<String> = self
            .units
            .keys()
            .filter(|k| !listed.contains(k))
            .cloned()
            .collect();
        for k in others {
            let Ok(n) = UnitName::parse(&k) else {
                continue;
            };
            let def = self.load(&n);
            if let Some(e) = self.units.get_mut(&k) {
                e.file_state.clear();
            }
            self.replace_def(&k, def);
            self.forget_if_gone(&k);
        }
        let mut notes = vec![format!(
            "reloaded unit files: {} units known ({} before)",
            self.units.len(),
            before
        )];
        notes.extend(self.load_errors.iter().cloned());
        notes
    }

    /// Finds (loading on demand, e.g. a template instance) the unit `typed` names.
    fn resolve(&mut self, typed: &str) -> Result<String, Failure> {
        let full = normalize(typed);
        if self.units.contains_key(&full) && !self.forget_if_gone(&full) {
            return Ok(full);
        }
        let name = UnitName::parse(&full).map_err(|e| Failure {
            kind: ErrorKind::BadRequest,
            message: format!("Invalid unit name {typed:?}: {e}"),
        })?;
        let def = self.load(&name);
        if let Err(f) = &def
            && f.kind == ErrorKind::NotFound
        {
            return Err(not_found(&full));
        }
        self.units
            .insert(full.clone(), UnitEntry::new(full.clone(), def));
        Ok(full)
    }

    // ---- jobs ------------------------------------------------------------

    fn job(&mut self, typed: &str, job: Job, reply: oneshot::Sender<Result<Vec<String>, Failure>>) {
        if let Some(f) = template_refusal(&normalize(typed)) {
            let _ = reply.send(Err(f));
            return;
        }
        let name = match self.resolve(typed) {
            Ok(n) => n,
            Err(f) => {
                let _ = reply.send(Err(f));
                return;
            }
        };
        if self.shutting_down && matches!(job, Job::Start | Job::Restart | Job::TryRestart) {
            let _ = reply.send(Err(Failure {
                kind: ErrorKind::Refused,
                message: "the manager is shutting down; no unit may start".into(),
            }));
            return;
        }
        // A unit that cannot be loaded (also one whose file went away or was
        // masked while it runs: its new state waits in `pending`) can only
        // be stopped, signalled or reset, as in systemd.
        if let Some(f) = self.load_failure(&name)
            && !matches!(job, Job::Stop | Job::Kill { .. } | Job::ResetFailed)
        {
            let _ = reply.send(Err(f.clone()));
            return;
        }
        match job {
            Job::Start | Job::Stop | Job::Restart | Job::TryRestart => {
                self.transaction_job(&name, &job, reply);
            }
            Job::Reload => match self.try_feed(&name, Event::Reload) {
                Ok(()) => {
                    if let Some(e) = self.units.get_mut(&name) {
                        e.reload_waiters.push(reply);
                    }
                    self.check_waiters(&name);
                }
                Err(r) => {
                    let _ = reply.send(Err(Failure {
                        kind: ErrorKind::Refused,
                        message: format!("{name}: {r}"),
                    }));
                }
            },
            Job::Kill { signal, whom } => {
                let _ = reply.send(self.kill_job(&name, signal, whom));
            }
            Job::ResetFailed => {
                self.reset_failed(&name);
                let _ = reply.send(Ok(Vec::new()));
            }
        }
    }

    /// A start from a stopped state, through the start limit.
    fn start_event(&mut self, name: &str) {
        let now = self.rt_elapsed();
        let admitted = match self.units.get_mut(name) {
            Some(e) => e.start_limit.admit(now),
            None => return,
        };
        if admitted {
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = None;
            }
            if self.bus_ready(name) {
                self.feed(name, Event::Start);
            } else {
                self.feed(name, Event::BusUnavailable);
            }
        } else {
            if let Some(e) = self.units.get_mut(name) {
                e.failure_note = Some(format!(
                    "start request repeated too quickly (more than StartLimitBurst={} starts within StartLimitIntervalSec={:?}); \
                     run `corral reset-failed {name}` to allow starting it again",
                    e.start_limit.burst, e.start_limit.interval
                ));
            }
            self.feed(name, Event::StartLimitHit);
        }
    }

    fn rt_elapsed(&self) -> Duration {
        Duration::from_micros(now_usec().saturating_sub(self.started_usec))
    }

    fn reset_failed(&mut self, name: &str) {
        if let Some(e) = self.units.get_mut(name) {
            e.start_limit.reset();
            if e.state.sub == Sub::Failed {
                e.state.sub = Sub::Dead;
                e.state.result = ServiceResult::Success;
                e.failure_note = None;
                e.since_usec = now_usec();
            }
        }
    }

    fn kill_job(
        &mut self,
        name: &str,
        signal: i32,
        whom: KillWhom,
    ) -> Result<Vec<String>, Failure> {
        let e = &self.units[name];
        let sig = Signal::try_from(signal).map_err(|_| Failure {
            kind: ErrorKind::BadRequest,
            message: format!("unknown signal number {signal}"),
        })?;
        let refuse = |what: &str| Failure {
            kind: ErrorKind::Refused,
            message: format!(
                "{name} has no {what} to signal (it is {})",
                e.state.sub.as_str()
            ),
        };
        match whom {
            KillWhom::Main => {
                let pid = e.state.main.ok_or_else(|| refuse("main process"))?;
                kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|err| Failure {
                    kind: ErrorKind::Failed,
                    message: format!("cannot send {sig} to main process {pid} of {name}: {err}"),
                })?;
            }
            KillWhom::Control => {
                let pid = e
                    .state
                    .control
                    .and_then(|c| c.pid)
                    .ok_or_else(|| refuse("control process"))?;
                kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|err| Failure {
                    kind: ErrorKind::Failed,
                    message: format!("cannot send {sig} to control process {pid} of {name}: {err}"),
                })?;
            }
            KillWhom::All => {
                // Processes an earlier invocation left behind (KillMode=process)
                // are the unit's too, as in systemd, where they stay in its cgroup.
                let left = self.leftovers.values().filter(|l| l.unit == name);
                let cgroups: Vec<&Cgroup> = e
                    .cgroup()
                    .into_iter()
                    .chain(left.map(|l| &l.cgroup))
                    .collect();
                if cgroups.is_empty() {
                    return Err(refuse("processes"));
                }
                for cg in cgroups {
                    cg.signal_all(sig).map_err(|err| Failure {
                        kind: ErrorKind::Failed,
                        message: format!("cannot signal the processes of {name}: {err}"),
                    })?;
                }
            }
        }
        Ok(Vec::new())
    }

    fn failure_of(&self, name: &str) -> Failure {
        let e = &self.units[name];
        let mut msg = format!("{name} failed (Result: {})", e.state.result.as_str());
        if let Some(n) = &e.failure_note {
            msg.push_str(": ");
            msg.push_str(n);
        } else if let Some((pid, exit)) = e.main_exit {
            msg.push_str(&format!(
                ": main process {pid} {}, status={}",
                exit.code_word(),
                exit.status_word()
            ));
        }
        msg.push_str(&format!(". See `corral status {name}` for details."));
        Failure {
            kind: ErrorKind::Failed,
            message: msg,
        }
    }

    /// Answers the reload jobs of `name` whose reload has ended.
    fn check_waiters(&mut self, name: &str) {
        let Some(e) = self.units.get(name) else {
            return;
        };
        if e.reload_waiters.is_empty() {
            return;
        }
        let done = match e.state.sub {
            Sub::Running | Sub::Exited => Ok(Vec::new()),
            s if s.is_down() => Err(self.failure_of(name)),
            _ => return,
        };
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        for w in std::mem::take(&mut e.reload_waiters) {
            let _ = w.send(done.clone());
        }
    }

    // ---- the state machine -------------------------------------------------

    /// Feeds an event that the state machine never refuses (only `Reload` can be).
    fn feed(&mut self, name: &str, event: Event) {
        let _ = self.try_feed(name, event);
    }

    /// Feeds `event` to the unit's state machine and executes the actions,
    /// including the events they produce; refusals concern the first event only.
    fn try_feed(&mut self, name: &str, event: Event) -> Result<(), Refused> {
        let mut queue = VecDeque::from([event]);
        let mut first = true;
        while let Some(ev) = queue.pop_front() {
            let Some(e) = self.units.get_mut(name) else {
                return Ok(());
            };
            let Ok(def) = e.def.clone() else {
                return Ok(());
            };
            let (next, actions) = match state::next(&def.spec, &e.state, ev) {
                Ok(r) => r,
                Err(r) if first => return Err(r),
                Err(_) => continue,
            };
            first = false;
            let before = e.state.clone();
            if before.sub.active() != next.sub.active() {
                e.since_usec = now_usec();
            }
            e.state = next;
            self.sync_pids(name, &before);
            if before.sub != self.units[name].state.sub {
                self.log_transition(name, &before);
                if self.units[name].state.sub == Sub::Failed {
                    self.start_on_failure(name, &def);
                }
            }
            for a in actions {
                self.execute(name, &def, a, &mut queue);
            }
            if queue.is_empty() {
                self.reconcile(name, &mut queue);
            }
        }
        self.settle_pending(name);
        self.check_waiters(name);
        self.unit_changed(name);
        Ok(())
    }

    /// OnFailure=: the unit entered the failed state, so the listed units are
    /// started, as jobs of their own queued behind the current input (as
    /// systemd does; nobody waits for them).
    fn start_on_failure(&mut self, name: &str, def: &ServiceDef) {
        let list = &def.unit.unit.on_failure;
        if list.is_empty() {
            return;
        }
        let names: Vec<String> = list.iter().map(|n| n.to_string()).collect();
        self.log(
            name,
            &format!("Triggering OnFailure= dependencies: {}.", names.join(" ")),
        );
        for unit in names {
            // The answer goes nowhere: a failure shows in that unit's own status.
            let (reply, _) = oneshot::channel();
            let _ = self.tx.send(Input::Job {
                unit,
                job: Job::Start,
                reply,
            });
        }
    }

    fn log_transition(&self, name: &str, before: &State) {
        let e = &self.units[name];
        let s = &e.state;
        let msg = match s.sub {
            Sub::Running if before.sub.active() != ActiveState::Active => "Started.".to_string(),
            Sub::Exited => "Finished.".to_string(),
            Sub::Dead if before.sub != Sub::Dead => "Stopped.".to_string(),
            Sub::Failed => format!("Failed with result '{}'.", s.result.as_str()),
            Sub::AutoRestart => format!(
                "Failed with result '{}'; scheduling restart.",
                s.result.as_str()
            ),
            _ => return,
        };
        self.log(name, &msg);
    }

    /// Checks what the state machine believes about the cgroup against the kernel.
    fn reconcile(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        let e = &self.units[name];
        if e.state.populated
            && let Some(cg) = e.cgroup()
            && !cg.populated().unwrap_or(true)
        {
            queue.push_back(Event::CgroupEmpty);
        }
    }

    /// Keeps the PID → unit map in step with the unit's main and control processes.
    fn sync_pids(&mut self, name: &str, before: &State) {
        let now = &self.units[name].state;
        let old = [before.main, before.control.and_then(|c| c.pid)];
        let new = [now.main, now.control.and_then(|c| c.pid)];
        for pid in old.into_iter().flatten() {
            if !new.contains(&Some(pid)) && self.pids.get(&pid).is_some_and(|u| u == name) {
                self.pids.remove(&pid);
            }
        }
        for pid in new.into_iter().flatten() {
            self.pids.insert(pid, name.to_string());
        }
    }

    fn reaped(&mut self, pid: Pid, exit: Exit) {
        let Some(name) = self.pids.remove(&pid) else {
            // An orphan we inherited as subreaper, or an aux process (runit log): nothing to do.
            return;
        };
        let Some(e) = self.units.get_mut(&name) else {
            return;
        };
        // An emptied cgroup is noticed by reconcile() after this event, as a CgroupEmpty.
        let def = e.def.clone();
        if e.state.main == Some(pid) {
            e.main_exit = Some((pid, exit));
            if e.state.sub.active() != ActiveState::Deactivating {
                self.log(
                    &name,
                    &format!(
                        "Main process exited, code={}, status={}.",
                        exit.code_word(),
                        exit.status_word()
                    ),
                );
            }
            self.feed(&name, Event::MainExited(exit));
        } else if let Some(c) = e.state.control
            && c.pid == Some(pid)
        {
            let ignore = def
                .as_ref()
                .ok()
                .and_then(|d| d.command(c.cmd, c.index))
                .is_some_and(|cmd| cmd.flags.ignore_failure);
            if exit != Exit::Code(0) && !ignore {
                let e = self.units.get_mut(&name).expect("unit exists");
                e.failure_note = Some(format!(
                    "control process {} ({}) {}, status={}",
                    pid,
                    c.cmd.directive(),
                    exit.code_word(),
                    exit.status_word()
                ));
            }
            self.feed(&name, Event::ControlExited { exit, ignore });
        }
    }

    fn notified(&mut self, pid: Pid, cgroup: Option<PathBuf>, msg: Message) {
        let Some(cg) = cgroup else { return };
        let Some(name) = self
            .units
            .iter()
            .find(|(_, e)| e.cgroup().is_some_and(|c| cg.starts_with(c.path())))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let e = &self.units[&name];
        let Ok(def) = &e.def else { return };
        let allowed = match def.notify_access {
            NotifyAccess::None => false,
            NotifyAccess::Main => e.state.main == Some(pid),
            NotifyAccess::Exec => {
                e.state.main == Some(pid) || e.state.control.and_then(|c| c.pid) == Some(pid)
            }
            NotifyAccess::All => true,
        };
        if !allowed {
            self.log(
                &name,
                &format!(
                    "ignoring notification from PID {pid}: NotifyAccess={:?} does not admit it",
                    def.notify_access
                ),
            );
            return;
        }
        if let Some(t) = msg.status.clone()
            && let Some(e) = self.units.get_mut(&name)
        {
            e.status_text = Some(t);
        }
        if let Some(errno) = msg.errno
            && let Some(e) = self.units.get_mut(&name)
        {
            e.failure_note = Some(format!(
                "the service reported ERRNO={errno} ({})",
                std::io::Error::from_raw_os_error(errno)
            ));
        }
        if let Some(main) = msg.main_pid {
            let inside = self.units[&name]
                .cgroup()
                .is_some_and(|c| c.contains_pid(main).unwrap_or(false));
            if inside {
                self.feed(&name, Event::MainPid(main));
            } else {
                self.log(
                    &name,
                    &format!("ignoring MAINPID={main}: that process is not in the unit's cgroup"),
                );
            }
        }
        if msg.reloading {
            self.feed(&name, Event::Reloading);
        }
        if msg.stopping {
            self.feed(&name, Event::Stopping);
        }
        if msg.ready {
            self.feed(&name, Event::Ready);
        }
    }

    // ---- actions -------------------------------------------------------------

    fn execute(
        &mut self,
        name: &str,
        def: &Arc<ServiceDef>,
        action: Action,
        queue: &mut VecDeque<Event>,
    ) {
        match action {
            Action::NewInvocation => match self.new_invocation(name, def) {
                Ok(()) => self.bus_watch(name, def, queue),
                Err(msg) => {
                    self.log(name, &msg);
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(msg);
                    }
                    queue.push_back(Event::InvocationFailed);
                }
            },
            Action::Spawn { cmd, index } => match self.spawn_cmd(name, def, cmd, index) {
                Ok(pid) => {
                    self.pids.insert(pid, name.to_string());
                    queue.push_back(Event::Spawned { cmd, pid });
                }
                Err(SpawnFailure { message, status }) => {
                    self.log(name, &message);
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(message);
                        if cmd == Cmd::Start && def.spec.kind != state::Kind::Forking {
                            // No PID: the child never became the service.
                            e.main_exit = Some((0, Exit::Code(status)));
                        }
                    }
                    queue.push_back(Event::SpawnFailed { cmd, status });
                }
            },
            Action::FindMainPid => self.find_main_pid(name, queue),
            Action::Signal { whom, sig } => self.signal(name, whom, sig),
            Action::CgroupKill => {
                if let Some(cg) = self.units[name].cgroup()
                    && let Err(err) = cg.kill()
                {
                    self.log(name, &format!("cannot kill the cgroup: {err}"));
                }
            }
            Action::Arm(timer, after) => {
                let after = match (&def.runit, timer) {
                    // runsv restarts at once unless `run` lived less than a second.
                    (Some(_), Timer::Restart) => {
                        let ran = self.units[name]
                            .inv
                            .as_ref()
                            .map_or(Duration::ZERO, |i| i.started.elapsed());
                        RunitService::restart_delay(ran)
                    }
                    _ => after,
                };
                self.arm(name, timer, after);
            }
            Action::Disarm(timer) => {
                if let Some(e) = self.units.get_mut(name)
                    && let Some((_, Some(h))) = e.timers.remove(&timer)
                {
                    h.abort();
                }
            }
            Action::EndInvocation => {
                self.bus_unwatch(def);
                self.end_invocation(name);
            }
            Action::StartAgain => {
                if self.shutting_down {
                    return;
                }
                // Its file went away (or was masked) and daemon-reload saw it:
                // the restart job fails, as it does in systemd.
                if let Some(f) = self.load_failure(name).cloned() {
                    self.log(name, &format!("not restarted: {}", f.message));
                    if let Some(e) = self.units.get_mut(name) {
                        e.state.sub = Sub::Failed;
                        e.since_usec = now_usec();
                        e.failure_note = Some(f.message);
                    }
                    return;
                }
                // A restart is a new start job: conditions and asserts are checked
                // again (a false one leaves the unit skipped or failed, not restarted).
                if self.check_conditions(name, def).is_some() {
                    return;
                }
                let admitted = match self.units.get_mut(name) {
                    Some(e) => e.start_limit.admit(Duration::from_micros(
                        now_usec().saturating_sub(self.started_usec),
                    )),
                    None => return,
                };
                if !admitted {
                    if let Some(e) = self.units.get_mut(name) {
                        e.failure_note = Some(format!(
                            "restarted too often (StartLimitBurst={} within StartLimitIntervalSec={:?}); \
                             run `corral reset-failed {name}` to allow starting it again",
                            e.start_limit.burst, e.start_limit.interval
                        ));
                    }
                    queue.push_back(Event::StartLimitHit);
                } else if self.bus_ready(name) {
                    queue.push_back(Event::Start);
                } else {
                    queue.push_back(Event::BusUnavailable);
                }
            }
        }
    }

    fn arm(&mut self, name: &str, timer: Timer, after: Duration) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let tx = self.tx.clone();
        let unit = name.to_string();
        if after.is_zero() {
            // RestartSec=0: straight into our own queue, with no timer tick and no thread hop.
            let _ = tx.send(Input::Timer {
                unit: unit.clone(),
                timer,
                generation,
            });
            if let Some(e) = self.units.get_mut(name)
                && let Some((_, Some(old))) = e.timers.insert(timer, (generation, None))
            {
                old.abort();
            }
            return;
        }
        let task = self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Input::Timer {
                unit,
                timer,
                generation,
            });
        });
        if let Some(e) = self.units.get_mut(name)
            && let Some((_, Some(old))) = e
                .timers
                .insert(timer, (generation, Some(task.abort_handle())))
        {
            old.abort();
        }
    }

    fn new_invocation(&mut self, name: &str, def: &Arc<ServiceDef>) -> Result<(), String> {
        self.seq += 1;
        let seq = self.seq;
        let id = new_invocation_id();
        // A cgroup left by an earlier invocation is reused only if empty (then it
        // is recreated: never reuse one that had cgroup.kill written).
        let mut cg_name = name.to_string();
        let existing = self.root.path().join(&cg_name);
        if existing.exists() {
            let old = Cgroup::open(&existing).map_err(|e| e.to_string())?;
            if old.populated().unwrap_or(true) {
                cg_name = format!("{name}-{}", &id[..8]);
            } else {
                old.remove()
                    .map_err(|e| format!("cannot remove the stale cgroup of {name}: {e}"))?;
                // Its last process ended just now; its watcher's event is moot.
                let gone: Vec<u64> = self
                    .leftovers
                    .iter()
                    .filter(|(_, l)| l.cgroup.path() == existing)
                    .map(|(seq, _)| *seq)
                    .collect();
                for seq in gone {
                    let l = self.leftovers.remove(&seq).expect("leftover exists");
                    self.watches.cancel(l.watch);
                }
            }
        }
        let e = self.units.get_mut(name).expect("unit exists");
        e.last_invocation = id.clone();
        e.main_exit = None;
        e.status_text = None;
        e.left_behind.clear();
        if e.rate_limit.is_none()
            && let Some(svc) = def.unit.service.as_ref()
            && let (Some(interval), Some(burst)) =
                (svc.log_rate_limit_interval, svc.log_rate_limit_burst)
            && !interval.is_zero()
            && burst > 0
        {
            e.rate_limit = Some(crate::journal::ingest::RateLimiter::new(
                interval,
                u64::from(burst),
            ));
        }
        e.inv = Some(Invocation {
            id: id.clone(),
            seq,
            cgroup: None,
            watch: None,
            pidfile_watch: None,
            log_pipe: None,
            started: Instant::now(),
        });
        let cg = self
            .root
            .create_child(&cg_name)
            .map_err(|err| format!("cannot create the cgroup of {name}: {err}"))?;
        for (file, value) in &def.limits {
            if let Err(err) = cg.set_limit(file, value) {
                self.log(name, &format!("cannot apply {file}={value}: {err}"));
            }
        }
        let events = cg.file("cgroup.events");
        let watch = self
            .watches
            .cgroup_events(&events, name, seq)
            .map_err(|err| format!("cannot watch {}: {err}", events.display()))?;
        let inv = self
            .units
            .get_mut(name)
            .and_then(|e| e.inv.as_mut())
            .expect("invocation exists");
        inv.cgroup = Some(cg);
        inv.watch = Some(watch);
        if let Some(r) = &def.runit
            && let Some(log_run) = &r.log_run
        {
            self.start_runit_log(name, r, log_run)?;
        }
        Ok(())
    }

    /// runit: `log/run` reads what `run` writes on stdout, as under runsv.
    fn start_runit_log(
        &mut self,
        name: &str,
        r: &RunitService,
        log_run: &Path,
    ) -> Result<(), String> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create the log pipe of {name}: {e}"))?;
        let env = self.process_env(name, None, Cmd::Start);
        let mut spec = SpawnSpec::new(to_cstring(&log_run.to_string_lossy(), "log/run path")?);
        spec.argv = vec![to_cstring("./run", "argv")?];
        spec.env = env
            .iter()
            .map(|(k, v)| to_cstring(&format!("{k}={v}"), "environment"))
            .collect::<Result<_, _>>()?;
        spec.cwd = Some(to_cstring(&r.log_dir().to_string_lossy(), "log directory")?);
        spec.cgroup = self.units[name].cgroup().map(|c| c.path().to_path_buf());
        spec.stdin = Stdio::Fd(read);
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create an output pipe for {name}: {e}"))?;
        spec.stdout = Stdio::Fd(out_w);
        spec.stderr = Stdio::Borrowed(spec_stdout_raw(&spec));
        spec.new_session = true;
        let spawned = spawn(&spec).map_err(|e| format!("cannot start log/run of {name}: {e}"))?;
        drop(spec);
        let src = self.source(name, None, spawned.pid, Stream::Stdout);
        self.output.attach(src, out_r);
        if let Some(inv) = self.units.get_mut(name).and_then(|e| e.inv.as_mut()) {
            inv.log_pipe = Some(write);
        }
        Ok(())
    }

    fn end_invocation(&mut self, name: &str) {
        let Some(e) = self.units.get_mut(name) else {
            return;
        };
        let Some(inv) = e.inv.take() else { return };
        if let Some(w) = inv.pidfile_watch {
            self.watches.cancel(w);
        }
        drop(inv.log_pipe);
        if let Some(cg) = inv.cgroup {
            let left = cg.procs_recursive().unwrap_or_default();
            if left.is_empty() {
                if let Some(w) = inv.watch {
                    self.watches.cancel(w);
                }
                if let Err(err) = cg.remove() {
                    self.log(name, &format!("cannot remove the cgroup: {err}"));
                }
            } else {
                // KillMode=process (or an unkillable process): the cgroup stays
                // with them, and its watcher goes on, to remove it once the last
                // one is gone. An exit after the read above still comes as an
                // event: the watch has been armed since the cgroup was created.
                let e = self.units.get_mut(name).expect("unit exists");
                e.left_behind = left.clone();
                if let Some(watch) = inv.watch {
                    self.leftovers.insert(
                        inv.seq,
                        Leftover {
                            unit: name.to_string(),
                            cgroup: cg,
                            watch,
                            pids: left,
                        },
                    );
                }
            }
        }
        self.settle_pending(name);
    }

    /// The cgroup.events of a leftover cgroup changed: remove it once it is empty.
    fn leftover_changed(&mut self, seq: u64) {
        let Some(l) = self.leftovers.get(&seq) else {
            return;
        };
        match l.cgroup.populated() {
            Ok(true) => return,
            Ok(false) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => {
                let unit = l.unit.clone();
                self.log(
                    &unit,
                    &format!("cannot read the left-over cgroup's events: {err}"),
                );
                return;
            }
        }
        let l = self.leftovers.remove(&seq).expect("leftover exists");
        if let Err(err) = l.cgroup.remove() {
            // Someone moved a process into it meanwhile: the watch goes on.
            self.log(
                &l.unit,
                &format!("cannot remove the cgroup left by KillMode=process: {err}"),
            );
            self.leftovers.insert(seq, l);
            return;
        }
        self.watches.cancel(l.watch);
        if let Some(e) = self.units.get_mut(&l.unit) {
            e.left_behind.retain(|p| !l.pids.contains(p));
        }
    }

    fn signal(&mut self, name: &str, whom: Whom, sig: i32) {
        let e = &self.units[name];
        let Ok(signal) = Signal::try_from(sig) else {
            self.log(name, &format!("cannot send unknown signal {sig}"));
            return;
        };
        let pid = match whom {
            Whom::Main => e.state.main,
            Whom::Control => e.state.control.and_then(|c| c.pid),
            Whom::All => {
                if let Some(cg) = e.cgroup()
                    && let Err(err) = cg.signal_all(signal)
                {
                    self.log(name, &format!("cannot send {signal} to the cgroup: {err}"));
                }
                return;
            }
        };
        if let Some(pid) = pid {
            // ESRCH: it is already gone, and its exit is on the way.
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Type=forking: the main PID from PIDFile (trusted only inside the unit's
    /// cgroup), else the only process left.
    fn find_main_pid(&mut self, name: &str, queue: &mut VecDeque<Event>) {
        let e = &self.units[name];
        let Ok(def) = e.def.clone() else { return };
        let Some(cg) = e.cgroup().cloned() else {
            queue.push_back(Event::MainPidRejected { fatal: false });
            return;
        };
        let pid_file = def.unit.service.as_ref().and_then(|s| s.pid_file.clone());
        if let Some(path) = pid_file {
            // A FIFO or /dev/zero as PIDFile= must not block or bloat the manager.
            let read = read_user_file(&path, UserFile::PidFile);
            match read.map(|b| String::from_utf8_lossy(&b).into_owned()) {
                Ok(text) if !text.trim().is_empty() => {
                    if let Some(w) = self
                        .units
                        .get_mut(name)
                        .and_then(|e| e.inv.as_mut())
                        .and_then(|i| i.pidfile_watch.take())
                    {
                        self.watches.cancel(w);
                    }
                    let Ok(pid) = text.trim().parse::<Pid>() else {
                        self.reject_pid_file(
                            name,
                            queue,
                            format!(
                                "PIDFile {} does not contain a PID ({:?}); the service's start failed",
                                path.display(),
                                text.trim()
                            ),
                        );
                        return;
                    };
                    if cg.contains_pid(pid).unwrap_or(false) {
                        queue.push_back(Event::MainPid(pid));
                    } else {
                        self.reject_pid_file(
                            name,
                            queue,
                            format!(
                                "PIDFile {} names PID {pid}, which is not a process of this unit (not in its cgroup {}); \
                                 refusing it: the PIDFile may be stale or shared with another service",
                                path.display(),
                                cg.path().display()
                            ),
                        );
                    }
                }
                // Daemons often write their PIDFile after the parent exited: wait for it
                // (bounded by TimeoutStartSec, which is armed).
                _ => self.watch_pid_file(name, &path),
            }
            return;
        }
        let procs = cg.procs_recursive().unwrap_or_default();
        if procs.len() == 1 {
            queue.push_back(Event::MainPid(procs[0]));
        } else {
            queue.push_back(Event::MainPidRejected { fatal: false });
        }
    }

    fn reject_pid_file(&mut self, name: &str, queue: &mut VecDeque<Event>, msg: String) {
        self.log(name, &msg);
        if let Some(e) = self.units.get_mut(name) {
            e.failure_note = Some(msg);
        }
        queue.push_back(Event::MainPidRejected { fatal: true });
    }

    fn watch_pid_file(&mut self, name: &str, path: &Path) {
        let Some(inv) = self.units.get(name).and_then(|e| e.inv.as_ref()) else {
            return;
        };
        if inv.pidfile_watch.is_some() {
            return;
        }
        let seq = inv.seq;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let watch = match self.watches.pid_file_dir(&dir, name, seq) {
            Ok(w) => w,
            Err(err) => {
                self.log(
                    name,
                    &format!("cannot watch {} for the PIDFile: {err}", dir.display()),
                );
                return;
            }
        };
        // Check once after arming: the file may have appeared in between.
        let _ = self.tx.send(Input::PidFileChanged {
            unit: name.to_string(),
            seq,
        });
        if let Some(inv) = self.units.get_mut(name).and_then(|e| e.inv.as_mut()) {
            inv.pidfile_watch = Some(watch);
        }
    }

    /// The environment of a process of `name` (`cmd` tells which variables apply).
    fn process_env(&self, name: &str, def: Option<&ServiceDef>, cmd: Cmd) -> Vec<(String, String)> {
        let e = &self.units[name];
        let mut env = self.base_env.clone();
        // Later assignments win; repeats are dropped once, at the end (linear).
        let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
            env.push((k.to_string(), v));
        };
        // The manager's block (set-environment) lies below the unit's own variables.
        for (k, v) in self.graph.env_vars() {
            set(&mut env, &k, v);
        }
        if let Some(inv) = &e.inv {
            set(&mut env, "INVOCATION_ID", inv.id.clone());
        }
        if let Some(d) = def
            && d.notify_access != NotifyAccess::None
        {
            set(
                &mut env,
                "NOTIFY_SOCKET",
                self.notify_path.to_string_lossy().into_owned(),
            );
        }
        if cmd != Cmd::Start
            && let Some(main) = e.state.main
        {
            set(&mut env, "MAINPID", main.to_string());
        }
        if matches!(cmd, Cmd::Stop | Cmd::StopPost) {
            set(
                &mut env,
                "SERVICE_RESULT",
                e.state.result.as_str().to_string(),
            );
            if let Some((_, exit)) = e.main_exit {
                set(&mut env, "EXIT_CODE", exit.code_word().to_string());
                set(&mut env, "EXIT_STATUS", exit.status_word());
            }
        }
        if let Some(svc) = def.and_then(|d| d.unit.service.as_ref()) {
            for (k, v) in &svc.environment {
                set(&mut env, k, v.clone());
            }
        }
        super::environment::last_assignments(env)
    }

    fn spawn_cmd(
        &mut self,
        name: &str,
        def: &Arc<ServiceDef>,
        cmd: Cmd,
        index: usize,
    ) -> Result<Pid, SpawnFailure> {
        let svc = def
            .unit
            .service
            .as_ref()
            .ok_or_else(|| format!("{name} has no [Service] section"))?;
        let runit_finish = cmd == Cmd::StopPost
            && index == def.cmds[Cmd::StopPost as usize].len()
            && def.runit.as_ref().is_some_and(|r| r.finish.is_some());
        // The model's composition: PassEnvironment=, Environment=, each
        // EnvironmentFile=, then UnsetEnvironment= (NAME or exact NAME=value).
        // A map: one look-up per PassEnvironment= name stays constant-time.
        let block: HashMap<String, String> = self.graph.env_vars().into_iter().collect();
        let pass_from = |k: &str| block.get(k).cloned().or_else(|| std::env::var(k).ok());
        let env = svc
            .resolve_environment(&self.process_env(name, Some(def), cmd), &pass_from)
            .map_err(|err| match err {
                // The refusal says what to do already.
                UnitError::Refused { .. } => err.to_string(),
                err => format!("{err}; create the EnvironmentFile= or prefix its path with '-'"),
            })?;
        let path_env = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let (program, argv) = if runit_finish {
            let r = def.runit.as_ref().expect("runit unit");
            let finish = r.finish.clone().expect("finish exists");
            let args = match self.units[name].main_exit {
                Some((_, Exit::Code(c))) => [c.to_string(), "0".to_string()],
                Some((_, Exit::Signal { sig, .. })) => ["-1".to_string(), sig.to_string()],
                None => RunitService::finish_args_exec_failed(),
            };
            (
                finish,
                vec!["./finish".to_string(), args[0].clone(), args[1].clone()],
            )
        } else {
            let c = def
                .command(cmd, index)
                .ok_or_else(|| format!("{name}: no {} command #{index}", cmd.directive()))?;
            let program = c.resolve_program(&path_env).map_err(|e| e.to_string())?;
            (program, c.expand(&env))
        };
        let mut spec = SpawnSpec::new(to_cstring(&program.to_string_lossy(), "program path")?);
        if !argv.is_empty() {
            spec.argv = argv
                .iter()
                .map(|a| to_cstring(a, "argument"))
                .collect::<Result<_, _>>()?;
        }
        spec.env = env
            .iter()
            .map(|(k, v)| to_cstring(&format!("{k}={v}"), "environment"))
            .collect::<Result<_, _>>()?;
        if let Some(wd) = &svc.working_directory
            && (!wd.missing_ok || wd.path.is_dir())
        {
            spec.cwd = Some(to_cstring(&wd.path.to_string_lossy(), "working directory")?);
        }
        let e = &self.units[name];
        let inv = e
            .inv
            .as_ref()
            .ok_or_else(|| format!("{name} has no invocation"))?;
        spec.cgroup = inv.cgroup.as_ref().map(|c| c.path().to_path_buf());
        if spec.cgroup.is_none() {
            return Err(format!("{name} has no cgroup to start processes in").into());
        }
        spec.umask = Some(svc.umask);
        spec.nice = svc.nice;
        for (res, lim) in &svc.limits {
            if let Some(resource) = nix_resource(res.resource()) {
                spec.rlimits.push(Rlimit {
                    resource,
                    soft: lim.soft.unwrap_or(libc::RLIM_INFINITY),
                    hard: lim.hard.unwrap_or(libc::RLIM_INFINITY),
                });
            }
        }
        spec.new_session = true;
        // stdout: runit's log pipe, else StandardOutput=; stderr: StandardError=
        // (inherit: wherever stdout goes, except that the journal gets it apart).
        let (stdout, out_r) = match &inv.log_pipe {
            Some(log) if matches!(cmd, Cmd::Start | Cmd::StopPost) => {
                (Stdio::Borrowed(log.as_raw_fd()), None)
            }
            _ => output_stdio(&svc.standard_output, name)?,
        };
        let (stderr, err_r) = match &svc.standard_error {
            // Both into the journal: stderr keeps its own pipe so entries say which stream.
            StdOutput::Inherit if out_r.is_some() || inv.log_pipe.is_some() => {
                output_stdio(&StdOutput::Journal, name)?
            }
            StdOutput::Inherit => match &stdout {
                Stdio::Fd(fd) => (Stdio::Borrowed(fd.as_raw_fd()), None),
                Stdio::Borrowed(fd) => (Stdio::Borrowed(*fd), None),
                Stdio::Null => (Stdio::Null, None),
                Stdio::Inherit => (Stdio::Inherit, None),
            },
            other => output_stdio(other, name)?,
        };
        spec.stdout = stdout;
        spec.stderr = stderr;
        let spawned = spawn(&spec).map_err(|e| SpawnFailure {
            message: format!("{}: {e}", cmd.directive()),
            status: i32::from(e.stage.exit_status()),
        })?;
        drop(spec);
        if let Some(r) = out_r {
            let src = self.source(name, Some(def), spawned.pid, Stream::Stdout);
            self.output.attach(src, r);
        }
        if let Some(r) = err_r {
            let src = self.source(name, Some(def), spawned.pid, Stream::Stderr);
            self.output.attach(src, r);
        }
        Ok(spawned.pid)
    }

    // ---- queries -------------------------------------------------------------

    fn rel_cgroup(&self, cg: &Cgroup) -> String {
        match cg.path().strip_prefix(&self.mount) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => cg.path().display().to_string(),
        }
    }

    fn unit_status(&self, name: &str) -> UnitStatus {
        let e = &self.units[name];
        // A unit that still runs after daemon-reload found its file gone
        // shows as not-found (or masked) while it keeps its old definition.
        let load = match self.load_failure(name) {
            None => LoadState::Loaded,
            Some(f) => load_state_of(f),
        };
        let (fragment, dropins, source, description, kind, restart, mut notes) = match &e.def {
            Ok(d) => (
                d.unit
                    .fragment
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                d.unit
                    .dropins
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                if d.runit.is_some() {
                    "runit"
                } else {
                    "unit-file"
                }
                .to_string(),
                d.unit
                    .unit
                    .description
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
                d.kind_word().to_string(),
                d.restart_word().to_string(),
                d.notes.clone(),
            ),
            Err(_) => (
                String::new(),
                Vec::new(),
                String::new(),
                name.to_string(),
                String::new(),
                String::new(),
                Vec::new(),
            ),
        };
        if e.state.sub == Sub::Failed
            && let Some(n) = &e.failure_note
        {
            notes.push(n.clone());
        }
        if let Ok(d) = &e.def
            && let Some(n) = self.bus_note(d, e.state.sub)
        {
            notes.push(n);
        }
        self.graph_notes(name, &mut notes);
        if !e.left_behind.is_empty() {
            notes.push(format!(
                "left running by KillMode=process: {}",
                e.left_behind
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        let processes = e
            .cgroup()
            .map(|c| procs::describe(c.procs_recursive().unwrap_or_default()))
            .unwrap_or_default();
        UnitStatus {
            name: name.to_string(),
            description,
            load,
            fragment,
            dropins,
            source,
            file_state: e.file_state.clone(),
            kind,
            restart,
            active: wire::active_state(e.state.sub.active()),
            sub: if super::graph::is_target(name) {
                wire::target_sub(e.state.sub.active())
            } else {
                wire::service_sub(e.state.sub)
            },
            result: wire::result(e.state.result),
            since_usec: e.since_usec,
            main_pid: e.state.main,
            control_pid: e.state.control.and_then(|c| c.pid),
            main_exit: e.main_exit.map(|(pid, exit)| MainExit {
                pid,
                code: exit.code_word().to_string(),
                status: exit.status_word(),
            }),
            invocation: e
                .inv
                .as_ref()
                .map_or(e.last_invocation.clone(), |i| i.id.clone()),
            cgroup: e.cgroup().map(|c| self.rel_cgroup(c)),
            processes,
            status_text: e.status_text.clone(),
            restarts: e.state.restarts,
            notes,
            journal: Vec::new(),
        }
    }

    /// What `show` reports for a unit that does not exist, as systemd's
    /// stub: not-found and inactive.
    fn not_found_status(name: &str) -> UnitStatus {
        UnitStatus {
            name: name.to_string(),
            description: name.to_string(),
            load: LoadState::NotFound,
            fragment: String::new(),
            dropins: Vec::new(),
            source: String::new(),
            file_state: String::new(),
            kind: String::new(),
            restart: String::new(),
            active: proto::ActiveState::Inactive,
            sub: wire::service_sub(Sub::Dead),
            result: proto::UnitResult::Success,
            since_usec: 0,
            main_pid: None,
            control_pid: None,
            main_exit: None,
            invocation: String::new(),
            cgroup: None,
            processes: Vec::new(),
            status_text: None,
            restarts: 0,
            notes: Vec::new(),
            journal: Vec::new(),
        }
    }

    fn units_for(&mut self, typed: Vec<String>) -> Vec<Result<UnitStatus, Failure>> {
        typed
            .into_iter()
            .map(|t| self.resolve(&t).map(|n| self.unit_status(&n)))
            .collect()
    }

    fn query(&mut self, query: Query) -> Response {
        match query {
            Query::Manager => {
                let listed: Vec<UnitStatus> = self
                    .units
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|n| self.unit_status(n))
                    .filter(|u| u.active != proto::ActiveState::Inactive)
                    .collect();
                Response::Manager(ManagerStatus {
                    pid: std::process::id() as i32,
                    uid: nix::unistd::getuid().as_raw(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    cgroup_root: self.rel_cgroup(&self.root),
                    cgroup: crate::cgroup::own_cgroup()
                        .map(|p| match p.strip_prefix(&self.mount) {
                            Ok(rel) => format!("/{}", rel.display()),
                            Err(_) => p.display().to_string(),
                        })
                        .unwrap_or_default(),
                    since_usec: self.started_usec,
                    units: listed,
                    load_errors: self.load_errors.clone(),
                    journal: self.output.journal().and_then(|j| j.problem()),
                })
            }
            Query::Status { units } => {
                let mut list = self.units_for(units);
                for u in list.iter_mut().flatten() {
                    u.journal = self.output.last_lines(&u.name, 10);
                }
                Response::Units(list)
            }
            // systemctl show prints a unit that does not exist as not-found
            // and inactive (and exits 0); status says it could not be found.
            Query::Show { units } => Response::Units(
                units
                    .into_iter()
                    .map(|t| match self.resolve(&t) {
                        Ok(n) => Ok(self.unit_status(&n)),
                        Err(f) if f.kind == ErrorKind::NotFound => {
                            Ok(Self::not_found_status(&normalize(&t)))
                        }
                        Err(f) => Err(f),
                    })
                    .collect(),
            ),
            Query::SearchPaths => Response::SearchPaths {
                units: lossy(self.loader.unit_paths()),
                runit: lossy(self.loader.runit_dirs()),
            },
            Query::List => {
                // Units whose file went away and that have stopped since are gone.
                let all: Vec<String> = self.units.keys().cloned().collect();
                for n in &all {
                    self.forget_if_gone(n);
                }
                let names: Vec<String> = self.units.keys().cloned().collect();
                Response::Units(names.iter().map(|n| Ok(self.unit_status(n))).collect())
            }
            Query::Cat { units } => Response::Files(
                units
                    .into_iter()
                    .map(|t| {
                        let r = self.resolve(&t);
                        let unit = r.clone().unwrap_or_else(|_| normalize(&t));
                        let files = r.and_then(|n| self.unit_files(&n));
                        UnitFiles { unit, files }
                    })
                    .collect(),
            ),
            Query::ActiveStates { units } => Response::States(
                units
                    .into_iter()
                    .map(|t| match self.resolve(&t) {
                        Ok(n) => (
                            n.clone(),
                            Some(wire::active_state(self.units[&n].state.sub.active())),
                        ),
                        Err(_) => (normalize(&t), None),
                    })
                    .collect(),
            ),
            Query::DaemonReload => Response::Done(self.reload_units()),
            Query::ResetFailedAll => {
                let names: Vec<String> = self.units.keys().cloned().collect();
                for n in names {
                    self.reset_failed(&n);
                }
                Response::Jobs(Vec::new())
            }
            Query::ListDependencies { unit, reverse, all } => {
                self.list_dependencies(&unit, reverse, all)
            }
            Query::SetEnvironment { assignments } => self.with_env(|env| env.set(&assignments)),
            Query::UnsetEnvironment { names } => self.with_env(|env| env.unset(&names)),
            Query::ImportEnvironment { pairs } => self.with_env(|env| env.set_pairs(pairs)),
            Query::ShowEnvironment => self.show_environment(),
        }
    }

    fn unit_files(&self, name: &str) -> Result<Vec<UnitFile>, Failure> {
        let e = &self.units[name];
        let unit = match &e.def {
            Ok(d) => d.unit.clone(),
            Err(f) => return Err(f.clone()),
        };
        let mut paths: Vec<PathBuf> = unit.files().map(Path::to_path_buf).collect();
        if let Some(r) = &unit_runit(&unit) {
            paths.extend(r.finish.clone());
            paths.extend(r.log_run.clone());
        }
        Ok(paths
            .into_iter()
            .map(|p| UnitFile {
                text: read_user_file(&p, UserFile::Unit)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|err| format!("# {err}\n")),
                path: p.display().to_string(),
            })
            .collect())
    }
}

/// Why a process could not be started, with systemd's exit status for it.
struct SpawnFailure {
    message: String,
    status: i32,
}

impl From<String> for SpawnFailure {
    fn from(message: String) -> SpawnFailure {
        // Everything before exec that is not a SpawnError counts as status 203 (EXEC).
        SpawnFailure {
            message,
            status: 203,
        }
    }
}

/// Where a process's stdout or stderr goes for StandardOutput=/StandardError=,
/// and the read end to hand to the journal when it is a pipe.
fn output_stdio(kind: &StdOutput, unit: &str) -> Result<(Stdio, Option<OwnedFd>), SpawnFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |path: &Path, append: bool, truncate: bool| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .append(append)
            .truncate(truncate)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map(|f| (Stdio::Fd(OwnedFd::from(f)), None))
            .map_err(|e| SpawnFailure {
                message: format!(
                    "cannot open {} for StandardOutput=/StandardError= of {unit}: {e}",
                    path.display()
                ),
                // systemd's EXIT_STDOUT.
                status: 209,
            })
    };
    match kind {
        StdOutput::Null => Ok((Stdio::Null, None)),
        StdOutput::File(p) => open(p, false, false),
        StdOutput::Append(p) => open(p, true, false),
        StdOutput::Truncate(p) => open(p, false, true),
        // journal, journal+console, tty, socket, fd:NAME: the journal (a
        // user manager has no console or tty of its own).
        _ => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
                SpawnFailure::from(format!("cannot create an output pipe for {unit}: {e}"))
            })?;
            Ok((Stdio::Fd(w), Some(r)))
        }
    }
}

fn unit_runit(unit: &crate::unit::Unit) -> Option<RunitService> {
    match &unit.source {
        crate::unit::model::UnitSource::Runit(r) => Some(r.clone()),
        crate::unit::model::UnitSource::File => None,
    }
}

fn spec_stdout_raw(spec: &SpawnSpec) -> std::os::fd::RawFd {
    match &spec.stdout {
        Stdio::Fd(fd) => fd.as_raw_fd(),
        Stdio::Borrowed(fd) => *fd,
        Stdio::Null | Stdio::Inherit => 1,
    }
}

/// The environment every process of the user's services starts from.
fn base_environment() -> Vec<(String, String)> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut env = vec![(
        "PATH".to_string(),
        var("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string()),
    )];
    let home = user
        .as_ref()
        .map(|u| u.dir.display().to_string())
        .or_else(|| var("HOME"));
    if let Some(h) = home {
        env.push(("HOME".into(), h));
    }
    if let Some(u) = &user {
        env.push(("USER".into(), u.name.clone()));
        env.push(("LOGNAME".into(), u.name.clone()));
        env.push(("SHELL".into(), u.shell.display().to_string()));
    }
    let runtime = var("XDG_RUNTIME_DIR").unwrap_or_else(|| format!("/run/user/{uid}"));
    env.push(("XDG_RUNTIME_DIR".into(), runtime));
    // Type=dbus units and the manager watching their names must agree on the bus.
    for k in ["LANG", "LC_ALL", "DBUS_SESSION_BUS_ADDRESS"] {
        if let Some(v) = var(k) {
            env.push((k.into(), v));
        }
    }
    env
}

/// Runs the user manager until SIGTERM/SIGINT (or `shutdown`) has stopped
/// every unit. Errors are about the manager itself (socket, cgroup root); a
/// unit's failure never ends it.
pub async fn run(
    mut opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SupervisorError> {
    reaper::become_subreaper()?;
    let root = crate::cgroup::pick_root(opts.cgroup_root.clone())?;
    let mount = crate::cgroup::find_mount()?;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SupervisorError::Io { op, path, source }
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        // The control socket's directory must be private (0700): only the user reaches the manager.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&opts.runtime_dir)
            .map_err(io("create", &opts.runtime_dir))?;
    }
    std::fs::create_dir_all(&opts.state_dir).map_err(io("create", &opts.state_dir))?;
    let sock_path = opts.runtime_dir.join("control.sock");
    let listener = crate::ipc::bind_private(&sock_path)?;
    let notify_path = opts.runtime_dir.join("notify");
    let notify = NotifySocket::bind(&notify_path)?;

    let (tx, rx) = mpsc::unbounded_channel();
    {
        let tx = tx.clone();
        tokio::spawn(reaper::run(move |pid, exit| {
            let _ = tx.send(Input::Reaped(pid, exit));
        }));
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok((pid, msg)) = notify.recv().await {
                let Some(pid) = pid else { continue };
                let cgroup = crate::cgroup::cgroup_of_pid(pid).ok();
                if tx.send(Input::Notify { pid, cgroup, msg }).is_err() {
                    break;
                }
            }
        });
    }
    {
        use tokio::signal::unix::{SignalKind, signal};
        let sig = |k| {
            signal(k).map_err(|source| SupervisorError::Sys {
                op: "install signal handler",
                source,
            })
        };
        let mut term = sig(SignalKind::terminate())?;
        let mut int = sig(SignalKind::interrupt())?;
        let mut hup = sig(SignalKind::hangup())?;
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = term.recv() => { let _ = tx.send(Input::Shutdown); }
                    _ = int.recv() => { let _ = tx.send(Input::Shutdown); }
                    _ = &mut shutdown => { let _ = tx.send(Input::Shutdown); }
                    _ = hup.recv() => { let _ = tx.send(Input::ReloadUnits); continue; }
                }
                break;
            }
        });
    }

    let specifiers = SpecifierContext::current();
    let unit_paths = if opts.units_dirs.is_empty() {
        Loader::default_unit_paths(&specifiers)
    } else {
        opts.units_dirs.clone()
    };
    let runit_dirs = match &opts.runit_dir {
        Some(d) => vec![d.clone()],
        None => Loader::default_runit_dirs(&specifiers),
    };
    let loader = Loader::new(unit_paths, runit_dirs, specifiers);
    let journal_dir = opts.state_dir.join("journal");
    let journal = match crate::journal::salvage::open_for_manager(&journal_dir).await {
        Ok(h) => Some(h),
        Err(e) => {
            // Services still run; their output is drained instead of stored.
            eprintln!(
                "corrald: cannot open the journal in {}: {e}; unit output will not be stored",
                journal_dir.display()
            );
            None
        }
    };
    // Before anything starts: a predecessor's units must not run unmanaged.
    let own = crate::cgroup::own_cgroup().ok();
    super::leftovers::stop_all(&root, own.as_deref(), journal.as_ref()).await;
    let output = Output::new(journal.clone());
    let mut manager = Manager {
        tx: tx.clone(),
        rt: Handle::current(),
        root: root.clone(),
        mount,
        loader,
        notify_path: notify_path.clone(),
        units: BTreeMap::new(),
        pids: HashMap::new(),
        load_errors: Vec::new(),
        base_env: base_environment(),
        seq: 0,
        timer_generation: 0,
        started_usec: now_usec(),
        shutting_down: false,
        graph: transaction::Graph::new(transaction::load_env(&opts.state_dir)),
        leftovers: HashMap::new(),
        watches: watches::Watches::new(tx.clone(), &Handle::current()).map_err(|source| {
            SupervisorError::Sys {
                op: "create the manager's inotify instance",
                source: source.into(),
            }
        })?,
        output,
        bus: None,
        bus_generation: 0,
    };
    manager.load_all();
    for e in &manager.load_errors {
        eprintln!("corrald: {e}");
    }
    if let Err(msg) = &manager.graph.env_status() {
        eprintln!("corrald: {msg}");
    }
    // default.target pulls in what is enabled and the runit services without `down`.
    let autostart = vec![super::graph::DEFAULT_TARGET.to_string()];

    let (done_tx, done_rx) = oneshot::channel::<()>();
    let rt = Handle::current();
    let thread = std::thread::Builder::new()
        .name("corrald-manager".into())
        .spawn(move || {
            let _guard = rt.enter();
            manager.run(rx);
            let _ = done_tx.send(());
        })
        .map_err(|source| SupervisorError::Sys {
            op: "start the manager thread",
            source,
        })?;

    let handler = Arc::new(control::ControlHandler {
        tx: tx.clone(),
        journal: journal.clone(),
    });
    let server = tokio::spawn(crate::ipc::serve(listener, handler, async move {
        let _ = done_rx.await;
    }));

    let mut started = Vec::new();
    for unit in autostart {
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Input::Job {
                unit: unit.clone(),
                job: Job::Start,
                reply,
            })
            .is_ok()
        {
            started.push((unit, rx));
        }
    }
    for (unit, rx) in started {
        if let Ok(Err(f)) = rx.await {
            eprintln!("corrald: autostart of {unit} failed: {}", f.message);
        }
    }
    if let Some(fd) = opts.ready_fd.take() {
        use std::io::Write;
        let mut f = std::fs::File::from(fd);
        // The reader may be gone; readiness is only a courtesy to it.
        let _ = writeln!(f, "READY=1 {}", sock_path.display());
    }
    drop(tx);
    let served = server.await;
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    let _ = std::fs::remove_file(&sock_path);
    let _ = std::fs::remove_file(&notify_path);
    if let Some(j) = journal
        && let Err(e) = j.shutdown().await
    {
        eprintln!("corrald: the journal did not shut down cleanly: {e}");
    }
    match served {
        Ok(r) => r?,
        Err(e) => return Err(SupervisorError::Thread(e.to_string())),
    }
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SupervisorError::Thread(
            "the manager thread panicked".into(),
        )),
        Err(e) => Err(SupervisorError::Thread(e.to_string())),
    }
}
