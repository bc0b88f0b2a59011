//! The unit graph end to end, with the real manager and real processes:
//! ordering over a real D-Bus session bus, failure propagation, Conflicts=,
//! PartOf=, BindsTo=, ordering cycles, conditions and asserts, the
//! manager's environment block across a restart, and default.target
//! autostart (unit files and runit service directories).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestDaemon, eventually, pids_matching};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The seed's runit run script for a session bus, verbatim: the bus listens
/// in the service's working directory.
const SEED_DBUS_RUN: &str =
    "#!/bin/sh\nexec dbus-daemon --session --nofork --address=\"unix:path=$(pwd)/sock\"\n";

#[test]
fn dbus_bus_orders_its_client_and_its_stop_stops_the_client() {
    let Some(td) = TestDaemon::start_with(|td| {
        let dir = td.dir.path();
        let run = dir.join("dbus-run");
        std::fs::write(&run, SEED_DBUS_RUN).unwrap();
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // The seed's script as a unit: its working directory is the runtime
        // directory, so the bus is %t/sock; dbus-daemon reports READY=1.
        td.write_unit(
            "dbus.service",
            &format!(
                "[Unit]\nDescription=session bus\n[Service]\nType=notify\n\
                 WorkingDirectory=%t\nExecStart={}\n",
                run.display()
            ),
        );
        td.write_unit(
            "busclient.service",
            &format!(
                "[Unit]\nRequires=dbus.service\nAfter=dbus.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart=/bin/sh -c '/usr/bin/dbus-send --bus=unix:path=%t/sock --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.ListNames > {}'\n",
                dir.join("names").display()
            ),
        );
    }) else {
        return;
    };
    let o = td.ok(&["start", "busclient"]);
    assert_eq!(o.stderr, "", "{o:?}");
    assert!(
        read(&td.dir.path().join("names")).contains("\"org.freedesktop.DBus\""),
        "dbus-send did not reach the bus: {:?}\n{}",
        read(&td.dir.path().join("names")),
        td.log()
    );
    assert!(
        td.run_dir().join("sock").exists(),
        "the bus socket is not under the runtime directory"
    );
    assert_eq!(td.prop("dbus.service", "ActiveState"), "active");
    assert_eq!(td.prop("busclient.service", "ActiveState"), "active");
    // A restart of the bus restarts its running client after it.
    std::fs::remove_file(td.dir.path().join("names")).unwrap();
    td.ok(&["restart", "dbus"]);
    assert!(
        read(&td.dir.path().join("names")).contains("\"org.freedesktop.DBus\""),
        "the client was not restarted after the bus\n{}",
        td.log()
    );
    assert_eq!(td.prop("busclient.service", "ActiveState"), "active");
    let bus_pid: i32 = td.prop("dbus.service", "MainPID").parse().unwrap();
    assert!(bus_pid > 0);

    let o = td.ok(&["stop", "dbus"]);
    assert_eq!(o.stderr, "");
    // The stop reply comes once both cgroups are empty and removed.
    assert_eq!(td.prop("busclient.service", "ActiveState"), "inactive");
    assert_eq!(td.prop("dbus.service", "ActiveState"), "inactive");
    assert!(!td.unit_cgroup("dbus.service").exists());
    assert!(
        !Path::new(&format!("/proc/{bus_pid}")).exists()
            || pids_matching("dbus-daemon --session --nofork --address")
                .iter()
                .all(|p| *p != bus_pid),
        "dbus-daemon {bus_pid} still runs after the stop"
    );
    let log = td.log();
    let stop_client = log
        .find("Stopped busclient.service")
        .expect("client stopped");
    let stop_bus = log.find("Stopped dbus.service").expect("bus stopped");
    assert!(
        stop_client < stop_bus,
        "the client (After=dbus) must stop before the bus:\n{log}"
    );
}

