//! The helper every supervisor integration test uses: a real `corrald
//! --user` with its own temp directories and its own cgroup root
//! (`<cg2>/corral-test-<pid>-<n>`), ready when it says so on `--ready-fd`.
//! Dropping it (even while a test panics) kills the daemon, kills every
//! process left in its cgroup tree and removes the tree.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral::cgroup::TempCgroup;

use super::{eventually, scratch};

/// What a `corral` invocation returned.
#[derive(Debug)]
pub struct Out {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A running `corrald --user` for one test.
pub struct TestDaemon {
    child: Option<Child>,
    /// Its temp directory: units/, run/ (XDG_RUNTIME_DIR, %t), state/, corrald.log.
    pub dir: tempfile::TempDir,
    /// A scratch cgroup, removed (with what is left inside) on drop.
    pub root: TempCgroup,
    /// The cgroup root the daemon creates unit cgroups in: `root` unless
    /// the test gave another ([`TestDaemon::start_at`]).
    pub cgroup_root: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The corrald binary launched (the crate's unless the test gave another).
    program: PathBuf,
}

impl TestDaemon {
    /// Starts a daemon with the units written by `setup` (into units/) already
    /// in place; None when the machine cannot run it (see [`scratch`]).
    pub fn start_with(setup: impl FnOnce(&TestDaemon)) -> Option<TestDaemon> {
        Self::start_args(setup, &[])
    }

    /// Starts a daemon with no units yet.
    pub fn start() -> Option<TestDaemon> {
        Self::start_with(|_| {})
    }

    /// Starts a daemon with extra command-line arguments.
    pub fn start_args(setup: impl FnOnce(&TestDaemon), extra: &[&str]) -> Option<TestDaemon> {
        Self::start_in(None, setup, extra, |_| {}, None)
    }

    /// Starts a daemon whose cgroup root is `cgroup_root` (created if
    /// missing; its removal is the caller's) instead of a scratch cgroup.
    pub fn start_at(cgroup_root: &Path, setup: impl FnOnce(&TestDaemon)) -> Option<TestDaemon> {
        Self::start_in(Some(cgroup_root.to_path_buf()), setup, &[], |_| {}, None)
    }

    /// Starts a daemon from the corrald binary at `program` (a copy the
    /// test may replace) instead of the crate's.
    pub fn start_from(program: &Path, setup: impl FnOnce(&TestDaemon)) -> Option<TestDaemon> {
        Self::start_in(None, setup, &[], |_| {}, Some(program.to_path_buf()))
    }

    /// Starts a daemon whose `corrald` command `configure` adjusts before
    /// it is spawned (environment, limits and capabilities in `pre_exec`).
    pub fn start_configured(
        setup: impl FnOnce(&TestDaemon),
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Option<TestDaemon> {
        Self::start_in(None, setup, extra, configure, None)
    }

    fn start_in(
        cgroup_root: Option<PathBuf>,
        setup: impl FnOnce(&TestDaemon),
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
        program: Option<PathBuf>,
    ) -> Option<TestDaemon> {
        let root = scratch()?;
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["units", "run", "state", "runit"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let socket = dir.path().join("run/corral/control.sock");
        let mut td = TestDaemon {
            child: None,
            dir,
            cgroup_root: cgroup_root.unwrap_or_else(|| root.path().to_path_buf()),
            root,
            socket,
            program: program.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_corrald"))),
        };
        setup(&td);
        td.launch(extra, configure);
        Some(td)
    }

    /// Spawns `corrald` on this daemon's directories and waits for its ready line.
    fn launch(&mut self, extra: &[&str], configure: impl FnOnce(&mut Command)) {
        let (ready_r, ready_w) = nix::unistd::pipe().expect("pipe");
        // The write end is inherited by corrald (no CLOEXEC) and named by --ready-fd.
        // Appended, so that the log of a restarted daemon keeps its predecessor's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("corrald.log"))
            .expect("log file");
        let mut cmd = Command::new(&self.program);
        cmd.arg("--user")
            .arg("--units-dir")
            .arg(self.dir.path().join("units"))
            .arg("--runit-dir")
            .arg(self.dir.path().join("runit"))
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("--runtime-dir")
            .arg(self.dir.path().join("run/corral"))
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .arg("--ready-fd")
            .arg(ready_w.as_raw_fd().to_string())
            .args(extra)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn corrald");
        drop(ready_w);
        self.child = Some(child);
        let line = read_line_within(ready_r, Duration::from_secs(20));
        assert!(
            line.starts_with("READY=1"),
            "corrald did not report readiness (got {line:?}); its log:\n{}",
            self.log()
        );
    }

    /// Stops the daemon with SIGTERM (its units are stopped) and starts it
    /// again on the same directories and state.
    pub fn restart(&mut self) {
        self.terminate();
        self.launch(&[], |_| {});
    }

    /// Starts the daemon again after [`TestDaemon::terminate`], on the same
    /// directories and state (the time between is the test's).
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "relaunch of a daemon still running");
        self.launch(&[], |_| {});
    }

