//! The state task: the one owner of every user's sessions, linger flag and
//! manager lifecycle. Requests, child exits, ready lines and timers all arrive
//! as [`Event`]s on one channel, so no state is shared and no lock is held.
//!
//! A user's manager goes Stopped → Starting → Running; when it dies while
//! wanted it goes Restarting (backoff timer) → Starting, or Failed after a
//! burst of deaths; when no longer wanted it goes Stopping (SIGTERM, then the
//! subtree is killed after the stop timeout) → teardown → Stopped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use super::linger::LingerStore;
use super::manager::{self, Layout};
use super::persist::{self, Proc, SavedManager, SavedUser};
use super::users::{self, UserInfo};
use super::{Shutdown, SystemError, SystemOptions, rundir, server};
use crate::cgroup::owner::Claim;
use crate::ipc::system_proto::{
    ManagerState, SystemErrorKind, SystemRequest, SystemResponse, UserStatus,
};
use crate::journal::{NewEntry, Store, StoreOptions, Writer, WriterHandle, WriterOptions};

/// Deaths within [`BURST_WINDOW`] after which a manager is not restarted.
const BURST_LIMIT: usize = 5;
/// The window in which [`BURST_LIMIT`] deaths mean "give up".
const BURST_WINDOW: Duration = Duration::from_secs(30);
/// First restart delay; doubled for each recent death.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Bound of the system journal's size: user managers' output must not
/// fill the system's disk.
const JOURNAL_MAX_USE: u64 = 64 << 20;
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Everything that can change a user's state.
#[derive(Debug)]
pub enum Event {
    /// A request from the socket, already authorised against SO_PEERCRED.
    Request {
        /// The peer's uid, to filter `Status`.
        peer_uid: u32,
        /// The peer's pid: the process an `OpenSession` belongs to.
        peer_pid: i32,
        /// What it asks.
        request: SystemRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<SystemResponse>,
    },
    /// A manager was spawned (or failed to be) for start number `generation`.
    Started {
        /// Whose manager.
        uid: u32,
        /// Which start this answers; stale ones are ignored.
        generation: u64,
        /// Its PID and journal invocation, or why it could not start and
        /// whether retrying is pointless (another manager owns the subtree).
        result: Result<(u32, u128), (String, bool)>,
        /// Whether this start created /run/user/UID (so we remove it).
        made_rundir: bool,
    },
    /// A manager wrote its ready line.
    Ready {
        /// Whose manager.
        uid: u32,
        /// Which start.
        generation: u64,
    },
    /// The backoff delay after a death has passed.
    RestartDue {
        /// Whose manager.
        uid: u32,
        /// Which start died.
        generation: u64,
    },
    /// A stopping manager did not exit within the stop timeout.
    StopTimeout {
        /// Whose manager.
        uid: u32,
        /// Which start.
        generation: u64,
    },
    /// The process that opened a session exited.
    LeaderExited {
        /// Whose session.
        uid: u32,
        /// The process that opened it.
        pid: i32,
    },
    /// A manager adopted from a previous system manager exited (it is not
    /// our child, so its exit comes through its pidfd, without a status).
    AdoptedExited {
        /// Whose manager.
        uid: u32,
        /// Its PID.
        pid: u32,
    },
    /// The user's subtree and runtime directory have been removed.
    TornDown {
        /// Whose.
        uid: u32,
        /// Why it could not be, if it could not.
        result: Result<(), String>,
    },
}

/// Lifecycle of one user's manager.
#[derive(Debug)]
enum Phase {
    Stopped,
    Starting,
    Running,
    Restarting,
    Stopping,
    TearingDown,
    Failed,
}

/// One user the system manager knows about.
#[derive(Debug)]
struct User {
    info: UserInfo,
    sessions: u32,
    /// Sessions owned by a process (`OpenSession`); each is also counted in
    /// `sessions` and ends when its process exits.
    leaders: Vec<Leader>,
    linger: bool,
    phase: Phase,
    /// The manager's PID from spawn until reaped.
    pid: Option<u32>,
    /// Its start time and journal invocation, for the saved state.
    manager: Option<SavedManager>,
    /// Set for a manager a previous system manager started: not our child,
    /// watched through a pidfd (the task is aborted when it is forgotten).
    adopted: Option<tokio::task::AbortHandle>,
    /// Bumped on every start so that late events of a previous manager are
    /// recognised and dropped.
    generation: u64,
    /// Recent deaths, for backoff and the give-up burst.
    deaths: VecDeque<Instant>,
    /// Restarts since the last login or linger that (re)wanted the manager.
    restarts: u32,
    /// Whether we created /run/user/UID (and so remove it).
    made_rundir: bool,
    /// Why we gave up on this user's manager; cleared by the next login.
    failure: Option<String>,
    /// Why the manager last died, for `status`.
    last_error: Option<String>,
    /// `Login { wait: true }` replies held until ready or failure.
    waiters: Vec<oneshot::Sender<SystemResponse>>,
}

