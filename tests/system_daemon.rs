//! corrald --system against real users and real cgroups, with a stand-in
//! user manager (a shell script that reports who and where it runs): login
//! and delegation, session counting, linger across a restart of the system
//! manager, restart of a killed manager, and refusals between users.

mod common;

use std::os::unix::fs::MetadataExt;

use common::system::*;
use common::{show, wait_until, write_script};

fn probe(user: &TestUser) -> String {
    std::fs::read_to_string(format!("/run/user/{}/probe", user.uid)).unwrap_or_default()
}

#[test]
fn login_starts_the_manager_as_the_user_in_a_delegated_cgroup_and_logout_removes_it() {
    if !can_run("login_starts_the_manager") {
        return;
    }
    let user = test_user("corral-t1", true);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let rundir = std::path::PathBuf::from(format!("/run/user/{}", user.uid));
    let rundir_existed = rundir.exists();

    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("manager ready"),
        "{}",
        show(&out)
    );

    // Who: the user, with the supplementary groups of the user database.
    let probe = probe(&user);
    assert!(probe.contains(&format!("uid={}\n", user.uid)), "{probe}");
    let groups_line = probe.lines().find(|l| l.starts_with("groups=")).unwrap();
    let groups: Vec<u32> = groups_line[7..]
        .split(' ')
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&user.gid), "{probe}");
    assert!(
        groups.contains(&test_group_gid()),
        "supplementary group missing: {probe}"
    );
    assert!(
        probe.contains(&format!(
            "env=HOME={} USER={n} LOGNAME={n} SHELL=/bin/sh PATH=/usr/local/bin:/usr/bin:/bin",
            user.home.display(),
            n = user.name
        )),
        "{probe}"
    );
    // Where: user-UID/manager below our root, with the delegated root passed on.
    let user_cg = sys.user_cgroup(user.uid);
    let mount = corral::cgroup::find_mount().unwrap();
    let rel = user_cg.join("manager");
    let rel = rel.strip_prefix(&mount).unwrap();
    assert!(
        probe.contains(&format!("0::/{}\n", rel.display())),
        "{probe}"
    );
    assert!(
        probe.contains(&format!("--cgroup-root {}", user_cg.display())),
        "{probe}"
    );

    // Delegation: the directory and the three files are the user's;
    // cgroup.kill stays root's.
    for f in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        assert_eq!(owner(&user_cg.join(f)), user.uid, "{f}");
    }
    assert_eq!(owner(&user_cg.join("cgroup.kill")), 0);
    // The user can create a sibling cgroup for a unit.
    let sibling = user_cg.join("unit-x");
    let made = std::process::Command::new("mkdir")
        .arg(&sibling)
        .uid_gid(user.uid, user.gid)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(owner(&sibling), user.uid);

    // Runtime dir: 0700, the user's.
    let meta = std::fs::metadata(&rundir).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(meta.uid(), user.uid);

    let status = sys.status(&user);
    assert!(status.contains("sessions: 1, linger: no"), "{status}");
    assert!(
        status.contains("user-") && status.contains("manager"),
        "{status}"
    );

    let out = sys.corral(&["logout", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopping"),
        "{}",
        show(&out)
    );
    wait_until(20, "the user's subtree to be removed", || !user_cg.exists());
    if !rundir_existed {
        wait_until(5, "/run/user/UID to be removed", || !rundir.exists());
    }
    wait_until(5, "the user to leave status", || {
        sys.manager_pid(&user).is_none()
    });
    // The system journal is root's alone: it holds every user's output.
    let journal_dir = sys.state_dir().join("journal");
    let meta = std::fs::metadata(&journal_dir).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, 0));
    // Its stderr, and what the system manager said about it, are in the
    // system journal under unit user-UID.
    wait_until(5, "the manager's stderr in the system journal", || {
        let journal = sys.journal(user.uid, &[]);
        journal.contains("stand-in manager ready")
            && journal.contains(&format!("started user manager of uid {}", user.uid))
    });
}

trait UidGid {
    fn uid_gid(&mut self, uid: u32, gid: u32) -> &mut Self;
}

impl UidGid for std::process::Command {
    fn uid_gid(&mut self, uid: u32, gid: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(uid).gid(gid)
    }
}

