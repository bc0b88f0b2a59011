//! Type=forking PIDFile trust, Type=notify, Type=oneshot, ExecReload with
//! $MAINPID, ExecStopPost with $SERVICE_RESULT, the environment services see,
//! and which bad assignments refuse a unit.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDaemon;

fn read(td: &TestDaemon, file: &str) -> String {
    std::fs::read_to_string(td.run_dir().join(file)).unwrap_or_default()
}

#[test]
fn pidfile_naming_a_process_outside_the_cgroup_is_refused() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let mut outsider = Command::new("/bin/sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = outsider.id();
    std::fs::write(td.run_dir().join("liar.pid"), format!("{pid}\n")).unwrap();
    td.write_unit(
        "liar.service",
        "[Service]\nType=forking\nPIDFile=%t/liar.pid\nExecStart=/bin/true\n",
    );
    let o = td.corral(&["start", "liar"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "names PID {pid}, which is not a process of this unit"
        )),
        "{o:?}"
    );
    // As systemd: the start command left no process to write it (protocol).
    assert_eq!(td.prop("liar", "Result"), "protocol");
    // Nothing outside was touched.
    assert!(
        outsider.try_wait().unwrap().is_none(),
        "the outside process was killed"
    );
    outsider.kill().unwrap();
    outsider.wait().unwrap();
}

#[test]
fn notify_ready_with_debian_systemd_notify() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "notifier.service",
            "[Service]\nType=notify\nNotifyAccess=all\n\
             ExecStart=/bin/bash -c 'sleep 0.3; systemd-notify --ready --status=\"serving\"; exec sleep 1000'\n",
        )
    }) else {
        return;
    };
    let t = Instant::now();
    td.ok(&["start", "notifier"]);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "start returned before READY=1"
    );
    assert_eq!(td.prop("notifier", "SubState"), "running");
    assert_eq!(td.prop("notifier", "StatusText"), "serving");
    td.ok(&["stop", "notifier"]);
}

/// Sends READY=1 from its own PID (systemd-notify, as root, sends with its
/// parent's PID, which would be the main process).
const SEND_READY: &str = "import os, socket\n\
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
    s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n";

#[test]
fn notify_from_a_child_is_ignored_with_notify_access_main() {
    // python3 is in scripts/test's package table: a missing one fails the test.
    assert!(
        Command::new("python3").arg("-V").output().is_ok(),
        "python3 is needed to send a datagram from a child process"
    );
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::write(td.run_dir().join("ready.py"), SEND_READY).unwrap();
        td.write_unit(
            "strict.service",
            "[Service]\nType=notify\nNotifyAccess=main\nTimeoutStartSec=1\n\
             ExecStart=/bin/bash -c 'python3 %t/ready.py; exec sleep 1000'\n",
        );
        td.write_unit(
            "lenient.service",
            "[Service]\nType=notify\nNotifyAccess=all\nTimeoutStartSec=5\n\
             ExecStart=/bin/bash -c 'python3 %t/ready.py; exec sleep 1000'\n",
        );
    }) else {
        return;
    };
    let o = td.corral(&["start", "strict"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(td.prop("strict", "Result"), "timeout");
    assert!(
        td.log().contains("NotifyAccess=Main does not admit it"),
        "{}",
        td.log()
    );
    td.ok(&["start", "lenient"]);
    assert_eq!(td.prop("lenient", "SubState"), "running");
}

#[test]
fn exec_reload_sees_mainpid() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "reloader.service",
            "[Service]\nExecStart=/bin/sleep 1000\n\
             ExecReload=/bin/bash -c 'echo $MAINPID > %t/reload.out'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "reloader"]);
    td.ok(&["reload", "reloader"]);
    let main = td.prop("reloader", "MainPID");
    assert_eq!(read(&td, "reload.out").trim(), main);
    assert_eq!(td.prop("reloader", "SubState"), "running");
    td.ok(&["stop", "reloader"]);
    // Reload of an inactive unit is refused.
    assert_eq!(td.corral(&["reload", "reloader"]).code, 1);
}

