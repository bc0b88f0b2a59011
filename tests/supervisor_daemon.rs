//! The manager process itself: SIGTERM stops every unit and exits 0, SIGHUP
//! reads the unit files again, and `corral status` shows it as one tree.

mod common;

use std::time::Duration;

use common::{TestDaemon, pids_named};
use nix::sys::signal::Signal;

#[test]
fn sigterm_stops_every_unit_and_exits_0() {
    let tag = format!("term-{}", std::process::id());
    let Some(mut td) = TestDaemon::start_with(|td| {
        for i in 0..3 {
            td.write_unit(
                &format!("s{i}.service"),
                &format!("[Service]\nExecStart=/bin/bash -c 'exec -a {tag} sleep 1000'\n"),
            );
        }
    }) else {
        return;
    };
    td.ok(&["start", "s0", "s1", "s2"]);
    let n = common::eventually(Duration::from_secs(5), || {
        (pids_named(&tag).len() == 3).then_some(3)
    });
    assert_eq!(n, Some(3));
    td.terminate();
    assert!(
        pids_named(&tag).is_empty(),
        "units survived the manager's SIGTERM"
    );
    for i in 0..3 {
        assert!(!td.unit_cgroup(&format!("s{i}.service")).exists());
    }
    assert!(!td.socket.exists(), "control socket left behind");
    // The fd holder exits with a manager that stops cleanly, and its cgroup
    // goes with it: nothing of the manager's is left below its root.
    let left: Vec<_> = std::fs::read_dir(&td.cgroup_root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "cgroups left below the root: {left:?}");
}

#[test]
fn sighup_and_daemon_reload_read_unit_files_again() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let o = td.ok(&["list", "--all"]);
    assert!(!o.stdout.contains("late.service"), "{o:?}");
    td.write_unit(
        "late.service",
        "[Unit]\nDescription=first\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    td.signal(Signal::SIGHUP);
    let seen = common::eventually(Duration::from_secs(5), || {
        td.ok(&["list", "--all"])
            .stdout
            .contains("late.service")
            .then_some(())
    });
    assert!(seen.is_some(), "SIGHUP did not pick up the new unit");
    td.write_unit(
        "late.service",
        "[Unit]\nDescription=second\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    td.ok(&["daemon-reload"]);
    assert_eq!(td.prop("late", "Description"), "second");
}

#[test]
fn several_units_per_call_and_exit_codes() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("a.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit("b.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    td.ok(&["start", "a", "b.service"]);
    let o = td.ok(&["is-active", "a", "b"]);
    assert_eq!(o.stdout, "active\nactive\n");
    let o = td.corral(&["start", "a", "nope"]);
    assert_eq!(o.code, 5, "{o:?}");
    assert!(o.stderr.contains("Unit nope.service not found."));
    td.ok(&["stop", "a", "b"]);
    let o = td.corral(&["is-active", "a"]);
    assert_eq!((o.code, o.stdout.as_str()), (3, "inactive\n"));
    assert_eq!(td.corral(&["is-failed", "a"]).code, 1);
    let o = td.corral(&["status", "a"]);
    assert_eq!(o.code, 3, "{o:?}");
    // try-restart leaves a stopped unit stopped.
    td.ok(&["try-restart", "a"]);
    assert_eq!(td.prop("a", "ActiveState"), "inactive");
    td.ok(&["restart", "a"]);
    assert_eq!(td.prop("a", "ActiveState"), "active");
    let before = td.prop("a", "MainPID");
    td.ok(&["try-restart", "a"]);
    assert_ne!(td.prop("a", "MainPID"), before);
    td.ok(&["kill", "--signal", "KILL", "--kill-whom", "main", "a"]);
    let st = common::eventually(Duration::from_secs(5), || {
        let s = td.prop("a", "ActiveState");
        (s == "failed").then_some(s)
    });
    assert_eq!(st.as_deref(), Some("failed"));
    assert_eq!(td.prop("a", "ExecMainStatus"), "9");
    let o = td.ok(&["cat", "a"]);
    assert!(
        o.stdout.starts_with("# ") && o.stdout.contains("ExecStart=/bin/sleep 1000"),
        "{o:?}"
    );
}

#[test]
fn a_closed_stdout_exits_0_quietly() {
    let Some(td) = TestDaemon::start_with(|td| {
        for i in 0..50 {
            td.write_unit(
                &format!("u{i}.service"),
                "[Service]\nExecStart=/bin/sleep 1000\n",
            );
        }
    }) else {
        return;
    };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.args(["list", "--all"]).env("CORRAL_SOCKET", &td.socket);
    // The reader goes away before corral writes (as `corral list | head -0`).
    common::assert_quiet_when_the_reader_is_gone(cmd);
}

/// The manager runs without glibc's per-thread caches (it executes itself
/// once with GLIBC_TUNABLES set, see `without_thread_caches` in corrald),
/// keeping tunables it was given (and the caches' size when that is one of
/// them), under its own name; its services see
/// neither the tunables nor how it passed them on (they start from a clean
/// environment).
#[test]
fn the_manager_runs_without_thread_caches_and_its_services_do_not_inherit_that() {
    let own = "glibc.malloc.tcache_count=3";
    for given in [None, Some("glibc.malloc.check=0"), Some(own)] {
        let Some(td) = TestDaemon::start_configured(
            |td| {
                let out = td.run_dir().join("env.out");
                td.write_unit(
                    "env.service",
                    &format!(
                        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'env > {}'\n",
                        out.display()
                    ),
                );
            },
            &[],
            |cmd| {
                cmd.env_remove("GLIBC_TUNABLES");
                if let Some(v) = given {
                    cmd.env("GLIBC_TUNABLES", v);
                }
            },
        ) else {
            return;
        };
        // The environment it was executed with (ld.so cuts GLIBC_TUNABLES
        // up where it parses it), with what the first run was given.
        let environ = std::fs::read(format!("/proc/{}/environ", td.pid())).unwrap();
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let before = match given {
            None => "CORRALD_GLIBC_TUNABLES_BEFORE=-".to_string(),
            Some(v) => format!("CORRALD_GLIBC_TUNABLES_BEFORE=={v}"),
        };
        // A size of the caches the caller chose is kept: no second run.
        let executed_again = given != Some(own);
        assert_eq!(
            vars.contains(&before.as_bytes())
                && vars
                    .iter()
                    .any(|v| v.ends_with(b"glibc.malloc.tcache_count=0")),
            executed_again,
            "{}",
            String::from_utf8_lossy(&environ)
        );
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", td.pid())).unwrap();
        assert_eq!(comm.trim_end(), "corrald");
        td.ok(&["start", "env"]);
        let env = std::fs::read_to_string(td.run_dir().join("env.out")).unwrap();
        let tunables: Vec<&str> = env
            .lines()
            .filter(|l| l.starts_with("GLIBC_TUNABLES=") || l.starts_with("CORRALD_"))
            .collect();
        assert_eq!(tunables, Vec::<&str>::new());
    }
}
