//! `.socket` units run by the manager (Accept=no): traffic starts the
//! service with the listening fds, the socket keeps listening while the
//! service restarts, sockets.target at start-up, Requires=X.socket,
//! RemoveOnStop=, clashing addresses, and what status and list-sockets show.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestDaemon;

/// A server on the inherited fd 3: it answers each connection with
/// `PID INODE LISTEN_FDS LISTEN_FDNAMES` and, on SIGTERM, finishes the
/// connection in hand and exits (what it has not accepted waits in the
/// backlog for the next instance).
const SERVER: &str = r#"
import os, select, signal, socket, sys
assert os.environ["LISTEN_PID"] == str(os.getpid())
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGTERM, lambda *a: None)
s = socket.socket(fileno=3)
ino = os.fstat(3).st_ino
line = "%d %d %s %s\n" % (os.getpid(), ino, os.environ["LISTEN_FDS"], os.environ["LISTEN_FDNAMES"])
n = os.environ["NOTIFY_SOCKET"]
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a.connect("\0" + n[1:] if n.startswith("@") else n)
a.send(b"READY=1")
a.close()
while True:
    ready, _, _ = select.select([s, r], [], [])
    if r in ready:
        sys.exit(0)
    c, _ = s.accept()
    c.sendall(line.encode())
    c.close()
"#;

/// Writes the server script and `echo.socket` (plus `extra` in
/// `[Socket]`) and `echo.service` running it; answers the socket's path.
fn echo_units(td: &TestDaemon, extra: &str) -> PathBuf {
    let script = td.dir.path().join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let path = td.run_dir().join("echo/echo.sock");
    td.write_unit(
        "echo.socket",
        &format!(
            "[Socket]\nListenStream={}\n{extra}\n[Install]\nWantedBy=sockets.target\n",
            path.display()
        ),
    );
    td.write_unit(
        "echo.service",
        // Restarted in a loop by one test: no start limit; Type=notify so
        // that a restart returns once the server can accept (python takes
        // tens of ms to get there, a restart loop of Type=simple would kill
        // every instance before it accepts and starve the backlog).
        &format!(
            "[Unit]\nStartLimitIntervalSec=0\n[Service]\nType=notify\nExecStart=/usr/bin/python3 {}\n",
            script.display()
        ),
    );
    path
}

/// One exchange: the server's line, split.
fn ask(path: &Path) -> std::io::Result<Vec<String>> {
    let mut c = UnixStream::connect(path)?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    if s.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(s.split_whitespace().map(str::to_string).collect())
}

#[test]
fn a_connection_before_the_service_runs_is_answered() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = echo_units(&td, "");
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "echo.socket"]);
    assert_eq!(td.prop("echo.socket", "SubState"), "listening");
    assert_eq!(td.prop("echo.service", "ActiveState"), "inactive");
    let inode = std::fs::metadata(&path).unwrap().ino();

    let answer = ask(&path).unwrap();
    assert_eq!(answer[2], "1", "LISTEN_FDS: {answer:?}");
    assert_eq!(answer[3], "echo.socket", "LISTEN_FDNAMES: {answer:?}");
    td.wait_state("echo.service", "active");
    assert_eq!(td.prop("echo.socket", "SubState"), "running");
    // The socket the service accepts on is the one bound at the path.
    let st = std::fs::metadata(&path).unwrap();
    assert_eq!(st.ino(), inode);

    let s = td.ok(&["status", "echo.socket"]).stdout;
    assert!(
        s.contains(&format!("Listen: {} (Stream)", path.display())),
        "{s}"
    );
    assert!(s.contains("Triggers: echo.service"), "{s}");
    let s = td.ok(&["status", "echo.service"]).stdout;
    assert!(s.contains("TriggeredBy: echo.socket"), "{s}");
    let l = td.ok(&["list-sockets"]).stdout;
    let row = l
        .lines()
        .find(|l| l.starts_with(&path.display().to_string()))
        .unwrap_or_else(|| panic!("no row for the socket: {l}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..], ["echo.socket", "echo.service"], "{l}");
    assert!(l.ends_with("1 sockets listed.\n"), "{l}");

    // Stopping the service re-arms the socket: the next connection starts it again.
    td.ok(&["stop", "echo.service"]);
    td.wait_state("echo.service", "inactive");
    assert_eq!(td.prop("echo.socket", "SubState"), "listening");
    let again = ask(&path).unwrap();
    assert_ne!(again[0], answer[0], "a new service process answers");
    assert_eq!(again[1], answer[1], "on the same socket");
}

#[test]
fn a_thousand_connections_while_the_service_restarts_are_all_answered() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = echo_units(&td, "Backlog=2048");
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "echo.socket"]);
    let inode = std::fs::metadata(&path).unwrap().ino();

    let done = Arc::new(AtomicBool::new(false));
    let restarts = std::thread::scope(|scope| {
        let restarter = {
            let done = done.clone();
            let td = &td;
            scope.spawn(move || {
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    td.ok(&["restart", "echo.service"]);
                    n += 1;
                }
                n
            })
        };
        let mut refused = 0;
        let mut reset = 0;
        let mut other = Vec::new();
        let mut pids = BTreeSet::new();
        let mut inodes = BTreeSet::new();
        for _ in 0..1000 {
            match ask(&path) {
                Ok(a) => {
                    pids.insert(a[0].clone());
                    inodes.insert(a[1].clone());
                }
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused += 1,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => reset += 1,
                Err(e) => other.push(e.to_string()),
            }
        }
        done.store(true, Ordering::Relaxed);
        let restarts = restarter.join().unwrap();
        assert_eq!((refused, reset), (0, 0), "refused, reset");
        assert!(other.is_empty(), "other failures: {other:?}");
        // fstat of the fd gives the socket's own inode (sockfs), one for
        // every process that accepted: the fd bound first, kept throughout.
        assert_eq!(inodes.len(), 1, "the services accepted on {inodes:?}");
        assert!(
            pids.len() > 1,
            "the connections met only one service process ({restarts} restarts)"
        );
        restarts
    });
    assert!(restarts > 1, "{restarts} restarts");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
}

