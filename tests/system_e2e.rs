//! End to end: corrald --system starting the real `corrald --user` of a real
//! user at a PAM login, with the seed's runit examples in the user's
//! ~/service: an ssh-agent and a D-Bus session bus reached from the login;
//! isolation between users; restart after SIGKILL; nothing left at the last
//! logout; linger keeps the units.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::system::*;
use common::{processes_of, show, wait_until};

/// What the end-to-end tests run besides corral (scripts/test installs them).
const E2E_TOOLS: &[&str] = &[
    "pamtester",
    "ssh-agent",
    "ssh-add",
    "dbus-daemon",
    "dbus-send",
];

/// The seed's ssh-agent run script, verbatim.
const SSH_AGENT_RUN: &str = "#!/bin/sh\nexec > ~/.ssh/ssh-agent-env\nexec ssh-agent -D\n";
/// The seed's D-Bus session run script, verbatim.
const DBUS_RUN: &str =
    "#!/bin/sh\nexec dbus-daemon --session --nofork --address=\"unix:path=$(pwd)/sock\"\n";

/// Runs `sh -c script` as `user` in their home with a login-like environment.
fn as_user(user: &TestUser, script: &str) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(&user.home)
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("XDG_RUNTIME_DIR", format!("/run/user/{}", user.uid))
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .unwrap()
}

/// The user's ~/service and ~/.ssh/ssh-agent-env, removed on drop even
/// when the test fails. Declare it before the [`TestSystem`]: the daemon
/// (and the manager reading ~/service) stops first.
struct Services {
    home: PathBuf,
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.home.join("service"));
        let _ = std::fs::remove_file(self.home.join(".ssh/ssh-agent-env"));
    }
}

/// Puts the seed's runit services into `user`'s ~/service (fresh each test).
fn install_services(user: &TestUser) -> Services {
    let guard = Services {
        home: user.home.clone(),
    };
    let service = user.home.join("service");
    let _ = std::fs::remove_dir_all(&service);
    let _ = std::fs::remove_file(user.home.join(".ssh/ssh-agent-env"));
    let out = as_user(user, "mkdir -p ~/.ssh ~/service/ssh-agent ~/service/dbus");
    assert!(out.status.success(), "{}", show(&out));
    for (dir, script) in [("ssh-agent", SSH_AGENT_RUN), ("dbus", DBUS_RUN)] {
        let run = service.join(dir).join("run");
        std::fs::write(&run, script).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&run, Some(user.uid), Some(user.gid)).unwrap();
    }
    guard
}

/// A PAM service using pam_corral.so against `socket`.
struct Service {
    name: String,
}

impl Service {
    /// pam_corral.so, then the `extra` session lines.
    fn new(socket: &Path, extra: &str) -> Service {
        let dir = Path::new(env!("CARGO_BIN_EXE_corrald")).parent().unwrap();
        let so = dir.join("libpam_corral.so");
        assert!(
            so.exists(),
            "{} is missing: `cargo build -p pam_corral` first (scripts/test does)",
            so.display()
        );
        // Tests of this binary run in parallel: one file each.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("corral-e2e-{}-{n}", std::process::id());
        std::fs::write(
            format!("/etc/pam.d/{name}"),
            format!(
                "auth required pam_permit.so\naccount required pam_permit.so\n\
                 session required {} socket={} timeout=30\n{extra}",
                so.display(),
                socket.display()
            ),
        )
        .unwrap();
        Service { name }
    }

    fn run(&self, user: &TestUser, ops: &[&str]) -> Output {
        Command::new("pamtester")
            .arg(&self.name)
            .arg(&user.name)
            .args(ops)
            .output()
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/pam.d/{}", self.name));
    }
}

/// Whether `ssh-add -l` reaches the agent named in ~/.ssh/ssh-agent-env
/// (exit 1 "no identities" = reached; 2 = cannot connect).
fn agent_reachable(user: &TestUser) -> bool {
    let out = as_user(user, ". ~/.ssh/ssh-agent-env >/dev/null && ssh-add -l");
    out.status.code() == Some(1) && String::from_utf8_lossy(&out.stdout).contains("no identities")
}

/// The agent's PID from ~/.ssh/ssh-agent-env (`echo Agent pid N;`).
fn agent_pid(user: &TestUser) -> Option<u32> {
    let env = std::fs::read_to_string(user.home.join(".ssh/ssh-agent-env")).ok()?;
    let rest = env.split("Agent pid ").nth(1)?;
    rest.split(';').next()?.trim().parse().ok()
}

fn bus_reachable(user: &TestUser) -> bool {
    as_user(
        user,
        "dbus-send --bus=unix:path=$HOME/service/dbus/sock --print-reply \
         --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.ListNames",
    )
    .status
    .success()
}

