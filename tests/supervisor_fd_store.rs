//! The fd store (sd_notify `FDSTORE=1`, `FDNAME=`, `FDSTOREREMOVE=1`,
//! `FileDescriptorStoreMax=`) with a real service: a python3 script that
//! sends a memfd to $NOTIFY_SOCKET with SCM_RIGHTS and reads it back after
//! restarts, and the manager's own fd table, read in /proc.

mod common;

use std::path::{Path, PathBuf};

use common::{TestDaemon, wait_until};

/// The service: reports `LISTEN_FDS LISTEN_FDNAMES CONTENTS` (a stored
/// memfd's contents, `sock` for a socket) as a line of the file argv[2];
/// with nothing passed it stores a memfd named `corral-fdstore-PID` that
/// holds `from-PID`; with argv[1] `remove` and something passed, it asks
/// for the stored fds to be removed. Then READY=1, and it runs on.
const SERVICE: &str = r#"
import os, signal, socket, stat, sys
mode, report = sys.argv[1], sys.argv[2]
n = os.environ["NOTIFY_SOCKET"]
addr = "\0" + n[1:] if n.startswith("@") else n
count = int(os.environ.get("LISTEN_FDS", "0"))
if count:
    assert os.environ["LISTEN_PID"] == str(os.getpid())
names = os.environ.get("LISTEN_FDNAMES", "")
got = []
for fd in range(3, 3 + count):
    if stat.S_ISSOCK(os.fstat(fd).st_mode):
        got.append("sock")
    else:
        got.append(os.pread(fd, 64, 0).decode())
with open(report, "a") as f:
    f.write("%d %s %s\n" % (count, names or "-", ",".join(got) or "-"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
# Connected: socket.send_fds drops its address argument (CPython 3.11).
s.connect(addr)
if not any(g != "sock" for g in got):
    fd = os.memfd_create("corral-fdstore-%d" % os.getpid())
    os.write(fd, b"from-%d" % os.getpid())
    socket.send_fds(s, [b"FDSTORE=1\nFDNAME=state"], [fd])
    os.close(fd)
elif mode == "remove":
    s.send(b"FDSTOREREMOVE=1\nFDNAME=state")
s.send(b"READY=1")
while True:
    signal.pause()
"#;

/// Writes the script and `keep.service` running it in `mode` with the
/// `[Service]` lines `extra`; answers the report file.
fn keep_unit(td: &TestDaemon, mode: &str, extra: &str) -> PathBuf {
    let script = td.dir.path().join("keep.py");
    std::fs::write(&script, SERVICE).unwrap();
    let report = td.dir.path().join("report");
    td.write_unit(
        "keep.service",
        &format!(
            "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=notify\n\
             ExecStart=/usr/bin/python3 {} {mode} {}\n{extra}\n",
            script.display(),
            report.display()
        ),
    );
    report
}

/// Reads the units again and starts `keep.service`; answers its main PID.
fn start_keep(td: &TestDaemon) -> String {
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "keep"]);
    td.prop("keep", "MainPID")
}

/// SIGKILLs process `pid`: an unclean exit, which Restart=on-failure restarts.
fn kill(pid: &str) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// The report's lines so far.
fn lines(report: &Path) -> Vec<String> {
    std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether corrald holds an fd on the memfd that process `pid` stored.
fn manager_holds(td: &TestDaemon, pid: &str) -> bool {
    let needle = format!("memfd:corral-fdstore-{pid} ");
    std::fs::read_dir(format!("/proc/{}/fd", td.pid()))
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(&needle)))
}