    /// Stops the daemon as a service manager would, with SIGTERM (it stops
    /// its units first); fails the test unless it exits 0 within 30 s.
    pub fn terminate(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(
            self.wait_exit(Duration::from_secs(30)),
            Some(0),
            "corrald did not exit 0 after SIGTERM; its log:\n{}",
            self.log()
        );
    }

    /// Kills the daemon with SIGKILL (a crash: its units are left running)
    /// and waits for it; [`TestDaemon::relaunch`] starts a successor.
    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("kill of a daemon not running");
        child.kill().expect("SIGKILL corrald");
        child.wait().expect("wait corrald");
    }

    /// The daemon's PID.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("corrald.log")).unwrap_or_default()
    }

    /// $XDG_RUNTIME_DIR of the daemon (what `%t` expands to).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The units directory.
    pub fn units_dir(&self) -> PathBuf {
        self.dir.path().join("units")
    }

    /// The runit service directory.
    pub fn runit_dir(&self) -> PathBuf {
        self.dir.path().join("runit")
    }

    /// A Type=notify service in python: READY=1 after `delay` seconds, then
    /// sleeps; the path of its script.
    pub fn notify_script(&self, name: &str, delay: u32) -> String {
        let path = self.dir.path().join(format!("{name}.py"));
        super::write_script(
            &path,
            &format!(
                "#!/usr/bin/env python3\nimport os, socket, time\n\
                 time.sleep({delay})\n\
                 s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                 s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
                 time.sleep(1000)\n"
            ),
        );
        path.display().to_string()
    }

    /// The units a manager that dies or re-executes must keep running:
    /// simple.service (Restart=on-failure), forking.service (memcached on
    /// `port`, PIDFile=) and notify.service (READY=1 at once).
    pub fn write_kept_units(&self, port: u16) {
        self.write_unit(
            "simple.service",
            "[Service]\nRestart=on-failure\nRestartSec=0\nExecStart=/bin/sleep 1000\n",
        );
        self.write_unit(
            "forking.service",
            &format!(
                "[Service]\nType=forking\nPIDFile=%t/%p.pid\n\
                 ExecStart=/usr/bin/memcached -d -P %t/%p.pid -l 127.0.0.1 -p {port} -U 0{}\n",
                memcached_user_flag()
            ),
        );
        let ready = self.notify_script("ready", 0);
        self.write_unit(
            "notify.service",
            &format!("[Service]\nType=notify\nExecStart={ready}\n"),
        );
    }

    /// Writes a unit file.
    pub fn write_unit(&self, name: &str, text: &str) {
        std::fs::write(self.units_dir().join(name), text).expect("write unit");
    }

    /// The cgroup a running unit's invocation uses.
    pub fn unit_cgroup(&self, unit: &str) -> PathBuf {
        self.cgroup_root.join(unit)
    }

