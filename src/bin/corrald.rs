//! `corrald`: the corral daemon. `--user` runs a user's manager.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use corral::supervisor::cli::UserArgs;

fn env_dir(var: &str, fallback: impl FnOnce() -> Option<PathBuf>) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(fallback)
}

/// `/run/user/UID` when it is ours; root may create its own, as a login
/// manager would (a user cannot: /run/user is root's).
fn default_runtime_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = nix::unistd::getuid();
    let dir = PathBuf::from(format!("/run/user/{uid}"));
    if uid.is_root() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .ok()?;
    }
    let meta = std::fs::metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid.as_raw()).then_some(dir)
}

fn options(args: UserArgs) -> anyhow::Result<corral::supervisor::Options> {
    if !args.user {
        bail!(
            "say which manager to run: `corrald --user` runs your own user manager, \
             `corrald --system` (as root) the one that starts every user's"
        );
    }
    let home = env_dir("HOME", || None);
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => env_dir("XDG_STATE_HOME", || {
            home.as_ref().map(|h| h.join(".local/state"))
        })
        .context(
            "cannot pick a state directory: set $XDG_STATE_HOME or $HOME, or pass --state-dir",
        )?
        .join("corral"),
    };
    let runtime_dir = match args.runtime_dir {
        Some(d) => d,
        None => env_dir("XDG_RUNTIME_DIR", default_runtime_dir)
            .context("$XDG_RUNTIME_DIR is not set and /run/user/UID does not exist: log in through PAM (pam_systemd or pam_corral), or pass --runtime-dir")?
            .join("corral"),
    };
    let ready_fd = match args.ready_fd {
        Some(fd) => {
            // The fd must be open: check before taking ownership of it.
            nix::fcntl::fcntl(
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .with_context(|| format!("--ready-fd {fd} is not an open file descriptor"))?;
            // SAFETY: the fd is open (checked above) and handed to us by our parent for this purpose only.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        None => None,
    };
    Ok(corral::supervisor::Options {
        units_dirs: args.units_dirs,
        runit_dir: args.runit_dir,
        state_dir,
        runtime_dir,
        cgroup_root: args.cgroup_root,
        ready_fd,
    })
}

/// Keeps the daemon's memory proportional to what it uses: every service pipe
/// has a large read buffer of which an idle service touches one page. With a
/// fixed mmap threshold those buffers stay lazily-mapped (glibc would
/// otherwise raise the threshold after the first free and serve them, zeroed
/// and resident, from the heap). One arena for every thread: a second one
/// (the journal's threads, or the manager's, whichever allocated first)
/// kept the free top of its heap resident, which `malloc_trim` does not
/// give back outside the main arena (up to 170 KB after the start of 1000
/// timers), and journal ingest was no slower with one.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// What the re-executed corrald finds GLIBC_TUNABLES was before
/// [`without_thread_caches`] changed it: `-` unset, else `=` and the value.
const TUNABLES_BEFORE: &str = "CORRALD_GLIBC_TUNABLES_BEFORE";

/// Turns glibc's per-thread caches of freed chunks (tcache) off. Each
/// thread keeps up to 7 freed chunks of each size up to 1 KiB there, which
/// count as in use, so `malloc_trim` cannot give back the pages they lie
/// on: after the start of 1000 timers the manager thread's cache held 421
/// chunks (217 KB) on 169 pages and the journal's 170 on 96, scattered
/// through their arena (1 MB). Only GLIBC_TUNABLES turns
/// it off, read by ld.so when a program starts, so corrald executes itself
/// once more with it set (the same process: the pid, the fds without
/// close-on-exec and the signal mask are kept), then puts the variable back
/// as it was given (for a daemon-reexec, which does the same again). When
/// that fails it goes on with the caches.
fn without_thread_caches() {
    use std::ffi::{CString, OsStr, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    // SAFETY (the environment changes below): no other thread runs yet.
    if let Some(before) = std::env::var_os(TUNABLES_BEFORE) {
        unsafe {
            std::env::remove_var(TUNABLES_BEFORE);
            match before.as_bytes().split_first() {
                Some((b'=', value)) => {
                    std::env::set_var("GLIBC_TUNABLES", OsStr::from_bytes(value))
                }
                _ => std::env::remove_var("GLIBC_TUNABLES"),
            }
        }
        return;
    }
    let before = std::env::var_os("GLIBC_TUNABLES");
    // The caller chose the size of the caches: theirs to choose.
    if before.as_ref().is_some_and(|t| {
        t.as_bytes()
            .windows(25)
            .any(|w| w == b"glibc.malloc.tcache_count")
    }) {
        return;
    }
    let mut tunables = before.clone().unwrap_or_default();
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push("glibc.malloc.tcache_count=0");
    let mut marker = OsString::from(if before.is_some() { "=" } else { "-" });
    marker.push(before.as_deref().unwrap_or_default());
    // The binary by its path (/proc/self/exe's target), not through
    // /proc/self/exe: under valgrind that is valgrind's own, and the
    // kernel names the process after the file executed.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| CString::new(p.into_os_string().into_vec()).ok());
    let argv: Option<Vec<CString>> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()).ok())
        .collect();
    let (Some(exe), Some(argv)) = (exe, argv) else {
        return;
    };
    unsafe {
        std::env::set_var("GLIBC_TUNABLES", &tunables);
        std::env::set_var(TUNABLES_BEFORE, &marker);
    }
    // Returns only when it failed.
    let err = nix::unistd::execv(&exe, &argv).unwrap_err();
    eprintln!(
        "corrald: cannot execute itself without glibc's thread caches ({err}); going on with them"
    );
    unsafe {
        std::env::remove_var(TUNABLES_BEFORE);
        match before {
            Some(v) => std::env::set_var("GLIBC_TUNABLES", v),
            None => std::env::remove_var("GLIBC_TUNABLES"),
        }
    }
}

