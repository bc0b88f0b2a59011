//! The user manager (`corrald --user`).
//!
//! - [`state`]: the lifecycle of one service as a pure function, table-tested;
//!   [`target`]: the same for a target; [`lines`]: what the manager logs
//!   about a unit's changes, worded as systemd's.
//! - [`manager`]: the one thread that owns every unit's state; it executes the
//!   state machine's actions (spawn into a fresh cgroup, signals, timers) and
//!   turns what happens (exits, empty cgroups, notify messages, timers,
//!   control requests) into events.
//! - [`timer`]: timer units as a pure machine, and their `Persistent=` stamps.
//! - [`service`]: a loaded unit turned into what the manager runs.
//! - [`socket`]: the socket unit kind (binding, fd passing, its state
//!   machine); not driven by the manager yet.
//! - [`reaper`], [`notify`], [`output`], [`control`]: the event sources and
//!   sinks around it (SIGCHLD, NOTIFY_SOCKET, stdout/stderr pipes, the
//!   control socket).
//! - [`dbus`]: a minimal D-Bus client; the manager's one session-bus
//!   connection watches the `BusName=` of Type=dbus units.
//! - [`systemd_private`]: `$XDG_RUNTIME_DIR/systemd/private`, where
//!   `systemctl --user set-environment` (and unset-, import-) reaches the
//!   manager's environment block, as packaged units' `ExecStartPost=` do.
//! - [`procs`]: reading process command lines from /proc for `status`.
//! - [`process_setup`] (with [`directories`], [`credentials`]): what a
//!   unit's process gets from systemd.exec(5) settings before its spawn
//!   (`RuntimeDirectory=`, `LoadCredential=`, `StandardInput=data`, ...)
//!   and what is undone when it stops.
//! - [`fd_holder`]: the process that keeps the services' output pipes
//!   open across a manager's death, and the manager's client of it.
//! - [`readopt`]: the per-unit state records a manager leaves in its
//!   runtime directory, and a successor's decision to take a unit back.
//! - [`reexec`]: `daemon-reexec`, the manager executing its binary again
//!   with the fds it passes to the new image.
//! - [`wire`]: the one conversion of the manager's unit states into the
//!   control protocol's words.
//!
//! docs/ARCHITECTURE.md describes the loops and who owns which state.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub mod atomic_file;
pub mod cli;
pub mod control;
pub mod credentials;
pub mod dbus;
pub mod directories;
pub mod environment;
pub mod fd_holder;
pub mod graph;
pub mod leftovers;
pub mod lines;
pub mod manager;
pub mod notify;
pub mod output;
pub mod process_setup;
pub mod procs;
pub mod readopt;
pub mod reaper;
pub mod reexec;
pub mod service;
pub mod socket;
pub mod state;
pub mod systemd_private;
pub mod target;
pub mod timer;
pub mod wire;

pub use manager::run;

/// How `corrald --user` was asked to run.
#[derive(Debug)]
pub struct Options {
    /// Unit directories, highest priority first (empty: the XDG search path).
    pub units_dirs: Vec<PathBuf>,
    /// A runit service directory whose subdirectories are units too.
    pub runit_dir: Option<PathBuf>,
    /// Persistent state ($XDG_STATE_HOME/corral).
    pub state_dir: PathBuf,
    /// Runtime files: control.sock, notify socket ($XDG_RUNTIME_DIR/corral).
    pub runtime_dir: PathBuf,
    /// The cgroup under which unit cgroups are created (default: our own, if delegated).
    pub cgroup_root: Option<PathBuf>,
    /// Written one line once the socket listens and autostart units have started.
    pub ready_fd: Option<OwnedFd>,
}

/// Errors of the manager itself (a unit's errors never end the manager).
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A file-system or socket operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A system call without a path failed.
    #[error("{op} failed: {source}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cgroup root is unusable.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    /// `daemon-reexec` could not execute the new image (the units live on,
    /// for the next manager to take back as after a crash).
    #[error("daemon-reexec failed: {0}; the units run on, start corrald to take them back")]
    Reexec(#[from] reexec::ReexecError),
    /// The manager thread ended unexpectedly.
    #[error("the manager thread ended unexpectedly: {0}")]
    Thread(String),
}
