//! Stopping leaves not one process behind: forking daemons (tmux), shells
//! that double-fork, a hundred children, a process that ignores SIGTERM —
//! and KillMode=process, which leaves the rest on purpose and says so.

mod common;

use std::time::Duration;

use common::{TestDaemon, cgroup_pids, is_zombie, pids_matching, pids_named};

#[test]
fn tmux_forking_restart_always_stop_leaves_nothing() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let sock = format!("corral-test-{}", std::process::id());
    td.write_unit(
        "tmux.service",
        &format!(
            "[Service]\nType=forking\nRestart=always\n\
             ExecStart=/usr/bin/tmux -L {sock} new-session -d -s x 'sleep 1000'\n"
        ),
    );
    td.ok(&["start", "tmux"]);
    let cg = td.unit_cgroup("tmux.service");
    let inside = cgroup_pids(&cg);
    assert!(
        inside.len() >= 2,
        "tmux server and its sleep should run in {cg:?}: {inside:?}"
    );
    let server = pids_matching(&format!("tmux -L {sock}"));
    assert!(!server.is_empty());
    assert!(
        server.iter().all(|p| inside.contains(p)),
        "{server:?} outside {inside:?}"
    );
    td.ok(&["stop", "tmux"]);
    assert!(pids_matching(&format!("tmux -L {sock}")).is_empty());
    for p in inside {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists() || is_zombie(p),
            "pid {p} survived"
        );
    }
    assert!(!cg.exists());
    assert_eq!(td.prop("tmux", "ActiveState"), "inactive");
}

#[test]
fn double_forking_shell_is_contained_and_stopped() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("dfork-{}", std::process::id());
    // The grandchild is orphaned at once; the manager, a subreaper, inherits it.
    td.write_unit(
        "dfork.service",
        &format!(
            "[Service]\nType=forking\n\
             ExecStart=/bin/bash -c '(bash -c \"exec -a {tag} sleep 1000\" &) ; exit 0'\n"
        ),
    );
    td.ok(&["start", "dfork"]);
    let cg = td.unit_cgroup("dfork.service");
    // The unit is active once the outer shell exits; the orphan may still be
    // on its way to exec, so its name shows up a moment later.
    let mine = common::eventually(Duration::from_secs(5), || {
        let p = pids_named(&tag);
        (!p.is_empty()).then_some(p)
    })
    .unwrap_or_default();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(cgroup_pids(&cg).contains(&mine[0]));
    // Either the orphan was the only process left (and became the main PID),
    // or the intermediate shell was still there and the cgroup stands for the unit.
    let main = td.prop("dfork", "MainPID");
    assert!(main == "0" || main == mine[0].to_string(), "MainPID={main}");
    td.ok(&["stop", "dfork"]);
    assert!(pids_named(&tag).is_empty());
    assert!(!cg.exists());
}

#[test]
fn hundred_children_all_gone_after_stop() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("kid-{}", std::process::id());
    td.write_unit(
        "hundred.service",
        &format!(
            "[Service]\nExecStart=/bin/bash -c 'for i in $(seq 100); do (exec -a {tag} sleep 1000) & done; wait'\n"
        ),
    );
    td.ok(&["start", "hundred"]);
    let cg = td.unit_cgroup("hundred.service");
    let n = common::eventually(Duration::from_secs(10), || {
        let n = pids_named(&tag).len();
        (n == 100).then_some(n)
    });
    assert_eq!(n, Some(100), "children did not all start");
    assert_eq!(cgroup_pids(&cg).len(), 101);
    td.ok(&["stop", "hundred"]);
    assert!(pids_named(&tag).is_empty());
    assert!(!cg.exists());
}

#[test]
fn sigterm_ignoring_process_is_killed_after_timeout_stop_sec() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("stubborn-{}", std::process::id());
    td.write_unit(
        "stubborn.service",
        &format!(
            "[Service]\nTimeoutStopSec=1\n\
             ExecStart=/bin/bash -c 'trap \"\" TERM; exec -a {tag} sleep 1000'\n"
        ),
    );
    td.ok(&["start", "stubborn"]);
    // The unit is active once bash runs, before its trap is set: a SIGTERM
    // then would end it at once. The exec'd sleep has the trap in place.
    common::eventually(Duration::from_secs(10), || {
        (!pids_named(&tag).is_empty()).then_some(())
    })
    .expect("the stubborn process started");
    td.ok(&["stop", "stubborn"]);
    assert!(pids_named(&tag).is_empty());
    assert!(!td.unit_cgroup("stubborn.service").exists());
    // As systemd: a stop that needed SIGKILL ends with result timeout.
    assert_eq!(td.prop("stubborn", "Result"), "timeout");
}