#[test]
fn failed_requirement_fails_the_dependent_with_the_reason() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "broken.service",
            "[Service]\nType=oneshot\nExecStart=/bin/false\n",
        );
        td.write_unit(
            "picky.service",
            "[Unit]\nRequisite=idle.service\n[Service]\nExecStart=/bin/sleep 1015\n",
        );
        td.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1016\n");
        td.write_unit(
            "needy.service",
            &format!(
                "[Unit]\nRequires=broken.service\nAfter=broken.service\n[Service]\nType=oneshot\nExecStart=/bin/touch {}\n",
                td.dir.path().join("needy-ran").display()
            ),
        );
    }) else {
        return;
    };
    let o = td.corral(&["start", "needy"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains("Failed to start needy.service: dependency failed: broken.service."),
        "{o:?}"
    );
    assert!(!td.dir.path().join("needy-ran").exists(), "needy ran");
    let st = td.corral(&["status", "needy"]);
    assert!(
        st.stdout.contains("dependency failed: broken.service"),
        "{st:?}"
    );
    assert!(st.stdout.contains("failed (Result: dependency)"), "{st:?}");
    // The manager's message is in the unit's journal too.
    let logged = eventually(Duration::from_secs(5), || {
        td.journal("needy.service", &[])
            .stdout
            .contains("Dependency failed for needy.service")
            .then_some(())
    });
    assert!(logged.is_some(), "no journal entry\n{}", td.log());
    assert_eq!(td.prop("broken.service", "ActiveState"), "failed");
    assert_eq!(td.prop("broken.service", "Result"), "exit-code");
    // Requisite= does not start the unit: it must be active already.
    let o = td.corral(&["start", "picky"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("dependency failed: idle.service"),
        "{o:?}"
    );
    assert_eq!(td.prop("idle.service", "ActiveState"), "inactive");
    td.ok(&["start", "idle"]);
    td.ok(&["start", "picky"]);
    assert_eq!(td.prop("picky.service", "ActiveState"), "active");
    // Stopping the requisite stops what needs it.
    td.ok(&["stop", "idle"]);
    assert_eq!(td.prop("picky.service", "ActiveState"), "inactive");
    // The overview lists both failures.
    let all = td.ok(&["status"]).stdout;
    assert!(
        all.contains("Failed: needy.service (Result: dependency)"),
        "{all}"
    );
    assert!(
        all.contains("Failed: broken.service (Result: exit-code)"),
        "{all}"
    );
}

#[test]
fn conflicts_stops_the_other_side_both_ways() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("left.service", "[Service]\nExecStart=/bin/sleep 1000\n");
        td.write_unit(
            "right.service",
            "[Unit]\nConflicts=left.service\n[Service]\nExecStart=/bin/sleep 1001\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "left"]);
    assert_eq!(td.prop("left.service", "ActiveState"), "active");
    td.ok(&["start", "right"]);
    assert_eq!(td.prop("left.service", "ActiveState"), "inactive");
    assert_eq!(td.prop("right.service", "ActiveState"), "active");
    assert!(!td.unit_cgroup("left.service").exists());
    // The Conflicts= of right also holds when left is the one started.
    td.ok(&["start", "left"]);
    assert_eq!(td.prop("right.service", "ActiveState"), "inactive");
    assert_eq!(td.prop("left.service", "ActiveState"), "active");
}

#[test]
fn part_of_follows_stop_and_restart() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("whole.service", "[Service]\nExecStart=/bin/sleep 1002\n");
        td.write_unit(
            "piece.service",
            "[Unit]\nPartOf=whole.service\n[Service]\nExecStart=/bin/sleep 1003\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "whole", "piece"]);
    let before: i32 = td.prop("piece.service", "MainPID").parse().unwrap();
    td.ok(&["restart", "whole"]);
    assert_eq!(td.prop("piece.service", "ActiveState"), "active");
    let after: i32 = td.prop("piece.service", "MainPID").parse().unwrap();
    assert_ne!(before, after, "piece was not restarted along with whole");
    td.ok(&["stop", "whole"]);
    assert_eq!(td.prop("piece.service", "ActiveState"), "inactive");
    assert!(!td.unit_cgroup("piece.service").exists());
    // PartOf= does not pull in: starting whole leaves piece alone.
    td.ok(&["start", "whole"]);
    assert_eq!(td.prop("piece.service", "ActiveState"), "inactive");
}

#[test]
fn binds_to_stops_the_dependent_when_the_unit_dies_on_its_own() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("anchor.service", "[Service]\nExecStart=/bin/sleep 1004\n");
        td.write_unit(
            "tied.service",
            "[Unit]\nBindsTo=anchor.service\nAfter=anchor.service\n[Service]\nExecStart=/bin/sleep 1005\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "tied"]);
    assert_eq!(td.prop("anchor.service", "ActiveState"), "active");
    td.ok(&["kill", "-s", "KILL", "anchor"]);
    td.wait_state("tied.service", "inactive");
    assert!(td.log().contains("it is bound to anchor.service"));
}

#[test]
fn ordering_cycle_is_refused_with_its_members_or_broken_at_a_wants() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "c1.service",
            "[Unit]\nRequires=c2.service\nAfter=c2.service\n[Service]\nExecStart=/bin/sleep 1006\n",
        );
        td.write_unit(
            "c2.service",
            "[Unit]\nRequires=c3.service\nAfter=c3.service\n[Service]\nExecStart=/bin/sleep 1006\n",
        );
        td.write_unit(
            "c3.service",
            "[Unit]\nRequires=c1.service\nAfter=c1.service\n[Service]\nExecStart=/bin/sleep 1006\n",
        );
        td.write_unit(
            "x.service",
            "[Unit]\nWants=y.service\nAfter=y.service\n[Service]\nExecStart=/bin/sleep 1007\n",
        );
        td.write_unit(
            "y.service",
            "[Unit]\nAfter=x.service\n[Service]\nExecStart=/bin/sleep 1008\n",
        );
    }) else {
        return;
    };
    let o = td.corral(&["start", "c1"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("ordering cycle"), "{o:?}");
    for u in ["c1.service", "c2.service", "c3.service"] {
        assert!(o.stderr.contains(u), "{u} missing from {:?}", o.stderr);
    }
    assert!(td.log().contains("ordering cycle between"), "{}", td.log());
    for u in ["c1.service", "c2.service", "c3.service"] {
        assert_eq!(td.prop(u, "ActiveState"), "inactive");
    }

    let o = td.ok(&["start", "x"]);
    assert!(
        o.stdout.contains("job y.service/start deleted to break it"),
        "{o:?}"
    );
    assert!(td.log().contains("deleted to break it"));
    assert_eq!(td.prop("x.service", "ActiveState"), "active");
    assert_eq!(td.prop("y.service", "ActiveState"), "inactive");
}