/// Whether the command line asks for the system manager: `--system`
/// anywhere among the options (`corrald --state-dir X --system` as well as
/// `corrald --system --state-dir X`). With `--user` too, the user manager's
/// parser reports the conflict.
fn system_wanted(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    let options: Vec<_> = args.into_iter().skip(1).take_while(|a| a != "--").collect();
    options.iter().any(|a| a == "--system") && !options.iter().any(|a| a == "--user")
}

fn main() -> ExitCode {
    if system_wanted(std::env::args_os()) {
        return corral::system::cli::main();
    }
    if std::env::args_os().nth(1).as_deref() == Some(corral::supervisor::fd_holder::FLAG.as_ref()) {
        // SAFETY: the manager started us with the holder's listening socket as stdin.
        let listener = unsafe { OwnedFd::from_raw_fd(0) };
        return match corral::supervisor::fd_holder::serve(listener) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corrald --fd-holder: {e}");
                ExitCode::FAILURE
            }
        };
    }
    without_thread_caches();
    tune_malloc();
    let args = UserArgs::parse();
    let result = options(args).and_then(|opts| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let r = rt
            .block_on(corral::supervisor::run(opts, std::future::pending()))
            .context("corrald --user failed");
        // run() has stopped every unit and flushed the journal; what is left are
        // idle event sources, which need not be waited for.
        rt.shutdown_background();
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corrald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::system_wanted;

    fn wanted(args: &[&str]) -> bool {
        system_wanted(
            std::iter::once("corrald")
                .chain(args.iter().copied())
                .map(Into::into),
        )
    }

    #[test]
    fn system_is_recognised_anywhere_among_the_options() {
        assert!(wanted(&["--system"]));
        assert!(wanted(&["--state-dir", "/x", "--system"]));
        assert!(wanted(&[
            "--cgroup-root",
            "/r",
            "--system",
            "--ready-fd",
            "3"
        ]));
        // Not with --user (the parser reports the conflict), not after `--`,
        // not as part of another argument.
        assert!(!wanted(&["--user", "--system"]));
        assert!(!wanted(&["--system", "--user"]));
        assert!(!wanted(&["--", "--system"]));
        assert!(!wanted(&["--state-dir=--system"]));
        assert!(!wanted(&["--user"]));
        assert!(!wanted(&[]));
    }
}