/// Cgroups directly below `user-UID/` other than `manager` and the fd holder's.
fn unit_cgroups(user_cg: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(user_cg)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir())
                        && e.file_name() != "manager"
                        && e.file_name() != "corral-fd-holder"
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_login_runs_the_users_runit_services_and_the_last_logout_ends_them() {
    if !can_run_with("e2e login", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t1", true);
    let _services = install_services(&user);
    let sys = TestSystem::start(None);
    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    wait_until(20, "ssh-add -l to reach the agent", || {
        agent_reachable(&user)
    });
    wait_until(20, "dbus-send to reach the bus", || bus_reachable(&user));

    // The units run as the user in sibling cgroups the user owns.
    let user_cg = sys.user_cgroup(user.uid);
    let units = unit_cgroups(&user_cg);
    assert!(units.len() >= 2, "unit cgroups: {units:?}");
    for cg in &units {
        assert_eq!(owner(cg), user.uid, "{}", cg.display());
    }
    let manager_procs = std::fs::read_to_string(user_cg.join("manager/cgroup.procs")).unwrap();
    let manager_pid = manager_procs.lines().next().expect("manager in manager/");
    let status = std::fs::read_to_string(format!("/proc/{manager_pid}/status")).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(groups.contains(&test_group_gid().to_string()), "{groups}");
    assert!(
        status.contains(&format!("Uid:\t{u}\t{u}\t{u}\t{u}", u = user.uid)),
        "{status}"
    );

    let out = sys.corral(&["logout", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    wait_until(30, "the user's subtree to go", || !user_cg.exists());
    wait_until(5, "every process of the user to end", || {
        processes_of(user.uid).is_empty()
    });
    assert!(!agent_reachable(&user));
}

#[test]
fn another_user_cannot_reach_a_users_manager() {
    if !can_run_with("e2e isolation", E2E_TOOLS) {
        return;
    }
    let a = test_user("corral-t1", true);
    let b = test_user("corral-t2", false);
    let _services = install_services(&a);
    // A service of A's that prints something only A may read.
    let marker = a.home.join("service/marker");
    std::fs::create_dir_all(&marker).unwrap();
    std::fs::write(
        marker.join("run"),
        "#!/bin/sh\necho corral-secret-of-A\nexec sleep 100000\n",
    )
    .unwrap();
    std::fs::set_permissions(marker.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&marker, Some(a.uid), Some(a.gid)).unwrap();
    std::os::unix::fs::chown(marker.join("run"), Some(a.uid), Some(a.gid)).unwrap();
    let sys = TestSystem::start(None);
    assert!(
        sys.corral(&["login", "--wait", &a.name]).status.success(),
        "{}",
        sys.stderr()
    );
    let socket = format!("/run/user/{}/corral/control.sock", a.uid);
    assert!(Path::new(&socket).exists(), "{socket}");
    // A's manager socket: 0600 in a 0700 directory, both A's.
    use std::os::unix::fs::MetadataExt;
    for (path, mode) in [
        (socket.as_str(), 0o600),
        (socket.trim_end_matches("/control.sock"), 0o700),
    ] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.mode() & 0o777, mode, "{path}");
        assert_eq!(meta.uid(), a.uid, "{path}");
    }

    for verb in [
        vec!["start", "ssh-agent"],
        vec!["stop", "ssh-agent"],
        vec!["status", "ssh-agent"],
    ] {
        let mut args = vec!["--socket", socket.as_str()];
        args.extend(verb.iter().copied());
        let out = sys.corral_as(Some(&b), &args);
        assert_eq!(out.status.code(), Some(2), "{verb:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{verb:?}: {}",
            show(&out)
        );
    }
    let out = sys.corral_as(Some(&b), &["logout", &a.name]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        show(&out)
    );
    // A reads their own journal through their manager...
    let journal = |user: &TestUser| {
        sys.corral_as(
            Some(user),
            &[
                "--socket",
                &socket,
                "journal",
                "-u",
                "marker.service",
                "--no-pager",
            ],
        )
    };
    wait_until(10, "A's journal to show the marker's output", || {
        let own = journal(&a);
        own.status.success() && String::from_utf8_lossy(&own.stdout).contains("corral-secret-of-A")
    });
    // ...B, pointed at A's socket, is refused, saying why...
    let other = journal(&b);
    assert_eq!(other.status.code(), Some(2), "{}", show(&other));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("permission denied") && err.contains("each user can reach only their own"),
        "{}",
        show(&other)
    );
    assert!(
        !String::from_utf8_lossy(&other.stdout).contains("corral-secret-of-A"),
        "B read A's journal: {}",
        show(&other)
    );
    // ...and so is B reading A's journal files directly: they are A's alone
    // (files 0600 in a 0700 directory).
    let journal_dir = a.home.join(".local/state/corral/journal");
    let meta = std::fs::metadata(&journal_dir).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o700, a.uid),
        "{}",
        journal_dir.display()
    );
    let files: Vec<_> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        !files.is_empty(),
        "no journal files in {}",
        journal_dir.display()
    );
    for file in &files {
        let meta = std::fs::metadata(file).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid()),
            (0o600, a.uid),
            "{}",
            file.display()
        );
    }
    let dir = journal_dir.display().to_string();
    let store = files[0].display().to_string();
    for args in [["-D", dir.as_str()], ["--file", store.as_str()]] {
        let out = sys.corral_as(
            Some(&b),
            &[
                "journal",
                args[0],
                args[1],
                "-u",
                "marker.service",
                "--no-pager",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("permission denied reading the journal")
                && err.contains("readable only by its user"),
            "{args:?}: {}",
            show(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("corral-secret-of-A"),
            "{args:?}: B read A's journal: {}",
            show(&out)
        );
    }
    // A's agent is untouched.
    wait_until(20, "A's agent", || agent_reachable(&a));
    assert!(sys.corral(&["logout", &a.name]).status.success());
    wait_until(30, "A's subtree to go", || !sys.user_cgroup(a.uid).exists());
}

#[test]
fn a_killed_user_manager_is_restarted_and_takes_its_units_back() {
    if !can_run_with("e2e restart", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t1", true);
    let _services = install_services(&user);
    let sys = TestSystem::start(None);
    sys.login(&user);
    wait_until(20, "the agent", || agent_reachable(&user));
    let old_agent = agent_pid(&user).expect("the agent's pid in ~/.ssh/ssh-agent-env");
    sys.kill_manager(&user, 30);
    // The new manager takes the predecessor's units back: the same agent,
    // reachable, still in its one cgroup, and nothing stopped as a leftover.
    let socket = format!("/run/user/{}/corral/control.sock", user.uid);
    let main_pid = || {
        let args = [
            "--socket",
            &socket,
            "show",
            "-p",
            "MainPID",
            "--value",
            "ssh-agent.service",
        ];
        String::from_utf8_lossy(&sys.corral_as(Some(&user), &args).stdout)
            .trim()
            .to_string()
    };
    wait_until(30, "the agent under the new manager", || {
        main_pid() == old_agent.to_string()
    });
    assert!(agent_reachable(&user));
    wait_until(30, "the bus under the new manager", || bus_reachable(&user));
    let agents: Vec<_> = unit_cgroups(&sys.user_cgroup(user.uid))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ssh-agent")
        })
        .collect();
    assert_eq!(agents.len(), 1, "{agents:?}");
    let system_journal = sys.journal(user.uid, &[]);
    assert!(
        system_journal.contains("ssh-agent.service: Taken back by a new manager: active (running)"),
        "{system_journal}"
    );
    assert!(
        !system_journal.contains("left by a previous manager"),
        "{system_journal}"
    );
    sys.logout_and_wait(&user, 30);
}

