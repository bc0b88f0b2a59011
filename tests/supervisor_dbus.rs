//! Type=dbus against a real `dbus-daemon`: on the session bus started
//! through dbus.socket (Debian's dbus.service, unchanged), which a Type=dbus
//! unit requires, the start completes only once BusName= has an owner; on a
//! private bus, a start times out when it never gets one, the
//! unit stops when the name loses its owner, a missing bus fails the start
//! at once (and the next start reconnects), the address may come from the
//! environment block (an abstract socket here), and dconf.service from the
//! corpus runs as it is.
//!
//! The name-owning service is a python3-dbus script (`OWNER`): a real
//! client library on a real bus, independent of corral's own client.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use corral::supervisor::dbus::{Arg, BusAddress, Connection};

use common::corpus::corpus;
use common::{TestDaemon, cgroup_pids};

/// The program of the Type=dbus units below (python3-dbus, a real client
/// library): waits for the FIFO $CORRAL_TEST_GATE to be written (if set),
/// takes the name on the session bus, releases it on SIGUSR1 and runs on.
const OWNER: &str = r#"import dbus, os, signal, sys
name = sys.argv[1]
def release(sig, frame):
    # Said first: the manager's SIGTERM may come before the reply.
    print(f"releasing {name}", flush=True)
    bus.release_name(name)
# Before the name is ours: the test's SIGUSR1 must never find the default action.
signal.signal(signal.SIGUSR1, release)
gate = os.environ.get("CORRAL_TEST_GATE")
if gate:
    open(gate).read()
