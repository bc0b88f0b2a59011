//! For the tests/system_*.rs suites: real test users, a real `corrald
//! --system` in its own cgroup root and state directory, and the `corral`
//! CLI run as root or as a test user.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::TempCgroup;
use nix::fcntl::{Flock, FlockArg};

use super::{missing_root, missing_tools, require, wait_until, write_script};

/// The supplementary group the first test user is a member of.
pub const TEST_GROUP: &str = "corral-tg";

/// Whether this machine can run these tests (root, cgroup2, useradd; see
/// [`require`]), and with `tools` those programs too.
pub fn can_run_with(what: &str, tools: &[&str]) -> bool {
    let mut missing = missing_root();
    if corral::cgroup::find_mount().is_err() {
        missing.push("a cgroup2 mount".to_string());
    }
    missing.extend(missing_tools(&["useradd", "groupadd"]));
    missing.extend(missing_tools(tools));
    require(what, &missing)
}

/// [`can_run_with`] no other tools.
pub fn can_run(what: &str) -> bool {
    can_run_with(what, &[])
}

/// A test user, held exclusively by this test (across test binaries) because
/// its /run/user/UID and manager are machine-wide.
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    _lock: Flock<File>,
}

/// Creates (when missing) and locks test user `name`; `in_group` adds it to
/// [`TEST_GROUP`] so supplementary groups can be checked.
pub fn test_user(name: &str, in_group: bool) -> TestUser {
    make_user(name, in_group, true)
}

/// Like [`test_user`], for a user whose home directory does not exist.
pub fn test_user_without_home(name: &str) -> TestUser {
    make_user(name, false, false)
}