#[test]
fn false_condition_skips_false_assert_fails() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "notroot.service",
            "[Unit]\nConditionUser=!root\n[Service]\nExecStart=/bin/sleep 1009\n",
        );
        td.write_unit(
            "asserted.service",
            "[Unit]\nAssertPathExists=/nonexistent/corral-test\n[Service]\nExecStart=/bin/sleep 1010\n",
        );
        td.write_unit(
            "fine.service",
            "[Unit]\nConditionUser=root\nConditionPathIsDirectory=/proc\n[Service]\nExecStart=/bin/sleep 1011\n",
        );
        td.write_unit("notroot.target", "[Unit]\nConditionUser=!root\n");
    }) else {
        return;
    };
    // The tests run as root (TestDaemon requires it).
    let o = td.corral(&["start", "notroot"]);
    assert_eq!(o.code, 0, "a skipped start is not a failure: {o:?}");
    assert_eq!(td.prop("notroot.service", "ActiveState"), "inactive");
    assert_eq!(td.prop("notroot.service", "Result"), "condition");
    let st = td.corral(&["status", "notroot"]);
    assert!(
        st.stdout.contains("ConditionUser=!root was not met"),
        "{st:?}"
    );
    assert!(st.stdout.contains("(Result: condition)"), "{st:?}");
    assert_eq!(td.corral(&["is-failed", "notroot"]).code, 1);
    assert!(!td.unit_cgroup("notroot.service").exists());

    let o = td.corral(&["start", "asserted"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains("Assertion failed: AssertPathExists=/nonexistent/corral-test was not met"),
        "{o:?}"
    );
    assert_eq!(td.prop("asserted.service", "ActiveState"), "failed");
    assert_eq!(td.prop("asserted.service", "Result"), "assert");

    td.ok(&["start", "fine"]);
    assert_eq!(td.prop("fine.service", "ActiveState"), "active");

    // A target's start is checked like any other unit's.
    let o = td.corral(&["start", "notroot.target"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(td.prop("notroot.target", "ActiveState"), "inactive");
    assert_eq!(td.prop("notroot.target", "Result"), "condition");
}

#[test]
fn environment_block_reaches_units_and_survives_a_restart() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "envdump.service",
            &format!(
                "[Service]\nType=oneshot\nEnvironment=OVERRIDDEN=by-unit\nExecStart=/bin/sh -c 'env > {}'\n",
                td.dir.path().join("env.out").display()
            ),
        );
    }) else {
        return;
    };
    let out = td.dir.path().join("env.out");
    td.ok(&[
        "set-environment",
        "GREETING=hello world",
        "OVERRIDDEN=by-block",
        "GONE=soon",
    ]);
    // import-environment copies the caller's value (turnstile style).
    let o = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "import-environment",
            "DISPLAY_TEST",
            "MISSING_TEST",
            "EMPTY_TEST=",
        ])
        .env("CORRAL_SOCKET", &td.socket)
        .env("DISPLAY_TEST", ":42")
        .env_remove("MISSING_TEST")
        .stdin(Stdio::null())
        .output()
        .expect("run corral");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Environment variable $MISSING_TEST not set, ignoring.\n"
    );
    td.ok(&["unset-environment", "GONE"]);
    let shown = td.ok(&["show-environment"]).stdout;
    // As systemctl: what units get, the manager's own variables included.
    let block: Vec<&str> = shown
        .lines()
        .filter(|l| {
            l.contains("_TEST=") || l.starts_with("GREETING=") || l.starts_with("OVERRIDDEN=")
        })
        .collect();
    assert_eq!(
        block,
        [
            "DISPLAY_TEST=:42",
            "EMPTY_TEST=",
            "GREETING=$'hello world'",
            "OVERRIDDEN=by-block"
        ]
    );
    let run = format!("XDG_RUNTIME_DIR={}", td.run_dir().display());
    for var in ["HOME=", "USER=", "PATH=", "SHELL=", run.as_str()] {
        assert!(
            shown.lines().any(|l| l.starts_with(var)),
            "{var} missing:\n{shown}"
        );
    }
    let mut sorted: Vec<&str> = shown.lines().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, shown.lines().collect::<Vec<_>>());
    let bad = td.corral(&["set-environment", "1BAD=x"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("Not a valid environment assignment"));

    td.ok(&["start", "envdump"]);
    let env = read(&out);
    for line in [
        "GREETING=hello world",
        "DISPLAY_TEST=:42",
        "EMPTY_TEST=",
        "OVERRIDDEN=by-unit",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
    assert!(!env.contains("GONE="), "{env}");

    td.restart();
    assert_eq!(td.ok(&["show-environment"]).stdout, shown);
    std::fs::remove_file(&out).unwrap();
    td.ok(&["unset-environment", "DISPLAY_TEST"]);
    td.ok(&["start", "envdump"]);
    let env = read(&out);
    assert!(env.lines().any(|l| l == "GREETING=hello world"), "{env}");
    assert!(!env.contains("DISPLAY_TEST"), "{env}");
}

#[test]
fn default_target_autostarts_wanted_units_and_runit_services() {
    let Some(td) = TestDaemon::start_with(|td| {
        let units = td.units_dir();
        td.write_unit(
            "auto.service",
            &format!(
                "[Unit]\nDescription=autostarted\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/touch {}\n[Install]\nWantedBy=default.target\n",
                td.dir.path().join("auto-ran").display()
            ),
        );
        td.write_unit("manual.service", "[Service]\nExecStart=/bin/sleep 1012\n");
        std::fs::create_dir_all(units.join("default.target.wants")).unwrap();
        symlink(
            units.join("auto.service"),
            units.join("default.target.wants/auto.service"),
        )
        .unwrap();
        let runit = td.runit_dir();
        for (name, down) in [("rsvc", false), ("rdown", true)] {
            let d = runit.join(name);
            std::fs::create_dir_all(&d).unwrap();
            let run = d.join("run");
            std::fs::write(&run, "#!/bin/sh\nexec /bin/sleep 1013\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
            if down {
                std::fs::write(d.join("down"), "").unwrap();
            }
        }
    }) else {
        return;
    };
    // The ready line is written once default.target's transaction finished.
    assert!(td.dir.path().join("auto-ran").exists(), "{}", td.log());
    assert_eq!(td.prop("auto.service", "ActiveState"), "active");
    assert_eq!(td.prop("default.target", "ActiveState"), "active");
    assert_eq!(td.prop("rsvc.service", "ActiveState"), "active");
    assert_eq!(td.prop("rdown.service", "ActiveState"), "inactive");
    assert_eq!(td.prop("manual.service", "ActiveState"), "inactive");
    let st = td.ok(&["status", "default.target"]).stdout;
    assert!(st.contains("Active: active since"), "{st}");
    assert!(st.contains("Loaded: loaded\n"), "{st}");
    assert_eq!(td.prop("default.target", "SubState"), "active");
    let list = td.ok(&["list"]).stdout;
    assert!(list.contains("default.target"), "{list}");

    let tree = td.ok(&["list-dependencies", "default.target"]).stdout;
    assert_eq!(
        tree, "default.target\n● ├─auto.service\n● └─rsvc.service\n",
        "{tree}"
    );
    let rev = td.ok(&["list-dependencies", "--reverse", "auto"]).stdout;
    assert_eq!(rev, "auto.service\n● └─default.target\n");
    // enable + daemon-reload reach the built-in default.target; starting it
    // again starts what it newly wants.
    td.write_unit(
        "later.service",
        "[Service]\nExecStart=/bin/sleep 1014\n[Install]\nWantedBy=default.target\n",
    );
    let units = td.units_dir();
    td.ok(&["enable", "--units-dir", units.to_str().unwrap(), "later"]);
    td.ok(&["daemon-reload"]);
    let tree = td.ok(&["list-dependencies"]).stdout;
    assert_eq!(
        tree,
        "default.target\n● ├─auto.service\n○ ├─later.service\n● └─rsvc.service\n"
    );
    td.ok(&["start", "default.target"]);
    assert_eq!(td.prop("later.service", "ActiveState"), "active");

    // systemctl draws a unit that does not exist as its name alone, exit 0.
    let o = td.corral(&["list-dependencies", "nosuch"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "nosuch.service\n"),
        "{o:?}"
    );
}

#[test]
fn start_during_a_stop_waits_for_it_and_both_answer() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "slowstop.service",
            "[Service]\nExecStart=/bin/sleep 1017\nExecStop=/bin/sleep 0.5\n",
        );
    }) else {
        return;
    };
    td.ok(&["start", "slowstop"]);
    let first: i32 = td.prop("slowstop.service", "MainPID").parse().unwrap();
    let mut stop = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["stop", "slowstop"])
        .env("CORRAL_SOCKET", &td.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run corral stop");
    td.wait_state("slowstop.service", "deactivating");
    // The start waits for the stop to finish, then starts a new invocation.
    td.ok(&["start", "slowstop"]);
    // A regression would leave the stop waiting forever: bound the wait.
    let status = eventually(Duration::from_secs(20), || stop.try_wait().expect("wait"));
    if status.is_none() {
        let _ = stop.kill();
        let _ = stop.wait();
        panic!("corral stop never answered\n{}", td.log());
    }
    assert!(status.unwrap().success());
    assert_eq!(td.prop("slowstop.service", "ActiveState"), "active");
    let second: i32 = td.prop("slowstop.service", "MainPID").parse().unwrap();
    assert_ne!(first, second);
}

