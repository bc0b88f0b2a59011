//! Restart=, RestartSec=, StartLimitIntervalSec=/StartLimitBurst= and RuntimeMaxSec=.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually};

#[test]
fn restart_always_after_kill_9_of_main_pid() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "phoenix.service",
            "[Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep 1000\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "phoenix"]);
    let first: i32 = td.prop("phoenix", "MainPID").parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = eventually(Duration::from_secs(5), || {
        let p: i32 = td.prop("phoenix", "MainPID").parse().ok()?;
        (p != 0 && p != first && td.prop("phoenix", "SubState") == "running").then_some(p)
    })
    .expect("restarted with a new main PID");
    assert!(common::cgroup_pids(&td.unit_cgroup("phoenix.service")).contains(&second));
    assert_eq!(td.prop("phoenix", "NRestarts"), "1");
    // The new invocation got its own id.
    td.ok(&["stop", "phoenix"]);
    assert_eq!(td.prop("phoenix", "ActiveState"), "inactive");
}

#[test]
fn start_limit_burst_ends_in_failed() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "flappy.service",
            "[Unit]\nStartLimitIntervalSec=30\nStartLimitBurst=3\n\
             [Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/false\n",
        )
    }) else {
        return;
    };
    // Type=simple: the start job is done once /bin/false is spawned, as with systemd.
    td.ok(&["start", "flappy"]);
    let r = eventually(Duration::from_secs(10), || {
        let r = td.prop("flappy", "Result");
        (r == "start-limit-hit").then_some(r)
    });
    assert_eq!(r.as_deref(), Some("start-limit-hit"), "{}", td.log());
    assert_eq!(td.prop("flappy", "ActiveState"), "failed");
    assert_eq!(td.corral(&["is-failed", "flappy"]).code, 0);
    // Refused until reset-failed.
    let o = td.corral(&["start", "flappy"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("reset-failed"), "{o:?}");
    td.ok(&["reset-failed", "flappy"]);
    assert_eq!(td.prop("flappy", "ActiveState"), "inactive");
}

#[test]
fn restart_on_failure_does_not_restart_a_clean_exit() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "once.service",
            "[Service]\nRestart=on-failure\nRestartSec=0\nExecStart=/bin/true\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "once"]);
    let s = eventually(Duration::from_secs(5), || {
        let s = td.prop("once", "ActiveState");
        (s == "inactive").then_some(s)
    });
    assert_eq!(s.as_deref(), Some("inactive"));
    assert_eq!(td.prop("once", "NRestarts"), "0");
    assert_eq!(td.prop("once", "Result"), "success");
}

#[test]
fn runtime_max_sec_stops_with_timeout() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "brief.service",
            "[Service]\nRuntimeMaxSec=1\nExecStart=/bin/sleep 1000\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "brief"]);
    let r = eventually(Duration::from_secs(10), || {
        (td.prop("brief", "ActiveState") == "failed").then(|| td.prop("brief", "Result"))
    });
    assert_eq!(r.as_deref(), Some("timeout"));
    assert!(!td.unit_cgroup("brief.service").exists());
}

#[test]
fn automatic_restart_checks_conditions_again() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let flag = td.run_dir().join("may-run");
    std::fs::write(&flag, "").unwrap();
    td.write_unit(
        "conditional.service",
        &format!(
            "[Unit]\nConditionPathExists={}\n\
             [Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep 1000\n",
            flag.display()
        ),
    );
    td.ok(&["start", "conditional"]);
    let main: i32 = td.prop("conditional", "MainPID").parse().unwrap();
    assert_ne!(main, 0);
    std::fs::remove_file(&flag).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The restart is a new start job: the condition is false now, so the unit is
    // skipped — inactive with result condition, not failed and not running again.
    let r = eventually(Duration::from_secs(10), || {
        let r = td.prop("conditional", "Result");
        (r == "condition").then_some(r)
    });
    assert_eq!(r.as_deref(), Some("condition"), "{}", td.log());
    assert_eq!(td.prop("conditional", "ActiveState"), "inactive");
    assert_eq!(td.prop("conditional", "SubState"), "dead");
    assert_eq!(td.prop("conditional", "MainPID"), "0");
    assert_eq!(td.corral(&["is-failed", "conditional"]).code, 1);
    let st = td.corral(&["status", "conditional"]);
    assert!(
        st.stdout.contains(&format!(
            "ConditionPathExists={} was not met",
            flag.display()
        )),
        "{st:?}"
    );
    assert!(!td.unit_cgroup("conditional.service").exists());
}

#[test]
fn automatic_restart_checks_asserts_again() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let flag = td.run_dir().join("must-exist");
    std::fs::write(&flag, "").unwrap();
    td.write_unit(
        "asserting.service",
        &format!(
            "[Unit]\nAssertPathExists={}\n\
             [Service]\nRestart=always\nRestartSec=0\nExecStart=/bin/sleep 1000\n",
            flag.display()
        ),
    );
    td.ok(&["start", "asserting"]);
    let main: i32 = td.prop("asserting", "MainPID").parse().unwrap();
    std::fs::remove_file(&flag).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = eventually(Duration::from_secs(10), || {
        let r = td.prop("asserting", "Result");
        (r == "assert").then_some(r)
    });
    assert_eq!(r.as_deref(), Some("assert"), "{}", td.log());
    assert_eq!(td.prop("asserting", "ActiveState"), "failed");
    assert_eq!(td.prop("asserting", "MainPID"), "0");
}
