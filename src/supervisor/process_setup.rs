//! What a unit's process gets from `unit::execution` besides its command:
//! managed directories and credentials (made before the spawn, with the
//! variables naming them), standard input (`StandardInput=data|file:`),
//! `ExecSearchPath=`, and the settings the spawner applies between fork
//! and exec ([`Tuning`]); and what is undone when the unit stops. The
//! manager calls [`prepare`] for every command and [`after_invocation`]
//! when an invocation ends.

use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use crate::cgroup::spawn::{Stdio, Tuning};
use crate::unit::execution::{ExecSettings, StdInput};
use crate::unit::model::{EmergencyAction, ServiceSection, UnitSection};

use super::credentials::{self, CredentialError};
use super::directories::{self, DirectoryError};

/// A command of the unit cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A `*Directory=`.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// `SetCredential=`/`LoadCredential=`.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// `StandardInput=file:PATH` cannot be opened.
    #[error("cannot open {path} for StandardInput=: {source}")]
    StdinFile {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The memory file of `StandardInputText=`/`StandardInputData=`.
    #[error("cannot pass StandardInputText=/StandardInputData= ({len} bytes): {source}")]
    StdinData {
        /// How much data.
        len: usize,
        /// The failure.
        source: std::io::Error,
    },
}

impl SetupError {
    /// systemd's exit status for the failure (233/RUNTIME_DIRECTORY,
    /// 243/CREDENTIALS, 208/STDIN, ...).
    pub fn exit_status(&self) -> u8 {
        match self {
            SetupError::Directory(e) => e.exit_status(),
            SetupError::Credential(_) => credentials::EXIT_CREDENTIALS,
            SetupError::StdinFile { .. } | SetupError::StdinData { .. } => 208,
        }
    }
}

/// The prepared parts of one command's process.
#[derive(Debug)]
pub struct ProcessSetup {
    /// `$RUNTIME_DIRECTORY` ..., `$CREDENTIALS_DIRECTORY`, and `PATH` from
    /// `ExecSearchPath=`: below the unit's own `Environment=` and friends,
    /// as systemd merges them.
    pub env: Vec<(String, String)>,
    /// Standard input.
    pub stdin: Stdio,
    /// `ExecSearchPath=` joined with `:`, to look bare program names up in.
    pub search_path: Option<String>,
    /// What the spawner applies in the child.
    pub tuning: Tuning,
}

/// Makes the unit's directories and credentials and prepares its stdin.
pub fn prepare(svc: &ServiceSection) -> Result<ProcessSetup, SetupError> {
    let exec = &svc.exec;
    let mut env = directories::create(exec)?;
    env.extend(credentials::write(exec)?);
    let search_path = (!exec.exec_search_path.is_empty()).then(|| {
        exec.exec_search_path
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    });
    if let Some(p) = &search_path {
        env.push(("PATH".to_string(), p.clone()));
    }
    Ok(ProcessSetup {
        env,
        stdin: stdin(exec)?,
        search_path,
        tuning: tuning(exec),
    })
}

fn stdin(exec: &ExecSettings) -> Result<Stdio, SetupError> {
    match exec.stdin() {
        // The connection is the manager's to give (`exec.rs`): a process
        // without one reads /dev/null.
        StdInput::Null | StdInput::Socket => Ok(Stdio::Null),
        StdInput::File(path) => std::fs::File::open(&path)
            .map(|f| Stdio::Fd(OwnedFd::from(f)))
            .map_err(|source| SetupError::StdinFile { path, source }),
        StdInput::Data => {
            let data = &exec.stdin_data;
            memory_file(data).map_err(|source| SetupError::StdinData {
                len: data.len(),
                source,
            })
        }
    }
}

/// A read-only fd that reads `data` then EOF: a memfd, reopened read-only
/// through /proc so the process cannot change what later commands read.
fn memory_file(data: &[u8]) -> std::io::Result<Stdio> {
    // SAFETY: the name is NUL-terminated; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"corral-stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd of ours.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data)?;
    f.rewind()?;
    let ro = std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    Ok(Stdio::Fd(OwnedFd::from(ro)))
}

fn tuning(exec: &ExecSettings) -> Tuning {
    Tuning {
        ignore_sigpipe: exec.ignore_sigpipe,
        oom_score_adjust: exec.oom_score_adjust,
        cpu_affinity: exec.cpu_affinity.clone(),
        // IOPRIO_PRIO_VALUE(class, level); class none means best-effort 4,
        // as systemd's ioprio_normalize().
        io_priority: exec.io_priority.map(|(class, level)| match class {
            0 => (2 << 13) | 4,
            c => (i32::from(c) << 13) | i32::from(level),
        }),
        cpu_scheduling: exec.cpu_scheduling.map(|s| {
            let reset = if s.reset_on_fork {
                libc::SCHED_RESET_ON_FORK
            } else {
                0
            };
            (s.policy | reset, s.priority)
        }),
        timer_slack_nsec: exec.timer_slack_nsec,
        no_new_privileges: exec.no_new_privileges,
    }
}

/// Undoes [`prepare`] for an invocation that ended: the runtime
/// directories (per `RuntimeDirectoryPreserve=`; `restarting` when the
/// unit starts again at once) and the credentials. Returns problems for
/// the unit's log.
pub fn after_invocation(svc: &ServiceSection, restarting: bool) -> Vec<String> {
    let mut problems = directories::remove_runtime(&svc.exec, restarting);
    problems.extend(credentials::remove(&svc.exec));
    problems
}

/// The `SuccessAction=`/`FailureAction=` due when an invocation ended
/// (`failed`: the unit is in the failed state), unless it restarts.
pub fn manager_action(unit: &UnitSection, failed: bool, restarting: bool) -> EmergencyAction {
    if restarting {
        return EmergencyAction::None;
    }
    if failed {
        unit.failure_action
    } else {
        unit.success_action
    }
}