impl User {
    fn wanted(&self) -> bool {
        self.sessions > 0 || self.linger
    }

    /// Answers every waiting `Login { wait: true }` with `ManagerFailed`.
    fn fail_waiters(&mut self, message: &str) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(SystemResponse::Error {
                kind: SystemErrorKind::ManagerFailed,
                message: message.to_string(),
            });
        }
    }

    fn reset_failure(&mut self) {
        self.failure = None;
        if matches!(self.phase, Phase::Failed) {
            self.phase = Phase::Stopped;
        }
    }

    fn state(&self) -> ManagerState {
        match self.phase {
            Phase::Stopped => ManagerState::Stopped,
            Phase::Starting => ManagerState::Starting,
            Phase::Running => ManagerState::Running,
            Phase::Restarting => ManagerState::Restarting,
            Phase::Stopping | Phase::TearingDown => ManagerState::Stopping,
            Phase::Failed => ManagerState::Failed,
        }
    }
}

/// A session owned by a process, watched through a pidfd.
#[derive(Debug)]
struct Leader {
    pid: i32,
    /// Its start time, so a restarted system manager knows it is the same.
    start_time: u64,
    /// The task waiting for the process to exit; aborted at logout.
    watch: tokio::task::AbortHandle,
}

/// The state task's world.
struct System {
    layout: Layout,
    linger: LingerStore,
    stop_timeout: Duration,
    users: BTreeMap<u32, User>,
    events: mpsc::Sender<Event>,
    /// Set when shutting down: nothing is (re)started any more.
    shutting_down: bool,
    /// The system journal: user managers' output.
    journal: WriterHandle,
    /// Events about users, written to the journal in order by one task.
    notes: mpsc::UnboundedSender<(u32, String)>,
    /// The saved state, written to the runtime directory by one task
    /// whenever it changes.
    saved: tokio::sync::watch::Sender<Vec<SavedUser>>,
}

