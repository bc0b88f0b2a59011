//! `systemctl --user` against corral's manager, through the private socket
//! systemctl looks for first (`$XDG_RUNTIME_DIR/systemd/private`): the
//! environment calls packaged units and session scripts make reach the
//! manager's block, the rest gets an error that names corral; and Debian's
//! own dbus.socket, whose `ExecStartPost=` is such a call, starts at once.

mod common;

use std::process::{Command, Stdio};

use common::TestDaemon;

/// Debian's dbus.socket (dbus-user-session), unchanged.
const SESSION_BUS_SOCKET: &str = "/usr/lib/systemd/user/dbus.socket";

/// The real systemctl, as the daemon's services would run it.
fn systemctl(td: &TestDaemon, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .env("XDG_RUNTIME_DIR", td.run_dir())
        // Only the private socket: no session bus to fall back to.
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("systemctl runs (package systemd)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn environment(td: &TestDaemon) -> String {
    td.ok(&["show-environment"]).stdout
}

#[test]
fn systemctl_set_unset_and_import_environment_change_the_managers_block() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "env.service",
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"$GREETING $IMPORTED\" > %t/env.out'\n",
        );
    }) else {
        return;
    };
    let (code, err) = systemctl(&td, &["set-environment", "GREETING=hello", "GONE=1"], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = systemctl(&td, &["unset-environment", "GONE"], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = systemctl(
        &td,
        &["import-environment", "IMPORTED"],
        &[("IMPORTED", "world")],
    );
    assert_eq!(code, 0, "{err}");
    let env = environment(&td);
    assert!(env.contains("GREETING=hello\n"), "{env}");
    assert!(env.contains("IMPORTED=world\n"), "{env}");
    assert!(!env.contains("GONE="), "{env}");
    // What the block holds is what the next service gets.
    td.ok(&["start", "env.service"]);
    let out = std::fs::read_to_string(td.run_dir().join("env.out")).unwrap();
    assert_eq!(out, "hello world\n");
    // An assignment the block refuses is refused to systemctl, with why.
    let (code, err) = systemctl(&td, &["set-environment", "BAD NAME=1"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("BAD NAME=1"), "{err}");
}

#[test]
fn other_systemctl_verbs_are_refused_with_the_corral_command_to_use() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    let (code, err) = systemctl(&td, &["start", "idle.service"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("corral"), "{err}");
    assert_eq!(td.prop("idle.service", "ActiveState"), "inactive");
}

#[test]
fn debians_dbus_socket_starts_and_sets_the_bus_address_through_systemctl() {
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::copy(SESSION_BUS_SOCKET, td.units_dir().join("dbus.socket")).unwrap();
    }) else {
        return;
    };
    // Its ExecStartPost= is `-/bin/systemctl --user set-environment
    // DBUS_SESSION_BUS_ADDRESS=unix:path=%t/bus`: it reached the manager
    // (without the private socket it waited 90 s on the bus being started,
    // then failed, ignored, and set nothing).
    td.ok(&["start", "dbus.socket"]);
    assert_eq!(td.prop("dbus.socket", "ActiveState"), "active");
    let env = environment(&td);
    let want = format!(
        "DBUS_SESSION_BUS_ADDRESS=unix:path={}/bus\n",
        td.run_dir().display()
    );
    assert!(env.contains(&want), "{env}");
}

#[test]
fn the_private_socket_goes_with_a_manager_that_stops() {
    let Some(mut td) = TestDaemon::start_with(|_| {}) else {
        return;
    };
    let socket = td.run_dir().join("systemd/private");
    assert!(socket.exists());
    td.terminate();
    assert!(!socket.exists());
}