#[test]
fn sessions_are_counted_and_linger_survives_a_restart_of_the_system_manager() {
    if !can_run("sessions_are_counted") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let mut sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let user_cg = sys.user_cgroup(user.uid);

    sys.login(&user);
    let pid = sys.manager_pid(&user).expect("manager running");
    sys.login(&user);
    assert_eq!(
        sys.manager_pid(&user),
        Some(pid),
        "a second login reuses the manager"
    );
    assert!(sys.status(&user).contains("sessions: 2"));
    let out = sys.corral(&["logout", &user.name]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 session(s) left"),
        "{}",
        show(&out)
    );
    assert_eq!(sys.manager_pid(&user), Some(pid));
    assert!(sys.corral(&["logout", &user.name]).status.success());
    wait_until(20, "the subtree to go at the last logout", || {
        !user_cg.exists()
    });
    let out = sys.corral(&["logout", &user.name]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no open session"),
        "{}",
        show(&out)
    );

    // Linger: the manager starts without a login and outlives logins.
    let out = sys.corral(&["enable-linger", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(sys.state_dir().join("linger").join(&user.name).exists());
    wait_until(20, "the lingering manager to run", || {
        sys.manager_pid(&user).is_some()
    });
    sys.login(&user);
    assert!(sys.corral(&["logout", &user.name]).status.success());
    let pid = sys
        .manager_pid(&user)
        .expect("lingering manager survives the logout");
    assert!(user_cg.join("manager").exists());

    // A full stop of the system manager (SIGHUP) ends it, and the next
    // start starts it again as at boot (a SIGTERM would leave it running:
    // tests/system_restart.rs).
    sys.stop();
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err());
    assert!(
        !user_cg.exists(),
        "stopping the system manager removes the subtrees"
    );
    sys.spawn();
    wait_until(
        20,
        "the lingering manager to start with the system manager",
        || sys.manager_pid(&user).is_some_and(|p| p != pid),
    );

    let out = sys.corral(&["disable-linger", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!sys.state_dir().join("linger").join(&user.name).exists());
    wait_until(20, "the manager to stop without linger", || {
        !user_cg.exists()
    });
}

#[test]
fn a_killed_manager_is_restarted_in_a_fresh_cgroup() {
    if !can_run("a_killed_manager_is_restarted") {
        return;
    }
    let user = test_user("corral-t1", true);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    sys.login(&user);
    let second = sys.kill_manager(&user, 20);
    let status = sys.status(&user);
    assert!(status.contains("restarts: 1"), "{status}");
    assert!(
        status.contains("last error: the user manager of uid"),
        "{status}"
    );
    assert!(status.contains("killed by SIGKILL"), "{status}");
    let procs =
        std::fs::read_to_string(sys.user_cgroup(user.uid).join("manager/cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), second.to_string());
    assert!(
        sys.stderr().contains("killed by SIGKILL"),
        "{}",
        sys.stderr()
    );
    sys.logout_and_wait(&user, 20);
}

#[test]
fn a_user_cannot_act_on_another_user() {
    if !can_run("a_user_cannot_act_on_another_user") {
        return;
    }
    let a = test_user("corral-t1", true);
    let b = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    assert!(
        sys.corral(&["login", "--wait", &a.name]).status.success(),
        "{}",
        sys.stderr()
    );

    for verb in ["login", "logout", "enable-linger", "disable-linger"] {
        let out = sys.corral_as(Some(&b), &[verb, &a.name]);
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("permission denied")
                && err.contains(&b.uid.to_string())
                && err.contains(&a.uid.to_string()),
            "{verb}: {err}"
        );
    }
    let out = sys.corral_as(Some(&b), &["--system", "status", &a.name]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    // Unfiltered status shows B only themselves: nothing of A.
    let out = sys.corral_as(Some(&b), &["--system", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&a.name));
    // A's session is intact, and A may act on themselves.
    assert!(sys.status(&a).contains("sessions: 1"));
    let out = sys.corral_as(Some(&a), &["--system", "status"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&a.name));
    let out = sys.corral_as(Some(&a), &["logout"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_until(20, "A's subtree to go", || !sys.user_cgroup(a.uid).exists());
}

#[test]
fn a_manager_dying_in_a_burst_is_given_up_and_the_waiting_login_is_told() {
    if !can_run("a_manager_dying_in_a_burst") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let crash = tmp.path().join("crashing-manager");
    std::fs::write(
        &crash,
        "#!/bin/sh\necho 'cannot start: broken config' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&crash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sys = TestSystem::start(Some(crash));

    let out = sys.corral(&["login", "--wait", &user.name]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited with status 3") && err.contains("5 times"),
        "{err}"
    );
    let status = sys.status(&user);
    assert!(
        status.contains("manager: failed") && status.contains("restarts: 4"),
        "{status}"
    );
    assert!(
        status.contains("last error:") && status.contains("5 times"),
        "{status}"
    );
    assert!(
        !sys.user_cgroup(user.uid).exists(),
        "a failed user keeps no subtree"
    );
    // Its output went to the system journal: one line per run, each run its
    // own invocation with its own PID.
    let lines = || sys.journal(user.uid, &["--stream", "stderr", "-o", "json"]);
    // The journal is written by its own task: it may trail the answer a little.
    wait_until(5, "5 runs in the journal", || {
        lines().matches("cannot start: broken config").count() == 5
    });
    let json = lines();
    let pids: std::collections::HashSet<&str> = json
        .lines()
        .filter_map(|l| l.split("\"_PID\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(pids.len(), 5, "{json}");
    // The session still counts; logging out is clean.
    assert!(sys.corral(&["logout", &user.name]).status.success());
}

#[test]
fn subtrees_left_by_a_dead_system_manager_are_removed_at_start() {
    if !can_run("subtrees_left_by_a_dead_system_manager") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    sys.stop();
    // What a killed instance leaves: a user's subtree with a process in it
    // (one this test starts and moves into its own test cgroup).
    let manager = sys.cgroup.path().join("user-4242424/manager");
    std::fs::create_dir_all(&manager).unwrap();
    let procs = manager.join("cgroup.procs");
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec sleep 100000",
            procs.display()
        ))
        .spawn()
        .unwrap();
    wait_until(5, "the process in the leftover cgroup", || {
        std::fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty())
    });
    sys.spawn();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the leftover process was killed"
    );
    assert!(!sys.cgroup.path().join("user-4242424").exists());
    assert!(
        sys.stderr().contains("left by a previous instance"),
        "{}",
        sys.stderr()
    );
}

#[test]
fn a_login_that_waits_too_long_says_so_and_keeps_the_session() {
    if !can_run("a_login_that_waits_too_long") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let hang = tmp.path().join("never-ready");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 100000\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sys = TestSystem::start(Some(hang));
    let out = sys.corral(&["login", "--wait", "--timeout", "0.5", &user.name]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was not ready within 0.5s") && err.contains("corral logout"),
        "{err}"
    );
    let status = sys.status(&user);
    assert!(
        status.contains("manager: starting") && status.contains("sessions: 1,"),
        "{status}"
    );
    sys.logout_and_wait(&user, 20);
}

#[test]
fn a_user_without_a_home_gets_a_manager_started_in_the_root_directory() {
    if !can_run("a_user_without_a_home") {
        return;
    }
    let user = test_user_without_home("corral-t3");
    assert!(!user.home.exists());
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    let pid = sys.manager_pid(&user).unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        std::path::Path::new("/")
    );
    assert!(
        sys.stderr()
            .contains("does not exist; starting its manager in /")
    );
    sys.logout_and_wait(&user, 20);
}

#[test]
fn a_login_right_after_the_last_logout_gets_a_fresh_manager() {
    if !can_run("a_login_right_after_the_last_logout") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let mut last = None;
    for round in 0..5 {
        let out = sys.corral(&["login", "--wait", &user.name]);
        assert!(
            out.status.success(),
            "round {round}: {}\n{}",
            show(&out),
            sys.stderr()
        );
        let pid = sys.manager_pid(&user).expect("running after login --wait");
        assert_ne!(Some(pid), last, "round {round} reused a stopped manager");
        last = Some(pid);
        // The next login lands while this manager stops or its subtree goes.
        assert!(sys.corral(&["logout", &user.name]).status.success());
    }
    wait_until(20, "the subtree to go", || {
        !sys.user_cgroup(user.uid).exists()
    });
}

#[test]
fn a_login_waiting_while_the_manager_restarts_is_answered_when_the_last_session_ends() {
    if !can_run("a_login_waiting_while_the_manager_restarts") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let crash = tmp.path().join("crashing-manager");
    write_script(&crash, "#!/bin/sh\nexit 3\n");
    let sys = TestSystem::start(Some(crash));
    let login = Background::spawn(
        sys.corral_command(None, &["login", "--wait", "--timeout", "120", &user.name]),
        "login --wait",
    );
    // After its 4th crash the manager waits longest (800 ms) before the
    // next start: the last session ends in that wait.
    wait_until(20, "the manager restarting after its 4th crash", || {
        let status = sys.status(&user);
        status.contains("manager: restarting") && status.contains("restarts: 4")
    });
    let out = sys.corral(&["logout", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    // The waiting login is told, not left waiting for its own timeout.
    let out = login.output(60);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("uid {}'s session ended", user.uid))
            && err.contains("before its user manager was ready"),
        "{}",
        show(&out)
    );
    // And the user is gone from the system manager.
    wait_until(20, "the user to leave status", || {
        let out = sys.corral(&["--system", "status", &user.name]);
        String::from_utf8_lossy(&out.stdout).contains("no user managers")
    });
    assert!(!sys.user_cgroup(user.uid).exists());
}

#[test]
fn a_login_waiting_while_the_manager_stops_is_answered_when_its_session_ends() {
    if !can_run("a_login_waiting_while_the_manager_stops") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    // A manager that takes its time to stop: it ignores SIGTERM, so it stays
    // stopping until the stop timeout (10 s) kills its subtree.
    let slow = tmp.path().join("slow-to-stop");
    write_script(
        &slow,
        "#!/bin/sh\ntrap '' TERM\necho ready >&3\nexec 3>&-\nexec sleep 100000\n",
    );
    let sys = TestSystem::start(Some(slow));
    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    let out = sys.corral(&["logout", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(sys.status(&user).contains("manager: stopping"));
    // A login arrives while it stops, and waits for the next manager...
    let login = Background::spawn(
        sys.corral_command(None, &["login", "--wait", "--timeout", "120", &user.name]),
        "login --wait",
    );
    wait_until(20, "the second login to be counted", || {
        sys.status(&user).contains("sessions: 1,")
    });
    // ...but its session ends before that.
    let out = sys.corral(&["logout", &user.name]);
    assert!(out.status.success(), "{}", show(&out));
    let out = login.output(60);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("session ended") && err.contains("before its user manager was ready"),
        "{}",
        show(&out)
    );
    wait_until(30, "the user to leave status", || {
        let out = sys.corral(&["--system", "status", &user.name]);
        String::from_utf8_lossy(&out.stdout).contains("no user managers")
    });
    assert!(!sys.user_cgroup(user.uid).exists());
}

#[test]
fn corrald_takes_system_anywhere_among_its_flags() {
    let corrald = env!("CARGO_BIN_EXE_corrald");
    let run = |args: &[&str]| {
        std::process::Command::new(corrald)
            .args(args)
            .output()
            .unwrap()
    };
    // --help teaches both managers.
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", show(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--user") && help.contains("--system"),
        "{help}"
    );
    // --system after another flag selects the system manager's command line.
    let out = run(&["--state-dir", "/nonexistent/corral", "--system", "--help"]);
    assert!(out.status.success(), "{}", show(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: corrald --system") && help.contains("--stop-timeout"),
        "{help}"
    );
    // Both at once is refused, whatever the order.
    for args in [["--user", "--system"], ["--system", "--user"]] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
            "{args:?}: {}",
            show(&out)
        );
    }
    // Neither: the error says which to pick.
    let out = run(&["--state-dir", "/nonexistent/corral"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("say which manager to run"),
        "{}",
        show(&out)
    );

    if !can_run("corrald_takes_system_anywhere_among_its_flags") {
        return;
    }
    // A real system manager started as `corrald --cgroup-root R --runtime-dir D
    // --state-dir S --system --ready-fd 3 ...`.
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start_with(Some(stand_in_manager(tmp.path(), false)), true);
    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    sys.logout_and_wait(&user, 20);
}

#[test]
fn a_user_logs_in_out_and_lingers_for_themselves() {
    if !can_run("a_user_logs_in_out_and_lingers_for_themselves") {
        return;
    }
    let user = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let user_cg = sys.user_cgroup(user.uid);
    let me = Some(&user);

    // No USER argument: each verb acts for the caller, a test user, not root.
    let out = sys.corral_as(me, &["login", "--wait"]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("uid {}: 1 session(s), manager ready", user.uid)),
        "{}",
        show(&out)
    );
    assert!(probe(&user).contains(&format!("uid={}\n", user.uid)));
    let out = sys.corral_as(me, &["enable-linger"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(sys.state_dir().join("linger").join(&user.name).exists());
    let status = sys.status(&user);
    assert!(status.contains("sessions: 1, linger: yes"), "{status}");
    let pid = sys.manager_pid(&user).expect("manager running");

    let out = sys.corral_as(me, &["logout"]);
    assert!(out.status.success(), "{}", show(&out));
    let status = sys.status(&user);
    assert!(status.contains("sessions: 0, linger: yes"), "{status}");
    assert_eq!(sys.manager_pid(&user), Some(pid), "linger keeps it");

    let out = sys.corral_as(me, &["disable-linger"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!sys.state_dir().join("linger").join(&user.name).exists());
    wait_until(20, "the subtree to go without linger", || !user_cg.exists());
    // Their own status, as themselves: nothing left.
    wait_until(5, "the user to leave their own status", || {
        let out = sys.corral_as(me, &["--system", "status"]);
        String::from_utf8_lossy(&out.stdout).contains("no user managers")
    });
}

/// A directory made by the test, removed on drop.
struct MadeDir(std::path::PathBuf);

impl Drop for MadeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_runtime_dir_made_by_someone_else_stays_after_the_last_logout() {
    if !can_run("a_runtime_dir_made_by_someone_else") {
        return;
    }
    let user = test_user("corral-t1", true);
    let rundir = std::path::PathBuf::from(format!("/run/user/{}", user.uid));
    assert!(
        !rundir.exists(),
        "{} exists before the test: something else manages it",
        rundir.display()
    );
    // As logind would: root makes it before the login, the user's, 0700.
    std::fs::create_dir_all("/run/user").unwrap();
    std::fs::create_dir(&rundir).unwrap();
    let _made = MadeDir(rundir.clone());
    std::fs::set_permissions(&rundir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&rundir, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::write(rundir.join("made-by-someone-else"), "").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));

    let out = sys.corral(&["login", "--wait", &user.name]);
    assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    assert!(probe(&user).contains(&format!("uid={}\n", user.uid)));
    sys.logout_and_wait(&user, 20);
    wait_until(5, "the user to leave status", || {
        let out = sys.corral(&["--system", "status", &user.name]);
        String::from_utf8_lossy(&out.stdout).contains("no user managers")
    });
    // Not corral's to remove: it and what was in it are still there.
    assert!(rundir.join("made-by-someone-else").exists());
    let meta = std::fs::metadata(&rundir).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, user.uid));
}

#[test]
fn root_sees_every_users_tree_and_each_user_only_their_own() {
    if !can_run("root_sees_every_users_tree") {
        return;
    }
    let a = test_user("corral-t1", true);
    let b = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    for user in [&a, &b] {
        let out = sys.corral(&["login", "--wait", &user.name]);
        assert!(out.status.success(), "{}\n{}", show(&out), sys.stderr());
    }
    let pid_a = sys.manager_pid(&a).unwrap();
    let pid_b = sys.manager_pid(&b).unwrap();
    let tree = |user: &TestUser, pid: u32| {
        [
            format!("{} (uid {})", user.name, user.uid),
            format!("user-{}\n", user.uid),
            format!("user-{}/manager: {pid}\n", user.uid),
        ]
    };

    let out = sys.corral(&["--system", "status"]);
    assert!(out.status.success(), "{}", show(&out));
    let all = String::from_utf8_lossy(&out.stdout);
    for line in tree(&a, pid_a).iter().chain(&tree(&b, pid_b)) {
        assert!(all.contains(line.as_str()), "root misses {line:?}:\n{all}");
    }
    for (me, mine, other, theirs) in [(&a, pid_a, &b, pid_b), (&b, pid_b, &a, pid_a)] {
        let out = sys.corral_as(Some(me), &["--system", "status"]);
        assert!(out.status.success(), "{}", show(&out));
        let shown = String::from_utf8_lossy(&out.stdout);
        for line in tree(me, mine) {
            assert!(
                shown.contains(&line),
                "{} misses {line:?}:\n{shown}",
                me.name
            );
        }
        for line in tree(other, theirs) {
            assert!(
                !shown.contains(&line),
                "{} sees {line:?}:\n{shown}",
                me.name
            );
        }
        assert!(!shown.contains(&other.name), "{shown}");
    }

    for user in [&a, &b] {
        assert!(sys.corral(&["logout", &user.name]).status.success());
    }
    wait_until(20, "both subtrees to go", || {
        !sys.user_cgroup(a.uid).exists() && !sys.user_cgroup(b.uid).exists()
    });
}
