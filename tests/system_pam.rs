//! pam_corral.so through real PAM: pamtester with a service file written by
//! the test, against a running corrald --system (with a stand-in user
//! manager; tests/system_e2e.rs runs the real one).

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::system::*;
use common::{processes_of, show, wait_until};

/// target/<profile>/libpam_corral.so, next to the binaries under test.
fn module() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_corrald")).parent().unwrap();
    let so = dir.join("libpam_corral.so");
    assert!(
        so.exists(),
        "{} is missing: build the PAM module first with `cargo build -p pam_corral` \
         (with --release for a release test run; scripts/test does)",
        so.display()
    );
    so
}

/// A PAM service /etc/pam.d/corral-test-PID-N using pam_corral.so with
/// `args`, then pam_exec dumping the PAM environment to `dir/env-TYPE`.
struct Service {
    name: String,
    dir: tempfile::TempDir,
}

impl Service {
    fn new(args: &str) -> Service {
        Self::with_exec(args, None)
    }

    /// A service whose open_session blocks (after pam_corral registered the
    /// session) until a line is written to `fifo`: the login process then
    /// stays alive with its session open, as a logged-in shell's would.
    fn holding(args: &str, fifo: &Path) -> Service {
        Self::with_exec(args, Some(fifo))
    }

    fn with_exec(args: &str, hold: Option<&Path>) -> Service {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("corral-test-{}-{n}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump-env");
        let hold = hold.map_or(String::new(), |fifo| {
            format!(
                "[ \"$PAM_TYPE\" = open_session ] && read line < {}\n",
                fifo.display()
            )
        });
        std::fs::write(
            &dump,
            format!(
                "#!/bin/sh\nenv > {}/env-$PAM_TYPE\n{hold}exit 0\n",
                dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = format!(
            "auth     required pam_permit.so\n\
             account  required pam_permit.so\n\
             session  required {} {args}\n\
             session  optional pam_exec.so {}\n",
            module().display(),
            dump.display()
        );
        std::fs::write(format!("/etc/pam.d/{name}"), conf).unwrap();
        Service { name, dir }
    }

    fn pamtester(&self, user: &TestUser, ops: &[&str]) -> Output {
        Command::new("pamtester")
            .arg(&self.name)
            .arg(&user.name)
            .args(ops)
            .output()
            .unwrap()
    }

    /// pamtester in the background, for a login that might hang.
    fn pamtester_background(&self, user: &TestUser, ops: &[&str]) -> Background {
        let mut cmd = Command::new("pamtester");
        cmd.arg(&self.name).arg(&user.name).args(ops);
        Background::spawn(cmd, "pamtester")
    }

    /// The PAM environment pam_exec saw at open_session.
    fn opened_env(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("env-open_session")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/pam.d/{}", self.name));
    }
}

/// PIDs of live processes whose real uid is `uid` (zombies are dead: they
/// wait for whoever inherited them to reap them).
#[test]
fn open_session_starts_the_manager_and_exports_the_runtime_dir_and_bus_then_close_ends_all() {
    if !can_run_with("pam open/close", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t1", true);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), true)));
    let service = Service::new(&format!("socket={} timeout=20", sys.socket().display()));

    let out = service.pamtester(&user, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    let env = service.opened_env();
    let rundir = format!("/run/user/{}", user.uid);
    assert!(
        env.contains(&format!("XDG_RUNTIME_DIR={rundir}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "DBUS_SESSION_BUS_ADDRESS=unix:path={rundir}/bus\n"
        )),
        "{env}"
    );
    // The manager ran as the user in user-UID/manager before the close.
    let log = std::fs::read_to_string(sys.stderr_path.clone()).unwrap();
    assert!(
        log.contains(&format!("started user manager of uid {}", user.uid)),
        "{log}"
    );

    wait_until(20, "the user's subtree to go after the last close", || {
        !sys.user_cgroup(user.uid).exists()
    });
    assert_eq!(
        processes_of(user.uid),
        Vec::new(),
        "processes of the user left"
    );
    wait_until(5, "the runtime dir to go", || !Path::new(&rundir).exists());
}

#[test]
fn with_linger_the_manager_outlives_the_pam_session() {
    if !can_run_with("pam with linger", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let service = Service::new(&format!("socket={} norundir", sys.socket().display()));
    assert!(sys.corral(&["enable-linger", &user.name]).status.success());
    wait_until(20, "the lingering manager", || {
        sys.manager_pid(&user).is_some()
    });
    let pid = sys.manager_pid(&user).unwrap();

    let out = service.pamtester(&user, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}", show(&out));
    // norundir: another module exports XDG_RUNTIME_DIR.
    assert!(
        !service.opened_env().contains("XDG_RUNTIME_DIR="),
        "{}",
        service.opened_env()
    );
    let status = sys.status(&user);
    assert!(status.contains("sessions: 0, linger: yes"), "{status}");
    assert_eq!(sys.manager_pid(&user), Some(pid), "the manager stays");
    assert!(sys.user_cgroup(user.uid).join("manager").exists());

    assert!(sys.corral(&["disable-linger", &user.name]).status.success());
    wait_until(20, "the subtree to go", || {
        !sys.user_cgroup(user.uid).exists()
    });
}

#[test]
fn a_login_proceeds_when_the_daemon_is_not_running() {
    if !can_run_with("pam without daemon", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t2", false);
    let service = Service::new("socket=/nonexistent/corral/system.sock timeout=5");
    let out = service.pamtester(&user, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("successfully opened a session"),
        "{}",
        show(&out)
    );
    assert!(!service.opened_env().contains("XDG_RUNTIME_DIR="));
}

/// How a [`HungDaemon`] fails to answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hang {
    /// Never accepts, and its listen queue is full: a connect has to wait.
    FullBacklog,
    /// Accepts every connection and never writes a byte.
    Silent,
    /// Accepts, answers the handshake, never answers the request.
    AfterHandshake,
}

/// A "system socket" owned by the test whose daemon is hung; its thread
/// (if any) ends on drop.
struct HungDaemon {
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// The connection that fills the queue of a [`Hang::FullBacklog`] socket.
    _filler: Option<UnixStream>,
    /// Kept open so the socket stays a live listener.
    _listener: Option<UnixListener>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HungDaemon {
    fn start(hang: Hang) -> HungDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("system.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut daemon = HungDaemon {
            path: path.clone(),
            _dir: dir,
            _filler: None,
            _listener: None,
            stop: stop.clone(),
            thread: None,
        };
        if hang == Hang::FullBacklog {
            // listen() again shrinks the queue to one pending connection
            // (Linux allows one more than the backlog), which the filler takes.
            // SAFETY: listen on a socket we own.
            assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
            daemon._filler = Some(UnixStream::connect(&path).unwrap());
            // The queue really is full: a connect that may not wait is refused.
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
            let probe = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .unwrap();
            assert_eq!(
                connect(probe.as_raw_fd(), &UnixAddr::new(&path).unwrap()),
                Err(nix::errno::Errno::EAGAIN),
                "the listen queue is not full"
            );
            daemon._listener = Some(listener);
            return daemon;
        }
        daemon.thread = Some(std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                if hang == Hang::AfterHandshake {
                    let hello =
                        corral::ipc::frame::read_frame_blocking::<corral::ipc::Hello, _>(&mut conn);
                    if matches!(hello, Ok(Some(_))) {
                        let welcome = corral::ipc::Frame::Reply(corral::ipc::Welcome {
                            protocol: corral::ipc::PROTOCOL_VERSION,
                            server_version: corral::ipc::CORRAL_VERSION.to_string(),
                        });
                        let _ = corral::ipc::frame::write_frame_blocking(&mut conn, &welcome);
                    }
                }
                // Held open, never answered, until the test ends.
                held.push(conn);
            }
        }));
        daemon
    }
}

impl Drop for HungDaemon {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // One last connection wakes the accept loop to see the flag.
        self.stop.store(true, Ordering::SeqCst);
        if UnixStream::connect(&self.path).is_ok() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_login_proceeds_when_the_daemon_is_hung() {
    if !can_run_with("pam with a hung daemon", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t2", false);
    for hang in [Hang::FullBacklog, Hang::Silent, Hang::AfterHandshake] {
        let daemon = HungDaemon::start(hang);
        let service = Service::new(&format!("socket={} timeout=1", daemon.path.display()));
        // open_session returns PAM_SUCCESS and the login goes on; were the
        // module to block, pamtester would not end (the bound below is only
        // there so that a regression fails instead of hanging the suite).
        let out = service
            .pamtester_background(&user, &["open_session", "close_session"])
            .output(120);
        assert!(out.status.success(), "{hang:?}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("successfully opened a session")
                && stdout.contains("session has successfully been closed"),
            "{hang:?}: {}",
            show(&out)
        );
        // pam_exec, after pam_corral in the stack, ran: the login went on.
        assert!(
            service.dir.path().join("env-open_session").exists(),
            "{hang:?}: the session stack stopped at pam_corral"
        );
    }
}

#[test]
fn a_manager_that_never_gets_ready_delays_the_login_only_until_the_timeout() {
    if !can_run_with("pam timeout", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t1", true);
    let tmp = tempfile::tempdir().unwrap();
    let hang = tmp.path().join("never-ready");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 100000\n").unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sys = TestSystem::start(Some(hang));
    let service = Service::new(&format!("socket={} timeout=1", sys.socket().display()));

    let out = service.pamtester(&user, &["open_session"]);
    assert!(out.status.success(), "{}", show(&out));
    let env = service.opened_env();
    assert!(
        env.contains(&format!("XDG_RUNTIME_DIR=/run/user/{}\n", user.uid)),
        "{env}"
    );
    // The open registered a session though it stopped waiting; pamtester,
    // the login process, has exited without close_session: the session
    // ends by itself and takes the never-ready manager with it.
    wait_until(20, "the subtree to go", || {
        !sys.user_cgroup(user.uid).exists()
    });
}

#[test]
fn a_login_process_that_dies_without_close_session_ends_its_session() {
    if !can_run_with("pam leader exit", &["pamtester"]) {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let service = Service::new(&format!("socket={}", sys.socket().display()));
    // A session from `corral login` lasts until logout...
    sys.login(&user);
    // ...one opened through PAM belongs to its login process (pamtester).
    let out = service.pamtester(&user, &["open_session"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_until(20, "the PAM session to end with its process", || {
        sys.status(&user).contains("sessions: 1,")
    });
    assert!(
        sys.stderr().contains("exited without closing its session"),
        "{}",
        sys.stderr()
    );
    assert!(
        sys.manager_pid(&user).is_some(),
        "the other session keeps it"
    );
    sys.logout_and_wait(&user, 20);
}

#[test]
fn pam_sessions_outlive_a_restart_of_the_system_manager_and_end_as_before() {
    if !can_run_with("pam sessions across a restart", &["pamtester", "mkfifo"]) {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let mut sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    // One service (and fifo) per login process: a fifo's writer would
    // release every reader at once.
    let services: Vec<(Service, PathBuf)> = ["first", "second"]
        .iter()
        .map(|name| {
            let fifo = tmp.path().join(name);
            let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success());
            let args = format!("socket={}", sys.socket().display());
            (Service::holding(&args, &fifo), fifo)
        })
        .collect();
    let release = |fifo: &Path| std::fs::write(fifo, "go\n").unwrap();
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        // Two logins through PAM, each process holding its session open.
        let login = |i: usize| {
            services[i]
                .0
                .pamtester_background(&user, &["open_session", "close_session"])
        };
        let first = login(0);
        wait_until(20, "the first PAM session", || {
            sys.status(&user).contains("sessions: 1,")
        });
        let second = login(1);
        wait_until(20, "the second PAM session", || {
            sys.status(&user).contains("sessions: 2,")
        });
        // A session counts from its request; the manager it starts may
        // still be getting ready (a loaded machine's shell start-up).
        wait_until(20, "the manager to be ready", || {
            sys.manager_pid(&user).is_some()
        });
        let manager = sys.manager_pid(&user).expect("a running manager");

        sys.restart(signal);
        assert_eq!(sys.manager_pid(&user), Some(manager), "{}", sys.stderr());
        assert!(
            sys.status(&user).contains("sessions: 2,"),
            "{}",
            sys.status(&user)
        );

        // close_session after the restart ends the session it opened...
        release(&services[0].1);
        let out = first.output(20);
        assert!(out.status.success(), "{}", show(&out));
        wait_until(20, "one session left", || {
            sys.status(&user).contains("sessions: 1,")
        });
        assert_eq!(sys.manager_pid(&user), Some(manager));
        // ...and a login process that dies without it ends its session too,
        // through the pidfd the new system manager watches.
        drop(second);
        wait_until(20, "the user's subtree to go with the last session", || {
            !sys.user_cgroup(user.uid).exists()
        });
        assert!(
            sys.stderr().contains("exited without closing its session"),
            "{}",
            sys.stderr()
        );
        // The killed pamtester's pam_exec child still waits on the fifo.
        release(&services[1].1);
    }
}
