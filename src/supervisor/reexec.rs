//! `corral daemon-reexec`: the manager executes its binary again in the
//! same process, so that its units stay its children and an upgraded
//! `corrald` on disk takes over without stopping one of them.
//!
//! The old image passes the fds a successor must not open again (the
//! control socket's listener: no window where a client's connect fails;
//! the notify socket; the cgroup claim's lock: no window where another
//! manager could claim the root) by clearing their close-on-exec flag and
//! naming them in [`ENV`]. Everything else goes through the paths a crash
//! uses (docs/ARCHITECTURE.md, "A manager that dies"): the units' state
//! records, and the output pipes kept by the fd holder.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The environment variable naming the fds passed to the new image:
/// `pid=P,control=N,notify=N,claim=N`. Honoured only by process P (the
/// same process after execve), so a copy leaked into another program's
/// environment names nothing.
pub const ENV: &str = "CORRALD_REEXEC_FDS";

/// Errors of the re-execution.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    /// An fd could not be made inheritable.
    #[error("cannot pass fd {fd} ({what}) to the new image: {source}")]
    Inherit {
        /// Which fd.
        what: &'static str,
        /// Its number.
        fd: RawFd,
        /// The OS error.
        source: nix::errno::Errno,
    },
    /// execve failed: the old image goes on.
    #[error("cannot execute {}: {source}", path.display())]
    Exec {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: nix::errno::Errno,
    },
    /// An argument or variable holds a NUL byte.
    #[error("cannot pass {0:?} to execve: it holds a NUL byte")]
    Nul(OsString),
}

/// The signals the manager acts on: SIGTERM and SIGINT (shut down), SIGHUP
/// (reload the units).
pub fn handled_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Blocks [`handled_signals`] in the calling thread (and so in every thread
/// it starts after) and opens a signalfd that reads them. Being blocked and
/// never handled, such a signal is never lost or fatal across
/// `daemon-reexec`: one the old image did not read stays pending through
/// execve (the mask and the pending set are inherited), and the new image's
/// signalfd reads it. Must run before the process starts any thread.
pub fn signal_fd() -> nix::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let set = handled_signals();
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// In the runtime directory: the active units without processes (sockets,
/// timers, targets), one name a line, rewritten when they change; the next
/// image (after `daemon-reexec`) or a successor (after a crash) starts them
/// again (their state is in no record: only services have one).
pub const STARTED: &str = "started";

/// The text of [`STARTED`] for `names`.
pub fn started_text<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    if text.is_empty() {
        text.push('\n');
    }
    text
}

/// Writes [`STARTED`] ([`started_text`]) in `runtime_dir` (replaced by
/// rename: a crash leaves the old list or the new).
pub fn save_started(runtime_dir: &Path, text: &str) -> std::io::Result<()> {
    super::atomic_file::replace(&runtime_dir.join(STARTED), text.as_bytes()).map_err(|(_, _, e)| e)
}

