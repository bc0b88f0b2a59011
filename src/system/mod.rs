//! The system manager, `corrald --system`: root's small side of corral.
//!
//! It starts one user manager (`corrald --user`) per user, as that user, in a
//! delegated cgroup subtree, when the user logs in (PAM module or
//! `corral login`) or at boot when the user lingers; it restarts a manager that
//! dies, and at the last logout stops it and removes everything of the user.
//! It parses no user-written file: all it reads is the user database, its own
//! linger directory and cgroupfs.
//!
//! # Layout
//!
//! - [`cli`]: `corrald --system`'s flags and signal handling.
//! - [`users`]: uid → name, home, shell, supplementary groups (NSS).
//! - [`linger`]: the persisted linger list (`<state-dir>/linger/NAME`).
//! - [`rundir`]: `/run/user/UID`, created and removed only when we own it.
//! - [`manager`]: spawning one user manager into `user-UID/manager/` as the
//!   user, its ready pipe, and its output into the system journal.
//! - [`persist`]: the state a restarted system manager carries on with
//!   (`<runtime-dir>/users.json`).
//! - [`state`]: the single task that owns every user's state (sessions,
//!   linger, manager lifecycle) and handles requests, exits and timers.
//! - [`server`]: the public system socket, decoding requests and checking
//!   SO_PEERCRED before anything reaches the state task.

pub mod cli;
pub mod linger;
pub mod manager;
pub mod persist;
pub mod rundir;
pub mod server;
pub mod state;
pub mod users;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub use state::run;

/// How `corrald --system` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM/SIGINT: exit and leave every user manager running; the state
    /// stays in the runtime directory for the next instance (a restart).
    Keep,
    /// SIGHUP: stop every user manager as at a last logout, remove their
    /// subtrees and the saved state, then exit.
    StopUsers,
}

/// Errors of the system manager.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The user database could not be read.
    #[error("looking up {what} in the user database: {source}")]
    UserDb {
        /// Which user or group.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A name that cannot be a linger file name.
    #[error("{0:?} is not a valid user name")]
    BadUserName(String),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// Spawning the user manager failed.
    #[error("starting the user manager of uid {uid}: {source}")]
    Spawn {
        /// Whose manager.
        uid: u32,
        /// Why it failed.
        #[source]
        source: crate::cgroup::spawn::SpawnError,
    },
    /// Serving the system socket failed.
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    /// A subtree a live manager owns, which was not started by us, is left alone.
    #[error(
        "user-{uid}'s subtree is the cgroup root of {} (pid {}), a manager this system manager \
         did not start: it is left alone and no second manager is started there; stop that one \
         (`kill {}`) for uid {uid} to get one from corrald --system",
        owner.role, owner.pid, owner.pid
    )]
    Owned {
        /// Whose subtree.
        uid: u32,
        /// The manager that owns it.
        owner: crate::cgroup::owner::Owner,
    },
    /// The system journal could not be opened or written.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// How `corrald --system` is configured; [`SystemOptions::default`] is what
/// the flags default to.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// Root of every user's subtree; `None` means `<cgroup2 mount>/corral`.
    pub cgroup_root: Option<PathBuf>,
    /// Where `system.sock` lives (`/run/corral`).
    pub runtime_dir: PathBuf,
    /// Persistent state: linger files and the journal (`/var/lib/corral`).
    pub state_dir: PathBuf,
    /// Parent of the users' XDG_RUNTIME_DIRs (`/run/user`).
    pub user_runtime_base: PathBuf,
    /// The `corrald` binary to start with `--user`; `None` means this one.
    pub user_manager_exe: Option<PathBuf>,
    /// How long a user manager may take to stop after SIGTERM before its
    /// subtree is killed.
    pub stop_timeout: Duration,
    /// A file descriptor to write one line to once the socket listens and the
    /// lingering users' managers have been started.
    pub ready_fd: Option<RawFd>,
}

impl Default for SystemOptions {
    fn default() -> Self {
        SystemOptions {
            cgroup_root: None,
            runtime_dir: PathBuf::from("/run/corral"),
            state_dir: PathBuf::from("/var/lib/corral"),
            user_runtime_base: PathBuf::from("/run/user"),
            user_manager_exe: None,
            stop_timeout: Duration::from_secs(15),
            ready_fd: None,
        }
    }
}
