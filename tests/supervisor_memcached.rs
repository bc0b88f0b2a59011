//! The seed examples: memcached as Type=simple, as Type=forking with a
//! PIDFile, and as a template instance — each started, asked for its
//! version on its port, stopped, and checked to have left nothing behind.

mod common;

use std::time::Duration;

use common::{
    TestDaemon, cgroup_pids, eventually, free_port, memcached_user_flag, memcached_version,
    pids_matching,
};

fn assert_gone(td: &TestDaemon, unit: &str, port: u16) {
    let needle = format!("-p {port}");
    let left: Vec<i32> = pids_matching(&needle)
        .into_iter()
        .filter(|p| common::pids_matching("memcached").contains(p))
        .collect();
    assert!(
        left.is_empty(),
        "memcached processes of ours survived the stop: {left:?}"
    );
    assert!(
        !td.unit_cgroup(unit).exists(),
        "the cgroup of {unit} is still there after stop"
    );
    assert_eq!(td.prop(unit, "ActiveState"), "inactive");
}

#[test]
fn memcached_simple_start_answers_stop_leaves_nothing() {
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached.service",
            &format!(
                "[Unit]\nDescription=memcached on {port}\n[Service]\nExecStart=/usr/bin/memcached -l 127.0.0.1 -p {port} -U 0{}\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    td.ok(&["start", "memcached"]);
    let v = eventually(Duration::from_secs(5), || memcached_version(port));
    assert!(
        v.as_deref().is_some_and(|v| v.starts_with("VERSION")),
        "no answer: {v:?}"
    );
    let cg = td.unit_cgroup("memcached.service");
    let main: i32 = td.prop("memcached", "MainPID").parse().unwrap();
    assert!(
        cgroup_pids(&cg).contains(&main),
        "main PID {main} not in {cg:?}"
    );
    td.ok(&["stop", "memcached"]);
    assert_gone(&td, "memcached.service", port);
}

#[test]
fn memcached_forking_with_pidfile() {
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached-fork.service",
            &format!(
                "[Service]\nType=forking\nPIDFile=%t/%p.pid\n\
                 ExecStart=/usr/bin/memcached -d -P %t/%p.pid -l 127.0.0.1 -p {port} -U 0{}\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    td.ok(&["start", "memcached-fork"]);
    // Type=forking: started means the daemon is up, no retry needed for the main PID.
    let main: i32 = td.prop("memcached-fork", "MainPID").parse().unwrap();
    let pidfile = std::fs::read_to_string(td.run_dir().join("memcached-fork.pid")).unwrap();
    assert_eq!(pidfile.trim().parse::<i32>().unwrap(), main);
    assert!(cgroup_pids(&td.unit_cgroup("memcached-fork.service")).contains(&main));
    let v = eventually(Duration::from_secs(5), || memcached_version(port));
    assert!(v.is_some_and(|v| v.starts_with("VERSION")));
    td.ok(&["stop", "memcached-fork"]);
    assert_gone(&td, "memcached-fork.service", port);
}

#[test]
fn memcached_template_instance() {
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "memcached@.service",
            &format!(
                "[Unit]\nDescription=memcached on port %i\n[Service]\nExecStart=/usr/bin/memcached -l 127.0.0.1 -p %i -U 0{}\n",
                memcached_user_flag()
            ),
        )
    }) else {
        return;
    };
    let unit = format!("memcached@{port}.service");
    td.ok(&["start", &format!("memcached@{port}")]);
    let v = eventually(Duration::from_secs(5), || memcached_version(port));
    assert!(v.is_some_and(|v| v.starts_with("VERSION")));
    assert_eq!(
        td.prop(&unit, "Description"),
        format!("memcached on port {port}")
    );
    td.ok(&["stop", &unit]);
    assert_gone(&td, &unit, port);
}

#[test]
fn unknown_unit_is_exit_5() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let o = td.corral(&["start", "nosuch"]);
    assert_eq!(o.code, 5, "{o:?}");
    assert!(o.stderr.contains("Unit nosuch.service not found."), "{o:?}");
    let o = td.corral(&["stop", "nosuch.service"]);
    assert_eq!(o.code, 5, "{o:?}");
}
