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
//!
//! # Layout
//!
//! This file holds the manager's state, its loop and its start-up; the
//! rest is split by concern:
//!
//! - `entry.rs`: one unit: the part every unit has, and its kind's body.
//! - `loading.rs`: unit files into definitions, daemon-reload, name lookup.
//! - `requests.rs`: a job request on one unit (checks, reload, kill, reset-failed).
//! - `job_driver.rs`: start/stop/restart as transactions over the unit graph.
//! - `machine.rs`: feeding the state machines and executing their actions.
//! - `exec.rs`: spawning processes, signals.
//! - `main_pid.rs`: the main PID of forking units (PIDFile=, GuessMainPID=).
//! - `environment.rs`: the environment every spawned process gets.
//! - `invocation.rs`: invocations and their cgroups, and cgroups left behind.
//! - `readopt.rs`: the units' state records, and taking a dead
//!   predecessor's units back at start.
//! - `status.rs`: what status, show, list and the other queries answer.
//! - `inotify.rs`: the inotify hub; `bus.rs`: the session bus (Type=dbus).
//! - `host.rs`: spawn, signals, cgroup kill, timers and the clock, behind
//!   the `Host` trait the table tests (`tests.rs`) implement for themselves.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::cgroup::Cgroup;
use crate::ipc::proto::{ErrorKind, Failure, KillWhom, LoadState, Response};
use crate::journal::catalog;
use crate::unit::{Loader, SpecifierContext, UnitName};

use super::control::Query;
use super::lines::{Line, Named, priority};
use super::notify::{Message, NotifySocket};
use super::output::Output;
use super::state::{Event, Exit, Pid, Timer};
use super::{Options, SupervisorError, control, reaper};
use entry::{Body, Def, UnitEntry};
use environment::base_environment;

mod bus;
mod entry;
mod environment;
mod exec;
mod fd_store;
mod host;
mod inotify;
mod invocation;
mod job_driver;
mod loading;
mod machine;
mod main_pid;
mod readopt;
mod requests;
mod runit_log;
mod socket;
mod status;
#[cfg(test)]
mod tests;
mod timer_clock;
mod timer_unit;

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
        /// The fds sent along (FDSTORE=1).
        fds: Vec<OwnedFd>,
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
    /// A timerfd of the timer units fired, or the wall clock jumped.
    TimerClock {
        /// The CLOCK_REALTIME one (else CLOCK_MONOTONIC).
        realtime: bool,
        /// Its read failed with ECANCELED: the wall clock was set.
        changed: bool,
    },
    /// The local zone's file (/etc/localtime) was replaced, written or
    /// removed: the timers' zone may have changed.
    ZoneFileChanged,
    /// A timer elapsed: start the unit it triggers.
    Trigger {
        /// The timer.
        timer: String,
    },
    /// A job on one unit from the control socket.
    Job {
        /// The unit name as typed.
        unit: String,
        /// What to do.
        job: JobRequest,
        /// Asked for by a user (the control socket), not by the manager
        /// itself (autostart, OnFailure=): RefuseManualStart=/Stop= apply.
        manual: bool,
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
    /// A watched listening fd of a socket unit is readable.
    SocketTraffic {
        /// The socket unit.
        unit: String,
        /// The arming it was watched for: traffic of an earlier one is ignored.
        generation: u64,
    },
    /// The `TimeoutSec=` timer of a socket unit's command fired.
    SocketTimer {
        /// The socket unit.
        unit: String,
        /// Its arming: a cancelled one's is ignored.
        generation: u64,
    },
    /// What the session bus connection learnt (Type=dbus).
    Bus {
        /// The connection it came from: reports of an earlier one are ignored.
        generation: u64,
        /// What it says.
        report: super::dbus::Report,
    },
    /// The timer of a runit unit's logger fired (runit_log.rs).
    RunitLogTimer {
        /// The unit.
        unit: String,
        /// Its arming: an older one's is ignored.
        generation: u64,
    },
    /// SIGHUP: read the unit files again.
    ReloadUnits,
    /// SIGTERM/SIGINT: stop every unit, then end.
    Shutdown,
    /// `daemon-reexec`: end the loop with every unit as it is, its state
    /// record written, for the next image to take it back.
    Reexec,
    /// The units to start at the manager's start have been started.
    AutostartDone,
}