fn make_user(name: &str, in_group: bool, with_home: bool) -> TestUser {
    let lock_path = format!("/tmp/corral-test-user-{name}.lock");
    let file = File::create(&lock_path).unwrap();
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    // useradd takes /etc/passwd's lock and fails rather than wait: retry.
    for attempt in 0.. {
        let group_ok = run_ok(Command::new("groupadd").args(["-f", TEST_GROUP]));
        let exists = nix::unistd::User::from_name(name).unwrap().is_some();
        if group_ok && exists {
            break;
        }
        if group_ok {
            let mut cmd = Command::new("useradd");
            cmd.args(["-s", "/bin/sh"]);
            if with_home {
                cmd.arg("-m");
            } else {
                cmd.args(["-M", "-d", &format!("/nonexistent/{name}")]);
            }
            if in_group {
                cmd.args(["-G", TEST_GROUP]);
            }
            cmd.arg(name);
            run_ok(&mut cmd);
        }
        assert!(attempt < 20, "could not create test user {name}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    TestUser {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
        _lock: lock,
    }
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The gid of [`TEST_GROUP`].
pub fn test_group_gid() -> u32 {
    nix::unistd::Group::from_name(TEST_GROUP)
        .unwrap()
        .expect("test group exists")
        .gid
        .as_raw()
}

/// A running `corrald --system` with its own cgroup root, runtime and state
/// directories; stopped (SIGTERM, then SIGKILL) and cleaned up on drop.
pub struct TestSystem {
    /// Temporary directory holding run/ and state/ (world-traversable so
    /// test users reach the socket).
    pub dir: tempfile::TempDir,
    /// The cgroup root given to --cgroup-root.
    pub cgroup: TempCgroup,
    /// The daemon.
    pub child: Option<Child>,
    /// Its stderr, for failure messages.
    pub stderr_path: PathBuf,
    /// The user manager it starts (None: the real corrald --user).
    pub user_manager: Option<PathBuf>,
    /// Whether `--system` comes after other flags rather than first.
    pub system_flag_last: bool,
}

impl TestSystem {
    /// Starts a daemon; `user_manager` replaces `corrald --user`.
    pub fn start(user_manager: Option<PathBuf>) -> TestSystem {
        Self::start_with(user_manager, false)
    }

    /// Like [`TestSystem::start`]; `system_flag_last` puts `--system` after
    /// the directory flags (`corrald --cgroup-root R ... --system ...`).
    pub fn start_with(user_manager: Option<PathBuf>, system_flag_last: bool) -> TestSystem {
        let cgroup = TempCgroup::new("corral-test").unwrap();
        Self::start_in(cgroup, user_manager, system_flag_last)
    }

    /// Like [`TestSystem::start_with`], with `cgroup` as the cgroup root
    /// (which may hold something already, e.g. root's own user manager).
    pub fn start_in(
        cgroup: TempCgroup,
        user_manager: Option<PathBuf>,
        system_flag_last: bool,
    ) -> TestSystem {
        let dir = tempfile::Builder::new()
            .prefix("corral-system-test")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut sys = TestSystem {
            stderr_path: dir.path().join("corrald.stderr"),
            dir,
            cgroup,
            child: None,
            user_manager,
            system_flag_last,
        };
        sys.spawn();
        sys
    }

    /// Starts the daemon again after [`TestSystem::stop`], same state.
    pub fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`TestSystem::spawn`], returning the daemon's stderr (and exit
    /// status) when it does not become ready.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrald"));
        if !self.system_flag_last {
            cmd.arg("--system");
        }
        cmd.arg("--cgroup-root")
            .arg(self.cgroup.path())
            .arg("--runtime-dir")
            .arg(self.run_dir())
            .arg("--state-dir")
            .arg(self.state_dir());
        if self.system_flag_last {
            cmd.arg("--system");
        }
        cmd.args(["--ready-fd", "3", "--stop-timeout", "10"]);
        if let Some(exe) = &self.user_manager {
            cmd.arg("--user-manager").arg(exe);
        }
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let w = ready_w.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; runs in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(w, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        drop(ready_w);
        let mut line = String::new();
        let mut reader = BufReader::new(File::from(ready_r));
        reader.read_line(&mut line).unwrap();
        if !line.starts_with("ready") {
            let status = child.wait().unwrap();
            return Err(format!(
                "corrald --system did not become ready ({status}): {}",
                self.stderr()
            ));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Ends the daemon with `signal` (SIGTERM: it exits and leaves the user
    /// managers running; SIGKILL: a crash), waits for it, and starts it
    /// again on the same state, as a restart or an upgrade does.
    pub fn restart(&mut self, signal: nix::sys::signal::Signal) {
        self.end(signal);
        self.spawn();
    }

    /// Ends the daemon with `signal` and waits for it to exit.
    pub fn end(&mut self, signal: nix::sys::signal::Signal) {
        let mut child = self.child.take().expect("a running system manager");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        wait_until(20, "corrald --system to exit", || {
            child.try_wait().unwrap().is_some()
        });
    }

    /// The runtime directory (system.sock inside).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The system socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("system.sock")
    }

    /// What the daemon wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `corral journal` of the system journal for unit `user-UID`, as root.
    pub fn journal(&self, uid: u32, extra: &[&str]) -> String {
        let dir = self.state_dir().join("journal");
        let unit = format!("user-{uid}");
        let mut args = vec!["journal", "--no-pager", "-q", "-D"];
        let dir = dir.display().to_string();
        args.push(&dir);
        args.extend(["-u", &unit]);
        args.extend(extra);
        let out = self.corral(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `uid`'s delegated cgroup.
    pub fn user_cgroup(&self, uid: u32) -> PathBuf {
        self.cgroup.path().join(format!("user-{uid}"))
    }

    /// Runs `corral ARGS` as root against this daemon.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.corral_as(None, args)
    }

    /// Runs `corral ARGS` as `user` (None: root) against this daemon.
    pub fn corral_as(&self, user: Option<&TestUser>, args: &[&str]) -> Output {
        self.corral_command(user, args).output().unwrap()
    }

    /// `corral ARGS` as `user` (None: root) against this daemon, not started.
    pub fn corral_command(&self, user: Option<&TestUser>, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.args(args).env("CORRAL_SYSTEM_SOCKET", self.socket());
        if let Some(u) = user {
            cmd.uid(u.uid).gid(u.gid).env("HOME", &u.home);
        }
        cmd
    }

    /// `corral --system status USER` as root, as text.
    pub fn status(&self, user: &TestUser) -> String {
        self.status_of(&user.name)
    }

    /// `corral --system status NAME` as root, as text.
    pub fn status_of(&self, name: &str) -> String {
        let out = self.corral(&["--system", "status", name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The manager PID `status` shows for `user`, if it runs.
    pub fn manager_pid(&self, user: &TestUser) -> Option<u32> {
        let status = self.status(user);
        let line = status.lines().find(|l| l.contains("manager: running"))?;
        let pid = line.split("(pid ").nth(1)?.split(')').next()?;
        pid.parse().ok()
    }

    /// `corral login --wait USER` as root; fails the test unless it succeeds.
    pub fn login(&self, user: &TestUser) {
        let out = self.corral(&["login", "--wait", &user.name]);
        assert!(
            out.status.success(),
            "{}\n{}",
            super::show(&out),
            self.stderr()
        );
    }

    /// `corral logout USER` as root, then waits (at most `secs` s) until the
    /// user's cgroup subtree is gone, as it is after the last session.
    pub fn logout_and_wait(&self, user: &TestUser, secs: u64) {
        let out = self.corral(&["logout", &user.name]);
        assert!(out.status.success(), "{}", super::show(&out));
        wait_until(secs, "the user's subtree to go after the logout", || {
            !self.user_cgroup(user.uid).exists()
        });
    }

    /// SIGKILLs `user`'s manager and waits (at most `secs` s) until the
    /// system manager has started another; returns the new one's PID.
    pub fn kill_manager(&self, user: &TestUser, secs: u64) -> u32 {
        let first = self.manager_pid(user).expect("a running manager");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut second = None;
        wait_until(secs, "a new manager", || {
            second = self.manager_pid(user).filter(|p| *p != first);
            second.is_some()
        });
        second.unwrap()
    }

    /// Stops the daemon and every user manager it runs (SIGHUP, SIGKILL
    /// after 20 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command running in the background (a `login --wait`, a pamtester),
/// killed by its PID on drop unless it has been waited for.
pub struct Background {
    child: Option<Child>,
    what: String,
}

impl Background {
    /// Starts `cmd` with its stdout and stderr captured.
    pub fn spawn(mut cmd: Command, what: &str) -> Background {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Background {
            child: Some(child),
            what: what.to_string(),
        }
    }

    /// Its output once it has exited. A hang guard, not a measure: if it
    /// still runs after `secs` seconds the test fails (and drop kills it).
    pub fn output(mut self, secs: u64) -> Output {
        let what = format!("{} to end", self.what);
        let child = self.child.as_mut().expect("not yet waited for");
        wait_until(secs, &what, || child.try_wait().unwrap().is_some());
        self.child.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Owner uid of a path.
pub fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .uid()
}

/// A stand-in for `corrald --user` for the system-side tests: it records who
/// and where it runs into $XDG_RUNTIME_DIR/probe, opens a D-Bus session bus
/// at $XDG_RUNTIME_DIR/bus when `bus` is set, writes its ready line, then
/// waits to be stopped.
pub fn stand_in_manager(dir: &Path, bus: bool) -> PathBuf {
    let path = dir.join("stand-in-manager");
    let bus_line = if bus {
        "dbus-daemon --session --fork --address=\"unix:path=$XDG_RUNTIME_DIR/bus\" >/dev/null\n"
    } else {
        ""
    };
    let script = format!(
        "#!/bin/sh\n\
         {bus_line}\
         {{ echo \"uid=$(id -u)\"; echo \"groups=$(id -G)\"; \
            echo \"cgroup=$(cat /proc/self/cgroup)\"; echo \"args=$*\"; \
            echo \"env=HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL PATH=$PATH\"; \
          }} > \"$XDG_RUNTIME_DIR/probe.tmp\"\n\
         mv \"$XDG_RUNTIME_DIR/probe.tmp\" \"$XDG_RUNTIME_DIR/probe\"\n\
         echo 'stand-in manager ready' >&2\n\
         echo ready >&3\n\
         exec 3>&-\n\
         exec sleep 100000\n"
    );
    write_script(&path, &script);
    path
}
