//! One cgroup root, one owner, and a `corrald --system` that restarts
//! without restarting anyone: root's own user manager keeps its units when
//! the system manager starts, a second manager on a claimed root is refused
//! naming the first, and a system manager ended by SIGTERM or kill -9 takes
//! over the running user managers and their sessions.

mod common;

use std::path::Path;
use std::process::Command;

use corral::cgroup::TempCgroup;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use common::system::*;
use common::{TestDaemon, is_zombie, show, wait_until, write_script};

fn refs(args: &[std::ffi::OsString]) -> Vec<&std::ffi::OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

#[test]
fn roots_own_user_manager_keeps_its_units_when_the_system_manager_starts() {
    if !can_run("roots_own_user_manager_keeps_its_units") {
        return;
    }
    let cgroup = TempCgroup::new("corral-test").unwrap();
    // Root's `corrald --user` uses <root>/user-0, as it does by default
    // under <mount>/corral.
    let user_root = cgroup.path().join("user-0");
    let td = TestDaemon::start_at(&user_root, |d| {
        d.write_unit(
            "sleeper.service",
            "[Service]\nExecStart=/bin/sleep 100000\n",
        )
    })
    .expect("can_run checked the machine");
    td.ok(&["start", "sleeper.service"]);
    let pid: i32 = td.prop("sleeper.service", "MainPID").parse().unwrap();
    assert!(alive(pid));

    let tmp = tempfile::tempdir().unwrap();
    let sys = TestSystem::start_in(cgroup, Some(stand_in_manager(tmp.path(), false)), false);
    assert!(alive(pid), "the unit survived: {}", sys.stderr());
    let said = format!(
        "user-0's subtree is the cgroup root of corrald --user (pid {}), a manager this \
         system manager did not start: it is left alone",
        td.pid()
    );
    assert!(sys.stderr().contains(&said), "{}", sys.stderr());

    // Root logging in through the system manager must not fight it either:
    // the login fails, saying why, and the unit still runs.
    let out = sys.corral(&["login", "--wait", "root"]);
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&said) && stderr.contains(&format!("(`kill {}`)", td.pid())),
        "{}",
        show(&out)
    );
    assert!(sys.corral(&["logout", "root"]).status.success());
    wait_until(20, "root's failed login to be cleaned up", || {
        let status = sys.status_of("root");
        status.contains("manager: failed") || !status.contains("manager:")
    });
    assert!(alive(pid), "the unit survived the failed login");

    // The manager still owns its root: stop and start work.
    td.ok(&["stop", "sleeper.service"]);
    wait_until(10, "the unit's process to end", || !alive(pid));
    td.ok(&["start", "sleeper.service"]);
    td.wait_state("sleeper.service", "active");
    let procs = std::fs::read_to_string(td.unit_cgroup("sleeper.service").join("cgroup.procs"))
        .unwrap_or_default();
    assert!(!procs.trim().is_empty(), "started again in its cgroup");
}

#[test]
fn a_second_manager_on_the_same_cgroup_root_is_refused_naming_the_first() {
    if !can_run("a_second_manager_on_the_same_cgroup_root") {
        return;
    }
    let td = TestDaemon::start().expect("can_run checked the machine");
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrald"));
        cmd.args(args).env("XDG_RUNTIME_DIR", tmp.path());
        Background::spawn(cmd, "a second corrald").output(20)
    };
    let other_run = tmp.path().join("run");
    let state = tmp.path().join("state");
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let user_args = |runtime: &Path| {
        let mut args: Vec<std::ffi::OsString> = vec!["--user".into(), "--cgroup-root".into()];
        args.push(td.cgroup_root.clone().into());
        for (flag, dir) in [
            ("--runtime-dir", runtime),
            ("--state-dir", &state),
            ("--units-dir", &units),
        ] {
            args.push(flag.into());
            args.push(dir.into());
        }
        args
    };
    let out = run(&refs(&user_args(&other_run)));
    assert!(!out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid = td.pid();
    for part in [
        format!(
            "{} is already the cgroup root of corrald --user (pid {pid}",
            td.cgroup_root.display()
        ),
        format!("stop that one first (`kill {pid}`), or give this one another --cgroup-root"),
    ] {
        assert!(stderr.contains(&part), "{part:?} in {}", show(&out));
    }
    // The same runtime directory is refused before the first one's socket
    // could be taken over.
    let out = run(&refs(&user_args(&td.run_dir().join("corral"))));
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cgroup.lock is locked by pid {pid}")),
        "{}",
        show(&out)
    );
    td.ok(&["status"]);

    // Two system managers on one root: the second refuses.
    let sys = TestSystem::start(Some(stand_in_manager(tmp.path(), false)));
    let sys_pid = sys.child.as_ref().unwrap().id();
    let out = run(&[
        "--system".as_ref(),
        "--cgroup-root".as_ref(),
        sys.cgroup.path().as_os_str(),
        "--runtime-dir".as_ref(),
        tmp.path().join("sysrun").as_os_str(),
        "--state-dir".as_ref(),
        tmp.path().join("sysstate").as_os_str(),
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "is already the cgroup root of corrald --system (pid {sys_pid}"
        )),
        "{}",
        show(&out)
    );
    assert!(sys.socket().exists(), "the first one's socket is untouched");
}