/// What a client asks of one unit (start, stop, kill, ...). The job driver
/// turns start, stop and restart into the jobs of a transaction
/// (`graph::Job`); this is only the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRequest {
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
    /// Reload if active and able to, else restart (`try`: only if running).
    ReloadOrRestart {
        /// Leave a unit that is not running alone.
        only_running: bool,
    },
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
    watch: Option<inotify::Watch>,
    /// The watch on the PIDFile's directory, while a forking unit waits for its PIDFile.
    pidfile_watch: Option<inotify::Watch>,
    /// When the invocation began (the host's clock).
    started: Duration,
}

/// A lingering cgroup: that of an ended invocation that processes still hold
/// (KillMode=process leaves them on purpose): its cgroup.events watcher keeps
/// running, and the cgroup is removed once the last of them is gone. (The
/// units a previous manager left running are "leftovers", supervisor::leftovers.)
struct Lingering {
    /// The unit it belonged to.
    unit: String,
    cgroup: Cgroup,
    /// The invocation's cgroup.events watch.
    watch: inotify::Watch,
    /// The processes it held when the invocation ended.
    pids: Vec<Pid>,
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Why a unit has no definition the manager can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LoadError {
    /// No file defines it.
    #[error("Unit {0} not found.")]
    NotFound(String),
    /// Its file is a link to /dev/null.
    #[error("Unit {0} is masked.")]
    Masked(String),
    /// Its files cannot be read or parsed, or describe nothing runnable.
    #[error("{0}")]
    Bad(String),
}

impl LoadError {
    /// The answer to a client asking for a job on the unit.
    fn failure(&self) -> Failure {
        let kind = match self {
            LoadError::NotFound(_) => ErrorKind::NotFound,
            LoadError::Masked(_) => ErrorKind::Refused,
            LoadError::Bad(_) => ErrorKind::BadUnit,
        };
        Failure {
            kind,
            message: self.to_string(),
        }
    }