    /// Runs the real `corral` against this daemon.
    pub fn corral(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env("CORRAL_SOCKET", &self.socket)
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run corral");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `corral` and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.corral(args);
        assert_eq!(
            o.code,
            0,
            "corral {args:?} failed: {o:?}\ncorrald log:\n{}",
            self.log()
        );
        o
    }

    /// `corral show -p PROP --value UNIT`.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.ok(&["show", "-p", prop, "--value", unit])
            .stdout
            .trim()
            .to_string()
    }

    /// Waits until `unit`'s ActiveState is `state`; fails the test (with the
    /// state it is in and the daemon's log) after 30 s, a hang guard.
    pub fn wait_state(&self, unit: &str, state: &str) {
        let reached = eventually(Duration::from_secs(30), || {
            (self.prop(unit, "ActiveState") == state).then_some(())
        });
        assert!(
            reached.is_some(),
            "{unit} never became {state} (is {}); corrald log:\n{}",
            self.prop(unit, "ActiveState"),
            self.log()
        );
    }

    /// The directory of the daemon's journal store.
    pub fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("state/journal")
    }

    /// `corral journal --no-pager -D STORE -u UNIT EXTRA...`: the unit's
    /// journal read from the store, as the CLI does with the manager down.
    pub fn journal(&self, unit: &str, extra: &[&str]) -> Out {
        let dir = self.journal_dir();
        let mut args = vec![
            "journal",
            "--no-pager",
            "-D",
            dir.to_str().unwrap(),
            "-u",
            unit,
        ];
        args.extend(extra);
        self.corral(&args)
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        // Never pid() here: its 0 for a daemon that has exited would signal
        // the test's whole process group.
        let child = self
            .child
            .as_ref()
            .expect("signal to a daemon that is not running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
            .expect("signal corrald");
    }

    /// Waits for the daemon to exit (bounded as a test guard) and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = child.try_wait().expect("wait corrald") {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // self.root (TempCgroup) then kills what is left in the tree and removes it.
    }
}

fn read_line_within(fd: OwnedFd, limit: Duration) -> String {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(limit.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    match poll(&mut pfd, ms) {
        Ok(n) if n > 0 => {}
        _ => return String::new(),
    }
    let mut f = std::fs::File::from(fd);
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Writes `probe.socket` (Accept=yes, listening on `<run>/probe.sock`,
/// not enabled) whose instances answer "hi" to each connection; its path.
pub fn write_probe_socket(td: &TestDaemon) -> PathBuf {
    let path = td.run_dir().join("probe.sock");
    td.write_unit(
        "probe.socket",
        &format!(
            "[Socket]\nListenStream={}\nAccept=yes\n[Install]\nWantedBy=sockets.target\n",
            path.display()
        ),
    );
    td.write_unit(
        "probe@.service",
        "[Service]\nExecStart=/bin/echo hi\nStandardInput=socket\n",
    );
    path
}

/// The inode of the listening unix socket bound at `path`, from
/// /proc/net/unix (the same number before and after means the same socket).
pub fn unix_socket_inode(path: &Path) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; St 01 = listening.
        (f.len() == 8 && f[7] == want && f[5] == "01").then(|| f[6].parse().ok())?
    })
}

/// Connects to the unix socket `path` one client after another (20 ms
/// apart) until `stop` is set: (connections answered "hi", failures with
/// what went wrong).
pub fn probe_in_a_loop(path: &Path, stop: &std::sync::atomic::AtomicBool) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failed = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let answer = std::os::unix::net::UnixStream::connect(path).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut s = String::new();
            c.read_to_string(&mut s).map(|_| s)
        });
        match answer {
            Ok(s) if s == "hi\n" => ok += 1,
            other => failed.push(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (ok, failed)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Asks memcached on `port` for its version; None when nothing answers.
pub fn memcached_version(port: u16) -> Option<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"version\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// Whether memcached runs as root here (it refuses without `-u root` then).
pub fn memcached_user_flag() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        " -u root"
    } else {
        ""
    }
}
