//! runit service directories (`DIR/NAME/run`, `finish`, `down`, `log/run`)
//! as `NAME.service` units.
//!
//! The mapping follows runsv(8):
//!
//! - `ExecStart=` is `DIR/NAME/run`, executed with argv\[0\] `./run` and the
//!   working directory `DIR/NAME`, like runsv does.
//! - `Restart=always`, with no start rate limit: runsv never gives up. runsv
//!   waits one second before restarting a `run` that exited within a second
//!   of its start and restarts at once otherwise;
//!   [`RunitService::restart_delay`] gives exactly that delay, and
//!   `RestartSec=` is set to 1 s for a supervisor that only reads the
//!   generic model (at most one restart per second).
//! - Stopping sends SIGTERM (then, as always, SIGCONT) to the unit's whole
//!   cgroup rather than to `run` alone, so nothing is left behind.
//! - `finish`, when present, is run by the supervisor after each exit of
//!   `run`, in `DIR/NAME`, as `./finish EXITCODE STATUS` (see
//!   [`RunitService::finish_args`]); its output goes where `run`'s goes.
//! - `down` means "not started automatically"; the unit can still be started.
//! - `log/run`, when present, is started in `DIR/NAME/log` as `./run`, with
//!   its stdin the read end of a pipe whose write end is the stdout of `run`
//!   and `finish` (as under runsv). stderr of `run` goes to corral's journal;
//!   without `log/run` both go to the journal. The supervisor runs log/run
//!   as runsv does, on its own across the restarts of `run`
//!   (`supervisor::manager::runit_log`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::exec::{ExecCommand, ExecFlags};
use super::model::{RestartPolicy, Unit, UnitSource, WorkingDirectory};
use super::name::UnitName;
use super::{Diagnostic, DiagnosticKind, Severity, UnitError};

/// A runit service directory, as the supervisor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunitService {
    /// The service directory `DIR/NAME`; `run` and `finish` run here.
    pub dir: PathBuf,
    /// `DIR/NAME/finish`, when it exists and is executable.
    pub finish: Option<PathBuf>,
    /// `DIR/NAME/log/run`, when it exists and is executable; runs in `DIR/NAME/log`.
    pub log_run: Option<PathBuf>,
    /// `DIR/NAME/down` exists: do not start automatically.
    pub down: bool,
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl RunitService {
    /// The service in `dir` if `dir/run` is an executable file.
    pub fn probe(dir: &Path) -> Option<RunitService> {
        if !is_executable_file(&dir.join("run")) {
            return None;
        }
        let finish = Some(dir.join("finish")).filter(|p| is_executable_file(p));
        let log_run = Some(dir.join("log/run")).filter(|p| is_executable_file(p));
        Some(RunitService {
            dir: dir.to_path_buf(),
            finish,
            log_run,
            down: dir.join("down").exists(),
        })
    }

    /// `DIR/NAME/run`.
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The directory `log/run` runs in.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The arguments runsv gives `./finish` after `run` ended with `status`
    /// (the raw wait status): the exit code, or -1 when killed by a signal;
    /// then the low byte of the status (0 or the signal number).
    pub fn finish_args(status: i32) -> [String; 2] {
        if libc::WIFEXITED(status) {
            [libc::WEXITSTATUS(status).to_string(), "0".to_string()]
        } else if libc::WIFSIGNALED(status) {
            ["-1".to_string(), libc::WTERMSIG(status).to_string()]
        } else {
            ["-1".to_string(), (status & 0xff).to_string()]
        }
    }

    /// The arguments for `./finish` when `run` could not be started at all
    /// (runsv uses exit code 111, status 0).
    pub fn finish_args_exec_failed() -> [String; 2] {
        ["111".to_string(), "0".to_string()]
    }

    /// How long runsv would wait before restarting a `run` that ran for
    /// `ran_for`: one second when it exited within a second, else nothing.
    pub fn restart_delay(ran_for: Duration) -> Duration {
        if ran_for < Duration::from_secs(1) {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    }

    /// The unit for this directory, named `NAME.service` after the directory.
    pub fn to_unit(&self) -> Result<Unit, UnitError> {
        let base = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = UnitName::parse_strict(&format!("{base}.service"))?;
        let mut unit = Unit::new(name);
        let run = self.run();
        unit.set_fragment(run.clone());
        unit.source = UnitSource::Runit(Box::new(self.clone()));
        unit.unit.description = Some(format!("runit service {}", self.dir.display()));
        // runsv never stops retrying.
        unit.unit.start_limit_interval = Duration::ZERO;
        let s = unit.service.get_or_insert_with(Default::default);
        s.exec_start = vec![ExecCommand {
            flags: ExecFlags {
                argv0_override: true,
                no_env_expand: true,
                ..ExecFlags::default()
            },
            program: run.to_string_lossy().into_owned(),
            argv: vec!["./run".to_string()],
            origin: super::exec::ExecOrigin {
                unit: unit.name.to_string(),
                directive: "ExecStart".to_string(),
                line: 0,
            },
        }];
        s.working_directory = Some(WorkingDirectory {
            path: self.dir.clone(),
            missing_ok: false,
        });
        s.restart = RestartPolicy::Always;
        s.restart_sec = Duration::from_secs(1);
        let mut diag = |path: PathBuf, message: &str| {
            unit.diagnostics.push(Diagnostic {
                file: path,
                line: 0,
                directive: String::new(),
                severity: Severity::Warning,
                kind: DiagnosticKind::Unsupported,
                message: message.to_string(),
                fatal: false,
            })
        };
        let log = self.log_dir();
        if log.is_dir() && self.log_run.is_none() {
            diag(
                log.clone(),
                "log/ has no executable run script: unsupported, ignored; output goes to the journal",
            );
        }
        if self.dir.join("finish").exists() && self.finish.is_none() {
            diag(
                self.dir.join("finish"),
                "finish is not executable: unsupported, ignored; chmod +x it to have it run",
            );
        }
        if self.dir.join("control").is_dir() {
            diag(
                self.dir.join("control"),
                "custom control scripts are unsupported, ignored; corral stops the unit with SIGTERM",
            );
        }
        if is_executable_file(&self.dir.join("check")) {
            diag(
                self.dir.join("check"),
                "the check script (sv check) is unsupported, ignored; the service counts as started when run starts",
            );
        }
        Ok(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_arguments() {
        // exit(3): status 3 << 8.
        assert_eq!(RunitService::finish_args(3 << 8), ["3", "0"]);
        // killed by SIGKILL.
        assert_eq!(RunitService::finish_args(9), ["-1", "9"]);
        assert_eq!(RunitService::finish_args_exec_failed(), ["111", "0"]);
        assert_eq!(
            RunitService::restart_delay(Duration::from_millis(200)),
            Duration::from_secs(1)
        );
        assert_eq!(
            RunitService::restart_delay(Duration::from_secs(5)),
            Duration::ZERO
        );
    }
}