/// The names [`save_started`] left in `runtime_dir` (the file is removed).
pub fn take_started(runtime_dir: &Path) -> Vec<String> {
    let path = runtime_dir.join(STARTED);
    let names = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    names
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The fds a previous image of this process passed, by their names in [`ENV`].
#[derive(Debug, Default)]
pub struct Inherited {
    /// The control socket's listener.
    pub control: Option<OwnedFd>,
    /// The bound NOTIFY_SOCKET datagram socket.
    pub notify: Option<OwnedFd>,
    /// The cgroup claim's lock file, locked.
    pub claim: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the fds [`ENV`] names, when it was set for this process; each
    /// is made close-on-exec again, so that no unit inherits it.
    pub fn take() -> Inherited {
        let mut out = Inherited::default();
        let Some(spec) = std::env::var_os(ENV) else {
            return out;
        };
        let spec = spec.to_string_lossy().into_owned();
        for (name, fd) in named_fds(&spec, std::process::id()) {
            let slot = match name {
                "control" => &mut out.control,
                "notify" => &mut out.notify,
                "claim" => &mut out.claim,
                _ => continue,
            };
            if fd < 3 || slot.is_some() {
                continue;
            }
            // SAFETY: F_GETFD/F_SETFD take an fd number and an int; on a
            // number that is not open they fail and change nothing.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags < 0 {
                continue;
            }
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            // SAFETY: the previous image of this process left it open for us
            // alone under this name; nothing else in this image owns it.
            *slot = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        out
    }
}

/// The fds `spec` (the value of [`ENV`]) names, if it was written for
/// process `pid`.
fn named_fds(spec: &str, pid: u32) -> Vec<(&str, RawFd)> {
    let pairs: Vec<(&str, &str)> = spec.split(',').filter_map(|p| p.split_once('=')).collect();
    if !pairs
        .iter()
        .any(|(k, v)| *k == "pid" && v.parse() == Ok(pid))
    {
        return Vec::new();
    }
    pairs
        .into_iter()
        .filter(|(k, _)| *k != "pid")
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

/// The corrald file this process was started from: argv[0] resolved
/// against the current directory or PATH, as the shell found it. Recorded at
/// start: after an upgrade it names the new file, while /proc/self/exe
/// would name the old (deleted) inode.
pub fn program() -> Option<PathBuf> {
    let arg0 = PathBuf::from(std::env::args_os().next()?);
    if arg0.is_absolute() {
        return Some(arg0);
    }
    if arg0.components().count() > 1 {
        return std::env::current_dir().ok().map(|d| d.join(arg0));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(&arg0))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map_or(p.clone(), |d| d.join(&p))
            }
        })
}

/// The command line again, without `--ready-fd N`: readiness was told
/// once, and fd N is by now something else.
pub fn argv_again(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        if a == "--ready-fd" {
            args.next();
            continue;
        }
        if a.as_bytes().starts_with(b"--ready-fd=") {
            continue;
        }
        out.push(a);
    }
    out
}

fn cstring(s: OsString) -> Result<CString, ReexecError> {
    CString::new(s.clone().into_vec()).map_err(|_| ReexecError::Nul(s))
}

/// Executes `program` with this process's arguments (see [`argv_again`])
/// and environment, passing `fds` by name in [`ENV`]. Returns only on
/// failure, the fds then close-on-exec again.
pub fn exec(program: &Path, fds: &[(&'static str, BorrowedFd<'_>)]) -> ReexecError {
    match try_exec(program, fds) {
        Ok(never) => match never {},
        Err(e) => {
            for (_, fd) in fds {
                // SAFETY: F_GETFD/F_SETFD on an fd borrowed for this call.
                unsafe {
                    let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            e
        }
    }
}

fn try_exec(
    program: &Path,
    fds: &[(&'static str, BorrowedFd<'_>)],
) -> Result<std::convert::Infallible, ReexecError> {
    let mut spec = format!("pid={}", std::process::id());
    for (what, fd) in fds {
        let raw = fd.as_raw_fd();
        let err = |source| ReexecError::Inherit {
            what,
            fd: raw,
            source,
        };
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(err)?;
        let flags = nix::fcntl::FdFlag::from_bits_retain(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(err)?;
        spec.push_str(&format!(",{what}={raw}"));
    }
    let argv = argv_again(std::env::args_os())
        .into_iter()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = std::env::vars_os()
        .filter(|(k, _)| k != ENV)
        .map(|(mut k, v)| {
            k.push("=");
            k.push(v);
            cstring(k)
        })
        .collect::<Result<Vec<_>, _>>()?;
    env.push(cstring(format!("{ENV}={spec}").into())?);
    let path = cstring(program.as_os_str().to_owned())?;
    let source = match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(ReexecError::Exec {
        path: program.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_fd_is_not_passed_again() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            argv_again(args(&[
                "corrald",
                "--user",
                "--ready-fd",
                "5",
                "--state-dir",
                "/s",
                "--ready-fd=7"
            ])),
            args(&["corrald", "--user", "--state-dir", "/s"])
        );
    }

    #[test]
    fn fds_named_for_another_process_are_not_taken() {
        let spec = "pid=41,control=7,notify=8,claim=x";
        assert_eq!(named_fds(spec, 41), vec![("control", 7), ("notify", 8)]);
        assert!(named_fds(spec, 42).is_empty());
        assert!(named_fds("control=7", 41).is_empty());
    }
}