#[test]
fn reload_or_restart_reloads_what_can_and_restarts_the_rest() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "reloader.service",
            "[Service]\nExecStart=/bin/sleep 1000\n\
             ExecReload=/bin/bash -c 'echo reloaded >> %t/reloads'\n",
        );
        td.write_unit("plain.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    td.ok(&["start", "reloader", "plain"]);
    let (r, p) = (td.prop("reloader", "MainPID"), td.prop("plain", "MainPID"));
    td.ok(&["reload-or-restart", "reloader", "plain"]);
    // The one that can reload did, in place; the other was restarted.
    assert_eq!(read(&td, "reloads"), "reloaded\n");
    assert_eq!(td.prop("reloader", "MainPID"), r);
    let p2 = td.prop("plain", "MainPID");
    assert_ne!(p2, p);
    assert_eq!(td.prop("plain", "SubState"), "running");
    // Stopped units: try- leaves them, the plain verb starts them (no reload).
    td.ok(&["stop", "reloader", "plain"]);
    td.ok(&["try-reload-or-restart", "reloader", "plain"]);
    assert_eq!(td.prop("reloader", "ActiveState"), "inactive");
    assert_eq!(td.prop("plain", "ActiveState"), "inactive");
    td.ok(&["reload-or-restart", "reloader"]);
    assert_eq!(td.prop("reloader", "SubState"), "running");
    assert_eq!(read(&td, "reloads"), "reloaded\n");
    // try- on a running unit that cannot reload restarts it.
    td.ok(&["start", "plain"]);
    let p3 = td.prop("plain", "MainPID");
    td.ok(&["try-reload-or-restart", "plain"]);
    assert_ne!(td.prop("plain", "MainPID"), p3);
    td.ok(&["stop", "reloader", "plain"]);
}

#[test]
fn oneshot_remain_after_exit_runs_every_exec_start() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "setup.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart=/bin/bash -c 'echo one >> %t/oneshot.out'\n\
             ExecStart=/bin/bash -c 'echo two >> %t/oneshot.out'\n\
             ExecStop=/bin/bash -c 'echo stop >> %t/oneshot.out'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "setup"]);
    assert_eq!(read(&td, "oneshot.out"), "one\ntwo\n");
    assert_eq!(td.prop("setup", "ActiveState"), "active");
    assert_eq!(td.prop("setup", "SubState"), "exited");
    assert_eq!(td.corral(&["is-active", "setup"]).code, 0);
    td.ok(&["stop", "setup"]);
    assert_eq!(read(&td, "oneshot.out"), "one\ntwo\nstop\n");
    assert_eq!(td.prop("setup", "ActiveState"), "inactive");
}