#[test]
fn units_of_one_request_keep_their_order_across_transactions() {
    let Some(td) = TestDaemon::start_with(|td| {
        let dir = td.dir.path();
        td.write_unit(
            "first.service",
            &format!(
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'sleep 0.3; touch {}'\n",
                dir.join("first-done").display()
            ),
        );
        // No Requires=: only the order ties second to first.
        td.write_unit(
            "second.service",
            &format!(
                "[Unit]\nAfter=first.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'test -e {} && touch {}'\n",
                dir.join("first-done").display(),
                dir.join("second-done").display()
            ),
        );
    }) else {
        return;
    };
    td.ok(&["start", "first", "second"]);
    assert!(td.dir.path().join("second-done").exists(), "{}", td.log());
    assert_eq!(td.prop("second.service", "ActiveState"), "active");
}

#[test]
fn manager_shutdown_stops_units_in_reverse_order() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        let dir = td.dir.path();
        let bus = dir.join("bus");
        td.write_unit(
            "dbus.service",
            &format!(
                "[Service]\nType=notify\n\
                 ExecStart=/usr/bin/dbus-daemon --session --nofork --nopidfile --address=unix:path={}\n",
                bus.display()
            ),
        );
        // Its ExecStop still needs the bus, as a client that unregisters does.
        td.write_unit(
            "leaver.service",
            &format!(
                "[Unit]\nRequires=dbus.service\nAfter=dbus.service\n[Service]\nExecStart=/bin/sleep 1018\n\
                 ExecStop=/bin/sh -c 'sleep 0.2; /usr/bin/dbus-send --bus=unix:path={} --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.ListNames > {}'\n",
                bus.display(),
                dir.join("at-stop").display()
            ),
        );
    }) else {
        return;
    };
    // Two running units ordered after each other (started one at a time, so
    // no transaction saw the cycle): the shutdown must not wait forever.
    td.write_unit(
        "p.service",
        "[Unit]\nAfter=q.service\n[Service]\nExecStart=/bin/sleep 1019\n",
    );
    td.write_unit(
        "q.service",
        "[Unit]\nAfter=p.service\n[Service]\nExecStart=/bin/sleep 1019\n",
    );
    td.ok(&["start", "leaver"]);
    td.ok(&["start", "p"]);
    td.ok(&["start", "q"]);
    td.terminate();
    assert!(
        read(&td.dir.path().join("at-stop")).contains("\"org.freedesktop.DBus\""),
        "the bus was gone before leaver's ExecStop ran\n{}",
        td.log()
    );
    let log = td.log();
    let leaver = log.find("Stopped leaver.service").expect("leaver stopped");
    let bus = log.find("Stopped dbus.service").expect("bus stopped");
    assert!(leaver < bus, "{log}");
    assert!(log.contains("Stopped p.service") && log.contains("Stopped q.service"));
}

