//! Execution: spawning a unit's processes into its cgroup (environment,
//! credentials, limits, stdout/stderr to the journal), and signals.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use nix::sys::signal::Signal;

use crate::cgroup::spawn::{Rlimit, SpawnSpec, Stdio};
use crate::supervisor::output::{Source, Stream};
use crate::supervisor::process_setup;
use crate::supervisor::service::ServiceDef;
use crate::supervisor::socket::{accept, listen};
use crate::supervisor::state::{Cmd, Exit, Pid, Whom};
use crate::unit::execution::StdInput;
use crate::unit::model::StdOutput;
use crate::unit::{RunitService, UnitError};

use super::Manager;
use crate::supervisor::lines::priority;

impl Manager {
    /// How the output of a process of `name` is labelled in the journal:
    /// SyslogIdentifier=, else the name of the program this process runs
    /// (each command its own, as systemd: ExecStartPre=, each ExecStart= of
    /// a oneshot, ExecStop=, runit's `finish`), else the unit's name. `_COMM`
    /// is what the kernel names the process after it executed `program`.
    pub(super) fn source(
        &self,
        name: &str,
        def: Option<&ServiceDef>,
        program: Option<&Path>,
        pid: Pid,
        stream: Stream,
    ) -> Source {
        let e = &self.units[name];
        let svc = def.and_then(|d| d.unit.service.as_ref());
        let identifier = svc
            .and_then(|s| s.syslog_identifier.clone())
            .or_else(|| {
                program
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| name.trim_end_matches(".service").to_string());
        Source {
            comm: program.map(crate::journal::comm_of).unwrap_or_default(),
            unit: name.to_string(),
            invocation: e.invocation_id(),
            pid,
            stream,
            priority: svc.map_or(6, |s| s.syslog_level),
            level_prefix: svc.is_none_or(|s| s.syslog_level_prefix),
            identifier,
            rate_limit: e.service().and_then(|s| s.rate_limit.clone()),
        }
    }

    pub(super) fn signal(&mut self, name: &str, whom: Whom, sig: i32) {
        let e = &self.units[name];
        let Ok(signal) = Signal::try_from(sig) else {
            self.log_at(
                name,
                priority::WARNING,
                &format!("cannot send unknown signal {sig}"),
            );
            return;
        };
        let (main, control) = e.main_and_control();
        let pid = match whom {
            Whom::Main => main,
            Whom::Control => control,
            Whom::All => {
                if let Some(cg) = e.cgroup()
                    && let Err(err) = self.host.signal_cgroup(cg, signal)
                {
                    self.log_at(
                        name,
                        priority::WARNING,
                        &format!("cannot send {signal} to the cgroup: {err}"),
                    );
                }
                return;
            }
        };
        if let Some(pid) = pid {
            // ESRCH: it is already gone, and its exit is on the way.
            let _ = self.host.signal(pid, signal);
        }
    }

    pub(super) fn spawn_cmd(
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
        // Directories, credentials, stdin, ExecSearchPath=, scheduling.
        let setup = process_setup::prepare(svc).map_err(|e| SpawnFailure {
            message: format!("{}: {e}", cmd.directive()),
            status: i32::from(e.exit_status()),
            pid: None,
        })?;
        let mut base = self.process_env(name, Some(def), cmd);
        base.extend(setup.env);
        // The model's composition: PassEnvironment=, Environment=, each
        // EnvironmentFile=, then UnsetEnvironment= (NAME or exact NAME=value).
        let pass_from = |k: &str| self.env.get(k).or_else(|| std::env::var(k).ok());
        let env = svc
            .resolve_environment(&base, &pass_from)
            .map_err(|err| match err {
                // The refusal says what to do already.
                UnitError::Refused { .. } => err.to_string(),
                err => format!("{err}; create the EnvironmentFile= or prefix its path with '-'"),
            })?;
        let path_env = setup.search_path.clone().unwrap_or_else(|| {
            env.iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        });
        let (program, argv) = if runit_finish {
            let r = def.runit.as_ref().expect("runit unit");
            let finish = r.finish.clone().expect("finish exists");
            let args = match self.service(name).and_then(|s| s.main_exit) {
                Some((_, Exit::Code(c))) => [c.to_string(), "0".to_string()],
                Some((_, Exit::Signal { sig, .. })) => ["-1".to_string(), sig.to_string()],
                // runsv's "exit status unknown" is what `finish` gets for a killed run too.
                Some((_, Exit::Unknown)) => ["-1".to_string(), "0".to_string()],
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
        let mut spec = command_spec(&program, &argv, &env)?;
        if let Some(wd) = &svc.working_directory
            && (!wd.missing_ok || wd.path.is_dir())
        {
            spec.cwd = Some(to_cstring(&wd.path.to_string_lossy(), "working directory")?);
        }
        let inv = self.units[name]
            .inv()
            .ok_or_else(|| format!("{name} has no invocation"))?;
        spec.cgroup = inv.cgroup.as_ref().map(|c| c.path().to_path_buf());
        if spec.cgroup.is_none() {
            // Its invocation could not get one (the note says why): 219/CGROUP.
            let why = self.units[name]
                .failure_note
                .as_deref()
                .unwrap_or("no invocation cgroup");
            return Err(SpawnFailure {
                message: format!("{name} has no cgroup to start processes in: {why}"),
                status: 219,
                pid: None,
            });
        }
        spec.umask = svc.umask;
        spec.nice = svc.nice;
        spec.tuning = setup.tuning;
        spec.stdin = setup.stdin;
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
        // StandardInput=/StandardOutput=/StandardError=socket: the
        // connection of an Accept=yes socket is stdio, for every command,
        // and no LISTEN_FDS are passed (systemd.exec(5)).
        let connection = self.connection_of(name).map(|(_, c)| c.fd.as_raw_fd());
        let socket_stdio = svc.exec.stdin() == StdInput::Socket
            || svc.standard_output == StdOutput::Socket
            || svc.standard_error == StdOutput::Socket;
        if socket_stdio && connection.is_none() {
            return Err(SpawnFailure {
                message: format!(
                    "{}: StandardInput=/StandardOutput=socket needs the connection of an Accept=yes socket; {name} serves none",
                    cmd.directive()
                ),
                // systemd's EXIT_STDIN.
                status: 208,
                pid: None,
            });
        }
        if svc.exec.stdin() == StdInput::Socket
            && let Some(fd) = connection
        {
            spec.stdin = Stdio::Borrowed(fd);
        }
        // As systemd: the sockets' (and the fd store's) fds go to the main process only.
        let activation = if cmd == Cmd::Start && !socket_stdio {
            self.passed_fds(name)
        } else {
            Vec::new()
        };
        // NonBlocking=: the activation fds (a socket's, or an Accept=yes
        // connection), not the fd store's, as systemd's flag_fds. The flag
        // belongs to the open file, so the manager's copy gets it too: it
        // only polls the listening ones.
        // (activation_fds is the connection alone for an Accept=yes instance,
        // whether it is stdio or fd 3.)
        if svc.exec.non_blocking && cmd == Cmd::Start {
            for (fd, _) in self.activation_fds(name) {
                // SAFETY: the fds stay open in the manager until the spawn is done.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                if let Err(e) = accept::set_nonblocking(fd) {
                    let msg = format!("NonBlocking=: O_NONBLOCK failed: {e}");
                    self.log_at(name, priority::WARNING, &msg);
                }
            }
        }
        if !activation.is_empty() {
            let named: Vec<(RawFd, &str)> =
                activation.iter().map(|(fd, n)| (*fd, n.as_str())).collect();
            listen::pass_fds(&mut spec, &named);
        }
        // stdout: runit's log pipe, else StandardOutput=; stderr: StandardError=
        // (inherit: wherever stdout goes, except that the journal gets it apart).
        // runit's log pipe outlives the invocation (runit_log.rs).
        let log_pipe = self.runit_log_pipe(name);
        let (stdout, out_r) = match (log_pipe, connection) {
            (Some(log), _) if matches!(cmd, Cmd::Start | Cmd::StopPost) => {
                (Stdio::Borrowed(log), None)
            }
            // StandardInput=file: and StandardOutput=inherit: the same file, as systemd.
            _ if svc.standard_output == StdOutput::Inherit
                && matches!(spec.stdin, Stdio::Fd(_) | Stdio::Borrowed(_)) =>
            {
                (Stdio::Borrowed(spec_stdin_raw(&spec)), None)
            }
            (_, Some(fd)) if svc.standard_output == StdOutput::Socket => {
                (Stdio::Borrowed(fd), None)
            }
            _ => output_stdio(&svc.standard_output, name)?,
        };
        let (stderr, err_r) = match &svc.standard_error {
            // Both into the journal: stderr keeps its own pipe so entries say which stream.
            StdOutput::Inherit if out_r.is_some() || log_pipe.is_some() => {
                output_stdio(&StdOutput::Journal, name)?
            }
            StdOutput::Inherit => match &stdout {
                Stdio::Fd(fd) => (Stdio::Borrowed(fd.as_raw_fd()), None),
                Stdio::Borrowed(fd) => (Stdio::Borrowed(*fd), None),
                Stdio::Null => (Stdio::Null, None),
                Stdio::Inherit => (Stdio::Inherit, None),
            },
            StdOutput::Socket => match connection {
                Some(fd) => (Stdio::Borrowed(fd), None),
                None => output_stdio(&StdOutput::Journal, name)?,
            },
            other => output_stdio(other, name)?,
        };
        spec.stdout = stdout;
        spec.stderr = stderr;
        let pid = self.host.spawn(&spec).map_err(|e| SpawnFailure {
            message: format!("{}: {e}", cmd.directive()),
            status: i32::from(e.stage.exit_status()),
            pid: e.pid,
        })?;
        drop(spec);
        // A pipe per process: what it writes (and what its children write
        // into the same pipe) is labelled with its command and PID.
        for (r, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            if let Some(r) = r {
                let src = self.source(name, Some(def), Some(&program), pid, stream);
                self.output.attach(src, r);
            }
        }
        Ok(pid)
    }
}

/// A spec running `program` with `argv` (argv\[0\] included; empty: the
/// program's path) and the environment `env`, as every command of a unit.
pub(super) fn command_spec(
    program: &std::path::Path,
    argv: &[String],
    env: &[(String, String)],
) -> Result<SpawnSpec, String> {
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
    Ok(spec)
}

pub(super) fn to_cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte: {s:?}"))
}

pub(super) fn nix_resource(raw: libc::__rlimit_resource_t) -> Option<nix::sys::resource::Resource> {
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

/// Why a process could not be started, with systemd's exit status for it.
pub(super) struct SpawnFailure {
    /// What went wrong, for the log and `status`.
    pub(super) message: String,
    /// systemd's exit status for the failed step (203 EXEC, 209 STDOUT, ...).
    pub(super) status: i32,
    /// The child that failed after the fork, if it got that far.
    pub(super) pid: Option<Pid>,
}

impl From<String> for SpawnFailure {
    fn from(message: String) -> SpawnFailure {
        // Everything before exec that is not a SpawnError counts as status 203 (EXEC).
        SpawnFailure {
            message,
            status: 203,
            pid: None,
        }
    }
}

/// Where a process's stdout or stderr goes for StandardOutput=/StandardError=,
/// and the read end to hand to the journal when it is a pipe.
pub(super) fn output_stdio(
    kind: &StdOutput,
    unit: &str,
) -> Result<(Stdio, Option<OwnedFd>), SpawnFailure> {
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
                pid: None,
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

fn spec_stdin_raw(spec: &SpawnSpec) -> std::os::fd::RawFd {
    match &spec.stdin {
        Stdio::Fd(fd) => fd.as_raw_fd(),
        Stdio::Borrowed(fd) => *fd,
        Stdio::Null | Stdio::Inherit => 0,
    }
}

pub(super) fn spec_stdout_raw(spec: &SpawnSpec) -> std::os::fd::RawFd {
    match &spec.stdout {
        Stdio::Fd(fd) => fd.as_raw_fd(),
        Stdio::Borrowed(fd) => *fd,
        Stdio::Null | Stdio::Inherit => 1,
    }
}