#[test]
fn a_restarted_system_manager_keeps_the_real_user_manager_and_its_units() {
    if !can_run_with("e2e system restart", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t1", true);
    let _services = install_services(&user);
    let mut sys = TestSystem::start(None);
    sys.login(&user);
    wait_until(20, "the agent", || agent_reachable(&user));
    let mut agent = agent_pid(&user).expect("the agent's pid");
    let manager = sys.manager_pid(&user).expect("a manager");
    let socket = format!("/run/user/{}/corral/control.sock", user.uid);
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        sys.restart(signal);
        assert_eq!(sys.manager_pid(&user), Some(manager), "{}", sys.stderr());
        assert_eq!(
            agent_pid(&user),
            Some(agent),
            "{signal}: the unit kept running"
        );
        assert!(agent_reachable(&user));
        // The manager still owns its subtree and works: a unit restart.
        let out = sys.corral_as(
            Some(&user),
            &["--socket", &socket, "restart", "ssh-agent.service"],
        );
        assert!(out.status.success(), "{}", show(&out));
        wait_until(20, "the restarted agent", || {
            agent_pid(&user).is_some_and(|p| p != agent) && agent_reachable(&user)
        });
        agent = agent_pid(&user).unwrap();
    }
    sys.logout_and_wait(&user, 30);
    wait_until(5, "every process of the user to end", || {
        processes_of(user.uid).is_empty()
    });
}

