//! The host: what the manager does to processes on behalf of the machines
//! (spawn, signal, kill a cgroup's processes, ask which processes a cgroup
//! holds), its timers and its clock, behind one trait. The manager holds a
//! `Box<dyn Host>`: [`Kernel`] in `corrald`, a host of their own in the
//! manager's table tests (`manager/tests.rs`), which drive the shell with
//! processes and time that exist only in the test.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::cgroup::spawn::{SpawnError, SpawnSpec, spawn};
use crate::cgroup::{Cgroup, CgroupError};
use crate::supervisor::state::{Exit, Pid};

use super::Input;

/// What the manager asks of the system for its units' processes. Every
/// method takes `&self`, so the manager can ask while it reads a unit.
pub(super) trait Host: Send {
    /// Time since the manager started, on the monotonic clock.
    fn now(&self) -> Duration;
    /// Starts the process `spec` describes; its PID.
    fn spawn(&self, spec: &SpawnSpec) -> Result<Pid, SpawnError>;
    /// Sends `sig` to process `pid`.
    fn signal(&self, pid: Pid, sig: Signal) -> Result<(), Errno>;
    /// Sends `sig` to every process of `cg`.
    fn signal_cgroup(&self, cg: &Cgroup, sig: Signal) -> Result<(), CgroupError>;
    /// Kills every process of `cg` (cgroup.kill).
    fn kill_cgroup(&self, cg: &Cgroup) -> Result<(), CgroupError>;
    /// Whether `cg` holds processes.
    fn populated(&self, cg: &Cgroup) -> Result<bool, CgroupError>;
    /// The processes of `cg` and its children.
    fn procs(&self, cg: &Cgroup) -> Result<Vec<Pid>, CgroupError>;
    /// Whether process `pid` is alive in `cg`.
    fn contains(&self, cg: &Cgroup, pid: Pid) -> Result<bool, CgroupError>;
    /// Whether the manager is the parent of `pid` (it started it, or
    /// adopted it as the subreaper): GuessMainPID= looks for such one.
    fn adopted(&self, pid: Pid) -> bool;
    /// Sends `input` to the manager after `after`; the handle cancels it
    /// (none when there is nothing left to cancel).
    fn arm(&self, after: Duration, input: Input) -> Option<AbortHandle>;
    /// Re-adoption: whether `pid` still runs and is the process that started
    /// at `start` (/proc/PID/stat field 22); if so, its exit is reported as
    /// [`Input::Reaped`] with [`Exit::Unknown`] (it is not the manager's child).
    fn watch_exit(&self, pid: Pid, start: Option<u64>) -> bool;
}

/// The host of `corrald`: real processes, cgroupfs, tokio timers.
pub(super) struct Kernel {
    /// The manager's queue, where timers send their input.
    tx: mpsc::UnboundedSender<Input>,
    rt: Handle,
    /// When the manager started.
    started: Instant,
}

impl Kernel {
    /// The host of a manager whose inputs go to `tx`; timers run on `rt`.
    pub(super) fn new(tx: mpsc::UnboundedSender<Input>, rt: Handle) -> Kernel {
        Kernel {
            tx,
            rt,
            started: Instant::now(),
        }
    }
}

impl Host for Kernel {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn spawn(&self, spec: &SpawnSpec) -> Result<Pid, SpawnError> {
        spawn(spec).map(|s| s.pid)
    }

    fn signal(&self, pid: Pid, sig: Signal) -> Result<(), Errno> {
        kill(nix::unistd::Pid::from_raw(pid), sig)
    }

    fn signal_cgroup(&self, cg: &Cgroup, sig: Signal) -> Result<(), CgroupError> {
        cg.signal_all(sig).map(drop)
    }

    fn kill_cgroup(&self, cg: &Cgroup) -> Result<(), CgroupError> {
        cg.kill()
    }

    fn populated(&self, cg: &Cgroup) -> Result<bool, CgroupError> {
        cg.populated()
    }

    fn procs(&self, cg: &Cgroup) -> Result<Vec<Pid>, CgroupError> {
        cg.procs_recursive()
    }

    fn contains(&self, cg: &Cgroup, pid: Pid) -> Result<bool, CgroupError> {
        cg.contains_pid(pid)
    }

    fn adopted(&self, pid: Pid) -> bool {
        crate::supervisor::procs::parent(pid) == Some(std::process::id() as Pid)
    }

    fn arm(&self, after: Duration, input: Input) -> Option<AbortHandle> {
        if after.is_zero() {
            // RestartSec=0: straight into the queue, with no timer tick and no thread hop.
            let _ = self.tx.send(input);
            return None;
        }
        let tx = self.tx.clone();
        let task = self.rt.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(input);
        });
        Some(task.abort_handle())
    }

    fn watch_exit(&self, pid: Pid, start: Option<u64>) -> bool {
        use std::os::fd::{FromRawFd, OwnedFd};
        if own_child(pid) {
            // After `daemon-reexec` the units are still our children: the
            // reaper's waitpid reports their exit with its status (a zombie
            // included), which a pidfd cannot.
            let now = crate::supervisor::procs::start_time(pid);
            return now.is_none() || start.is_none() || now == start;
        }
        // SAFETY: pidfd_open takes a PID and flags, and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return false;
        }
        // SAFETY: the fd was just returned to us and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after the pidfd is open, so the pidfd is of the recorded process.
        let now = crate::supervisor::procs::start_time(pid);
        if now.is_none() || (start.is_some() && now != start) {
            return false;
        }
        let _guard = self.rt.enter();
        // SAFETY: the AsyncFd owns the pidfd, which stays open until it is dropped.
        let Ok(afd) = (unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }) else {
            return false;
        };
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            // A pidfd polls readable once the process has exited.
            let _ = afd.readable().await;
            let _ = tx.send(Input::Reaped(pid, Exit::Unknown));
        });
        true
    }
}

/// Whether `pid` is a child of this process (a zombie included): only a
/// process this manager spawned before a `daemon-reexec` or an orphan it
/// inherited as subreaper, which no other process can reap.
pub(super) fn own_child(pid: Pid) -> bool {
    crate::supervisor::procs::parent(pid) == Some(std::process::id() as Pid)
}