bus = dbus.SessionBus()
r = bus.request_name(name, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
assert r == 1, f"RequestName({name}) answered {r}"
print(f"took {name} as {bus.get_unique_name()}", flush=True)
while True:
    signal.pause()
"#;

/// A private `dbus-daemon --session`, killed (by PID) when dropped.
struct Bus {
    child: Child,
    /// The address it printed (with its guid).
    address: String,
    _stdout: BufReader<ChildStdout>,
}

impl Bus {
    fn start(listen: &str, dir: &Path) -> Bus {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "dbus-daemon-{}.log",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new("dbus-daemon")
            .args([
                "--session",
                "--nofork",
                "--nopidfile",
                "--print-address",
                &format!("--address={listen}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dbus-daemon (scripts/test installs the dbus-daemon package)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // It prints its address once it listens.
        out.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("unix:"),
            "dbus-daemon did not start: {line:?} {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Bus {
            child,
            address: line.trim().to_string(),
            _stdout: out,
        }
    }

    /// The PID of the connection that owns `name`, None when nobody does.
    fn owner_pid(&self, name: &str) -> Option<i32> {
        owner_pid(&self.address, name)
    }
}

/// The PID of the connection that owns `name` on the bus at `address`,
/// None when nobody does.
fn owner_pid(address: &str, name: &str) -> Option<i32> {
    common::rt().block_on(async {
        let mut c = Connection::open(&BusAddress::parse(address).unwrap())
            .await
            .unwrap();
        let m = c
            .call("GetConnectionUnixProcessID", &[Arg::Str(name)])
            .await
            .ok()?;
        m.u32_arg(0).map(|p| p as i32)
    })
}

/// Debian's dbus.service (package dbus-user-session): `dbus-daemon
/// --session --address=systemd: ...`, Type=notify.
const SESSION_BUS_SERVICE: &str = "/usr/lib/systemd/user/dbus.service";
/// Its socket unit (same package).
const SESSION_BUS_SOCKET: &str = "/usr/lib/systemd/user/dbus.socket";

/// The session bus as dbus-user-session sets it up: its dbus.service and
/// dbus.socket, unchanged. The socket's `ExecStartPost=-/bin/systemctl
/// --user set-environment DBUS_SESSION_BUS_ADDRESS=...` reaches the manager
/// through its private socket (tests/supervisor_systemctl.rs).
fn install_session_bus(td: &TestDaemon) {
    std::fs::copy(SESSION_BUS_SERVICE, td.units_dir().join("dbus.service")).unwrap();
    std::fs::copy(SESSION_BUS_SOCKET, td.units_dir().join("dbus.socket")).unwrap();
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[Service]` of a unit whose program takes `name` (after `gate`, if given).
fn owner_unit(td: &TestDaemon, name: &str, gate: Option<&str>, extra: &str) -> String {
    let script = td.run_dir().join("bus-name-owner.py");
    std::fs::write(&script, OWNER).expect("write the owner script");
    let gate = gate.map_or(String::new(), |g| {
        format!("\nEnvironment=CORRAL_TEST_GATE={g}")
    });
    format!(
        "[Service]\nType=dbus\nBusName={name}\n\
         ExecStart=/usr/bin/python3 {} {name}{gate}\n{extra}",
        script.display()
    )
}

fn is_active(td: &TestDaemon, unit: &str) -> String {
    td.corral(&["is-active", unit]).stdout.trim().to_string()
}

#[test]
fn start_completes_only_once_the_name_has_an_owner_on_the_socket_activated_bus() {
    let missing: Vec<String> = [SESSION_BUS_SERVICE]
        .iter()
        .filter(|f| !Path::new(f).exists())
        .map(|f| format!("{f} (package dbus-user-session)"))
        .collect();
    if !common::require("the session bus unit", &missing) {
        return;
    }
    let Some(td) = TestDaemon::start_with(|td| {
        install_session_bus(td);
        td.write_unit(
            "gated.service",
            &owner_unit(
                td,
                "org.corral.Test.Gated",
                Some("%t/gate"),
                // Runs only after the start is complete: the name must have an owner by then.
                "ExecStartPost=/usr/bin/dbus-send --bus=unix:path=%t/bus --print-reply \
                 --dest=org.freedesktop.DBus /org/freedesktop/DBus \
                 org.freedesktop.DBus.GetNameOwner string:org.corral.Test.Gated\n",
            ),
        );
    }) else {
        return;
    };
    // No bus runs: the start of the Type=dbus unit starts dbus.socket first
    // (Requires=, After=), and the manager's own connection to
    // $XDG_RUNTIME_DIR/bus starts dbus.service through it.
    assert_eq!(td.prop("dbus.socket", "ActiveState"), "inactive");
    let address = format!("unix:path={}", td.run_dir().join("bus").display());
    let gate = td.run_dir().join("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut start = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["start", "gated"])
        .env("CORRAL_SOCKET", &td.socket)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    td.wait_state("gated", "activating");
    assert_eq!(td.prop("dbus.socket", "ActiveState"), "active");
    td.wait_state("dbus.service", "active");
    // The service is blocked on its gate, so its name cannot have an owner.
    assert!(
        start.try_wait().unwrap().is_none(),
        "start returned before the name had an owner"
    );
    assert_eq!(td.prop("gated", "SubState"), "start");
    assert_eq!(td.prop("gated", "Type"), "dbus");
    let status = td.corral(&["status", "gated"]).stdout;
    assert!(
        status.contains("waiting for org.corral.Test.Gated to get an owner on the bus unix:path="),
        "{status}"
    );
    assert_eq!(owner_pid(&address, "org.corral.Test.Gated"), None);
    // Opening the FIFO waits for the service to have it open too.
    std::fs::write(&gate, b"go").unwrap();
    let st = start.wait().unwrap();
    assert!(st.success(), "start failed: {st:?}\n{}", td.log());
    assert_eq!(is_active(&td, "gated"), "active");
    let main: i32 = td.prop("gated", "MainPID").parse().unwrap();
    assert_eq!(
        owner_pid(&address, "org.corral.Test.Gated"),
        Some(main),
        "the main process owns the name"
    );
    // The bus is dbus.service's dbus-daemon, on the socket the manager bound.
    let bus_main: i32 = td.prop("dbus.service", "MainPID").parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{bus_main}/cmdline")).unwrap();
    assert!(cmdline.contains("--address=systemd:"), "{cmdline:?}");
    let names = String::from_utf8_lossy(&common::stdout_of(
        Command::new("dbus-send")
            .arg(format!("--bus={address}"))
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.ListNames",
            ]),
    ))
    .into_owned();
    assert!(names.contains("\"org.corral.Test.Gated\""), "{names}");
    // corrald's stderr has its messages (the journal's copies are written asynchronously).
    let log = td.log();
    assert!(
        log.contains("gated.service: BusName=org.corral.Test.Gated is owned by :1."),
        "{log}"
    );
    td.ok(&["stop", "gated"]);
    assert_eq!(is_active(&td, "gated"), "inactive");
    assert!(!td.unit_cgroup("gated.service").exists());
    td.ok(&["stop", "dbus.service", "dbus.socket"]);
    assert!(!td.unit_cgroup("dbus.service").exists());
}

#[test]
fn start_times_out_when_the_name_never_gets_an_owner() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "never.service",
            "[Service]\nType=dbus\nBusName=org.corral.Test.Never\nTimeoutStartSec=1\n\
             ExecStart=/bin/sleep 1017\n",
        );
    }) else {
        return;
    };
    let _bus = Bus::start(
        &format!("unix:path={}", td.run_dir().join("bus").display()),
        td.dir.path(),
    );
    let o = td.corral(&["start", "never"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("Result: timeout"), "{o:?}");
    assert_eq!(td.prop("never", "ActiveState"), "failed");
    assert_eq!(td.prop("never", "Result"), "timeout");
    assert!(cgroup_pids(&td.unit_cgroup("never.service")).is_empty());
    assert!(!td.unit_cgroup("never.service").exists());
    assert!(common::pids_matching("/bin/sleep 1017").is_empty());
}

#[test]
fn a_main_process_that_fails_before_the_name_appears_fails_the_start() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "quitter.service",
            "[Service]\nType=dbus\nBusName=org.corral.Test.Quitter\nExecStart=/bin/sh -c 'exit 3'\n",
        );
    }) else {
        return;
    };
    let _bus = Bus::start(
        &format!("unix:path={}", td.run_dir().join("bus").display()),
        td.dir.path(),
    );
    let o = td.corral(&["start", "quitter"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert_eq!(td.prop("quitter", "Result"), "exit-code");
    assert_eq!(td.prop("quitter", "ExecMainStatus"), "3");
}

#[test]
fn the_unit_stops_when_its_name_loses_its_owner() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "owner.service",
            &owner_unit(td, "org.corral.Test.Owner", None, ""),
        );
    }) else {
        return;
    };
    let bus = Bus::start(
        &format!("unix:path={}", td.run_dir().join("bus").display()),
        td.dir.path(),
    );
    td.ok(&["start", "owner"]);
    let main: i32 = td.prop("owner", "MainPID").parse().unwrap();
    assert_eq!(bus.owner_pid("org.corral.Test.Owner"), Some(main));
    // The service gives its name up and goes on running: corrald stops it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    td.wait_state("owner", "inactive");
    assert_eq!(td.prop("owner", "Result"), "success");
    // It did not exit on its own: the manager's SIGTERM ended it.
    // In numbers, as systemctl: CLD_KILLED, SIGTERM.
    assert_eq!(td.prop("owner", "ExecMainCode"), "2");
    assert_eq!(td.prop("owner", "ExecMainStatus"), "15");
    assert!(!td.unit_cgroup("owner.service").exists());
    let log = td.log();
    let lost = log
        .find("owner.service: BusName=org.corral.Test.Owner has no owner any more.")
        .expect(&log);
    // No stop job: the unit went down on its own, as in systemd.
    let stopped = log
        .rfind("owner.service: Deactivated successfully.")
        .expect(&log);
    assert!(lost < stopped, "{log}");
}

#[test]
fn no_bus_fails_the_start_at_once_and_a_later_start_reconnects() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "owner.service",
            &owner_unit(td, "org.corral.Test.Late", None, ""),
        );
    }) else {
        return;
    };
    let path = td.run_dir().join("bus");
    let o = td.corral(&["start", "owner"]);
    assert_ne!(o.code, 0, "{o:?}");
    let want = format!(
        "cannot connect to the D-Bus bus at unix:path={}",
        path.display()
    );
    assert!(o.stderr.contains(&want), "{o:?}");
    assert!(o.stderr.contains("Result: resources"), "{o:?}");
    assert!(o.stderr.contains("DBUS_SESSION_BUS_ADDRESS"), "{o:?}");
    // Refused before anything ran: no main process was ever started.
    assert_eq!(td.prop("owner", "ExecMainPID"), "0");
    let status = td.corral(&["status", "owner"]).stdout;
    assert!(status.contains(&want), "{status}");

    let bus = Bus::start(&format!("unix:path={}", path.display()), td.dir.path());
    td.ok(&["start", "owner"]);
    assert_eq!(is_active(&td, "owner"), "active");
    // The bus goes away under a running unit, which keeps running (as under
    // systemd) until it is stopped; the manager's connection is gone with it.
    drop(bus);
    td.ok(&["stop", "owner"]);

    // A new bus at the same place: the next start connects again.
    let bus = Bus::start(&format!("unix:path={}", path.display()), td.dir.path());
    td.ok(&["start", "owner"]);
    let main: i32 = td.prop("owner", "MainPID").parse().unwrap();
    assert_eq!(bus.owner_pid("org.corral.Test.Late"), Some(main));
    let log = td.log();
    assert_eq!(
        log.matches("connected to the session bus at").count(),
        2,
        "{log}"
    );
    td.ok(&["stop", "owner"]);
}

#[test]
fn the_bus_address_comes_from_the_environment_block() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "owner.service",
            &owner_unit(td, "org.corral.Test.Abstract", None, ""),
        );
    }) else {
        return;
    };
    let listen = format!("unix:abstract=/corral-test-{}-dbus", std::process::id());
    let bus = Bus::start(&listen, td.dir.path());
    // The printed address carries a guid too: `unix:abstract=...,guid=...`.
    td.ok(&[
        "set-environment",
        &format!("DBUS_SESSION_BUS_ADDRESS={}", bus.address),
    ]);
    td.ok(&["start", "owner"]);
    let main: i32 = td.prop("owner", "MainPID").parse().unwrap();
    assert_eq!(bus.owner_pid("org.corral.Test.Abstract"), Some(main));
    assert!(
        td.log()
            .contains(&format!("connected to the session bus at {listen}")),
        "{}",
        td.log()
    );
    td.ok(&["stop", "owner"]);
}

#[test]
fn dconf_service_from_the_corpus_runs_as_type_dbus() {
    let Some(corpus) = corpus() else { return };
    let unit = corpus.join("systemd-user/dconf-service/dconf.service");
    assert!(
        Path::new("/usr/libexec/dconf-service").exists(),
        "/usr/libexec/dconf-service is missing (scripts/test installs the dconf-service package)"
    );
    let Some(td) = TestDaemon::start_with(|td| {
        std::fs::copy(&unit, td.units_dir().join("dconf.service")).unwrap();
    }) else {
        return;
    };
    let bus = Bus::start(
        &format!("unix:path={}", td.run_dir().join("bus").display()),
        td.dir.path(),
    );
    td.ok(&["start", "dconf"]);
    assert_eq!(td.prop("dconf", "Type"), "dbus");
    assert_eq!(is_active(&td, "dconf"), "active");
    let main: i32 = td.prop("dconf", "MainPID").parse().unwrap();
    assert_eq!(bus.owner_pid("ca.desrt.dconf"), Some(main));
    td.ok(&["stop", "dconf"]);
    assert_eq!(td.prop("dconf", "Result"), "success");
    assert!(!td.unit_cgroup("dconf.service").exists());
}