#[test]
fn with_linger_the_users_services_outlive_the_last_logout() {
    if !can_run_with("e2e linger", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t2", false);
    let _services = install_services(&user);
    let sys = TestSystem::start(None);
    sys.login(&user);
    assert!(sys.corral(&["enable-linger", &user.name]).status.success());
    assert!(sys.corral(&["logout", &user.name]).status.success());
    wait_until(20, "the agent", || agent_reachable(&user));
    assert!(bus_reachable(&user));
    assert!(sys.corral(&["disable-linger", &user.name]).status.success());
    wait_until(30, "the subtree to go", || {
        !sys.user_cgroup(user.uid).exists()
    });
}

#[test]
fn pamtester_open_and_close_session_runs_the_manager_and_units_as_the_user_and_leaves_nothing() {
    if !can_run_with("e2e pamtester open+close", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t1", true);
    let _services = install_services(&user);
    let sys = TestSystem::start(None);
    let user_cg = sys.user_cgroup(user.uid);
    // pam_exec runs after pam_corral's open_session returned (manager
    // ready, autostart units started) and records what runs, as root.
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot");
    let script = dir.path().join("snapshot.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             [ \"$PAM_TYPE\" = open_session ] || exit 0\n\
             cg={cg}\n\
             m=$(head -n1 $cg/manager/cgroup.procs)\n\
             {{ echo \"manager=$m\"; grep -E '^(Uid|Groups):' /proc/$m/status;\n\
               for d in $cg/*/; do\n\
                 echo \"cgroup=$(basename $d) owner=$(stat -c %u $d) procs=$(cat $d/cgroup.procs | tr '\\n' ' ')\";\n\
               done; env; }} > {out}\n",
            cg = user_cg.display(),
            out = snapshot.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pam = Service::new(
        &sys.socket(),
        &format!("session required pam_exec.so {}\n", script.display()),
    );

    let out = pam.run(&user, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    let snap = std::fs::read_to_string(&snapshot).unwrap();
    // The manager ran as the user, with the user's supplementary groups.
    assert!(
        snap.contains(&format!("Uid:\t{u}\t{u}\t{u}\t{u}", u = user.uid)),
        "{snap}"
    );
    let groups = snap.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(groups.contains(&test_group_gid().to_string()), "{snap}");
    // Its units ran in sibling cgroups owned by the user.
    for unit in ["ssh-agent", "dbus"] {
        let line = snap
            .lines()
            .find(|l| l.starts_with(&format!("cgroup={unit}")))
            .unwrap_or_else(|| panic!("no cgroup for {unit}: {snap}"));
        assert!(line.contains(&format!("owner={}", user.uid)), "{line}");
        assert!(!line.ends_with("procs="), "{unit} had no process: {line}");
    }
    assert!(
        snap.contains(&format!("XDG_RUNTIME_DIR=/run/user/{}", user.uid)),
        "{snap}"
    );
    // After the last close: nothing of the user is left.
    wait_until(30, "the user's subtree to go", || !user_cg.exists());
    wait_until(5, "every process of the user to end", || {
        processes_of(user.uid).is_empty()
    });
    let rundir = format!("/run/user/{}", user.uid);
    wait_until(5, "the runtime dir to go", || !Path::new(&rundir).exists());
}

#[test]
fn pamtester_with_linger_leaves_the_real_manager_and_its_units_running() {
    if !can_run_with("e2e pamtester with linger", E2E_TOOLS) {
        return;
    }
    let user = test_user("corral-t2", false);
    let _services = install_services(&user);
    let sys = TestSystem::start(None);
    let user_cg = sys.user_cgroup(user.uid);
    let pam = Service::new(&sys.socket(), "");
    let out = sys.corral(&["enable-linger", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    wait_until(20, "the lingering manager's agent", || {
        agent_reachable(&user)
    });
    wait_until(20, "the lingering manager's bus", || bus_reachable(&user));
    let manager = sys.manager_pid(&user).expect("the lingering manager runs");
    let agent = agent_pid(&user).expect("the agent's pid in ~/.ssh/ssh-agent-env");

    let out = pam.run(&user, &["open_session", "close_session"]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    // The session came and went; the real manager and its units stayed.
    let status = sys.status(&user);
    assert!(status.contains("sessions: 0, linger: yes"), "{status}");
    assert_eq!(sys.manager_pid(&user), Some(manager), "{status}");
    assert_eq!(agent_pid(&user), Some(agent));
    assert!(
        agent_reachable(&user),
        "the agent is gone after close_session"
    );
    assert!(bus_reachable(&user), "the bus is gone after close_session");
    let units = unit_cgroups(&user_cg);
    for unit in ["ssh-agent", "dbus"] {
        let cg = units
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(unit))
            .unwrap_or_else(|| panic!("no cgroup for {unit}: {units:?}"));
        let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
        assert!(!procs.trim().is_empty(), "{unit} has no process left");
    }

    // Without linger, nothing of the user is left.
    let out = sys.corral(&["disable-linger", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    wait_until(30, "the user's subtree to go", || !user_cg.exists());
    wait_until(5, "every process of the user to end", || {
        processes_of(user.uid).is_empty()
    });
    assert!(!agent_reachable(&user));
}