#[test]
fn exec_stop_post_sees_service_result() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "post.service",
            "[Service]\nExecStart=/bin/sleep 1000\n\
             ExecStopPost=/bin/bash -c 'echo \"$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS\" >> %t/post.out'\n",
        );
        td.write_unit(
            "crash.service",
            "[Service]\nExecStart=/bin/bash -c 'exit 3'\n\
             ExecStopPost=/bin/bash -c 'echo \"$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS\" >> %t/crash.out'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "post"]);
    td.ok(&["stop", "post"]);
    assert_eq!(read(&td, "post.out"), "success killed TERM\n");
    td.ok(&["start", "crash"]);
    let out = common::eventually(Duration::from_secs(5), || {
        let s = read(&td, "crash.out");
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(out.as_deref(), Some("exit-code exited 3\n"));
    // The file is written while ExecStopPost= still runs: the unit is
    // failed once that command has ended, not necessarily yet.
    td.wait_state("crash", "failed");
}

#[test]
fn services_get_the_environment_a_user_expects() {
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::write(td.run_dir().join("envfile"), "FROM_FILE=yes\n# comment\n").unwrap();
        td.write_unit(
            "env.service",
            "[Service]\nType=notify\nNotifyAccess=all\nEnvironment=GREETING=hello\n\
             EnvironmentFile=%t/envfile\nEnvironmentFile=-%t/missing\n\
             ExecStart=/bin/bash -c 'env > %t/env.out; systemd-notify --ready; exec sleep 1000'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "env"]);
    let env = read(&td, "env.out");
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    for k in ["HOME", "USER", "LOGNAME", "SHELL", "PATH"] {
        assert!(
            get(k).is_some_and(|v| !v.is_empty()),
            "{k} missing in:\n{env}"
        );
    }
    assert_eq!(
        get("XDG_RUNTIME_DIR"),
        Some(td.run_dir().display().to_string())
    );
    assert_eq!(get("INVOCATION_ID"), Some(td.prop("env", "InvocationID")));
    assert_eq!(get("INVOCATION_ID").map(|v| v.len()), Some(32));
    assert!(get("NOTIFY_SOCKET").is_some());
    assert_eq!(get("GREETING").as_deref(), Some("hello"));
    assert_eq!(get("FROM_FILE").as_deref(), Some("yes"));
    td.ok(&["stop", "env"]);
}

#[test]
fn unset_environment_and_dropped_assignments_as_in_systemd_252() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "unset.service",
            "[Service]\nType=oneshot\nEnvironment=KEEP=1 DROP=x ONLY=a\n\
             UnsetEnvironment=DROP ONLY=b KEEP=1\n\
             ExecStart=/bin/bash -c 'env > %t/unset.out'\n",
        );
        td.write_unit(
            "lenient.service",
            "[Service]\nType=oneshot\nNice=99\nEnvironment=novalue GOOD=1\n\
             ExecStart=/bin/bash -c 'echo $GOOD > %t/lenient.out'\n",
        );
        td.write_unit("refused.service", "[Service]\nExecStart=bin/relative\n");
    }) else {
        return;
    };
    td.ok(&["start", "unset"]);
    let env = read(&td, "unset.out");
    let has = |kv: &str| env.lines().any(|l| l == kv);
    // NAME removes the name; NAME=value only that exact assignment.
    assert!(!env.lines().any(|l| l.starts_with("DROP=")), "{env}");
    assert!(!has("KEEP=1"), "{env}");
    assert!(has("ONLY=a"), "{env}");
    // A bad assignment is dropped with a warning naming file:line; the unit runs.
    td.ok(&["start", "lenient"]);
    assert_eq!(read(&td, "lenient.out"), "1\n");
    let log = td.log();
    for want in [
        "lenient.service:3: warning: Nice: '99' is not a nice level",
        "lenient.service:4: warning: Environment: 'novalue' is not a NAME=value assignment",
    ] {
        assert!(log.contains(want), "{want:?} not in:\n{log}");
    }
    // Where systemd refuses the unit, so does the manager.
    let o = td.corral(&["start", "refused"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains("refused.service:2: error: ExecStart: 'bin/relative'"),
        "{o:?}"
    );
}

#[test]
fn forking_parent_that_leaves_nothing_ends_inactive() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "quick.service",
            "[Service]\nType=forking\nExecStart=/bin/true\n",
        );
        td.write_unit(
            "noexec.service",
            "[Service]\nType=oneshot\nExecStop=/bin/true\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "quick"]);
    assert_eq!(td.prop("quick", "ActiveState"), "inactive");
    assert_eq!(td.prop("quick", "Result"), "success");
    td.ok(&["start", "noexec"]);
    assert_eq!(td.prop("noexec", "ActiveState"), "inactive");
}

#[test]
fn standard_output_to_a_file_and_to_null() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "tofile.service",
            "[Service]\nType=oneshot\nStandardOutput=truncate:%t/out.txt\n\
             ExecStart=/bin/bash -c 'echo one; echo two >&2'\n",
        );
        td.write_unit(
            "quiet.service",
            "[Service]\nType=oneshot\nStandardOutput=null\nStandardError=null\n\
             ExecStart=/bin/bash -c 'echo nobody hears this'\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "tofile"]);
    // StandardError= defaults to inherit: the same file.
    assert_eq!(read(&td, "out.txt"), "one\ntwo\n");
    td.ok(&["start", "quiet"]);
    assert_eq!(td.prop("quiet", "Result"), "success");
}