#[test]
fn kill_mode_process_lists_what_it_left() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("leftover-{}", std::process::id());
    td.write_unit(
        "leaver.service",
        &format!(
            "[Service]\nKillMode=process\n\
             ExecStart=/bin/bash -c '(exec -a {tag} sleep 1000) & exec sleep 1000'\n"
        ),
    );
    td.ok(&["start", "leaver"]);
    let left = common::eventually(Duration::from_secs(5), || {
        let p = pids_named(&tag);
        (!p.is_empty()).then_some(p)
    })
    .expect("child started");
    let o = td.ok(&["stop", "leaver"]);
    assert!(
        o.stdout
            .contains("KillMode=process left these processes running")
            && o.stdout.contains(&left[0].to_string()),
        "{o:?}"
    );
    assert_eq!(
        pids_named(&tag),
        left,
        "KillMode=process must not kill the child"
    );
    // The cgroup stays with the process in it; the test's Drop cleans it up.
    assert!(cgroup_pids(&td.unit_cgroup("leaver.service")).contains(&left[0]));
    // A new start gets a fresh cgroup beside the old one.
    td.ok(&["start", "leaver"]);
    let cg = td.prop("leaver", "ControlGroup");
    assert!(cg.contains("leaver.service-"), "{cg}");
}

#[test]
fn send_sighup_follows_kill_signal() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let ready = td.run_dir().join("hup-ready");
    // The shell ignores SIGTERM (and so does its sleep), so only the SIGHUP
    // that SendSIGHUP= adds ends it; without it the stop would end in SIGKILL
    // after TimeoutStopSec (result timeout). SIGHUP keeps its default action:
    // a trap would leave it pending while bash waits for the sleep.
    td.write_unit(
        "hup.service",
        &format!(
            "[Service]\nSendSIGHUP=yes\nTimeoutStopSec=30\n\
             ExecStart=/bin/bash -c 'trap \"\" TERM; touch {ready}; while :; do sleep 1000; done'\n",
            ready = ready.display()
        ),
    );
    td.ok(&["start", "hup"]);
    // SIGTERM is ignored once the shell has touched the file.
    common::eventually(Duration::from_secs(10), || ready.exists().then_some(()))
        .expect("the shell set its trap");
    td.ok(&["stop", "hup"]);
    assert_eq!(
        (
            td.prop("hup", "ExecMainCode"),
            td.prop("hup", "ExecMainStatus")
        ),
        // CLD_KILLED by SIGHUP, in systemctl's numbers.
        ("2".to_string(), "1".to_string()),
        "{}",
        td.log()
    );
    // SIGHUP is a clean end for a stopped service.
    assert_eq!(td.prop("hup", "Result"), "success");
    assert_eq!(td.prop("hup", "ActiveState"), "inactive");
    assert!(!td.unit_cgroup("hup.service").exists());
}