/// Runs the system manager until `shutdown` resolves; then either leaves
/// every user manager running with the state saved for the next instance
/// ([`Shutdown::Keep`]), or stops them all and removes their subtrees.
pub async fn run(
    options: SystemOptions,
    shutdown: impl Future<Output = Shutdown>,
) -> Result<(), SystemError> {
    let layout = Layout::new(&options)?;
    layout.prepare()?;
    std::fs::create_dir_all(&options.runtime_dir).map_err(|source| SystemError::Io {
        op: "create directory",
        path: options.runtime_dir.clone(),
        source,
    })?;
    // One cgroup root, one owner: a second system manager on the same root
    // (or a user manager started by hand on it) is refused here.
    let _claim = Claim::take(
        layout.cgroup_root(),
        &options.runtime_dir.join("cgroup.lock"),
        "corrald --system",
    )?;
    // The previous instance's users: their managers are taken over if they
    // still run where it started them.
    let saved = persist::load(&options.runtime_dir);
    let adoptable: BTreeSet<u32> = saved
        .iter()
        .filter(|u| {
            u.manager
                .as_ref()
                .is_some_and(|m| manager::runs_in_its_cgroup(&layout, u.uid, m.proc))
        })
        .map(|u| u.uid)
        .collect();
    // A previous instance that died left subtrees nobody supervises: end them
    // so that every user starts from a clean, freshly created cgroup — but
    // never one a live manager owns. One that cannot be removed is reported,
    // not fatal: the other users must still be able to log in.
    for uid in layout.leftover_users()? {
        if adoptable.contains(&uid) {
            continue;
        }
        if let Ok(Some(owner)) = crate::cgroup::owner::owner_of(&layout.user_cgroup(uid)) {
            eprintln!("corrald --system: {}", SystemError::Owned { uid, owner });
            continue;
        }
        eprintln!("corrald --system: removing user-{uid}'s subtree left by a previous instance");
        match tokio::time::timeout(options.stop_timeout, manager::teardown(&layout, uid)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("corrald --system: {e}"),
            Err(_) => eprintln!(
                "corrald --system: user-{uid}'s subtree is still not empty after {:?}; \
                 leaving it (its user's next login will fail until it is removed)",
                options.stop_timeout
            ),
        }
    }
    let linger = LingerStore::open(&options.state_dir)?;
    let journal_dir = layout.journal_dir().to_path_buf();
    let journal = tokio::task::spawn_blocking(move || {
        let options = StoreOptions {
            max_use: Some(JOURNAL_MAX_USE),
            ..StoreOptions::default()
        };
        Writer::spawn(
            Store::open(&journal_dir, options)?,
            WriterOptions::default(),
        )
    })
    .await
    .map_err(|e| SystemError::Io {
        op: "join journal task",
        path: layout.journal_dir().to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let (notes, mut notes_rx) = mpsc::unbounded_channel::<(u32, String)>();
    let notes_task = tokio::spawn({
        let journal = journal.clone();
        async move {
            while let Some((uid, message)) = notes_rx.recv().await {
                let entry = NewEntry::manager(&manager::unit_name(uid), 0, message);
                if journal.append(entry).await.is_err() {
                    break;
                }
            }
        }
    });
    let (saved_tx, saved_rx) = tokio::sync::watch::channel(Vec::new());
    let saver = tokio::spawn(save_state(options.runtime_dir.clone(), saved_rx));
    let (tx, mut rx) = mpsc::channel(256);
    let mut system = System {
        layout,
        linger,
        stop_timeout: options.stop_timeout,
        users: BTreeMap::new(),
        events: tx.clone(),
        shutting_down: false,
        journal: journal.clone(),
        notes,
        saved: saved_tx,
    };

    let socket_path = options.runtime_dir.join("system.sock");
    let listener = server::bind_public(&socket_path)?;
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server_task = tokio::spawn(server::serve(listener, tx.clone(), async move {
        let _ = server_stopped.await;
    }));

    let mut sigchld = signal(SignalKind::child()).map_err(|source| SystemError::Io {
        op: "install SIGCHLD handler",
        path: PathBuf::from("/proc/self"),
        source,
    })?;

    system.restore(saved, &adoptable).await;
    system.start_lingering().await;
    system.save();
    if let Some(fd) = options.ready_fd {
        manager::write_ready(fd, &socket_path);
    }

    tokio::pin!(shutdown);
    let mode = loop {
        tokio::select! {
            mode = &mut shutdown => break mode,
            _ = sigchld.recv() => system.reap(),
            Some(event) = rx.recv() => system.handle(event).await,
        }
        system.save();
    };

    // New logins are refused from here on; answers in flight still go out
    // because the state task keeps running below.
    let _ = stop_server.send(());
    let _ = std::fs::remove_file(&socket_path);
    system.shutting_down = true;
    if mode == Shutdown::Keep {
        // Sessions and managers carry on; the next instance takes them over
        // from the saved state (written by the saver as it stands now).
        system.save();
        for user in system.users.values_mut() {
            user.fail_waiters(
                "corrald --system is restarting: your session and user manager are kept, \
                 but this login's wait ended; run `corral login --wait` again",
            );
        }
        drop(system);
        let _ = saver.await;
        let _ = notes_task.await;
        if let Err(e) = journal.shutdown().await {
            eprintln!("corrald --system: closing the journal: {e}");
        }
        return Ok(());
    }
    let uids: Vec<u32> = system.users.keys().copied().collect();
    for uid in uids {
        system.stop(uid);
    }
    while system
        .users
        .values()
        .any(|u| !matches!(u.phase, Phase::Stopped | Phase::Failed))
    {
        tokio::select! {
            _ = sigchld.recv() => system.reap(),
            Some(event) = rx.recv() => system.handle(event).await,
        }
    }
    if let Ok(Err(e)) = server_task.await {
        eprintln!("corrald --system: serving {}: {e}", socket_path.display());
    }
    // Every note is in the writer's queue once the sender is gone; then the
    // writer commits what it holds.
    drop(system);
    let _ = saver.await;
    persist::remove(&options.runtime_dir);
    let _ = notes_task.await;
    if let Err(e) = journal.shutdown().await {
        eprintln!("corrald --system: closing the journal: {e}");
    }
    Ok(())
}

impl System {
    /// Says something about `uid`'s manager: on stderr and in the journal.
    fn note(&self, uid: u32, message: String) {
        eprintln!("corrald --system: {message}");
        let _ = self.notes.send((uid, message));
    }

    async fn start_lingering(&mut self) {
        let names = match self.linger.list() {
            Ok(names) => names,
            Err(e) => {
                eprintln!("corrald --system: reading linger list: {e}");
                return;
            }
        };
        for name in names {
            let looked = tokio::task::spawn_blocking({
                let name = name.clone();
                move || users::lookup_name(&name)
            })
            .await;
            match looked {
                Ok(Ok(Some(info))) => {
                    let uid = info.uid;
                    self.user_entry(info).linger = true;
                    self.ensure_running(uid);
                }
                Ok(Ok(None)) => eprintln!(
                    "corrald --system: linger file {:?} names no user; remove it",
                    self.linger.dir().join(&name)
                ),
                Ok(Err(e)) => eprintln!("corrald --system: {e}"),
                Err(e) => eprintln!("corrald --system: user lookup task failed: {e}"),
            }
        }
    }

    fn user_entry(&mut self, info: UserInfo) -> &mut User {
        self.users.entry(info.uid).or_insert_with(|| User {
            info,
            sessions: 0,
            leaders: Vec::new(),
            linger: false,
            phase: Phase::Stopped,
            pid: None,
            manager: None,
            adopted: None,
            generation: 0,
            deaths: VecDeque::new(),
            restarts: 0,
            made_rundir: false,
            failure: None,
            last_error: None,
            waiters: Vec::new(),
        })
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Request {
                peer_uid,
                peer_pid,
                request,
                reply,
            } => self.request(peer_uid, peer_pid, request, reply).await,
            Event::LeaderExited { uid, pid } => {
                let Some(user) = self.users.get_mut(&uid) else {
                    return;
                };
                let Some(at) = user.leaders.iter().position(|l| l.pid == pid) else {
                    return;
                };
                user.leaders.remove(at);
                user.sessions -= 1;
                let message = format!(
                    "the login process {pid} of uid {uid} exited without closing its session; \
                     {} session(s) left",
                    user.sessions
                );
                let wanted = user.wanted();
                self.note(uid, message);
                if !wanted {
                    self.stop(uid);
                }
            }
            Event::Started {
                uid,
                generation,
                result,
                made_rundir,
            } => self.started(uid, generation, result, made_rundir),
            Event::AdoptedExited { uid, pid } => {
                let Some(user) = self.users.get_mut(&uid) else {
                    return;
                };
                if user.pid == Some(pid) && user.adopted.take().is_some() {
                    self.exited(
                        uid,
                        pid,
                        "exited (its exit status is unknown: a previous system manager \
                         started it)"
                            .to_string(),
                    );
                }
            }
            Event::Ready { uid, generation } => {
                let Some(user) = self.users.get_mut(&uid) else {
                    return;
                };
                if user.generation == generation && matches!(user.phase, Phase::Starting) {
                    user.phase = Phase::Running;
                    let dir = self.layout.user_runtime_dir(uid);
                    for waiter in user.waiters.drain(..) {
                        let _ = waiter.send(SystemResponse::LoggedIn {
                            sessions: user.sessions,
                            runtime_dir: dir.clone(),
                            ready: true,
                        });
                    }
                }
            }
            Event::RestartDue { uid, generation } => {
                let Some(user) = self.users.get(&uid) else {
                    return;
                };
                if user.generation == generation && matches!(user.phase, Phase::Restarting) {
                    if user.wanted() && !self.shutting_down {
                        self.spawn_manager(uid);
                    } else {
                        self.begin_teardown(uid);
                    }
                }
            }
            Event::StopTimeout { uid, generation } => {
                let Some(user) = self.users.get(&uid) else {
                    return;
                };
                if user.generation == generation && matches!(user.phase, Phase::Stopping) {
                    self.note(
                        uid,
                        format!(
                            "user manager of uid {uid} did not stop within {:?}; \
                             killing its subtree",
                            self.stop_timeout
                        ),
                    );
                    // The manager is reaped by the SIGCHLD loop once the kill
                    // lands; teardown then removes the subtree.
                    if let Err(e) = manager::kill_user(&self.layout, uid) {
                        eprintln!("corrald --system: {e}");
                    }
                }
            }
            Event::TornDown { uid, result } => {
                if let Err(e) = result {
                    eprintln!("corrald --system: removing uid {uid}'s subtree: {e}");
                }
                let Some(user) = self.users.get_mut(&uid) else {
                    return;
                };
                if let Some(message) = user.failure.clone() {
                    user.phase = Phase::Failed;
                    user.fail_waiters(&message);
                    return;
                }
                user.phase = Phase::Stopped;
                if user.wanted() && !self.shutting_down {
                    // A login arrived while we were tearing down.
                    self.ensure_running(uid);
                } else {
                    // `stop` answered every waiter already; a login that
                    // waited must never be left hanging with its user gone.
                    let message = self.ended_message(uid);
                    if let Some(mut user) = self.users.remove(&uid) {
                        user.fail_waiters(&message);
                    }
                }
            }
        }
    }

    /// Registers a session of `uid`, owned by process `leader` if given.
    async fn login(
        &mut self,
        uid: u32,
        wait: bool,
        leader: Option<i32>,
        reply: oneshot::Sender<SystemResponse>,
    ) {
        let response = match self.lookup(uid).await {
            Err(e) => e,
            Ok(info) => {
                let watch = leader.and_then(|pid| self.watch_leader(uid, pid));
                let user = self.user_entry(info);
                user.sessions += 1;
                if let Some(leader) = watch {
                    user.leaders.push(leader);
                }
                // A new login is a new chance, as systemd's next start
                // after reset-failed.
                user.reset_failure();
                self.ensure_running(uid);
                let user = &mut self.users.get_mut(&uid).expect("just inserted");
                if wait && !matches!(user.phase, Phase::Running) {
                    user.waiters.push(reply);
                    return;
                }
                SystemResponse::LoggedIn {
                    sessions: user.sessions,
                    runtime_dir: self.layout.user_runtime_dir(uid),
                    ready: matches!(user.phase, Phase::Running),
                }
            }
        };
        let _ = reply.send(response);
    }

    /// Watches `pid`, the process opening a session, so the session ends
    /// when it exits; `None` (a session that lasts until logout) if it
    /// cannot be watched.
    fn watch_leader(&self, uid: u32, pid: i32) -> Option<Leader> {
        let start_time = Proc::of(pid as u32)?.start_time;
        let watch = self.watch_pid(pid, Event::LeaderExited { uid, pid })?;
        Some(Leader {
            pid,
            start_time,
            watch,
        })
    }

    /// Sends `exit` when process `pid` exits, through a pidfd (it need not
    /// be our child); `None` if it cannot be watched.
    fn watch_pid(&self, pid: i32, exit: Event) -> Option<tokio::task::AbortHandle> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            eprintln!(
                "corrald --system: cannot watch process {pid} ({})",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, the
        // same fd, until the AsyncFd drops it.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        let fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("corrald --system: watching process {pid}: {e}");
                return None;
            }
        };
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            // A pidfd becomes readable when its process exits.
            if fd.readable().await.is_ok() {
                let _ = events.send(exit).await;
            }
        });
        Some(task.abort_handle())
    }

    async fn request(
        &mut self,
        peer_uid: u32,
        peer_pid: i32,
        request: SystemRequest,
        reply: oneshot::Sender<SystemResponse>,
    ) {
        let response = match request {
            SystemRequest::Login { uid, wait } => return self.login(uid, wait, None, reply).await,
            SystemRequest::OpenSession { uid, wait } => {
                return self.login(uid, wait, Some(peer_pid), reply).await;
            }
            SystemRequest::Logout { uid } => match self.users.get_mut(&uid) {
                Some(user) if user.sessions > 0 => {
                    // The caller's own session first; then one not owned by a
                    // process; else (root or the user forcing it) the oldest.
                    let untied = user.sessions as usize > user.leaders.len();
                    let own = user.leaders.iter().position(|l| l.pid == peer_pid);
                    if let Some(at) = own.or((!untied).then_some(0)) {
                        user.leaders.remove(at).watch.abort();
                    }
                    user.sessions -= 1;
                    let stopping = !user.wanted();
                    let sessions = user.sessions;
                    if stopping {
                        self.stop(uid);
                    }
                    SystemResponse::LoggedOut { sessions, stopping }
                }
                _ => SystemResponse::Error {
                    kind: SystemErrorKind::NoSession,
                    message: format!("uid {uid} has no open session to log out"),
                },
            },
            SystemRequest::EnableLinger { uid } => match self.lookup(uid).await {
                Err(e) => e,
                Ok(info) => match self.linger_blocking(info.name.clone(), true).await {
                    Err(e) => internal(e),
                    Ok(()) => {
                        let user = self.user_entry(info);
                        user.linger = true;
                        user.reset_failure();
                        self.ensure_running(uid);
                        SystemResponse::Linger { enabled: true }
                    }
                },
            },
            SystemRequest::DisableLinger { uid } => match self.lookup(uid).await {
                Err(e) => e,
                Ok(info) => match self.linger_blocking(info.name.clone(), false).await {
                    Err(e) => internal(e),
                    Ok(()) => {
                        if let Some(user) = self.users.get_mut(&uid) {
                            user.linger = false;
                            if !user.wanted() {
                                self.stop(uid);
                            }
                        }
                        SystemResponse::Linger { enabled: false }
                    }
                },
            },
            SystemRequest::Status { uid } => {
                let mut shown = Vec::new();
                for (id, user) in &self.users {
                    if uid.is_some_and(|want| want != *id) || (peer_uid != 0 && peer_uid != *id) {
                        continue;
                    }
                    shown.push(UserStatus {
                        uid: *id,
                        name: user.info.name.clone(),
                        sessions: user.sessions,
                        linger: user.linger,
                        state: user.state(),
                        manager_pid: user.pid,
                        restarts: user.restarts,
                        runtime_dir: self.layout.user_runtime_dir(*id),
                        cgroups: Vec::new(),
                        last_error: user.failure.clone().or_else(|| user.last_error.clone()),
                    });
                }
                // Reading cgroupfs is a syscall per file: keep it off the runtime.
                let layout = self.layout.clone();
                let task = tokio::task::spawn_blocking(move || {
                    for status in &mut shown {
                        status.cgroups = layout.tree(status.uid);
                    }
                    shown
                });
                tokio::spawn(async move {
                    if let Ok(shown) = task.await {
                        let _ = reply.send(SystemResponse::Status(shown));
                    }
                });
                return;
            }
        };
        let _ = reply.send(response);
    }

    /// Writes or removes a linger file off the runtime.
    async fn linger_blocking(&self, name: String, enable: bool) -> Result<(), SystemError> {
        let store = self.linger.clone();
        let task = tokio::task::spawn_blocking(move || {
            if enable {
                store.enable(&name)
            } else {
                store.disable(&name)
            }
        });
        task.await.unwrap_or_else(|e| {
            Err(SystemError::Io {
                op: "join linger task",
                path: self.linger.dir().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })
        })
    }

    async fn lookup(&self, uid: u32) -> Result<UserInfo, SystemResponse> {
        if let Some(user) = self.users.get(&uid) {
            return Ok(user.info.clone());
        }
        match tokio::task::spawn_blocking(move || users::lookup_uid(uid)).await {
            Ok(Ok(Some(info))) => Ok(info),
            Ok(Ok(None)) => Err(SystemResponse::Error {
                kind: SystemErrorKind::NoSuchUser,
                message: format!("uid {uid} is not in the user database (getpwuid found nothing)"),
            }),
            Ok(Err(e)) => Err(internal(e)),
            Err(e) => Err(SystemResponse::Error {
                kind: SystemErrorKind::Internal,
                message: format!("user lookup task failed: {e}"),
            }),
        }
    }

    /// Starts the manager of a user that wants one, unless it runs or is on
    /// its way.
    fn ensure_running(&mut self, uid: u32) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        match user.phase {
            Phase::Stopped => {
                user.restarts = 0;
                user.deaths.clear();
                self.spawn_manager(uid);
            }
            // Stopping/teardown: `TornDown` restarts it since it is wanted again.
            Phase::Starting
            | Phase::Running
            | Phase::Restarting
            | Phase::Stopping
            | Phase::TearingDown
            | Phase::Failed => {}
        }
    }

    fn spawn_manager(&mut self, uid: u32) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        user.generation += 1;
        user.phase = Phase::Starting;
        let generation = user.generation;
        let info = user.info.clone();
        let layout = self.layout.clone();
        let events = self.events.clone();
        let journal = self.journal.clone();
        tokio::spawn(async move {
            let base = layout.user_runtime_base().to_path_buf();
            let gid = info.gid;
            let rundir = tokio::task::spawn_blocking(move || rundir::ensure(&base, uid, gid)).await;
            let (made_rundir, result) = match rundir {
                Ok(Ok(made)) => (made, manager::start(&layout, &info, &journal).await),
                Ok(Err(e)) => (false, Err(e)),
                Err(e) => (
                    false,
                    Err(SystemError::Io {
                        op: "join runtime directory task",
                        path: layout.user_runtime_dir(uid),
                        source: std::io::Error::other(e.to_string()),
                    }),
                ),
            };
            let (result, ready) = match result {
                Ok(started) => (Ok((started.pid, started.invocation)), Some(started.ready)),
                Err(e) => {
                    let owned = matches!(e, SystemError::Owned { .. });
                    (Err((e.to_string(), owned)), None)
                }
            };
            let _ = events
                .send(Event::Started {
                    uid,
                    generation,
                    result,
                    made_rundir,
                })
                .await;
            if let Some(ready) = ready
                && ready.await.is_ok()
            {
                let _ = events.send(Event::Ready { uid, generation }).await;
            }
        });
    }

    fn started(
        &mut self,
        uid: u32,
        generation: u64,
        result: Result<(u32, u128), (String, bool)>,
        made_rundir: bool,
    ) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        // Ours to remove even if this start is stale or failed.
        user.made_rundir |= made_rundir;
        if user.generation != generation {
            return;
        }
        match result {
            Ok((pid, invocation)) => {
                user.pid = Some(pid);
                user.manager = Proc::of(pid).map(|proc| SavedManager {
                    proc,
                    invocation: format!("{invocation:032x}"),
                });
                let stopping = matches!(user.phase, Phase::Stopping);
                self.note(
                    uid,
                    format!("started user manager of uid {uid} as pid {pid}"),
                );
                if stopping {
                    // Logged out while it was being spawned.
                    self.terminate(uid);
                }
                // It may have died before we knew its PID: its SIGCHLD is gone.
                self.reap();
            }
            Err((message, hopeless)) => {
                let stopping = matches!(user.phase, Phase::Stopping);
                self.note(uid, message.clone());
                if stopping {
                    self.begin_teardown(uid);
                } else if hopeless {
                    // Retrying cannot help while the other manager runs.
                    self.fail(uid, message);
                } else {
                    self.died(uid, message);
                }
            }
        }
    }

    /// Reaps every manager that exited; called on SIGCHLD.
    fn reap(&mut self) {
        // An adopted manager is not our child: its pidfd reports its exit.
        let pids: Vec<(u32, u32)> = self
            .users
            .iter()
            .filter(|(_, u)| u.adopted.is_none())
            .filter_map(|(uid, u)| u.pid.map(|pid| (*uid, pid)))
            .collect();
        for (uid, pid) in pids {
            let status = match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
                Ok(other) => format!("changed state: {other:?}"),
                Err(e) => format!("could not be waited for: {e}"),
            };
            self.exited(uid, pid, status);
        }
    }

    /// `uid`'s manager `pid` has exited, as `status` says.
    fn exited(&mut self, uid: u32, pid: u32, status: String) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        user.pid = None;
        user.manager = None;
        let stopping = matches!(user.phase, Phase::Stopping);
        self.note(
            uid,
            format!("user manager of uid {uid} (pid {pid}) {status}"),
        );
        if stopping {
            self.begin_teardown(uid);
        } else {
            self.died(uid, format!("the user manager of uid {uid} {status}"));
        }
    }

    /// Hands the current state to the saver task (it writes only changes).
    fn save(&self) {
        let users: Vec<SavedUser> = self
            .users
            .iter()
            .map(|(uid, u)| SavedUser {
                uid: *uid,
                untied_sessions: u.sessions.saturating_sub(u.leaders.len() as u32),
                leaders: u
                    .leaders
                    .iter()
                    .map(|l| Proc {
                        pid: l.pid as u32,
                        start_time: l.start_time,
                    })
                    .collect(),
                linger: u.linger,
                manager: u.pid.and(u.manager.clone()),
                made_rundir: u.made_rundir,
            })
            .collect();
        self.saved.send_if_modified(|old| {
            let changed = *old != users;
            if changed {
                *old = users;
            }
            changed
        });
    }

    /// Takes over the users a previous instance left in `saved`: their
    /// sessions whose login processes still run, their linger flag, and
    /// their managers in `adoptable` (still running where they were
    /// started), which are watched through pidfds instead of restarted.
    async fn restore(&mut self, saved: Vec<SavedUser>, adoptable: &BTreeSet<u32>) {
        for saved in saved {
            let uid = saved.uid;
            let info = match tokio::task::spawn_blocking(move || users::lookup_uid(uid)).await {
                Ok(Ok(Some(info))) => info,
                _ => {
                    eprintln!(
                        "corrald --system: uid {uid} of the saved state is not in the user \
                         database; its subtree was treated as a leftover"
                    );
                    continue;
                }
            };
            let mut leaders = Vec::new();
            let mut gone = 0;
            for leader in &saved.leaders {
                match leader
                    .alive()
                    .then(|| self.watch_leader(uid, leader.pid as i32))
                {
                    Some(Some(watch)) => leaders.push(watch),
                    _ => gone += 1,
                }
            }
            let adopted = match &saved.manager {
                Some(m) if adoptable.contains(&uid) => {
                    let invocation = u128::from_str_radix(&m.invocation, 16).unwrap_or_default();
                    if let Err(e) =
                        manager::adopt_output(uid, m.proc.pid, invocation, &self.journal)
                    {
                        eprintln!("corrald --system: {e}; its output is not recorded");
                    }
                    let exit = Event::AdoptedExited {
                        uid,
                        pid: m.proc.pid,
                    };
                    self.watch_pid(m.proc.pid as i32, exit)
                        .map(|watch| (m.clone(), watch))
                }
                _ => None,
            };
            let user = self.user_entry(info);
            user.sessions = saved.untied_sessions + leaders.len() as u32;
            user.leaders = leaders;
            user.linger = saved.linger;
            user.made_rundir = saved.made_rundir;
            let message = match adopted {
                Some((m, watch)) => {
                    user.phase = Phase::Running;
                    user.pid = Some(m.proc.pid);
                    user.manager = Some(m.clone());
                    user.adopted = Some(watch);
                    format!(
                        "took over the user manager of uid {uid} (pid {}) from the previous \
                         system manager; {} session(s){}",
                        m.proc.pid,
                        user.sessions,
                        if gone > 0 {
                            format!(", {gone} ended while no system manager ran")
                        } else {
                            String::new()
                        }
                    )
                }
                None => format!(
                    "the user manager of uid {uid} did not survive the previous system \
                     manager; {} session(s)",
                    user.sessions
                ),
            };
            let wanted = user.wanted();
            let running = user.adopted.is_some();
            self.note(uid, message);
            match (wanted, running) {
                (true, false) => self.ensure_running(uid),
                (false, true) => self.stop(uid),
                // Nothing runs: remove what is left (its runtime directory).
                (false, false) => self.begin_teardown(uid),
                (true, true) => {}
            }
        }
    }

    /// A manager died (or failed to start) while it should have run.
    fn died(&mut self, uid: u32, why: String) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        user.pid = None;
        user.last_error = Some(why.clone());
        if !user.wanted() || self.shutting_down {
            self.begin_teardown(uid);
            return;
        }
        let now = Instant::now();
        user.deaths.push_back(now);
        while user
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > BURST_WINDOW)
        {
            user.deaths.pop_front();
        }
        if user.deaths.len() >= BURST_LIMIT {
            let message = format!(
                "{why}; it died {} times within {BURST_WINDOW:?}, so it is not restarted \
                 until the next login (its output: `corral journal -D {} -u {}`)",
                user.deaths.len(),
                self.layout.journal_dir().display(),
                manager::unit_name(uid)
            );
            self.note(uid, message.clone());
            self.fail(uid, message);
            return;
        }
        let shift = (user.deaths.len() - 1).min(10) as u32;
        let delay = (BACKOFF_BASE * 2u32.pow(shift)).min(BACKOFF_MAX);
        user.phase = Phase::Restarting;
        user.restarts += 1;
        let generation = user.generation;
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { uid, generation }).await;
        });
    }

    /// Gives up on a user's manager: removes what it left, then answers its
    /// waiters with `message` and keeps it listed as failed.
    fn fail(&mut self, uid: u32, message: String) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        user.failure = Some(message);
        self.begin_teardown(uid);
    }

    /// Stops a user's manager: SIGTERM now, the subtree killed after the
    /// stop timeout, everything removed once it has exited.
    fn stop(&mut self, uid: u32) {
        let message = self.ended_message(uid);
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        // Whatever the phase (starting, restarting after a crash, stopping
        // while a login came and went): the sessions those logins waited
        // for are over, so nothing will answer them later.
        user.fail_waiters(&message);
        match user.phase {
            Phase::Starting | Phase::Running => {
                user.phase = Phase::Stopping;
                // Without a PID it is still being spawned: `started` sends the
                // SIGTERM once the PID is known.
                if user.pid.is_some() {
                    self.terminate(uid);
                }
            }
            Phase::Restarting | Phase::Failed => self.begin_teardown(uid),
            Phase::Stopped | Phase::Stopping | Phase::TearingDown => {}
        }
    }

    /// What a login still waiting for `uid`'s manager is told when the
    /// manager is stopped instead.
    fn ended_message(&self, uid: u32) -> String {
        if self.shutting_down {
            format!(
                "corrald --system is shutting down: uid {uid}'s session ended before its \
                 user manager was ready"
            )
        } else {
            format!(
                "uid {uid}'s session ended (its last session was closed) before its user \
                 manager was ready"
            )
        }
    }

    /// SIGTERM to a stopping manager (it stops its units, then exits), and the
    /// timer after which its whole subtree is killed.
    fn terminate(&mut self, uid: u32) {
        let Some(user) = self.users.get(&uid) else {
            return;
        };
        let Some(pid) = user.pid else { return };
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let generation = user.generation;
        let events = self.events.clone();
        let timeout = self.stop_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = events.send(Event::StopTimeout { uid, generation }).await;
        });
    }

    fn begin_teardown(&mut self, uid: u32) {
        let Some(user) = self.users.get_mut(&uid) else {
            return;
        };
        user.phase = Phase::TearingDown;
        let made_rundir = std::mem::take(&mut user.made_rundir);
        let layout = self.layout.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut result = manager::teardown(&layout, uid)
                .await
                .map_err(|e| e.to_string());
            if made_rundir {
                let base = layout.user_runtime_base().to_path_buf();
                match tokio::task::spawn_blocking(move || rundir::remove(&base, uid)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e.to_string()),
                    Err(e) => result = Err(e.to_string()),
                }
            }
            let _ = events.send(Event::TornDown { uid, result }).await;
        });
    }
}

fn internal(e: SystemError) -> SystemResponse {
    SystemResponse::Error {
        kind: SystemErrorKind::Internal,
        message: e.to_string(),
    }
}

/// Writes every new version of the saved state, off the runtime, until the
/// state task is gone (the last version is written before it returns).
async fn save_state(dir: PathBuf, mut rx: tokio::sync::watch::Receiver<Vec<SavedUser>>) {
    while rx.changed().await.is_ok() {
        let users = rx.borrow_and_update().clone();
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || persist::save(&dir, &users)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("corrald --system: saving the users' state: {e}"),
            Err(e) => eprintln!("corrald --system: saving the users' state: {e}"),
        }
    }
}