/// `handler@.service`, the OnFailure= unit of the tests below: it appends
/// its instance (the failed unit's name) to `<run dir>/handled`.
fn write_on_failure_handler(td: &TestDaemon) {
    let out = td.run_dir().join("handled");
    td.write_unit(
        "handler@.service",
        &format!(
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo %i >> {}'\n",
            out.display()
        ),
    );
}

/// What the handler wrote, once it has run.
fn on_failure_handled(td: &TestDaemon) -> String {
    let out = td.run_dir().join("handled");
    eventually(Duration::from_secs(10), || {
        let s = read(&out);
        (!s.is_empty()).then_some(s)
    })
    .unwrap_or_else(|| panic!("OnFailure= unit never ran\n{}", td.log()))
}

#[test]
fn on_failure_starts_its_units_when_the_unit_fails_not_when_it_stops() {
    let Some(td) = TestDaemon::start_with(|td| {
        write_on_failure_handler(td);
        td.write_unit(
            "broken.service",
            "[Unit]\nOnFailure=handler@%n.service\n[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
        );
        td.write_unit(
            "stopped.service",
            "[Unit]\nOnFailure=handler@%n.service\n[Service]\nExecStart=/bin/sleep 1000\n",
        );
    }) else {
        return;
    };
    // A clean stop is no failure: nothing is triggered.
    td.ok(&["start", "stopped"]);
    td.ok(&["stop", "stopped"]);
    td.ok(&["start", "broken"]);
    td.wait_state("broken.service", "failed");
    let handled = on_failure_handled(&td);
    assert_eq!(handled, "broken.service\n", "{}", td.log());
    assert!(
        td.log().contains(
            "broken.service: Triggering OnFailure= dependencies: handler@broken.service.service."
        ),
        "{}",
        td.log()
    );
    assert_eq!(
        td.prop("handler@broken.service.service", "Result"),
        "success"
    );
}