    /// The load state `status` and `show` report.
    fn load_state(&self) -> LoadState {
        match self {
            LoadError::NotFound(_) => LoadState::NotFound,
            LoadError::Masked(_) => LoadState::Masked,
            LoadError::Bad(m) => LoadState::Error(m.clone()),
        }
    }
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

/// The manager's state, owned by its thread.
pub struct Manager {
    tx: mpsc::UnboundedSender<Input>,
    rt: Handle,
    root: Cgroup,
    mount: PathBuf,
    loader: Loader,
    notify_path: PathBuf,
    /// Every loaded unit, by its typed name (looked up with a `&str`).
    /// Boxed: the map's nodes are about half full, and an entry inline
    /// left as much room empty as it filled (issue 12's memory budget).
    units: BTreeMap<UnitName, Box<UnitEntry>>,
    pids: HashMap<Pid, String>,
    load_errors: Vec<String>,
    /// HOME, USER, ... for every process.
    base_env: Vec<(String, String)>,
    seq: u64,
    timer_generation: u64,
    /// How deep in [`Manager::try_feed`] we are: timers armed meanwhile wait
    /// in `pending_arms` until the outermost feed is over.
    feeding: u32,
    /// Timers armed during a feed: unit, timer, generation, delay, and when
    /// they were armed (the host's clock).
    pending_arms: Vec<(String, Timer, u64, Duration, Duration)>,
    /// When the manager started (µs since the epoch), for `status`.
    started_usec: u64,
    /// Processes, signals, timers and the clock (host.rs).
    host: Box<dyn host::Host>,
    shutting_down: bool,
    /// `daemon-reexec` asked: the loop ends with the units running.
    reexecuting: bool,
    /// The environment block (`set-environment`), saved in the state directory.
    env: environment::EnvBlock,
    /// Transactions and skipped starts (job_driver.rs).
    graph: job_driver::Graph,
    /// Lingering cgroups: of ended invocations that still hold processes, by invocation seq.
    lingering: HashMap<u64, Lingering>,
    /// The inotify instance behind every cgroup.events and PIDFile watch.
    watches: inotify::Watches,
    /// Where the units' output and the manager's messages about them go.
    output: Output,
    /// The session bus connection of Type=dbus units, once one has started (bus.rs).
    bus: Option<bus::Bus>,
    /// Numbers the bus connections.
    bus_generation: u64,
    /// The kernel timers and host facts of the timer units (timer_unit.rs).
    timer_units: timer_unit::Timers,
    /// The units' state records, for a successor to take them back (readopt.rs).
    records: crate::supervisor::readopt::Records,
    /// runit's `log/run` of each unit that has one, while it runs (runit_log.rs).
    runit_logs: HashMap<String, runit_log::RunitLog>,
    /// Listening fds a predecessor left with the fd holder, by socket unit,
    /// until the socket's bind takes them back (socket.rs).
    held_sockets: HashMap<String, Vec<super::fd_holder::Kept>>,
    /// The `started` record as last written (readopt.rs): its text, one
    /// allocation, where a list of names cost a thousand timers 38 KB.
    started_record: Option<Box<str>>,
    /// A unit without processes changed since `started_record` was written.
    started_stale: bool,
    /// The lingering cgroups last written in their record (readopt.rs).
    lingering_record: Vec<crate::supervisor::readopt::LingeringCgroup>,
}

impl Manager {
    /// A manager with no units loaded yet, within the tokio runtime whose
    /// tasks it will spawn; fails only when the inotify instance cannot be made.
    #[allow(clippy::too_many_arguments)]
    fn new(
        tx: mpsc::UnboundedSender<Input>,
        root: Cgroup,
        mount: PathBuf,
        loader: Loader,
        notify_path: PathBuf,
        env: environment::EnvBlock,
        output: Output,
        host: Box<dyn host::Host>,
        timer_units: timer_unit::Timers,
    ) -> Result<Manager, nix::errno::Errno> {
        let rt = Handle::current();
        Ok(Manager {
            watches: inotify::Watches::new(tx.clone(), &rt)?,
            tx,
            rt,
            root,
            mount,
            loader,
            notify_path: notify_path.clone(),
            units: BTreeMap::new(),
            pids: HashMap::new(),
            load_errors: Vec::new(),
            base_env: base_environment(),
            seq: 0,
            timer_generation: 0,
            feeding: 0,
            pending_arms: Vec::new(),
            started_usec: now_usec(),
            shutting_down: false,
            reexecuting: false,
            env,
            graph: job_driver::Graph::new(),
            lingering: HashMap::new(),
            output,
            bus: None,
            bus_generation: 0,
            host,
            timer_units,
            records: crate::supervisor::readopt::Records::new(
                notify_path.parent().unwrap_or(Path::new("/")),
            ),
            runit_logs: HashMap::new(),
            held_sockets: HashMap::new(),
            started_record: None,
            started_stale: false,
            lingering_record: Vec::new(),
        })
    }

    /// The service part of unit `name`, when it is a service.
    fn service(&self, name: &str) -> Option<&entry::ServiceBody> {
        self.units.get(name).and_then(|e| e.service())
    }

    /// The service part of unit `name`, to change it.
    fn service_mut(&mut self, name: &str) -> Option<&mut entry::ServiceBody> {
        self.units.get_mut(name).and_then(|e| e.service_mut())
    }

    /// A message of the manager about a unit, at LOG_INFO: "unit: msg", as
    /// systemd's unit lines.
    fn log(&self, unit: &str, msg: &str) {
        self.log_at(unit, priority::INFO, msg);
    }

