//! `corral daemon-reexec`: the manager executes its binary again in the
//! same process; every unit keeps running under it (same main PID, same
//! invocation, exits seen with their real status), not one line of their
//! output is lost or repeated, and the control socket keeps answering.

mod common;

use std::time::Duration;

use common::{TestDaemon, eventually, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A flood of numbered lines, each written in two pieces (`seq N` then the
/// newline), so that the reader is often stopped in the middle of a line.
const FLOOD: &str = "[Service]\nExecStart=/bin/sh -c \
    \"i=0; while :; do i=$((i+1)); printf 'seq %%d' $i; printf '\\\\n'; done\"\n";

fn main_pid(td: &TestDaemon, unit: &str) -> i32 {
    td.prop(unit, "MainPID").parse().unwrap()
}

/// The numbers of the flood's lines in the journal, after it was stopped:
/// they must be exactly 1..=N (no hole, no duplicate, nothing cut in two).
fn assert_whole_flood(td: &TestDaemon, unit: &str) {
    let out = td
        .journal(unit, &["-o", "cat", "--stream", "stdout"])
        .stdout;
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            l.strip_prefix("seq ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a line cut or mangled: {l:?}"))
        })
        .collect();
    assert!(seqs.len() > 1000, "only {} lines", seqs.len());
    let wrong: Vec<(usize, u64)> = seqs
        .iter()
        .enumerate()
        .filter(|(i, n)| **n != *i as u64 + 1)
        .map(|(i, n)| (i, *n))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "lines lost or repeated: {wrong:?}\n{}",
        td.log()
    );
}

/// The manager's process image: its PID and its /proc/PID/exe inode.
fn exe_inode(pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe")).unwrap().ino()
}

#[test]
fn daemon_reexec_keeps_every_unit_and_every_line() {
    if !common::require(
        "daemon-reexec",
        &common::missing_tools(&["memcached", "python3"]),
    ) {
        return;
    }
    let port = free_port();
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_kept_units(port);
        td.write_unit("flood.service", FLOOD);
    }) else {
        return;
    };
    let units = ["simple", "forking", "notify", "flood"];
    for u in units {
        td.ok(&["start", u]);
    }
    let before: Vec<(String, String)> = units
        .iter()
        .map(|u| (td.prop(u, "MainPID"), td.prop(u, "InvocationID")))
        .collect();
    let manager = td.pid();
    // Let the flood run long enough for the readers to be mid-stream.
    std::thread::sleep(Duration::from_millis(300));

    let out = td.ok(&["daemon-reexec"]);
    assert!(out.stderr.is_empty(), "{out:?}");
    // The very next command works: the listener was passed, not bound again.
    let status = td.ok(&["status"]).stdout;
    assert!(!status.is_empty());
    assert_eq!(td.pid(), manager, "the same process");
    eventually(Duration::from_secs(10), || {
        td.log().contains("took back 4 of 4 unit(s)").then_some(())
    })
    .unwrap_or_else(|| panic!("not every unit taken back:\n{}", td.log()));

    for (u, (main, inv)) in units.iter().zip(&before) {
        assert_eq!(&td.prop(u, "MainPID"), main, "{u}: main PID kept");
        assert_eq!(&td.prop(u, "InvocationID"), inv, "{u}: invocation kept");
        assert_eq!(td.prop(u, "SubState"), "running", "{u}\n{}", td.log());
    }
    let log = td.log();
    for bad in [
        "status unknown",
        "left by a previous manager",
        "ended without closing it",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
    assert!(common::memcached_version(port).is_some());

    // An exit after the re-execution is seen with its status (the units are
    // still the manager's children), and Restart= applies to it.
    let simple = main_pid(&td, "simple");
    kill(Pid::from_raw(simple), Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(10), || {
        let p = main_pid(&td, "simple");
        (p != 0 && p != simple && td.prop("simple", "SubState") == "running").then_some(())
    })
    .expect("simple restarted after its main process was killed");
    let log = td.log();
    assert!(log.contains("status=9/KILL"), "{log}");
    assert!(!log.contains("status unknown"), "{log}");

    // The flood: every line it wrote before it was stopped, once, whole.
    std::thread::sleep(Duration::from_millis(300));
    td.ok(&["stop", "flood"]);
    assert_whole_flood(&td, "flood");
    td.ok(&["stop", "simple", "forking", "notify"]);
}

