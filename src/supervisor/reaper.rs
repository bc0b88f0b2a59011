//! The one place where children are reaped.
//!
//! The manager is a child subreaper, so besides the processes it spawned it
//! inherits every orphan of its services (the grandchildren of a
//! double-forking daemon). On each SIGCHLD this loop calls
//! `waitpid(-1, WNOHANG)` until nothing is left to reap and hands every exit
//! to the manager; nothing else in the daemon may wait for a child.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::signal::unix::{SignalKind, signal};

use super::SupervisorError;
use super::state::{Exit, Pid};

/// Marks the calling process as a child subreaper (PR_SET_CHILD_SUBREAPER).
pub fn become_subreaper() -> Result<(), SupervisorError> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(SupervisorError::Sys {
            op: "prctl(PR_SET_CHILD_SUBREAPER)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Reaps every child that has exited, without blocking.
pub fn reap_all() -> Vec<(Pid, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, core)) => out.push((
                pid.as_raw(),
                Exit::Signal {
                    sig: sig as i32,
                    core,
                },
            )),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            // Stopped/continued are not reported without WUNTRACED/WCONTINUED.
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out
}

/// Runs forever: on every SIGCHLD, reaps all exited children and passes each
/// exit to `sink`.
pub async fn run(mut sink: impl FnMut(Pid, Exit)) -> Result<(), SupervisorError> {
    let mut sigchld = signal(SignalKind::child()).map_err(|source| SupervisorError::Sys {
        op: "install SIGCHLD handler",
        source,
    })?;
    loop {
        // Children that exited before the handler was installed are reaped on the first pass.
        for (pid, exit) in reap_all() {
            sink(pid, exit);
        }
        if sigchld.recv().await.is_none() {
            return Ok(());
        }
    }
}