    /// A message of the manager about a unit at a syslog priority.
    fn log_at(&self, unit: &str, priority: u8, msg: &str) {
        self.line(unit, Line::Note(priority, msg.to_string()));
    }

    /// One of the manager's lines about a unit (lines.rs): on stderr and in
    /// the unit's journal, worded and prioritised as systemd does.
    fn line(&self, unit: &str, line: Line) {
        let description = self
            .units
            .get(unit)
            .and_then(|e| e.def.as_ref().ok())
            .and_then(|d| d.unit().unit.description.as_deref());
        let text = line.text(Named { unit, description });
        eprintln!("corrald: {text}");
        if self.output.journal().is_some() {
            let inv = self
                .units
                .get(unit)
                .map(|e| e.invocation_id())
                .unwrap_or_default();
            let id = line.message_id().map_or(0, catalog::id_number);
            self.output
                .manager_entry(unit, &inv, line.priority(), id, text);
        }
    }

    /// Runs the manager loop until a shutdown has stopped every unit.
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        while let Some(input) = rx.blocking_recv() {
            self.input(input);
            self.record_lingering();
            self.flush_started();
            if self.reexecuting {
                // The runtime stopped sending before Reexec, so what is
                // behind it this thread queued for itself while handling
                // what came before: an accepted connection's instance start
                // (socket.rs `queue_job`). Dropped, its connection would
                // close at the exec with nothing served; run, the instance
                // is a unit like any other for the new image to take back.
                let mut ran = false;
                while let Ok(input) = rx.try_recv() {
                    if let Input::Job { manual: false, .. } = input {
                        self.input(input);
                        ran = true;
                    }
                }
                if ran {
                    self.persist_all();
                }
                break;
            }
            // The loggers of runit units end after their units, at the end of their pipes.
            if self.shutting_down
                && self.units.values().all(|u| u.inv().is_none())
                && self.runit_logs.is_empty()
            {
                break;
            }
        }
    }

