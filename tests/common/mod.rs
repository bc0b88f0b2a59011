//! The one helper module of the integration tests: every suite that needs a
//! helper says `mod common;` and takes it from here, so a helper exists once.
//!
//! # Layout
//!
//! - this file: whether the machine can run a test ([`require`],
//!   [`scratch`]), bounded waiting ([`eventually`], [`wait_until`]),
//!   processes and pipes ([`pipe`], [`read_all`], [`reap`], [`rt`],
//!   [`pids_matching`], [`pids_named`], [`is_zombie`], [`cgroup_pids`],
//!   [`processes_of`]), files ([`fixture`], [`write_script`]), and
//!   commands ([`stdout_of`], [`assert_quiet_when_the_reader_is_gone`],
//!   [`show`] for failure messages), golden files ([`golden`]).
//! - [`daemon`]: [`TestDaemon`], a real `corrald --user` with its own temp
//!   directories and cgroup root, and the `corral` CLI run against it.
//! - [`system`]: real test users and a real `corrald --system`; login,
//!   logout and killing a user's manager as the suites do it.
//! - [`journal`]: a journal store and writer in a temp dir, entries, and
//!   `corral journal -D` on a store.
//! - [`ipc`]: raw control-socket frames: a handshake, an error then a close.
//! - [`corpus`]: where the shared corpus of real unit files is. It uses std
//!   only, because src/lib.rs's unit tests and benches/unit_parse.rs include
//!   it by path.
//!
//! Everything that makes cgroups, processes or daemons removes or kills
//! them on drop, also when the test panics.

#![allow(dead_code)]

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::{Cgroup, TempCgroup};

pub mod corpus;
pub mod daemon;
pub mod ipc;
pub mod journal;
pub mod system;

// Most suites drive a TestDaemon; the rest do not use this.
#[allow(unused_imports)]
pub use daemon::*;

/// Whether a test can run: true when nothing in `missing` is missing.
/// Otherwise it says what is missing and returns false (the test returns
/// early), unless CORRAL_REQUIRE_CGROUP=1, which makes it a failure so that
/// a run that must cover everything cannot pass by skipping.
pub fn require(what: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{what}: needs {}", missing.join(", "));
    if std::env::var("CORRAL_REQUIRE_CGROUP").as_deref() == Ok("1") {
        panic!("{msg} (CORRAL_REQUIRE_CGROUP=1 forbids skipping)");
    }
    eprintln!("note: skipping {msg}");
    false
}

/// `["root"]` when not running as root.
pub fn missing_root() -> Vec<String> {
    if nix::unistd::geteuid().is_root() {
        Vec::new()
    } else {
        vec!["root".to_string()]
    }
}

/// The programs of `tools` that are not on PATH.
pub fn missing_tools(tools: &[&str]) -> Vec<String> {
    tools
        .iter()
        .filter(|t| !on_path(t))
        .map(|t| t.to_string())
        .collect()
}

/// Whether `tool` is an executable on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// A fresh `<cg2>/corral-test-<pid>-<n>/`, removed (its processes killed)
/// on drop; None when root or cgroup2 is missing (see [`require`]).
pub fn scratch() -> Option<TempCgroup> {
    let mut missing = missing_root();
    if missing.is_empty() {
        match TempCgroup::new("corral-test") {
            Ok(t) => return Some(t),
            Err(e) => missing.push(format!("a usable cgroup2 ({e})")),
        }
    }
    require("this test", &missing);
    None
}

/// Removes a manager's cgroup root under it as a system manager would: what
/// runs there (its fd holder, in `corral-fd-holder/`) is killed first.
pub fn remove_cgroup_root(root: &Path) {
    let holder = root.join("corral-fd-holder");
    if holder.exists() {
        let cg = corral::cgroup::Cgroup::open(&holder).unwrap();
        cg.kill().unwrap();
        wait_until(10, "the fd holder to end", || !cg.populated().unwrap());
        cg.remove().unwrap();
    }
    std::fs::remove_dir(root).unwrap();
}

/// Retries `f` until it returns Some, up to `limit` (for state that gives
/// no notification, such as the answer of another process).
pub fn eventually<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    retry(limit, Duration::from_millis(5), f)
}

/// Waits until `cond` holds; after `secs` seconds (a hang guard, not a
/// measure) the test fails naming `what`. It looks every 20 ms: its
/// conditions often run a `corral` command.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let reached = retry(Duration::from_secs(secs), Duration::from_millis(20), || {
        cond().then_some(())
    });
    assert!(reached.is_some(), "timed out waiting for {what}");
}

fn retry<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A pipe, both ends close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// Reads `fd` until EOF.
pub fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
    s
}

/// Waits for our child `pid`.
pub fn reap(pid: i32) -> nix::sys::wait::WaitStatus {
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap()
}

/// A current-thread runtime, for the async parts of a blocking test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether `pid` is a zombie (or already gone).
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// PIDs of live (non-zombie) processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) && !is_zombie(pid) {
            out.push(pid);
        }
    }
    out
}

/// PIDs of live processes whose argv[0] is exactly `name` (set with `exec -a`).
pub fn pids_named(name: &str) -> Vec<i32> {
    pids_matching(name)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| raw.split(|&b| b == 0).next() == Some(name.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Live (non-zombie) processes whose real uid is `uid`: PID and name.
pub fn processes_of(uid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if real == Some(uid) && !zombie {
            let name = status.lines().next().unwrap_or_default().to_string();
            found.push((pid, name));
        }
    }
    found
}

/// The processes in a cgroup directory (recursively), empty when it is gone.
pub fn cgroup_pids(path: &Path) -> Vec<i32> {
    Cgroup::open(path)
        .and_then(|c| c.procs_recursive())
        .unwrap_or_default()
}

/// `tests/fixtures/REL` in the source tree.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Writes an executable script at `path` (creating its directory).
pub fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `cmd` to its end and returns its stdout; fails the test unless it
/// exits 0.
pub fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", show(&out));
    out.stdout
}

/// Runs `cmd` with a reader that goes away before it writes (as `cmd |
/// head -0`): like ripgrep and systemctl it must exit 0 and say nothing.
pub fn assert_quiet_when_the_reader_is_gone(mut cmd: Command) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));
}

/// A finished command's exit status and output, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compares `got` with tests/golden/`name`; `UPDATE_GOLDEN=1` rewrites the
/// file instead.
pub fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(got, want, "output differs from {}", path.display());
}