#[test]
fn kill_mode_process_cgroup_goes_with_its_last_process() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("lingerer-{}", std::process::id());
    td.write_unit(
        "linger.service",
        &format!(
            "[Service]\nKillMode=process\n\
             ExecStart=/bin/bash -c '(exec -a {tag} sleep 1000) & exec sleep 1000'\n"
        ),
    );
    td.ok(&["start", "linger"]);
    let left = common::eventually(Duration::from_secs(5), || {
        let p = pids_named(&tag);
        (!p.is_empty()).then_some(p)
    })
    .expect("child started");
    td.ok(&["stop", "linger"]);
    let old = td.unit_cgroup("linger.service");
    assert_eq!(pids_named(&tag), left, "KillMode=process keeps the child");
    assert!(cgroup_pids(&old).contains(&left[0]));
    let st = td.corral(&["status", "linger"]);
    assert!(
        st.stdout.contains("left running by KillMode=process"),
        "{st:?}"
    );
    // The child ends: the manager removes the cgroup it was left in.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(left[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the child");
    common::eventually(Duration::from_secs(10), || (!old.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{old:?} stayed after its last process ended\n{}", td.log()));
    let st = td.corral(&["status", "linger"]);
    assert!(
        !st.stdout.contains("left running by KillMode=process"),
        "{st:?}"
    );
}

#[test]
fn kill_mode_process_leftovers_do_not_block_a_new_start() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("straggler-{}", std::process::id());
    td.write_unit(
        "again.service",
        &format!(
            "[Service]\nKillMode=process\n\
             ExecStart=/bin/bash -c '(exec -a {tag} sleep 1000) & exec sleep 1000'\n"
        ),
    );
    td.ok(&["start", "again"]);
    let first = common::eventually(Duration::from_secs(5), || {
        let p = pids_named(&tag);
        (p.len() == 1).then(|| p[0])
    })
    .expect("child started");
    td.ok(&["stop", "again"]);
    let old = td.unit_cgroup("again.service");
    assert!(cgroup_pids(&old).contains(&first));
    // Started again while the first child lives: a fresh cgroup beside the old one.
    td.ok(&["start", "again"]);
    assert_eq!(td.prop("again", "ActiveState"), "active");
    let rel = td.prop("again", "ControlGroup");
    assert!(rel.contains("again.service-"), "{rel}");
    let main: i32 = td.prop("again", "MainPID").parse().unwrap();
    let new = td.root.path().join(rel.rsplit('/').next().unwrap());
    assert!(cgroup_pids(&new).contains(&main), "{new:?}");
    assert!(!cgroup_pids(&new).contains(&first));
    // The first child ends: only the old cgroup goes, the running invocation stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the child");
    common::eventually(Duration::from_secs(10), || (!old.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{old:?} stayed after its last process ended\n{}", td.log()));
    assert!(new.exists());
    assert_eq!(td.prop("again", "ActiveState"), "active");
    assert_eq!(td.prop("again", "MainPID"), main.to_string());
    // The new invocation leaves its own child behind, in its own cgroup.
    td.ok(&["stop", "again"]);
    let second: Vec<i32> = pids_named(&tag);
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(cgroup_pids(&new).contains(&second[0]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the second child");
    common::eventually(Duration::from_secs(10), || (!new.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{new:?} stayed after its last process ended\n{}", td.log()));
}

#[test]
fn kill_mode_mixed_kills_the_rest_once_the_main_process_is_gone() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let pidfile = td.run_dir().join("mixed-child.pid");
    let script = td.run_dir().join("mixed.sh");
    // The child would say so if it got SIGTERM (KillMode=mixed sends that to the
    // main process only) and would outlive it: only the SIGKILL of the rest
    // ends it. Before that SIGKILL came at once, a stop waited TimeoutStopSec
    // and ended in result "timeout".
    std::fs::write(
        &script,
        format!(
            "child() {{ trap 'echo child saw SIGTERM' TERM; echo $BASHPID > {pf}.tmp; \
             mv {pf}.tmp {pf}; while :; do sleep 0.1; done; }}\nchild &\nwait\n",
            pf = pidfile.display()
        ),
    )
    .unwrap();
    td.write_unit(
        "mixed.service",
        &format!(
            "[Service]\nKillMode=mixed\nTimeoutStopSec=120\nExecStart=/bin/bash {}\n",
            script.display()
        ),
    );
    td.ok(&["start", "mixed"]);
    let child: i32 = common::eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })
    .expect("the child wrote its pid");
    let cg = td.unit_cgroup("mixed.service");
    assert!(cgroup_pids(&cg).contains(&child));
    td.ok(&["stop", "mixed"]);
    assert_eq!(td.prop("mixed", "Result"), "success", "{}", td.log());
    assert_eq!(td.prop("mixed", "ActiveState"), "inactive");
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists() || is_zombie(child),
        "the child {child} survived the stop"
    );
    assert!(!cg.exists());
    let j = td.journal("mixed.service", &[]);
    assert!(!j.stdout.contains("child saw SIGTERM"), "{j:?}");
}

#[test]
fn kill_reaches_what_kill_mode_process_left() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let tag = format!("killable-{}", std::process::id());
    td.write_unit(
        "leave.service",
        &format!(
            "[Service]\nKillMode=process\n\
             ExecStart=/bin/bash -c '(exec -a {tag} sleep 1000) & exec sleep 1000'\n"
        ),
    );
    let started = || {
        common::eventually(Duration::from_secs(5), || {
            let p = pids_named(&tag);
            (!p.is_empty()).then_some(p)
        })
        .expect("child started")
    };
    td.ok(&["start", "leave"]);
    let first = started();
    let old = td.unit_cgroup("leave.service");
    td.ok(&["stop", "leave"]);
    assert_eq!(pids_named(&tag), first, "KillMode=process left the child");
    // Stopped, the unit still owns what it left: `kill` reaches it (systemd
    // keeps such processes in the unit's cgroup, where `systemctl kill` finds them).
    td.ok(&["kill", "--signal", "KILL", "leave"]);
    common::eventually(Duration::from_secs(10), || (!old.exists()).then_some(()))
        .unwrap_or_else(|| panic!("{old:?} stayed after kill\n{}", td.log()));
    assert!(pids_named(&tag).is_empty());
    // Running again with a leftover of the previous run: one `kill` reaches both.
    td.ok(&["start", "leave"]);
    let second = started();
    td.ok(&["stop", "leave"]);
    td.ok(&["start", "leave"]);
    let both = common::eventually(Duration::from_secs(5), || {
        let p = pids_named(&tag);
        (p.len() == 2).then_some(p)
    })
    .expect("a child of each run");
    assert!(both.contains(&second[0]));
    td.ok(&["kill", "--signal", "KILL", "leave"]);
    common::eventually(Duration::from_secs(10), || {
        pids_named(&tag).is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("children left: {:?}", pids_named(&tag)));
}