    /// Writes the state record of every unit, for a successor.
    fn persist_all(&mut self) {
        let names: Vec<String> = self.units.keys().map(|n| n.to_string()).collect();
        for name in &names {
            self.persist(name);
        }
        self.flush_started();
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Reaped(pid, exit) => self.reaped(pid, exit),
            Input::CgroupChanged { seq, .. } if self.lingering.contains_key(&seq) => {
                self.lingering_changed(seq);
            }
            Input::CgroupChanged { unit, seq } => {
                let Some(e) = self.units.get(unit.as_str()) else {
                    return;
                };
                let Some(svc) = e.service() else { return };
                if e.inv().map(|i| i.seq) != Some(seq) {
                    return;
                }
                let populated = e.cgroup().map(|c| self.host.populated(c).unwrap_or(false));
                if populated == Some(false) && svc.state.populated {
                    self.feed(&unit, Event::CgroupEmpty);
                }
            }
            Input::PidFileChanged { unit, seq } => {
                let waiting = self.units.get(unit.as_str()).is_some_and(|e| {
                    e.inv()
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
            Input::Notify {
                pid,
                cgroup,
                msg,
                fds,
            } => self.notified(pid, cgroup, msg, fds),
            Input::Timer {
                unit,
                timer,
                generation,
            } => {
                let current = self
                    .units
                    .get(unit.as_str())
                    .and_then(|e| e.service())
                    .and_then(|s| s.timers.get(&timer))
                    .map(|(g, _)| *g);
                if current == Some(generation) {
                    if let Some(s) = self.service_mut(&unit) {
                        s.timers.remove(&timer);
                        s.deadlines.remove(&timer);
                    }
                    self.feed(&unit, Event::Timeout(timer));
                }
            }
            Input::RunitLogTimer { unit, generation } => self.runit_log_timer(&unit, generation),
            Input::TimerClock { realtime, changed } => self.timer_clock(realtime, changed),
            Input::ZoneFileChanged => self.zone_file_changed(),
            Input::Trigger { timer } => self.trigger(&timer),
            Input::Job {
                unit,
                job,
                manual,
                reply,
            } => self.job(&unit, job, manual, reply),
            Input::Bus { generation, report } => self.bus_report(generation, report),
            Input::SocketTraffic { unit, generation } => self.socket_traffic(&unit, generation),
            Input::SocketTimer { unit, generation } => self.socket_timer(&unit, generation),
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
            Input::Reexec => {
                self.persist_all();
                self.reexecuting = true;
            }
            Input::AutostartDone => self.drop_unclaimed_sockets(),
            Input::Shutdown => {
                self.shutting_down = true;
                // Every unit stops, in the reverse of the start order (job_driver.rs).
                self.shutdown_in_order();
            }
        }
    }
}

/// Runs the user manager until SIGTERM/SIGINT (or `shutdown`) has stopped
/// every unit. Errors are about the manager itself (socket, cgroup root); a
/// unit's failure never ends it.
/// Once the fd holder has exited (told to quit at a clean shutdown), its
/// cgroup goes too, so that a manager that stopped cleanly leaves below its
/// root only what it was given. A holder still running after a few seconds
/// keeps its cgroup and says so: it is ended with the user's subtree.
async fn remove_holder_cgroup(root: &Cgroup) {
    let Ok(cg) = Cgroup::open(root.path().join(super::fd_holder::CGROUP)) else {
        return;
    };
    let gone = tokio::time::timeout(Duration::from_secs(5), cg.wait_empty()).await;
    let removed = match gone {
        Ok(Ok(())) => cg.remove().map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the fd holder did not exit within 5 s".into()),
    };
    if let Err(e) = removed {
        eprintln!(
            "corrald: left the fd holder's cgroup {}: {e}",
            cg.path().display()
        );
    }
}

pub async fn run(
    mut opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SupervisorError> {
    // First, before any thread starts: they all inherit its mask.
    let signals = super::reexec::signal_fd()
        .map_err(std::io::Error::from)
        // SAFETY: the signalfd is moved into the AsyncFd, which alone closes it.
        .and_then(|fd| unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(Into::into))
        .map_err(|source| SupervisorError::Sys {
            op: "open a signalfd for SIGTERM, SIGINT and SIGHUP",
            source,
        })?;
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
    // What a previous image of this process passed (daemon-reexec), and the
    // file a next one is executed from.
    let inherited = super::reexec::Inherited::take();
    let program = super::reexec::program();
    // One cgroup root, one owner: before the socket or any cgroup is touched.
    let claim = super::leftovers::claim_root(
        &root,
        &opts.runtime_dir,
        inherited.claim.map(std::fs::File::from),
    )?;
    let sock_path = opts.runtime_dir.join("control.sock");
    let listener = match inherited.control {
        Some(fd) => {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)
                .and_then(|()| tokio::net::UnixListener::from_std(std))
                .map_err(io("take over the control socket", &sock_path))?
        }
        None => crate::ipc::bind_private(&sock_path)?,
    };
    let notify_path = opts.runtime_dir.join("notify");
    let notify = match inherited.notify {
        Some(fd) => NotifySocket::inherited(&notify_path, fd)?,
        None => NotifySocket::bind(&notify_path)?,
    };
    // Copies for daemon-reexec, open after the server and the notify task drop theirs.
    let passed = |fd: std::os::fd::BorrowedFd<'_>, path: &Path| {
        fd.try_clone_to_owned()
            .map_err(io("duplicate the fd of", path))
    };
    let listener_fd = passed(std::os::fd::AsFd::as_fd(&listener), &sock_path)?;
    let notify_fd = passed(notify.fd(), &notify_path)?;

    let (tx, rx) = mpsc::unbounded_channel();
    let reaper = {
        let tx = tx.clone();
        tokio::spawn(reaper::run(move |pid, exit| {
            let _ = tx.send(Input::Reaped(pid, exit));
        }))
    };
    // systemctl --user's private socket, for the environment calls of
    // packaged units (systemd_private.rs); XDG_RUNTIME_DIR as services get it.
    let systemctl_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::geteuid())));
    let systemctl = super::systemd_private::bind(&systemctl_dir).map(|(listener, path)| {
        let task = tokio::spawn(super::systemd_private::serve(listener, tx.clone()));
        (task, path)
    });
    let notify_task = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(r) = notify.recv().await {
                let Some(pid) = r.pid else { continue };
                let cgroup = crate::cgroup::cgroup_of_pid(pid).ok();
                let input = Input::Notify {
                    pid,
                    cgroup,
                    msg: r.msg,
                    fds: r.fds,
                };
                if tx.send(input).is_err() {
                    break;
                }
            }
        })
    };
    // Set once a SIGTERM/SIGINT was passed on as Shutdown: a daemon-reexec
    // under way then leaves one pending for the new image.
    let shutdown_asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal_task = {
        let tx = tx.clone();
        let asked = shutdown_asked.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                let sig = tokio::select! {
                    r = signals.readable() => {
                        let Ok(mut ready) = r else { break };
                        match ready.get_inner().read_signal() {
                            Ok(Some(info)) => info.ssi_signo as i32,
                            Ok(None) => {
                                ready.clear_ready();
                                continue;
                            }
                            Err(_) => break,
                        }
                    }
                    _ = &mut shutdown => libc::SIGTERM,
                };
                if sig == libc::SIGHUP {
                    let _ = tx.send(Input::ReloadUnits);
                    continue;
                }
                asked.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = tx.send(Input::Shutdown);
                break;
            }
        })
    };

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
    // The pipes' read ends outlive this manager in the fd holder (fd_holder.rs).
    let holder = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| super::fd_holder::start(&exe, &root, &opts.runtime_dir))
        .map_err(|e| {
            eprintln!("corrald: {e}; the units' output pipes will not outlive this manager")
        })
        .ok()
        .map(Arc::new);
    let reexec_asked = Arc::new(tokio::sync::watch::Sender::new(false));
    let reexec = match (&holder, &program) {
        (Some(_), Some(program)) => Some(control::Reexec {
            asked: reexec_asked.clone(),
            program: program.clone(),
        }),
        _ => None,
    };
    let output = Output::new(journal.clone()).with_holder(holder);
    let finish_output = output.clone();
    let mut manager = Manager::new(
        tx.clone(),
        root.clone(),
        mount,
        loader,
        notify_path.clone(),
        environment::EnvBlock::load(&opts.state_dir),
        output,
        Box::new(host::Kernel::new(tx.clone(), Handle::current())),
        timer_unit::Timers::new(tx.clone(), &Handle::current(), opts.state_dir.clone()).map_err(
            |source| SupervisorError::Sys {
                op: "create the timer units' timerfds",
                source,
            },
        )?,
    )
    .map_err(|source| SupervisorError::Sys {
        op: "create the manager's inotify instance",
        source: source.into(),
    })?;
    manager.watch_zone();
    manager.load_all();
    for e in &manager.load_errors {
        eprintln!("corrald: {e}");
    }
    // Before anything starts: a predecessor's units are taken back where
    // their state records say how; the others must not run unmanaged.
    let mut held = manager.output.take_held();
    let kept = manager.readopt_all(&mut held);
    // The pipes held for the dead predecessor are read again once the units
    // are loaded, so that each goes through its unit's rate limiter; until
    // then their writers wait on the full pipe, losing nothing.
    let resumed = manager.resume_output(held);
    if resumed > 0 {
        eprintln!("corrald: took back {resumed} output pipe(s) from the fd holder");
    }
    let own = crate::cgroup::own_cgroup().ok();
    super::leftovers::stop_all(&root, own.as_deref(), &kept, journal.as_ref()).await;
    if let Err(msg) = &manager.env.status() {
        eprintln!("corrald: {msg}");
    }
    // sockets.target listens on the enabled sockets first, so that the
    // services default.target pulls in (with what is enabled and the runit
    // services without `down`) find their sockets there; timers.target
    // starts the timers enabled for it.
    let mut autostart = vec![
        super::graph::SOCKETS_TARGET.to_string(),
        super::graph::DEFAULT_TARGET.to_string(),
        super::graph::TIMERS_TARGET.to_string(),
    ];
    // After a daemon-reexec or a crash: the sockets, timers and targets that
    // were active.
    autostart.extend(super::reexec::take_started(&opts.runtime_dir));

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
        reexec,
    });
    let mut asked = reexec_asked.subscribe();
    let mut server = tokio::spawn(crate::ipc::serve(listener, handler, async move {
        tokio::select! {
            _ = done_rx => {}
            Ok(_) = asked.wait_for(|a| *a) => {}
        }
    }));

    let mut started = Vec::new();
    for unit in autostart {
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Input::Job {
                unit: unit.clone(),
                job: JobRequest::Start,
                manual: false,
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
    let _ = tx.send(Input::AutostartDone);
    if let Some(fd) = opts.ready_fd.take() {
        use std::io::Write;
        let mut f = std::fs::File::from(fd);
        // The reader may be gone; readiness is only a courtesy to it.
        let _ = writeln!(f, "READY=1 {}", sock_path.display());
    }
    let manager_tx = tx.clone();
    drop(tx);
    let mut reexec_wait = reexec_asked.subscribe();
    let served = tokio::select! {
        // First: the server also ends once daemon-reexec is asked.
        biased;
        // The Ref is dropped at once: it holds the value's lock.
        Ok(()) = async { reexec_wait.wait_for(|a| *a).await.map(drop) } => {
                let program = program.clone().unwrap_or_default();
                // Stopped first, so that every exit and notification they
                // passed on is in the queue before Reexec, and what comes
                // after waits in the kernel for the new image.
                // The signal task too: a signal it has not read stays
                // pending in the kernel, through execve, for the new image.
                reaper.abort();
                notify_task.abort();
                signal_task.abort();
                let _ = manager_tx.send(Input::Reexec);
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                let _ = server.await;
                // Every reader stops at the end of a read; what it read is
                // with the writer, its unfinished line with the fd holder.
                finish_output.hand_over().await;
                if let Some(j) = journal {
                    if let Err(e) = j.shutdown().await {
                        eprintln!("corrald: the journal did not shut down cleanly: {e}");
                    }
                    // It may wait for a reader (journal -f) to finish.
                    let store = j.store().clone();
                    let _ = tokio::task::spawn_blocking(move || store.close()).await;
                }
                if shutdown_asked.load(std::sync::atomic::Ordering::SeqCst) {
                    // Passed on before the exec: the units may be mid-stop
                    // and the manager thread gone; the new image does it
                    // again. Every thread blocks SIGTERM: it stays pending.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::this(),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                eprintln!("corrald: executing {} again", program.display());
                let passed = [
                    ("control", std::os::fd::AsFd::as_fd(&listener_fd)),
                    ("notify", std::os::fd::AsFd::as_fd(&notify_fd)),
                    ("claim", claim.lock_fd()),
                ];
                return Err(SupervisorError::Reexec(super::reexec::exec(&program, &passed)));
        }
        served = &mut server => served,
    };
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    // Every unit is stopped: the pipes reach end of file, and their last
    // lines must be with the writer before it shuts down.
    finish_output.drain().await;
    finish_output.quit_holder();
    remove_holder_cgroup(&root).await;
    if let Some((task, path)) = &systemctl {
        task.abort();
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(&sock_path);
    let _ = std::fs::remove_file(&notify_path);
    // Every unit was stopped: nothing is left for a successor to take back.
    super::readopt::Records::new(&opts.runtime_dir).clear();
    let _ = super::reexec::take_started(&opts.runtime_dir);
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