#[test]
fn collect_mode_inactive_or_failed_forgets_the_failure_after_on_failure() {
    let Some(td) = TestDaemon::start_with(|td| {
        write_on_failure_handler(td);
        td.write_unit(
            "collected.service",
            "[Unit]\nOnFailure=handler@%n.service\nCollectMode=inactive-or-failed\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n",
        );
        td.write_unit(
            "kept.service",
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n",
        );
    }) else {
        return;
    };
    // The job still fails, and OnFailure= still runs...
    let out = td.corral(&["start", "collected"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(on_failure_handled(&td), "collected.service\n");
    // ...but the unit is not left failed, as systemd unloads it.
    assert_eq!(td.prop("collected", "ActiveState"), "inactive");
    assert_eq!(td.prop("collected", "Result"), "success");
    assert_eq!(td.corral(&["is-failed", "collected"]).code, 1);
    let journal = td.journal("collected.service", &[]).stdout;
    assert!(
        journal.contains("Failed with result 'exit-code'."),
        "the journal keeps the failure: {journal}"
    );
    // The default keeps it.
    assert_eq!(td.corral(&["start", "kept"]).code, 1);
    assert_eq!(td.prop("kept", "ActiveState"), "failed");
}

#[test]
fn on_failure_starts_for_a_failed_dependency_not_for_a_false_assert() {
    // As systemd: a start job failed by a dependency triggers OnFailure=
    // (job_finish_and_invalidate, JOB_DEPENDENCY); a false Assert*= is the
    // job's result, not a failure of the unit, and triggers nothing.
    let Some(td) = TestDaemon::start_with(|td| {
        write_on_failure_handler(td);
        td.write_unit(
            "broken.service",
            "[Service]\nType=oneshot\nExecStart=/bin/false\n",
        );
        td.write_unit(
            "needy.service",
            "[Unit]\nRequires=broken.service\nAfter=broken.service\nOnFailure=handler@%n.service\n\
             [Service]\nExecStart=/bin/sleep 1021\n",
        );
        td.write_unit(
            "asserty.service",
            "[Unit]\nAssertPathExists=/nonexistent/corral-test\nOnFailure=handler@%n.service\n\
             [Service]\nExecStart=/bin/sleep 1022\n",
        );
    }) else {
        return;
    };
    let o = td.corral(&["start", "asserty"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(td.prop("asserty.service", "Result"), "assert");
    let o = td.corral(&["start", "needy"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(td.prop("needy.service", "Result"), "dependency");
    // OnFailure= jobs are queued in order: asserty's would have run first.
    let handled = on_failure_handled(&td);
    assert_eq!(handled, "needy.service\n", "{}", td.log());
}

#[test]
fn a_broken_cycle_of_requirers_starts_neither_side() {
    // Both enabled in default.target, each Requires= and After= the other:
    // systemd drops one start to break the cycle and the other with it,
    // since it requires the dropped one; nothing runs without what it requires.
    let Some(td) = TestDaemon::start_with(|td| {
        let units = td.units_dir();
        td.write_unit(
            "cyc1.service",
            "[Unit]\nRequires=cyc2.service\nAfter=cyc2.service\n[Service]\nExecStart=/bin/sleep 1018\n[Install]\nWantedBy=default.target\n",
        );
        td.write_unit(
            "cyc2.service",
            "[Unit]\nRequires=cyc1.service\nAfter=cyc1.service\n[Service]\nExecStart=/bin/sleep 1019\n[Install]\nWantedBy=default.target\n",
        );
        td.write_unit(
            "fine.service",
            "[Service]\nExecStart=/bin/sleep 1020\n[Install]\nWantedBy=default.target\n",
        );
        std::fs::create_dir_all(units.join("default.target.wants")).unwrap();
        for u in ["cyc1.service", "cyc2.service", "fine.service"] {
            symlink(units.join(u), units.join("default.target.wants").join(u)).unwrap();
        }
    }) else {
        return;
    };
    // The ready line comes once default.target's transaction has finished.
    let log = td.log();
    assert!(log.contains("deleted to break it"), "{log}");
    assert!(log.contains("deleted with it, as they need it"), "{log}");
    for u in ["cyc1.service", "cyc2.service"] {
        assert_eq!(td.prop(u, "ActiveState"), "inactive", "{u}\n{log}");
    }
    assert_eq!(td.prop("fine.service", "ActiveState"), "active");
    assert_eq!(td.prop("default.target", "ActiveState"), "active");
    // Started by hand, each one's start matters and requires the other:
    // the transaction is refused, as systemd refuses it.
    let o = td.corral(&["start", "cyc1"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("ordering cycle between"), "{o:?}");
    assert_eq!(td.prop("cyc2.service", "ActiveState"), "inactive");
}

#[test]
fn a_template_is_not_a_unit_to_run() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "mc@.service",
            &format!(
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/touch {}/ran-%i\n",
                td.dir.path().display()
            ),
        );
    }) else {
        return;
    };
    for args in [
        ["start", "mc@.service"],
        ["start", "mc@"],
        ["restart", "mc@"],
        ["stop", "mc@.service"],
    ] {
        let o = td.corral(&args);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert_eq!(
            o.stderr,
            format!(
                "Failed to {} mc@.service: Unit name mc@.service is missing the instance name.\n",
                args[0]
            ),
            "{args:?}"
        );
    }
    assert!(
        !td.dir.path().join("ran-").exists(),
        "the template ran with an empty %i"
    );
    td.ok(&["start", "mc@5"]);
    assert!(td.dir.path().join("ran-5").exists());
}

#[test]
fn daemon_reload_drops_units_whose_file_is_gone_and_unmasked_ones_load_again() {
    // A second, lower-priority unit directory (a vendor one): only a unit
    // there can be masked from the manager's own directory.
    let vendor = tempfile::tempdir().unwrap();
    std::fs::write(
        vendor.path().join("vend.service"),
        "[Service]\nExecStart=/bin/sleep 1023\n",
    )
    .unwrap();
    let Some(td) = TestDaemon::start_args(
        |td| {
            td.write_unit("tmpu.service", "[Service]\nExecStart=/bin/sleep 1021\n");
            td.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1022\n");
        },
        &["--units-dir", vendor.path().to_str().unwrap()],
    ) else {
        return;
    };
    let units = td.units_dir();

    // A running unit whose file is deleted: after daemon-reload it is
    // not-found; it keeps running until stopped, but cannot be started.
    td.ok(&["start", "tmpu"]);
    assert_eq!(
        td.corral(&["status", "idle"]).code,
        3,
        "idle is loaded, inactive"
    );
    std::fs::remove_file(units.join("tmpu.service")).unwrap();
    std::fs::remove_file(units.join("idle.service")).unwrap();
    td.ok(&["daemon-reload"]);
    assert_eq!(td.prop("tmpu.service", "ActiveState"), "active");
    assert_eq!(td.prop("tmpu.service", "LoadState"), "not-found");
    let st = td.ok(&["status", "tmpu"]).stdout;
    assert!(
        st.contains("Loaded: not-found (Reason: Unit tmpu.service not found.)"),
        "{st}"
    );
    for unit in ["tmpu", "idle"] {
        let o = td.corral(&["start", unit]);
        assert_eq!(o.code, 5, "{unit}: {o:?}");
        assert_eq!(
            o.stderr,
            format!("Failed to start {unit}.service: Unit {unit}.service not found.\n")
        );
    }
    td.ok(&["stop", "tmpu"]);
    assert!(!td.unit_cgroup("tmpu.service").exists());
    let o = td.corral(&["status", "tmpu"]);
    assert_eq!(o.code, 4, "{o:?}");
    assert_eq!(o.stderr, "Unit tmpu.service could not be found.\n");
    assert_eq!(td.corral(&["start", "tmpu"]).code, 5);

    // Masked without a file, then unmasked: not found again, not "masked".
    td.ok(&["mask", "--no-reload", "ghost2"]);
    td.ok(&["daemon-reload"]);
    assert_eq!(td.prop("ghost2", "LoadState"), "masked");
    let o = td.corral(&["start", "ghost2"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("Unit ghost2.service is masked."), "{o:?}");
    td.ok(&["unmask", "--no-reload", "ghost2"]);
    td.ok(&["daemon-reload"]);
    assert_eq!(td.prop("ghost2", "LoadState"), "not-found");
    assert_eq!(td.corral(&["status", "ghost2"]).code, 4);
    assert_eq!(td.corral(&["start", "ghost2"]).code, 5);

    // A vendor unit masked from the units directory loads again once unmasked.
    td.ok(&["mask", "--no-reload", "vend"]);
    td.ok(&["daemon-reload"]);
    assert_eq!(td.corral(&["start", "vend"]).code, 1);
    td.ok(&["unmask", "--no-reload", "vend"]);
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "vend"]);
    assert_eq!(td.prop("vend", "ActiveState"), "active");
    assert_eq!(td.prop("vend", "LoadState"), "loaded");
}

#[test]
fn exit_codes_of_missing_units_and_bad_requests_follow_systemctl() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    // status: LSB "no such unit" is 4.
    let o = td.corral(&["status", "nosuch"]);
    assert_eq!(o.code, 4, "{o:?}");
    assert_eq!(o.stderr, "Unit nosuch.service could not be found.\n");
    // show: the not-found stub, exit 0.
    let o = td.corral(&["show", "nosuch", "-p", "ActiveState"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "ActiveState=inactive\n"),
        "{o:?}"
    );
    let o = td.ok(&["show", "nosuch", "-p", "Id,LoadState,LoadError"]);
    assert_eq!(
        o.stdout,
        "Id=nosuch.service\nLoadState=not-found\nLoadError=Unit nosuch.service not found.\n"
    );
    // list-dependencies: the name alone, exit 0.
    let o = td.corral(&["list-dependencies", "nosuch"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "nosuch.service\n"),
        "{o:?}"
    );
    // An invalid argument to the manager: systemctl's EXIT_FAILURE.
    let o = td.corral(&["set-environment", "1BAD=x"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .starts_with("Failed to set environment: Not a valid environment assignment: 1BAD=x"),
        "{o:?}"
    );
    assert!(!td.ok(&["show-environment"]).stdout.contains("1BAD"));
    // start/stop of a missing unit stay 5, with the full name.
    let o = td.corral(&["start", "nosuch"]);
    assert_eq!(o.code, 5, "{o:?}");
    assert_eq!(
        o.stderr,
        "Failed to start nosuch.service: Unit nosuch.service not found.\n"
    );
}

#[test]
fn stop_when_unneeded_stops_what_nothing_active_pulls_in() {
    // As plasma-workspace.target and gnome-session-shutdown.target use it:
    // such a unit runs while an active unit Requires=/Wants=/BindsTo= it,
    // and stops once the last of them has stopped or failed.
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("session.target", "[Unit]\nStopWhenUnneeded=yes\n");
        td.write_unit(
            "helper.service",
            "[Unit]\nStopWhenUnneeded=true\n[Service]\nExecStart=/bin/sleep 1031\n",
        );
        for n in ["one", "two"] {
            td.write_unit(
                &format!("{n}.service"),
                "[Unit]\nWants=session.target\nRequires=helper.service\n\
                 [Service]\nExecStart=/bin/sleep 1032\n",
            );
        }
        td.write_unit(
            "doomed.service",
            "[Unit]\nRequires=helper.service\nAfter=helper.service\n\
             [Service]\nType=oneshot\nExecStart=/bin/false\n",
        );
    }) else {
        return;
    };
    assert_eq!(td.corral(&["start", "one", "two"]).code, 0);
    assert_eq!(td.prop("session.target", "ActiveState"), "active");
    assert_eq!(td.prop("helper.service", "ActiveState"), "active");
    // One of its two pullers stops: still needed.
    assert_eq!(td.corral(&["stop", "one"]).code, 0);
    assert_eq!(td.prop("session.target", "ActiveState"), "active");
    assert_eq!(td.prop("helper.service", "ActiveState"), "active");
    // The last one stops: both go.
    assert_eq!(td.corral(&["stop", "two"]).code, 0);
    td.wait_state("session.target", "inactive");
    td.wait_state("helper.service", "inactive");
    // The manager's line reaches the store with the writer's next commit.
    let said = eventually(Duration::from_secs(10), || {
        let journal = td.journal("helper.service", &[]).stdout;
        journal.contains("StopWhenUnneeded=yes").then_some(())
    });
    assert!(
        said.is_some(),
        "{}",
        td.journal("helper.service", &[]).stdout
    );
    // Started on its own, nothing pulls it in: stopped right after.
    assert_eq!(td.corral(&["start", "session.target"]).code, 0);
    td.wait_state("session.target", "inactive");
    // A puller whose start fails does not keep it either.
    assert_eq!(td.corral(&["start", "doomed"]).code, 1);
    assert_eq!(td.prop("doomed.service", "ActiveState"), "failed");
    td.wait_state("helper.service", "inactive");
}