#[test]
fn working_directory_umask_nice_and_limits_apply() {
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::create_dir_all(td.run_dir().join("wd")).unwrap();
        td.write_unit(
            "knobs.service",
            "[Service]\nType=oneshot\nWorkingDirectory=%t/wd\nUMask=0027\nNice=7\nLimitNOFILE=123\n\
             ExecStart=/bin/bash -c 'echo \"$(pwd) $(umask) $(nice) $(ulimit -n)\" > knobs.out'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "knobs"]);
    let out = std::fs::read_to_string(td.run_dir().join("wd/knobs.out")).unwrap();
    assert_eq!(
        out.trim(),
        format!("{} 0027 7 123", td.run_dir().join("wd").display())
    );
}

#[test]
fn a_stop_cancels_a_pending_start() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "slowready.service",
            "[Service]\nType=notify\nExecStart=/bin/sleep 1000\n",
        )
    }) else {
        return;
    };
    let socket = td.socket.clone();
    let starter = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["start", "slowready"])
            .env("CORRAL_SOCKET", &socket)
            .output()
            .unwrap()
    });
    let activating = common::eventually(Duration::from_secs(5), || {
        (td.prop("slowready", "ActiveState") == "activating").then_some(())
    });
    assert!(activating.is_some());
    td.ok(&["stop", "slowready"]);
    let out = starter.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("canceled by a stop"));
    assert_eq!(td.prop("slowready", "ActiveState"), "inactive");
}

#[test]
fn exec_condition_skips_fails_or_lets_the_start_go_on() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let ran = td.run_dir().join("ran");
    let unit = |code: i32, restart: &str| {
        format!(
            "[Service]\n{restart}ExecCondition=/bin/sh -c 'exit {code}'\n\
             ExecStart=/bin/sh -c 'touch {}; exec sleep 1000'\n",
            ran.display()
        )
    };
    // Exit 1-254: the start is skipped, not failed, and Restart=always does not
    // start it again; nothing after the condition ran.
    td.write_unit("skipped.service", &unit(1, ""));
    td.write_unit("skipped-always.service", &unit(254, "Restart=always\n"));
    for name in ["skipped", "skipped-always"] {
        let o = td.corral(&["start", name]);
        assert_eq!(o.code, 0, "a skipped start is not a failure: {o:?}");
        assert_eq!(td.prop(name, "ActiveState"), "inactive", "{}", td.log());
        assert_eq!(td.prop(name, "SubState"), "dead");
        assert_eq!(td.prop(name, "Result"), "exec-condition");
        assert!(
            td.corral(&["status", name])
                .stdout
                .contains("(Result: exec-condition)")
        );
    }
    assert!(!ran.exists(), "ExecStart= ran after a false ExecCondition=");
    // Exit 255 (or a signal): the start fails.
    td.write_unit("broken.service", &unit(255, ""));
    let o = td.corral(&["start", "broken"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert_eq!(td.prop("broken", "ActiveState"), "failed");
    assert_eq!(td.prop("broken", "Result"), "exit-code");
    assert!(!ran.exists());
    // Exit 0: the start goes on.
    td.write_unit("allowed.service", &unit(0, ""));
    td.ok(&["start", "allowed"]);
    assert_eq!(td.prop("allowed", "ActiveState"), "active");
    assert!(
        common::eventually(Duration::from_secs(10), || ran.exists().then_some(())).is_some(),
        "ExecStart= did not run after a true ExecCondition="
    );
}

#[test]
fn refuse_manual_start_and_stop_leave_dependencies_free() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "pulled.service",
            "[Unit]\nRefuseManualStart=yes\n[Service]\nExecStart=/bin/sleep 1000\n",
        );
        td.write_unit(
            "sticky.service",
            "[Unit]\nRefuseManualStop=yes\n[Service]\nExecStart=/bin/sleep 1000\n",
        );
        td.write_unit("group.target", "[Unit]\nWants=pulled.service\n");
    }) else {
        return;
    };
    let refusal = |unit: &str| {
        format!(
            "Operation refused, unit {unit} may be requested by dependency only (it is configured to refuse manual start/stop)."
        )
    };
    let o = td.corral(&["start", "pulled"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains(&refusal("pulled.service")), "{o:?}");
    assert_eq!(td.prop("pulled", "ActiveState"), "inactive");
    // Pulled in by a dependency, it starts.
    td.ok(&["start", "group.target"]);
    assert_eq!(td.prop("pulled", "ActiveState"), "active");
    let o = td.corral(&["restart", "pulled"]);
    assert!(o.stderr.contains(&refusal("pulled.service")), "{o:?}");
    td.ok(&["stop", "pulled"]);

    td.ok(&["start", "sticky"]);
    let o = td.corral(&["stop", "sticky"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains(&refusal("sticky.service")), "{o:?}");
    assert_eq!(td.prop("sticky", "ActiveState"), "active");
}