#[test]
fn stored_fds_come_back_after_restarts_and_go_with_a_stop() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let report = keep_unit(
        &td,
        "store",
        "FileDescriptorStoreMax=4\nRestart=on-failure\nRestartSec=0",
    );
    let first = start_keep(&td);
    assert_eq!(lines(&report), ["0 - -"]);
    assert!(manager_holds(&td, &first), "the manager keeps the memfd");

    // A restart job: the new process gets the memfd as fd 3, named.
    td.ok(&["restart", "keep"]);
    let kept = format!("1 state from-{first}");
    assert_eq!(lines(&report)[1], kept);
    // It stays kept: the next start gets it again.
    td.ok(&["restart", "keep"]);
    assert_eq!(lines(&report)[2], kept);

    // An automatic restart keeps it too.
    kill(&td.prop("keep", "MainPID"));
    wait_until(30, "the automatic restart's report", || {
        lines(&report).len() == 4
    });
    assert_eq!(lines(&report)[3], kept);
    td.wait_state("keep", "active");

    // Stopped for good: the manager closes it; the next start has none.
    td.ok(&["stop", "keep"]);
    assert!(!manager_holds(&td, &first), "the memfd outlived the stop");
    td.ok(&["start", "keep"]);
    assert_eq!(lines(&report)[4], "0 - -");
    td.ok(&["stop", "keep"]);
}

#[test]
fn without_file_descriptor_store_max_the_fds_are_refused_with_a_warning() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let report = keep_unit(&td, "store", "");
    let first = start_keep(&td);
    assert!(!manager_holds(&td, &first));
    td.ok(&["restart", "keep"]);
    assert_eq!(lines(&report), ["0 - -", "0 - -"]);
    let log = td.log();
    assert!(
        log.contains("keep.service: Got FDSTORE=1, but FileDescriptorStoreMax=0"),
        "{log}"
    );
    td.ok(&["stop", "keep"]);
}

#[test]
fn stored_fds_follow_the_sockets_fds_and_fdstoreremove_drops_them() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let report = keep_unit(&td, "remove", "FileDescriptorStoreMax=1");
    let sock = td.run_dir().join("keep.sock");
    td.write_unit(
        "keep.socket",
        &format!("[Socket]\nListenStream={}\n", sock.display()),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "keep.socket"]);
    td.ok(&["start", "keep.service"]);
    let first = td.prop("keep", "MainPID");
    assert_eq!(lines(&report), ["1 keep.socket sock"]);
    // After the socket's fd, as systemd passes them.
    td.ok(&["restart", "keep.service"]);
    assert_eq!(
        lines(&report)[1],
        format!("2 keep.socket:state sock,from-{first}")
    );
    // That process asked for FDSTOREREMOVE=1 FDNAME=state.
    assert!(!manager_holds(&td, &first));
    td.ok(&["restart", "keep.service"]);
    assert_eq!(lines(&report)[2], "1 keep.socket sock");
    td.ok(&["stop", "keep.service"]);
}

#[test]
fn a_stop_while_waiting_to_restart_closes_the_stored_fds() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    keep_unit(
        &td,
        "store",
        "FileDescriptorStoreMax=1\nRestart=on-failure\nRestartSec=3600",
    );
    let first = start_keep(&td);
    kill(&first);
    wait_until(30, "keep.service to wait to restart", || {
        td.prop("keep", "SubState") == "auto-restart"
    });
    assert!(manager_holds(&td, &first), "kept for the restart");
    td.ok(&["stop", "keep"]);
    assert_eq!(td.prop("keep", "ActiveState"), "inactive");
    assert!(!manager_holds(&td, &first), "the memfd outlived the stop");
}

/// The store outlives the manager: a copy of each stored fd is with the fd
/// holder, and after `daemon-reexec`, then after kill -9 and a new
/// manager, the restarted service gets the same memfd back, named.
#[test]
fn stored_fds_outlive_daemon_reexec_and_kill_9() {
    let Some(mut td) = TestDaemon::start() else {
        return;
    };
    let report = keep_unit(&td, "store", "FileDescriptorStoreMax=4");
    let first = start_keep(&td);
    assert_eq!(lines(&report), ["0 - -"]);
    let kept = format!("1 state from-{first}");

    td.ok(&["daemon-reexec"]);
    wait_until(10, "the new image to take keep.service back", || {
        td.log().contains("took back 1 of 1 unit(s)")
    });
    td.ok(&["restart", "keep"]);
    assert_eq!(lines(&report)[1], kept, "{}", td.log());
    assert!(manager_holds(&td, &first), "the new image keeps the memfd");

    td.kill_hard();
    td.relaunch();
    td.ok(&["restart", "keep"]);
    assert_eq!(lines(&report)[2], kept, "{}", td.log());
    td.ok(&["stop", "keep"]);
    assert!(!manager_holds(&td, &first), "the memfd outlived the stop");
}