#[test]
fn stopping_the_socket_removes_its_path_and_the_service_stays_stopped() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = echo_units(&td, "RemoveOnStop=yes");
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "echo.socket"]);
    ask(&path).unwrap();
    td.wait_state("echo.service", "active");
    td.ok(&["stop", "echo.socket"]);
    assert_eq!(td.prop("echo.socket", "ActiveState"), "inactive");
    assert!(!path.exists(), "RemoveOnStop= left {}", path.display());
    // The service keeps running without the socket; once stopped, nothing
    // starts it again.
    td.ok(&["stop", "echo.service"]);
    assert_eq!(td.prop("echo.service", "ActiveState"), "inactive");
    assert_eq!(
        UnixStream::connect(&path).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(td.prop("echo.service", "ActiveState"), "inactive");
}

#[test]
fn an_enabled_socket_listens_from_start_up() {
    let Some(td) = TestDaemon::start_with(|td| {
        echo_units(td, "");
        let wants = td.units_dir().join("sockets.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            td.units_dir().join("echo.socket"),
            wants.join("echo.socket"),
        )
        .unwrap();
    }) else {
        return;
    };
    assert_eq!(td.prop("sockets.target", "ActiveState"), "active");
    assert_eq!(td.prop("echo.socket", "SubState"), "listening");
    assert_eq!(td.prop("echo.service", "ActiveState"), "inactive");
    let path = td.run_dir().join("echo/echo.sock");
    assert_eq!(ask(&path).unwrap()[3], "echo.socket");
}

#[test]
fn enable_of_a_socket_follows_its_install_section() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    echo_units(&td, "");
    td.ok(&["daemon-reload"]);
    td.ok(&["enable", "echo.socket"]);
    assert!(
        td.units_dir()
            .join("sockets.target.wants/echo.socket")
            .exists()
    );
}

#[test]
fn requires_of_a_socket_starts_it() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = echo_units(&td, "FileDescriptorName=web");
    td.write_unit(
        "user.service",
        "[Unit]\nRequires=echo.socket\nAfter=echo.socket\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "user.service"]);
    assert_eq!(td.prop("echo.socket", "SubState"), "listening");
    assert_eq!(td.prop("user.service", "ActiveState"), "active");
    let answer = ask(&path).unwrap();
    assert_eq!(answer[3], "web", "FileDescriptorName=: {answer:?}");
    td.wait_state("echo.service", "active");
}

#[test]
fn a_second_unit_on_the_same_address_fails_naming_the_address() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    let path = echo_units(&td, "");
    td.write_unit(
        "other.socket",
        &format!(
            "[Socket]\nListenStream={}\nService=echo.service\n",
            path.display()
        ),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "echo.socket"]);
    let o = td.corral(&["start", "other.socket"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert_eq!(td.prop("other.socket", "ActiveState"), "failed");
    assert_eq!(td.prop("other.socket", "Result"), "resources");
    let s = td.corral(&["status", "other.socket"]).stdout;
    assert!(
        s.contains(&format!("address already in use: {}", path.display())),
        "{s}"
    );
    assert!(s.contains("echo.socket listens there"), "{s}");
    // The first one is untouched.
    assert_eq!(ask(&path).unwrap()[3], "echo.socket");
}

#[test]
fn a_bad_listen_value_is_refused_naming_the_line() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    td.write_unit("bad.socket", "[Socket]\nListenStream=127.0.0.1:99999\n");
    td.ok(&["daemon-reload"]);
    let o = td.corral(&["start", "bad.socket"]);
    assert_ne!(o.code, 0, "{o:?}");
    let all = format!("{}{}", o.stderr, td.log());
    assert!(all.contains("bad.socket:2"), "{all}");
    assert!(all.contains("ListenStream="), "{all}");
}

#[test]
fn a_tcp_socket_restarted_at_once_binds_its_port_again() {
    let Some(td) = TestDaemon::start() else {
        return;
    };
    echo_units(&td, "");
    // A port free a moment ago; the socket unit takes it from here on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    td.write_unit(
        "tcp.socket",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\nService=echo.service\n"),
    );
    td.ok(&["daemon-reload"]);
    td.ok(&["start", "tcp.socket"]);
    // The fd holder keeps a copy of the listening socket; a stop must have
    // closed it before the next bind, or that bind finds the port in use.
    for round in 0..30 {
        let o = td.corral(&["restart", "tcp.socket"]);
        assert_eq!(o.code, 0, "round {round}: {o:?}");
        assert_eq!(
            td.prop("tcp.socket", "SubState"),
            "listening",
            "round {round}"
        );
    }
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the socket listens");
}