#[test]
fn daemon_reexec_runs_the_binary_now_on_disk() {
    let Some(bin) = tempfile::tempdir().ok() else {
        return;
    };
    let program = bin.path().join("corrald");
    std::fs::copy(env!("CARGO_BIN_EXE_corrald"), &program).unwrap();
    let Some(td) = TestDaemon::start_from(&program, |td| {
        td.write_unit("flood.service", FLOOD);
    }) else {
        return;
    };
    td.ok(&["start", "flood"]);
    let flood = main_pid(&td, "flood");
    let old = exe_inode(td.pid());
    // An upgrade: a new file at the same path (the old inode stays busy).
    let next = bin.path().join("corrald.new");
    std::fs::copy(env!("CARGO_BIN_EXE_corrald"), &next).unwrap();
    std::fs::rename(&next, &program).unwrap();
    let new = std::fs::metadata(&program).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    td.ok(&["daemon-reexec"]);
    eventually(Duration::from_secs(10), || {
        td.log().contains("took back 1 of 1 unit(s)").then_some(())
    })
    .unwrap_or_else(|| panic!("the unit was not taken back:\n{}", td.log()));
    assert_ne!(exe_inode(td.pid()), old);
    assert_eq!(exe_inode(td.pid()), new.unwrap());
    assert_eq!(main_pid(&td, "flood"), flood);
    std::thread::sleep(Duration::from_millis(200));
    // Twice: the new image passes everything on again.
    td.ok(&["daemon-reexec"]);
    eventually(Duration::from_secs(10), || {
        (td.log().matches("took back 1 of 1 unit(s)").count() == 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the second re-execution did not take the unit back:\n{}",
            td.log()
        )
    });
    td.ok(&["stop", "flood"]);
    assert_whole_flood(&td, "flood");
}

/// A socket unit's listening fd is taken back by the new image (kept by the
/// fd holder), not bound again: the same socket, and a client connecting
/// in a loop during the re-execution is answered every time.
#[test]
fn a_socket_unit_keeps_its_socket_across_daemon_reexec() {
    let mut path = None;
    let Some(td) = TestDaemon::start_with(|td| path = Some(common::write_probe_socket(td))) else {
        return;
    };
    let path = path.unwrap();
    td.ok(&["start", "probe.socket"]);
    assert_eq!(td.prop("probe.socket", "SubState"), "listening");
    let inode = common::unix_socket_inode(&path).expect("the socket listens");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|s| {
        let client = s.spawn(|| common::probe_in_a_loop(&path, &stop));
        std::thread::sleep(Duration::from_millis(200));
        td.ok(&["daemon-reexec"]);
        td.ok(&["status"]);
        // Not enabled, yet started again by the new image.
        td.wait_state("probe.socket", "active");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        client.join().unwrap()
    });
    assert!(failed.is_empty(), "{failed:?}\n{}", td.log());
    assert!(ok > 5, "only {ok} connections answered");
    assert_eq!(td.prop("probe.socket", "SubState"), "listening");
    assert_eq!(
        common::unix_socket_inode(&path),
        Some(inode),
        "the same socket\n{}",
        td.log()
    );
}

/// A SIGTERM sent at once after `corral daemon-reexec` returns (while the
/// old image hands over, during the exec, or as the new image starts) is
/// neither lost nor fatal: the manager stops its units and exits 0.
#[test]
fn sigterm_during_daemon_reexec_shuts_the_manager_down() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    }) else {
        return;
    };
    // Several delays, to land in each window of the re-execution.
    for (round, delay_ms) in [0u64, 5, 20, 60].into_iter().enumerate() {
        if round > 0 {
            td.relaunch();
        }
        td.ok(&["start", "idle"]);
        let idle = main_pid(&td, "idle");
        td.ok(&["daemon-reexec"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // Exit 0 within the guard, or the test fails with the log.
        td.terminate();
        eventually(Duration::from_secs(5), || {
            kill(Pid::from_raw(idle), None).is_err().then_some(())
        })
        .unwrap_or_else(|| panic!("round {round}: the unit outlived its manager\n{}", td.log()));
    }
    let log = td.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// A client waiting for a job when `daemon-reexec` comes is told to ask
/// the new image again, and the CLI does: `corral start slow` exits 0 once
/// the start (going on in the new image) is done, as without the exec.
#[test]
fn a_client_waiting_for_a_start_gets_its_answer_across_daemon_reexec() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "slow.service",
            "[Service]\nExecStartPre=/bin/sleep 2\nExecStart=/bin/sleep 1000\n",
        );
    }) else {
        return;
    };
    let out = std::thread::scope(|s| {
        let start = s.spawn(|| td.corral(&["start", "slow"]));
        eventually(Duration::from_secs(10), || {
            (td.prop("slow", "SubState") == "start-pre").then_some(())
        })
        .expect("slow in ExecStartPre=");
        td.ok(&["daemon-reexec"]);
        start.join().unwrap()
    });
    assert_eq!(out.code, 0, "{out:?}\n{}", td.log());
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(td.prop("slow", "SubState"), "running", "{}", td.log());
    td.ok(&["stop", "slow"]);
}