/// A stand-in user manager that writes `ping` to its stderr (the system
/// journal) on SIGUSR1, to show its output is still read after a restart.
fn pinging_manager(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("pinging-manager");
    write_script(
        &path,
        "#!/bin/sh\n\
         n=0\n\
         trap 'n=$((n+1)); echo \"ping $$ $n\" >&2' USR1\n\
         echo ready >&3\n\
         exec 3>&-\n\
         while :; do sleep 1000 & wait $!; done\n",
    );
    path
}

#[test]
fn a_restarted_system_manager_keeps_sessions_and_user_managers() {
    if !can_run("a_restarted_system_manager_keeps_sessions") {
        return;
    }
    let one = test_user("corral-t1", true);
    let two = test_user("corral-t2", false);
    let tmp = tempfile::tempdir().unwrap();
    let mut sys = TestSystem::start(Some(pinging_manager(tmp.path())));
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        sys.login(&one);
        sys.login(&two);
        sys.login(&two);
        let p1 = sys.manager_pid(&one).expect("one's manager");
        let p2 = sys.manager_pid(&two).expect("two's manager");

        sys.end(signal);
        assert!(
            alive(p1 as i32) && alive(p2 as i32),
            "{signal}: managers kept"
        );
        // Written while no system manager runs: waits in the pipe.
        kill(Pid::from_raw(p1 as i32), Signal::SIGUSR1).unwrap();
        sys.spawn();

        assert_eq!(sys.manager_pid(&one), Some(p1), "{}", sys.stderr());
        assert_eq!(sys.manager_pid(&two), Some(p2));
        assert!(
            sys.status(&two).contains("sessions: 2"),
            "{}",
            sys.status(&two)
        );
        assert!(
            sys.stderr().contains(&format!(
                "took over the user manager of uid {} (pid {p1})",
                one.uid
            )),
            "{}",
            sys.stderr()
        );
        kill(Pid::from_raw(p1 as i32), Signal::SIGUSR1).unwrap();
        wait_until(10, "both pings in the system journal", || {
            let j = sys.journal(one.uid, &[]);
            j.contains(&format!("ping {p1} 1")) && j.contains(&format!("ping {p1} 2"))
        });

        // A login after the restart reuses the manager...
        sys.login(&one);
        assert_eq!(sys.manager_pid(&one), Some(p1));
        assert!(
            sys.status(&one).contains("sessions: 2"),
            "{}",
            sys.status(&one)
        );
        // ...and logouts end it at the last session.
        let out = sys.corral(&["logout", &one.name]);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(sys.manager_pid(&one), Some(p1));
        sys.logout_and_wait(&one, 20);
        assert!(!alive(p1 as i32));
        let out = sys.corral(&["logout", &two.name]);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(sys.manager_pid(&two), Some(p2));
        sys.logout_and_wait(&two, 20);
        assert!(!alive(p2 as i32));
    }
}

#[test]
fn a_manager_whose_cgroup_root_vanished_recreates_it_or_fails_the_start_with_219() {
    if !can_run("a_manager_whose_cgroup_root_vanished") {
        return;
    }
    let unit = "[Service]\nExecStart=/bin/sleep 100000\n";
    // Root's manager may create its root again, and claims it again.
    let td = TestDaemon::start_with(|d| d.write_unit("sleeper.service", unit))
        .expect("can_run checked the machine");
    td.ok(&["start", "sleeper.service"]);
    td.ok(&["stop", "sleeper.service"]);
    common::remove_cgroup_root(&td.cgroup_root);
    td.ok(&["start", "sleeper.service"]);
    td.wait_state("sleeper.service", "active");
    assert!(
        td.log()
            .contains("was removed under this manager; recreated it"),
        "{}",
        td.log()
    );
    let owner = corral::cgroup::owner::owner_of(&td.cgroup_root).unwrap();
    assert_eq!(owner.map(|o| o.pid), Some(td.pid() as u32));

    // A user's manager may not (the parent is root's): the start fails
    // with systemd's 219/CGROUP and says why.
    let user = test_user("corral-t1", true);
    let parent = TempCgroup::new("corral-test").unwrap();
    let root = parent.cgroup().create_child("user-x").unwrap();
    root.chown_delegate(user.uid, user.gid).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for d in ["units", "run", "state"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("units/sleeper.service"), unit).unwrap();
    Command::new("chown")
        .args(["-R", &format!("{}:{}", user.uid, user.gid)])
        .arg(dir.path())
        .status()
        .unwrap();
    let socket = dir.path().join("run/corral/control.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corrald"));
    cmd.arg("--user")
        .arg("--cgroup-root")
        .arg(root.path())
        .arg("--runtime-dir")
        .arg(dir.path().join("run/corral"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--units-dir")
        .arg(dir.path().join("units"))
        .env("XDG_RUNTIME_DIR", dir.path().join("run"))
        .env("HOME", &user.home);
    std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
    std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
    let _manager = Background::spawn(cmd, "the user's corrald --user");
    wait_until(20, "the user's manager to listen", || socket.exists());
    let corral = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("--socket").arg(&socket).args(args);
        std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
        cmd.output().unwrap()
    };
    common::remove_cgroup_root(root.path());
    let out = corral(&["start", "sleeper.service"]);
    assert!(!out.status.success(), "{}", show(&out));
    let out = corral(&["status", "sleeper.service"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("status=219/CGROUP)"), "{}", show(&out));
    assert!(
        status.contains("was removed and cannot be recreated"),
        "{}",
        show(&out)
    );
}
